"""bf16 kernels on AVX512-BF16: weight packing in pairs, tensorization with VDPBF16PS, and agreement
with the build that widens bf16 for fp32 FMAs."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.tvm.passes.dot_kernels import pack_conv_weight, pack_matmul_weight, padded_work


def _host_has_avx512_bf16() -> bool:
    import tvm

    from explorer.tvm import codegen
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.passes.bf16_dot import has_avx512_bf16

    return has_avx512_bf16(tvm.target.Target(codegen.llvm_target(host_llvm_cpu())))


needs_bf16 = pytest.mark.skipif(not _host_has_avx512_bf16(), reason="this CPU has no AVX512-BF16 (Zen 4, Zen 5 and "
                                                                    "Granite Rapids have it; Cascade Lake has not)")
#: AVX-512 with VNNI but without BF16: the build that widens bf16 operands for fp32 FMAs.
WIDENING_CPU = "cascadelake"


def _lower_for(path, mcpu: str, strategy: str = "fused-bf16"):
    from explorer.core.strategies import get_strategy
    from explorer.model.prepare import prepare
    from explorer.tvm import codegen
    from explorer.tvm.compile import compile_variant
    from explorer.tvm.tir.walker import analyse_module
    from explorer.workload.table import workload_table

    model = prepare(str(path))
    compiled = compile_variant(str(model.path), model.sha256, get_strategy(strategy), "generic",
                               codegen.llvm_target(mcpu), build=True)
    return model, compiled, workload_table(compiled.calls, analyse_module(compiled.tir))


def test_matmul_weights_pack_as_n16_k2_pairs_by_hand():
    w = np.arange(3 * 20, dtype=np.uint16).reshape(3, 20)  # K=3 -> 4, N=20 -> 32
    p = pack_matmul_weight(w, 2)
    assert p.shape == (2, 2, 16, 2) and p.dtype == np.uint16
    assert p[1, 0, 3, 1] == w[1, 19]  # P[no, ko, ni, ki] = W[2ko + ki, 16no + ni]
    assert p[0, 1, 5, 0] == w[2, 5]
    assert p[1, 0, 4, 0] == 0 and p[0, 1, 0, 1] == 0  # n = 20 and k = 3 are padding


def test_conv_weights_pack_as_oc16_ic2_pairs_by_hand():
    w = np.arange(16 * 3 * 3 * 2, dtype=np.uint16).reshape(16, 3, 3, 2)  # OIHW, IC=3 -> 4
    p = pack_conv_weight(w, 2)
    assert p.shape == (1, 3, 2, 2, 16, 2)
    assert p[0, 2, 1, 0, 7, 1] == w[7, 1, 2, 1]  # P[oco, kh, kw, ico, oci, ici] = W[16oco+oci, 2ico+ici, kh, kw]
    assert p[0, 0, 0, 1, 0, 1] == 0  # input channel 3 is padding


def test_padded_work_in_pairs_by_hand():
    assert padded_work(64, 3, 2) == pytest.approx(4 / 3)  # an RGB first convolution: 3 channels read as 4
    assert padded_work(16, 8, 2) == 1.0


@needs_bf16
def test_every_bf16_mac_of_a_convolution_runs_on_vdpbf16ps(conv16_onnx):
    from explorer.tvm.llvm_host import host_llvm_cpu

    _, _, wl = _lower_for(conv16_onnx, host_llvm_cpu())
    assert wl["op_mac_bfloat16"].sum() == 41472
    assert wl["tensorized_macs"].sum() == 41472


def test_without_avx512_bf16_the_convolution_widens_its_operands(conv16_onnx):
    _, _, wl = _lower_for(conv16_onnx, WIDENING_CPU)
    assert wl["op_mac_bfloat16"].sum() == 41472 and wl["tensorized_macs"].sum() == 0


@needs_bf16
def test_the_built_code_is_one_vdpbf16ps_per_instruction_inlined(conv16_onnx):
    # the intrinsic calls an LLVM function linked into the kernel's module; not inlined, each
    # instruction would be a call
    from explorer.tvm.llvm_host import host_llvm_cpu

    _, compiled, _ = _lower_for(conv16_onnx, host_llvm_cpu())
    asm = "\n".join(m.inspect_source("asm") for m in compiled.executable.mod.imports)
    assert "vdpbf16ps" in asm
    assert "explorer_dpbf16ps_512" not in asm


@needs_bf16
@pytest.mark.parametrize("strategy", ["fused-bf16", "fused-nhwc-bf16"])
def test_the_vdpbf16ps_convolution_matches_the_widened_build(conv16_onnx, strategy):
    # both sum the same exact fp32 products of bf16 values, in another order
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.runtime import run_executable

    model, dot, _ = _lower_for(conv16_onnx, host_llvm_cpu(), strategy)
    _, widened, _ = _lower_for(conv16_onnx, WIDENING_CPU, strategy)
    x = model.sample_inputs(0)["x"]
    got, want = run_executable(dot.executable, [x])[0], run_executable(widened.executable, [x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


@needs_bf16
def test_a_bf16_matmul_on_vdpbf16ps_is_tensorized_and_matches_the_widened_build(matmul_onnx):
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.runtime import run_executable

    model, dot, wl = _lower_for(matmul_onnx, host_llvm_cpu())
    _, widened, _ = _lower_for(matmul_onnx, WIDENING_CPU)
    assert wl["tensorized_macs"].sum() == 64 * 32
    x = model.sample_inputs(0)["x"]
    got, want = run_executable(dot.executable, [x])[0], run_executable(widened.executable, [x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


@needs_bf16
def test_a_weight_only_bf16_build_keeps_its_matmuls_for_quantization(matmul_onnx):
    # int8w-bf16 quantizes bf16 matmul weights after legalization: the VDPBF16PS rewrite must leave them
    from explorer.tvm.llvm_host import host_llvm_cpu

    _, _, wl = _lower_for(matmul_onnx, host_llvm_cpu(), "fused-int8w-bf16")
    assert wl["tensorized_macs"].sum() == 0


@pytest.fixture(scope="module")
def scores_onnx(model_dir):
    """An attention's scores: s[1,2,16,16] = x[1,2,16,32] @ x^T: 2 x 16 x 16 x 32 = 16384 MACs, no weight."""
    from onnx import TensorProto, helper

    from tests.conftest import make_model

    m = make_model([helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 1, 3, 2]),
                    helper.make_node("MatMul", ["x", "xt"], ["s"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 16, 32])],
                   [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 2, 16, 16])])
    path = model_dir / "scores.onnx"
    import onnx

    onnx.save(m, path)
    return path


@needs_bf16
def test_a_matmul_of_two_activations_packs_its_right_operand_and_runs_on_vdpbf16ps(scores_onnx):
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.runtime import run_executable

    model, dot, wl = _lower_for(scores_onnx, host_llvm_cpu())
    _, widened, _ = _lower_for(scores_onnx, WIDENING_CPU)
    assert wl["op_mac_bfloat16"].sum() == wl["tensorized_macs"].sum() == 2 * 16 * 16 * 32
    x = model.sample_inputs(0)["x"]
    got, want = run_executable(dot.executable, [x])[0], run_executable(widened.executable, [x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
