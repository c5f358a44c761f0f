"""Workload extraction from lowered TIR: exact counts on hand-checkable kernels."""

from __future__ import annotations

import pytest

from explorer import tir_analysis, tvm_compile
from explorer.loading import prepare
from explorer.strategies import get_strategy


def workload(path, strategy="baseline", flavour="generic"):
    model = prepare(str(path))
    target = tvm_compile.host_target() if flavour == "generic" else tvm_compile.cuda_target("sm_90")
    lowered = tvm_compile.compile_variant(str(model.path), model.sha256, get_strategy(strategy), flavour, target,
                                          build=False)
    return tir_analysis.workload_table(lowered.calls, tir_analysis.analyse_module(lowered.tir)), lowered


def test_matmul_exact_flops_and_bytes(matmul_onnx):
    df, _ = workload(matmul_onnx)
    assert len(df) == 1
    row = df.iloc[0]
    assert row.macs == 64 * 32
    assert row.flops == 2 * 64 * 32
    assert row.read_bytes == (64 + 64 * 32) * 4
    assert row.weight_bytes == 64 * 32 * 4
    assert row.write_bytes == 32 * 4
    # per MAC: load x, load W, load+store the accumulator; plus the zero-init stores
    assert row.access_bytes == 2048 * 4 * 4 + 32 * 4


def test_conv_exact_macs_and_bytes(conv_add_relu_onnx):
    df, _ = workload(conv_add_relu_onnx)
    conv = df[df.kernel == "conv2d"].iloc[0]
    assert conv.macs == 8 * 6 * 6 * 4 * 3 * 3
    assert conv.flops == 2 * 10368
    assert conv["op_select_float32"] == 10368  # the inlined zero padding guards every MAC
    assert conv.read_bytes == (4 * 6 * 6 + 8 * 4 * 3 * 3) * 4
    assert conv.write_bytes == 8 * 6 * 6 * 4
    assert list(df.kernel) == ["conv2d", "add", "relu"]
    assert list(df.flops) == [20736, 288, 288]


def test_fusion_removes_intermediates_of_conv_add_relu(conv_add_relu_onnx):
    unfused, _ = workload(conv_add_relu_onnx, "baseline")
    fused, lowered = workload(conv_add_relu_onnx, "fused")
    tensor = 8 * 6 * 6 * 4
    assert len(fused) == 1
    assert lowered.calls[0].members == ["conv2d", "add", "relu"]
    assert [t.nbytes for t in lowered.calls[0].eliminated] == [tensor, tensor]
    # each eliminated intermediate was written once and read once through memory
    saved = (unfused.read_bytes.sum() + unfused.write_bytes.sum()) - (fused.read_bytes.sum() + fused.write_bytes.sum())
    assert saved == 2 * 2 * tensor
    # the conv accumulator shrinks to one element on the stack, i.e. a register: per MAC a load and a
    # store of it, plus the zero-init and the epilogue's read for each of the 288 outputs
    assert fused.scratch_bytes.sum() == 0
    assert fused.local_access_bytes.sum() == 10368 * 8 + 288 * 4 + 288 * 4
    assert fused.macs.sum() == unfused.macs.sum()


def test_nhwc_keeps_the_work_and_adds_layout_transposes(conv_add_relu_onnx):
    df, _ = workload(conv_add_relu_onnx, "fused-nhwc")
    assert df.macs.sum() == 10368
    assert [k for k in df.kernel if k.startswith("transpose")] == ["transpose", "transpose1"]


def test_gpu_lowering_uses_shared_or_local_memory(matmul_onnx):
    df, _ = workload(matmul_onnx, "fused", flavour="cuda")
    assert df.macs.sum() >= 2048
    assert (df.shared_access_bytes + df.local_access_bytes).sum() > 0


@pytest.mark.parametrize("strategy", ["baseline", "fused"])
def test_planned_memory_is_reported(conv_add_relu_onnx, strategy):
    _, lowered = workload(conv_add_relu_onnx, strategy)
    assert lowered.planned_bytes >= 8 * 6 * 6 * 4
