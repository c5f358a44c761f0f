"""MXFP4 expert weights (explorer.tvm.passes.mxfp4): the format by hand, the routed kernel that decodes
it against numpy, and a mixture's experts read at 4.25 bits a weight."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import te

from explorer.tvm.passes import mxfp4


def test_a_block_s_scale_is_its_largest_power_of_two_over_e2m1_s_and_values_the_nearest_codes():
    block = np.zeros(32, np.float32)
    block[:5] = [6.0, -3.0, 0.5, 0.0, 7.0]  # 7 saturates at 6
    codes, scales = mxfp4.quantize(block)
    assert scales.tolist() == [127]  # 2^(floor(log2 7) - 2) = 2^0
    # element 0 in the low nibble: 6 is code 7, -3 is 8 | 5, 0.5 is 1, 0 is 0, 7 saturates to code 7
    assert codes[:3].tolist() == [0x7 | 0xD << 4, 0x1 | 0x0 << 4, 0x7]
    assert mxfp4.dequantize(codes, scales)[:5].tolist() == [6.0, -3.0, 0.5, 0.0, 6.0]


def test_a_block_of_small_values_gets_a_small_scale():
    block = np.full(32, 0.01, np.float32)
    codes, scales = mxfp4.quantize(block)
    # 0.01 = 1.28 x 2^-7: scale 2^(-7 - 2), 0.01 / 2^-9 = 5.12 -> 6 (the nearer of 4 and 6)
    assert scales.tolist() == [127 - 9]
    assert mxfp4.dequantize(codes, scales)[0] == 6 * 2.0 ** -9


def test_the_routed_kernel_decodes_as_numpy_does():
    rng = np.random.default_rng(0)
    e, n, depth, tokens, k = 4, 8, 64, 3, 2
    weights = rng.standard_normal((e, n, depth)).astype(np.float32)
    codes, scales = mxfp4.quantize(weights)
    x = rng.standard_normal((tokens, 1, 1, depth)).astype(np.float32)
    index = np.array([[0, 3], [2, 2], [1, 0]], np.int64)
    table = mxfp4.CODE_VALUES
    X, C, S, I, L = (te.placeholder(a.shape, str(a.dtype), name=nm) for a, nm in
                     ((x, "x"), (codes, "codes"), (scales, "scales"), (index, "index"), (table, "table")))
    out = mxfp4.routed_mxfp4_kernel(X, C, S, I, L, "float32")
    lib = tvm.compile(tvm.IRModule({"main": te.create_prim_func([X, C, S, I, L, out])}), target="llvm")
    got = tvm.runtime.empty((tokens, k, 1, n), "float32")
    lib["main"](*(tvm.runtime.tensor(a) for a in (x, codes, scales, index, table)), got)
    dense = mxfp4.dequantize(codes, scales)  # [E, N, K]
    expected = np.einsum("tr,tjnr->tjn", x[:, 0, 0], dense[index])[:, :, None, :]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_a_mixture_s_experts_are_read_at_4_25_bits_a_weight():
    from explorer.core.strategies import get_strategy
    from explorer.model.phases import Phase
    from explorer.model.prepare import prepare
    from explorer.tvm import codegen
    from explorer.tvm.compile import compile_variant
    from explorer.tvm.tir.walker import analyse_module
    from explorer.workload.table import workload_table
    from models.decoders import GPT_OSS_MINI

    model = prepare("gpt-oss-mini", phase=Phase("decode", 16), batch=1)
    compiled = compile_variant(str(model.path), model.sha256, get_strategy("fused-mxfp4-bf16"), "cuda",
                               codegen.cuda_target("sm_90"), build=False)
    table = workload_table(compiled.calls, analyse_module(compiled.tir))
    routed = table[table["kernel"].str.contains("routed_matmul")]
    expert = GPT_OSS_MINI.d_model * GPT_OSS_MINI.ffn
    # one token, 4 experts: their codes (half a byte a weight) and scales (a byte a block of 32); the
    # gate's kernel also reads the clamped SwiGLU's two float32 constants; each reads the 64-byte table
    assert routed["weight_bytes"].to_numpy() == pytest.approx(4 * expert * (0.5 + 1 / 32) + 64, abs=8)
