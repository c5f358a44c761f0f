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


def test_a_gpu_int8_convolution_keeps_its_accumulators_in_registers(conv16_onnx):
    row, buffers = _conv_kernel(conv16_onnx, "fused-int8")
    assert row.macs == 16 * 8 * 9 * 36 and row.shared_access_bytes == 0
    out = next(b for b in buffers.values() if b.param_index >= 0 and b.store_count > 0)
    assert out.store_count == 16 * 36  # the fused epilogue runs once per output, not per partial sum
    # each thread computes 4 output channels: one load of the padded input feeds 4 MACs
    assert buffers["pad_temp"].load_count == 16 * 8 * 9 * 36 / 4


def test_gpu_fused_int8_models_less_energy_than_unfused_int8(conv16_onnx):
    v = explorer.sweep(str(conv16_onnx), targets=["gpu"], strategies=["int8", "fused-int8"], build=False,
                       progress=False, isolate=False).set_index("strategy")
    assert v.loc["fused-int8", "energy_j"] < v.loc["int8", "energy_j"]
    assert v.loc["fused-int8", "macs"] == v.loc["int8", "macs"] == 41472
