"""int8 kernels on VNNI: weight packing, the u8 shift's correction, tensorization, and exactness."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.tvm.passes.vnni import pack_conv_weight, pack_matmul_weight, padded_work, shift_correction


def _host_has_vnni() -> bool:
    import tvm

    from explorer.tvm import codegen
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.passes.vnni import has_vnni

    return has_vnni(tvm.target.Target(codegen.llvm_target(host_llvm_cpu())))


needs_vnni = pytest.mark.skipif(not _host_has_vnni(), reason="this CPU has no AVX-512 VNNI (both of this "
                                                               "project's machine kinds have it)")


def _lower_for(path, mcpu: str, strategy: str = "fused-int8", scales=(0.03,)):
    from explorer.core.strategies import get_strategy
    from explorer.model.prepare import prepare
    from explorer.tvm import codegen
    from explorer.tvm.compile import compile_variant
    from explorer.tvm.tir.walker import analyse_module
    from explorer.workload.table import workload_table

    model = prepare(str(path))
    compiled = compile_variant(str(model.path), model.sha256, get_strategy(strategy), "generic",
                               codegen.llvm_target(mcpu), build=True, act_scales=scales)
    return model, compiled, workload_table(compiled.calls, analyse_module(compiled.tir))


def test_matmul_weights_pack_as_n16_k4_blocks_by_hand():
    w = np.arange(6 * 20, dtype=np.int64).reshape(6, 20).astype(np.int8)  # K=6 -> 8, N=20 -> 32
    p = pack_matmul_weight(w)
    assert p.shape == (2, 2, 16, 4)
    assert p[1, 0, 3, 2] == w[2, 19]  # P[no, ko, ni, ki] = W[4ko + ki, 16no + ni]
    assert p[0, 1, 5, 1] == w[5, 5]
    assert p[1, 0, 4, 0] == 0 and p[0, 1, 0, 2] == 0  # n = 20 and k = 6 are padding


def test_conv_weights_pack_as_oc16_ic4_blocks_by_hand():
    w = np.arange(16 * 8 * 3 * 2).reshape(16, 8, 3, 2).astype(np.int8)  # OIHW
    p = pack_conv_weight(w)
    assert p.shape == (1, 3, 2, 2, 16, 4)
    assert p[0, 2, 1, 1, 7, 3] == w[7, 7, 2, 1]  # P[oco, kh, kw, ico, oci, ici] = W[16oco+oci, 4ico+ici, kh, kw]


def test_the_shift_correction_is_128_times_each_output_channels_weight_sum():
    w = np.array([[1, -2], [3, 4], [-5, 0]], dtype=np.int8)  # [K=3, N=2]
    assert shift_correction(w, 1).tolist() == [128 * -1, 128 * 2]


def test_padded_work_by_hand():
    assert padded_work(8, 4) == 2.0  # 8 output channels fill half a block: such a kernel stays s8 x s8
    assert padded_work(64, 3) == pytest.approx(4 / 3)  # an RGB first convolution: 3 channels read as 4
    assert padded_work(100, 256) == pytest.approx(1.12)


@needs_vnni
def test_every_int8_mac_of_a_convolution_runs_on_vpdpbusd(conv16_onnx):
    from explorer.tvm.llvm_host import host_llvm_cpu

    _, _, wl = _lower_for(conv16_onnx, host_llvm_cpu())
    assert wl["op_mac_int8"].sum() == 41472
    assert wl["tensorized_macs"].sum() == 41472


def test_without_vnni_the_convolution_stays_s8_by_s8(conv16_onnx):
    _, _, wl = _lower_for(conv16_onnx, "skylake-avx512")  # AVX-512 without VNNI
    assert wl["op_mac_int8"].sum() == 41472 and wl["tensorized_macs"].sum() == 0


@needs_vnni
@pytest.mark.parametrize("strategy", ["fused-int8", "int8"])
def test_the_vnni_build_computes_exactly_what_the_s8_by_s8_build_does(conv16_onnx, strategy):
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.runtime import run_executable

    model, vnni, _ = _lower_for(conv16_onnx, host_llvm_cpu(), strategy)
    _, plain, _ = _lower_for(conv16_onnx, "skylake-avx512", strategy)
    x = model.sample_inputs(0)["x"]
    np.testing.assert_array_equal(run_executable(vnni.executable, [x])[0], run_executable(plain.executable, [x])[0])


@needs_vnni
def test_a_matmul_on_vnni_is_tensorized_and_exact(matmul_onnx):
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.runtime import run_executable

    model, vnni, wl = _lower_for(matmul_onnx, host_llvm_cpu())
    _, plain, _ = _lower_for(matmul_onnx, "skylake-avx512")
    assert wl["tensorized_macs"].sum() == 64 * 32
    x = model.sample_inputs(0)["x"]
    np.testing.assert_array_equal(run_executable(vnni.executable, [x])[0], run_executable(plain.executable, [x])[0])


@needs_vnni
def test_a_convolution_with_too_few_channels_keeps_the_s8_by_s8_kernel(conv_add_relu_onnx):
    from explorer.tvm.llvm_host import host_llvm_cpu

    _, _, wl = _lower_for(conv_add_relu_onnx, host_llvm_cpu(), scales=(0.02,))  # 8 output channels
    assert wl["op_mac_int8"].sum() == 10368 and wl["tensorized_macs"].sum() == 0


@needs_vnni
def test_a_vnni_matmul_fetches_its_whole_packed_weight_from_memory(matmul_onnx):
    # VPDPBUSD reads its weight operand as one 64-byte vector (a Ramp index): counted as 64 bytes per
    # access, the 2 kB of packed weights are each fetched once in a cache too small for the whole inference;
    # counted as one byte, the reuse model saw 1/64 of them
    from cost_models.workload import curve_at
    from explorer.tvm.llvm_host import host_llvm_cpu

    _, _, wl = _lower_for(matmul_onnx, host_llvm_cpu())
    row = wl[wl["tensorized_macs"] > 0].iloc[0]
    packed = 64 * 32  # the [2, 16, 16, 4] int8 weight (besides it, 256 B of per-channel constants)
    assert curve_at(row.traffic_curve, packed) >= packed


@needs_vnni
def test_an_nchw_epilogue_runs_along_the_channels_and_a_copy_transposes_the_tile(conv16_onnx):
    from explorer.tvm.llvm_host import host_llvm_cpu

    _, _, wl = _lower_for(conv16_onnx, host_llvm_cpu())
    from cost_models.workload import parse_schedule

    groups = {(k.kind, k.dtype): (k.lanes, n) for k, n in parse_schedule(wl[wl.tensorized_macs > 0].schedule.iloc[0])}
    # the shift's correction, the dequantization and the ReLU: 16 channels a vector, read straight from
    # the accumulators (not 6 pixels a vector gathered across the tile's rows)
    assert groups[("add", "int32")] == groups[("mul", "float32")] == groups[("cmp", "float32")] == (16, 576)
    assert groups[("load", "int32")] == (16, 576)
    # then the 16 x 6 tile is written in NCHW: 6 pixels a vector, gathered across its channels
    assert groups[("gather", "float32")] == groups[("store", "float32")] == (6, 576)
