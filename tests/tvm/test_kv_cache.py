"""A GPU build keeps a decoder's KV cache in place (explorer.tvm.passes.kv_cache): the step writes its
new rows into the cache and attention reads the cache where it is; nothing copies the past."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from explorer.core.strategies import get_strategy
from explorer.model.phases import Phase
from explorer.model.prepare import prepare
from explorer.tvm import codegen
from explorer.tvm.compile import compile_variant
from explorer.tvm.passes.kv_cache import append_kernel, kv_cache_in_place
from explorer.tvm.tir.walker import analyse_module
from explorer.workload.table import workload_table
from models.decoders import LLAMA_MINI


def test_the_append_kernel_writes_the_new_rows_after_the_past_and_nothing_else():
    func = append_kernel((2, 3, 7, 4), 2, "float32")
    lib = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    cache = np.arange(2 * 3 * 7 * 4, dtype="float32").reshape(2, 3, 7, 4)
    new = -np.ones((2, 3, 2, 4), "float32")
    buffer = tvm.runtime.tensor(cache)
    lib["main"](buffer, tvm.runtime.tensor(new))
    expected = cache.copy()
    expected[:, :, 5:] = new
    np.testing.assert_array_equal(buffer.numpy(), expected)


def _appending_step() -> tvm.IRModule:
    bb = relax.BlockBuilder()
    past = relax.Var("past", relax.TensorType((1, 2, 5, 4), "float16"))
    new = relax.Var("new", relax.TensorType((1, 2, 1, 4), "float32"))
    with bb.function("main", [past, new]):
        with bb.dataflow():
            present = bb.emit(relax.op.concat([past, bb.emit(relax.op.astype(new, "float16"))], axis=2))
            out = bb.emit_output(relax.op.sum(present))
        bb.emit_func_output(relax.Tuple([out, present]))
    return bb.get()


def test_the_step_takes_the_cache_with_room_for_its_new_row_under_the_same_name():
    mod = kv_cache_in_place()(_appending_step())
    past = mod["main"].params[0]
    assert past.name == "past" and [int(d) for d in past.ty.shape] == [1, 2, 6, 4]
    script = mod["main"].script()
    assert "call_tir_inplace" in script and "concat" not in script


def test_a_cache_used_by_anything_but_its_append_is_left_as_it_was():
    bb = relax.BlockBuilder()
    past = relax.Var("past", relax.TensorType((1, 2, 5, 4), "float32"))
    new = relax.Var("new", relax.TensorType((1, 2, 1, 4), "float32"))
    with bb.function("main", [past, new]):
        with bb.dataflow():
            present = bb.emit(relax.op.concat([past, new], axis=2))
            out = bb.emit_output(relax.op.add(relax.op.sum(present), relax.op.sum(past)))
        bb.emit_func_output(out)
    mod = bb.get()
    assert kv_cache_in_place()(mod)["main"].script() == mod["main"].script()


@pytest.fixture(scope="module")
def gpu_step():
    model = prepare("llama-mini", phase=Phase("decode", 16), batch=2, kv_cache_dtype="float16")
    compiled = compile_variant(str(model.path), model.sha256, get_strategy("fused-bf16"), "cuda",
                               codegen.cuda_target("sm_90"), build=False)
    return compiled, workload_table(compiled.calls, analyse_module(compiled.tir))


def test_a_gpu_decode_step_writes_only_its_new_rows_into_the_cache(gpu_step):
    compiled, table = gpu_step
    appends = table[table["kernel"].str.startswith("kv_cache_append")]
    assert len(appends) == 2 * LLAMA_MINI.layers  # a key and a value cache a layer
    row = 2 * LLAMA_MINI.kv_heads * LLAMA_MINI.head_dim * 2  # batch 2, float16: one new position
    assert (appends["write_bytes"] == row).all() and (appends["read_bytes"] == row).all()  # reads the new rows only
    cache = 2 * LLAMA_MINI.kv_heads * 17 * LLAMA_MINI.head_dim * 2
    attention = table[table["kernel"].str.startswith("fused_attention_split")]
    assert (attention["read_bytes"] >= 2 * cache).all()  # the keys and values, read where they are


def test_no_kernel_of_a_gpu_decode_step_copies_the_cache(gpu_step):
    compiled, _ = gpu_step
    cache = (2, LLAMA_MINI.kv_heads, 17, LLAMA_MINI.head_dim)
    flat = (int(np.prod(cache)),)
    for call in compiled.calls:  # a concat of past and new, or a cast of the cache, would write one
        assert all(tuple(t.shape) not in (cache, flat) for t in call.args[call.n_inputs:]), call.kernel
