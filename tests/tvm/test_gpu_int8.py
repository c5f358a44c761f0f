"""The CUDA schedule of int8 convolutions and matmuls (explorer.tvm.schedules)."""

from __future__ import annotations

import explorer
from explorer.tvm.tir.walker import analyse_module
from tests.tvm.lowering import lower


def _conv_kernel(path, strategy):
    _, compiled, wl = lower(path, strategy, lowering="cuda", scales=(0.03,))
    kernels = analyse_module(compiled.tir)
    name = next(n for n in kernels if "conv2d" in n)
    return wl[wl.kernel == name].iloc[0], {b.name: b for b in kernels[name].buffers}


def test_a_gpu_int8_convolution_is_an_implicit_gemm_on_the_tensor_cores(conv16_onnx):
    row, buffers = _conv_kernel(conv16_onnx, "fused-int8")
    # M = 36 pixels padded to 48, N = 16 channels, K = 8 x 9 = 72 padded to 96 (3 calls of 32)
    assert (row.useful_macs, row.macs, row.tensorized_macs) == (16 * 8 * 9 * 36, 48 * 16 * 96, 48 * 16 * 96)
    out = next(b for b in buffers.values() if b.param_index >= 0 and b.store_count > 0)
    # the fused epilogue runs once per output (its guard leaves out the padded tile's 12 rows), not once
    # per partial sum
    assert out.store_count == 36 * 16


def test_gpu_fused_int8_models_less_energy_than_unfused_int8(conv16_onnx):
    v = explorer.sweep(str(conv16_onnx), targets=["gpu"], strategies=["int8", "fused-int8"], build=False,
                       progress=False, isolate=False).set_index("strategy")
    assert v.loc["fused-int8", "energy_j"] < v.loc["int8", "energy_j"]
    assert v.loc["fused-int8", "useful_macs"] == v.loc["int8", "useful_macs"] == 41472
