"""A mixture of experts in TVM (explorer.tvm.passes.experts): the top-k kernel against numpy, and a
compiled mixture that reads its routed experts' weights where they are, nothing more."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tvm
from tvm import te

from explorer.core.strategies import get_strategy
from explorer.model.phases import Phase
from explorer.model.prepare import prepare
from explorer.tvm import codegen
from explorer.tvm.compile import compile_variant
from explorer.tvm.llvm_host import host_llvm_cpu
from explorer.tvm.passes.experts import top_k_kernel
from explorer.tvm.tir.walker import analyse_module
from explorer.workload.table import workload_table
from models.decoders import MOE_MINI


def test_top_k_picks_the_largest_first_and_ties_in_index_order():
    x = te.placeholder((3, 6), "float32", name="x")
    values, indices = top_k_kernel(x, 3, "int64")
    func = te.create_prim_func([x, values, indices])
    lib = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    data = np.array([[0.1, 0.9, 0.3, 0.9, -1.0, 0.5],
                     [2.0, 2.0, 2.0, 1.0, 0.0, 2.0],
                     [-3.0, -1.0, -2.0, -5.0, -4.0, -6.0]], "float32")
    out_v, out_i = tvm.runtime.empty((3, 3), "float32"), tvm.runtime.empty((3, 3), "int64")
    lib["main"](tvm.runtime.tensor(data), out_v, out_i)
    # ONNX TopK: largest first, and of equal values the lower index first
    np.testing.assert_array_equal(out_i.numpy(), [[1, 3, 5], [0, 1, 2], [1, 2, 0]])
    np.testing.assert_array_equal(out_v.numpy(), np.take_along_axis(data, out_i.numpy(), axis=1))


def _decode_step(batch: int, lowering: str = "generic"):
    model = prepare("moe-mini", phase=Phase("decode", 16), batch=batch)
    target = codegen.llvm_target(host_llvm_cpu()) if lowering == "generic" else codegen.cuda_target("sm_90")
    compiled = compile_variant(str(model.path), model.sha256, get_strategy("fused"), lowering, target, build=False)
    return compiled, workload_table(compiled.calls, analyse_module(compiled.tir))


@pytest.fixture(scope="module")
def one_token():
    """moe-mini at a decode step of one sequence, compiled for this CPU (fused)."""
    return _decode_step(1)


def test_no_kernel_copies_an_expert_s_weights(one_token):
    compiled, _ = one_token
    expert_matrix = MOE_MINI.d_model * MOE_MINI.ffn
    for call in compiled.calls:
        written = [t for t in call.args[call.n_inputs:]]
        # a take of the stacked experts would write [tokens, k, d_model, ffn]
        assert all(np.prod(t.shape) < expert_matrix for t in written), call.kernel


def test_a_token_reads_only_its_k_experts_weights(one_token):
    _, table = one_token
    routed = table[table["kernel"].str.contains("routed_matmul")]
    assert len(routed) == 3 * MOE_MINI.layers  # gate, up and down a layer
    one_expert = MOE_MINI.d_model * MOE_MINI.ffn * 4
    # one token routed to 2 of 8 experts: two experts' float32 weights a product
    assert set(routed["weight_bytes"]) == {2 * one_expert}
    assert (routed["macs"] == 2 * MOE_MINI.d_model * MOE_MINI.ffn).all()


@pytest.mark.parametrize("lowering", ["generic", "cuda"])
def test_a_batch_reads_the_distinct_experts_its_tokens_choose(lowering):
    _, table = _decode_step(4, lowering)
    routed = table[table["kernel"].str.contains("routed_matmul")]
    one_expert = MOE_MINI.d_model * MOE_MINI.ffn * 4
    # 4 tokens, 2 of 8 experts each, uniformly: 8 (1 - (6/8)^4) = 5.47 experts' weights a product
    assert routed["weight_bytes"].to_numpy() == pytest.approx(8 * (1 - 0.75 ** 4) * one_expert)
    assert (routed["macs"] == 4 * 2 * MOE_MINI.d_model * MOE_MINI.ffn).all()  # k experts a token computed


def test_on_a_gpu_the_routed_experts_come_from_dram_once_a_step():
    from cost_models import energy
    from cost_models.targets import load_target

    compiled, table = _decode_step(4, "cuda")
    scored = energy.score(table, load_target("gpu"))
    routed = scored[scored["kernel"].str.contains("routed_matmul")]
    one_expert = MOE_MINI.d_model * MOE_MINI.ffn * 4
    # the tokens of a column tile share each expert's slice (explorer.tvm.schedules.routed_matmul)
    assert routed["dram_bytes"].to_numpy() == pytest.approx(8 * (1 - 0.75 ** 4) * one_expert, rel=0.01)
    kernel = next(f for gv, f in compiled.tir.functions_items() if gv.name_hint == "routed_matmul").script()
    # blocks over column tiles and a token's experts (and tokens past 8); a thread's accumulators: its 4
    # tokens' for its block's expert, in registers
    assert 'T.launch_thread("blockIdx.z", T.int64(2))' in kernel and "T.alloc_local((T.int64(4),)" in kernel


@pytest.mark.parametrize("lowering", ["generic", "cuda"])
def test_a_measured_load_re_counts_the_experts_a_batch_reads_when_scored(lowering):
    from explorer.workload.reuse import RowLoad
    from explorer.workload.table import with_row_load

    _, table = _decode_step(4, lowering)
    one_expert = MOE_MINI.d_model * MOE_MINI.ffn * 4
    hot = with_row_load(table, RowLoad(((1.0, 1.0) + (0.0,) * 6,)))  # every token routed to experts 0 and 1
    routed = hot[hot["kernel"].str.contains("routed_matmul")]
    assert (routed["weight_bytes"] == 2 * one_expert).all()
    if lowering == "cuda":  # and the traffic model charges those two experts' bytes from DRAM
        from cost_models import energy
        from cost_models.targets import load_target

        scored = energy.score(hot, load_target("gpu"))
        dram = scored[scored["kernel"].str.contains("routed_matmul")]["dram_bytes"].to_numpy()
        assert dram == pytest.approx(2 * one_expert, rel=0.01)
    uniform = with_row_load(table, RowLoad(((0.25,) * 8,)))  # what the analysis assumed: nothing changes
    pd.testing.assert_frame_equal(uniform, table)
