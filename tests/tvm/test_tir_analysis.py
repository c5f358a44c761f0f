"""Workload extraction from lowered TIR: exact counts on hand-checkable kernels."""

from __future__ import annotations

import pytest

from tests.tvm.lowering import lower


def workload(path, strategy="baseline", lowering="generic"):
    _, compiled, table = lower(path, strategy, lowering)
    return table, compiled


def test_matmul_exact_flops_and_bytes(matmul_onnx):
    df, _ = workload(matmul_onnx)
    assert len(df) == 1
    row = df.iloc[0]
    assert row.macs == 64 * 32
    assert row.flops == 2 * 64 * 32
    assert row.read_bytes == (64 + 64 * 32) * 4
    assert row.weight_bytes == 64 * 32 * 4
    assert row.write_bytes == 32 * 4
    # the default CPU schedule keeps the accumulators in a 16-lane local tile: per MAC, x and W are
    # loaded from memory and the accumulator loaded and stored locally; the tile is zeroed, then read
    # once for the write-back, which stores the 32 outputs
    assert row.access_bytes == 2048 * (4 + 4) + 32 * 4
    assert row.local_access_bytes == 2048 * (4 + 4) + 32 * 4 + 32 * 4


def test_conv_exact_macs_and_bytes(conv_add_relu_onnx):
    df, _ = workload(conv_add_relu_onnx)
    conv = df[df.kernel == "conv2d"].iloc[0]
    assert conv.macs == 8 * 6 * 6 * 4 * 3 * 3
    assert conv.flops == 2 * 10368
    # padding is a stage of its own in the default CPU schedule, NCHW: zeros, then the interior copied
    # with no guard (a guard on each lane of a row kept TVM's vectorizer off the loop)
    assert "op_select_float32" not in df.columns
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
    # the conv accumulators are a local tile (8 channels x 6 columns): per MAC a load and a store of
    # one, plus the zero-init and the epilogue's read for each of the 288 outputs; the padded input
    # (4 x 8 x 8 floats, 1 kB: on chip) is stored once per element as zeros and once per inner element
    # (4 x 6 x 6) as the copy, and loaded once per MAC
    assert fused.scratch_bytes.sum() == 0
    accumulators = 10368 * 8 + 288 * 4 + 288 * 4
    padded = 4 * 8 * 8 * 4 + 4 * 6 * 6 * 4 + 10368 * 4
    assert fused.local_access_bytes.sum() == accumulators + padded
    assert fused.macs.sum() == unfused.macs.sum()


def test_nhwc_keeps_the_work_and_adds_layout_transposes(conv_add_relu_onnx):
    df, _ = workload(conv_add_relu_onnx, "fused-nhwc")
    assert df.macs.sum() == 10368
    assert [k for k in df.kernel if k.startswith("transpose")] == ["transpose", "transpose1"]


def test_nhwc_compiles_a_squeeze_counted_from_the_end(model_dir):
    # TVM 0.27's ConvertLayout dies with std::bad_alloc on squeeze(axis=-1) (silero-vad has one)
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from explorer.sweep.reference import reference_outputs
    from explorer.tvm.runtime import run_executable
    from tests.conftest import _save, _w, make_model

    rng = np.random.default_rng(0)
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Squeeze", ["c", "axes"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6])],
        [_w(rng, (8, 4, 1, 1), "w"), numpy_helper.from_array(np.array([-1], np.int64), "axes")])
    path = _save(model, model_dir / "conv_squeeze.onnx")
    prepared, compiled, _ = lower(path, "nhwc", build=True)
    feed = prepared.sample_inputs(0)
    out = run_executable(compiled.executable, [feed["x"]])
    np.testing.assert_allclose(out[0], reference_outputs(prepared, feed)[0], rtol=1e-5, atol=1e-6)


def test_gpu_lowering_uses_shared_or_local_memory(matmul_onnx):
    df, _ = workload(matmul_onnx, "fused", lowering="cuda")
    # a GPU keeps the weight [N, K] (x @ W^T in one kernel) and DLight's GEMV rule takes the kernel
    assert list(df.kernel) == ["NT_matmul"] and df.macs.sum() == 2048
    # from global memory each weight once (2048 floats), the vector once per thread block of 16 outputs
    # (2 x 64: only the threads ``threadIdx.y < 2`` copy it to shared memory), each output once (32:
    # only ``threadIdx.x == 0`` stores); threads split each output's reduction in registers and meet
    # in shared memory
    assert df.access_bytes.sum() == (2048 + 2 * 64 + 32) * 4
    assert df.shared_access_bytes.sum() > 0 and df.local_access_bytes.sum() > 0


@pytest.mark.parametrize("strategy, tensors", [("baseline", 3), ("fused", 1)])
def test_planned_memory_is_reported(conv_add_relu_onnx, strategy, tensors):
    # every tensor a kernel writes is 8 x 6 x 6 float32 (1152 B): unfused, the planner allocates c, a
    # and y; fused, only y
    _, lowered = workload(conv_add_relu_onnx, strategy)
    assert lowered.planned_bytes == tensors * 8 * 6 * 6 * 4


def test_a_gather_from_a_table_counts_the_rows_it_reads_as_weights(tmp_path):
    # an embedding lookup of 3 tokens from a 1000 x 16 table: its compulsory bytes are 3 rows, not the table
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.conftest import make_model

    table = numpy_helper.from_array(np.random.default_rng(0).standard_normal((1000, 16)).astype("float32"), "table")
    m = make_model([helper.make_node("Gather", ["table", "ids"], ["y"])],
                   [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16])], [table])
    onnx.save(m, tmp_path / "embed.onnx")
    df, _ = workload(tmp_path / "embed.onnx")
    assert df["weight_bytes"].sum() == 3 * 16 * 4
