"""A tensor-parallel shard's collectives in the compiled variant: Relax's ``R.ccl`` operators where the
shard's graph names them, fusion stopping at them, and a workload row each that the layer repeats count."""

from __future__ import annotations

import json

import pytest
import tvm

from explorer.core.strategies import get_strategy
from explorer.model.phases import Phase
from explorer.model.prepare import prepare
from explorer.tvm import codegen
from explorer.tvm.compile import compile_variant
from explorer.tvm.frontend import imported
from explorer.tvm.tir.walker import analyse_module
from explorer.workload.table import workload_table

SMALL = {"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4,
         "num_key_value_heads": 2, "num_hidden_layers": 8, "vocab_size": 1000, "rms_norm_eps": 1e-5,
         "max_position_embeddings": 256, "tie_word_embeddings": False, "explorer": {"name": "tiny-8-layers"}}


def _ccl_ops(mod) -> list[str]:
    found = []

    def visit(e):
        if isinstance(e, tvm.relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name.startswith("relax.ccl."):
            found.append(e.op.name)

    tvm.relax.analysis.post_order_visit(mod["main"].body, visit)
    return found


@pytest.fixture(scope="module")
def shard():
    """llama-mini's shard over 2 devices at a decode step of 2 sequences, compiled for sm_90 (fused-bf16)."""
    model = prepare("llama-mini@tp2", phase=Phase("decode", 16), batch=2)
    compiled = compile_variant(str(model.path), model.sha256, get_strategy("fused-bf16"), "cuda",
                               codegen.cuda_target("sm_90"), build=False)
    return model, compiled, workload_table(compiled.calls, analyse_module(compiled.tir), compiled.devices)


def test_the_shard_imports_an_all_reduce_a_collective_and_gathers_its_logits(shard):
    model, _, _ = shard
    ops = _ccl_ops(imported(str(model.path), model.sha256))
    # after the embedding, and after each of the 4 layers' attention and feed-forward
    assert ops.count("relax.ccl.allreduce") == 9 and ops.count("relax.ccl.allgather") == 1


def test_each_collective_is_a_workload_row_with_the_whole_tensor(shard):
    _, compiled, table = shard
    reduce = table[table["collective"] == "all_reduce"]
    gather = table[table["collective"] == "all_gather"]
    assert compiled.devices == 2 and set(table["devices"]) == {2}
    # [2 sequences, 1 position, d_model 256] in float32 (the bf16 build's activations between kernels)
    assert len(reduce) == 9 and set(reduce["collective_bytes"]) == {2 * 256 * 4}
    # each device's [2, 1, 16000] logits gathered along the first axis: [4, 1, 16000] float32
    assert list(gather["collective_bytes"]) == [4 * 16000 * 4]
    assert (reduce["read_bytes"] == 2048).all() and (reduce["macs"] == 0).all()


def test_fusion_stops_at_an_all_reduce(shard):
    _, compiled, _ = shard
    calls = compiled.calls
    for i, call in enumerate(calls):
        if call.collective != "all_reduce":
            continue
        summed = call.args[0].storage
        # the partial sum comes from its own kernel, and only a later kernel adds the residual to the sum
        assert any(t.storage == summed for t in calls[i - 1].args[calls[i - 1].n_inputs:])
        assert any(t.storage == call.args[-1].storage for t in calls[i + 1].args[:calls[i + 1].n_inputs])


def test_the_layers_one_stands_for_repeat_its_collectives(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(SMALL))
    model = prepare(f"{config}@tp2", phase=Phase("decode", 16), batch=1)
    compiled = compile_variant(str(model.path), model.sha256, get_strategy("fused-bf16"), "cuda",
                               codegen.cuda_target("sm_90"), build=False)
    kinds = [c.collective for c in compiled.calls if c.collective]
    # 8 layers analysed by 4 (the third stands for 5): 2 all-reduces a layer, the embedding's, one gather
    assert kinds.count("all_reduce") == 2 * 8 + 1 and kinds.count("all_gather") == 1
