"""The explorer's TIR pipeline keeps a CPU kernel's register tile on the stack
(explorer.tvm.passes.stack_buffers): no workspace allocation per parallel task, the same results, and a
``local`` buffer too large for the stack still goes to TVM's workspace."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import te, tirx, topi

from explorer.tvm import tir_pipeline
from explorer.tvm.passes.stack_buffers import MAX_STACK_BYTES, stack_bytes
from explorer.tvm.schedules.tiled_reduction import TiledReduction

AVX512 = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})


def _tiled_matmul():
    """A 64 x 40 by 40 x 96 matmul under the default CPU schedule: parallel tasks, each with a register
    tile of 8 rows x 3 vectors of 16 accumulators (1.5 KiB, over TVM's 1 KiB stack limit)."""
    a, b = te.placeholder((64, 40), name="a"), te.placeholder((40, 96), name="b")
    out = topi.matmul(a, b)
    return TiledReduction().apply(te.create_prim_func([a, b, out]), AVX512, False).mod


def _llvm_ir(mod, pipeline: str) -> str:
    return tvm.tirx.build(mod, target=AVX512, pipeline=pipeline).inspect_source("ll")


def _local_copy(elements: int, scope: str = "local"):
    """A copy through a ``scope`` buffer of ``elements`` floats, inside a parallel loop."""
    a = te.placeholder((4, elements), name="a")
    out = te.compute((4, elements), lambda i, j: a[i, j] + 1.0, name="out")
    from tvm import s_tir

    sch = s_tir.Schedule(te.create_prim_func([a, out]))
    block = sch.get_sblock("out")
    i, _ = sch.get_loops(block)
    sch.parallel(i)
    local = sch.cache_write(block, 0, scope)
    sch.reverse_compute_at(local, i)
    return sch.mod


def test_the_register_tile_is_a_workspace_allocation_under_tvms_pipeline_and_a_stack_one_under_ours():
    mod = _tiled_matmul()
    assert "TVMBackendAllocWorkspace" in _llvm_ir(mod, "default")
    ours = _llvm_ir(mod, tir_pipeline.register())
    assert "TVMBackendAllocWorkspace" not in ours and "alloca" in ours


def test_the_tile_on_the_stack_computes_what_numpy_does():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 40)).astype("float32"), rng.standard_normal((40, 96)).astype("float32")
    lib = tvm.tirx.build(_tiled_matmul(), target=tvm.target.Target({"kind": "llvm"}), pipeline=tir_pipeline.register())
    out = tvm.runtime.tensor(np.zeros((64, 96), "float32"))
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), out)
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5, atol=1e-5)


def test_a_global_buffer_of_1_kib_is_a_workspace_allocation_under_tvms_pipeline_and_a_stack_one_under_ours():
    mod = _local_copy(256, "global")  # DotReduction's tile: 8 rows x 2 blocks of 16 int32, 1 KiB
    assert "TVMBackendAllocWorkspace" in _llvm_ir(mod, "default")
    assert "TVMBackendAllocWorkspace" not in _llvm_ir(mod, tir_pipeline.register())


def test_a_local_buffer_over_the_limit_stays_on_the_workspace():
    limit = MAX_STACK_BYTES // 4
    assert "TVMBackendAllocWorkspace" not in _llvm_ir(_local_copy(limit), tir_pipeline.register())
    assert "TVMBackendAllocWorkspace" in _llvm_ir(_local_copy(limit + 16), tir_pipeline.register())


def test_stack_bytes_counts_local_and_global_buffers_of_constant_shape_only():
    assert stack_bytes(tirx.decl_buffer((8, 3), "float32x16", scope="local")) == 8 * 3 * 64
    assert stack_bytes(tirx.decl_buffer((8, 48), "float32", scope="local")) == 1536
    assert stack_bytes(tirx.decl_buffer((8, 2, 16), "int32")) == 1024  # DotReduction's tile: global scope
    assert stack_bytes(tirx.decl_buffer((8, 48), "float32", scope="shared")) is None
    assert stack_bytes(tirx.decl_buffer((tirx.Var("n", "int32"), 4), "float32", scope="local")) is None
