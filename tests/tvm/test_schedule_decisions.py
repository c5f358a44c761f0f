"""The default CPU schedules' tile sizes as MetaSchedule decisions: the default takes them as chosen, a
changed decision replays to another tile of the same loop nest, and the rules form a design space."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import s_tir, te, tirx, topi
from tvm.s_tir import meta_schedule as ms

from explorer.tvm.schedules.decisions import sampled_split
from explorer.tvm.schedules.tiled_reduction import TiledReduction
from explorer.tvm.tuning.spaces import default_schedule, rule_space

AVX512 = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})


def _matmul(rows=32, depth=64, columns=64):
    a, b = te.placeholder((rows, depth), name="a"), te.placeholder((depth, columns), name="b")
    return te.create_prim_func([a, b, topi.matmul(a, b)])


def _tiles(trace) -> list[list[int]]:
    """The decisions of the trace's sampled perfect tiles, in trace order."""
    return [[int(x) for x in trace.decisions[inst]] for inst in trace.insts if inst.kind.name == "SamplePerfectTile"]


def _accumulator_tile(func) -> list[int]:
    sch = s_tir.Schedule(func)
    return [int(sch.get(loop).extent) for loop in sch.get_loops(sch.get_sblock("T_matmul_update"))[-3:]]


def test_the_default_tile_sizes_are_the_decisions_of_the_sampled_tiles():
    scheduled = TiledReduction().apply(_matmul(), AVX512, False)
    # columns: 4 vectors of 16 -> (outer 1, cache block 1, 4 vectors); rows: 32 -> (8, 1, a tile of 4);
    # the reduction: (block 1, 64 steps, 1 unrolled)
    assert _tiles(scheduled.trace) == [[1, 1, 4], [8, 1, 4], [1, 64, 1]]
    assert _accumulator_tile(scheduled.mod["main"]) == [4, 4, 16]


def test_a_changed_decision_replays_to_another_register_tile_that_computes_the_same():
    func = _matmul()
    trace = TiledReduction().apply(func, AVX512, False).trace
    rows = [inst for inst in trace.insts if inst.kind.name == "SamplePerfectTile"][1]
    sch = s_tir.Schedule(func)
    trace.with_decision(rows, [4, 4, 2], remove_postproc=True).apply_to_schedule(sch, remove_postproc=True)
    assert _accumulator_tile(sch.mod["main"]) == [2, 4, 16]  # 2 rows; 4 cache blocks of rows outside
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((32, 64)).astype("float32"), rng.standard_normal((64, 64)).astype("float32")
    lib = tvm.compile(sch.mod, target=tvm.target.Target({"kind": "llvm"}))
    out = tvm.runtime.tensor(np.zeros((32, 64), "float32"))
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), out)
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5, atol=1e-5)


def test_a_tile_that_does_not_cover_its_loop_is_refused():
    sch = s_tir.Schedule(_matmul())
    loop = sch.get_loops(sch.get_sblock("T_matmul"))[0]
    with pytest.raises(ValueError, match="does not cover"):
        sampled_split(sch, loop, [3, 8], 8)


def test_the_rule_space_has_the_default_schedule_as_its_one_design():
    func = _matmul()
    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})  # as tuning's tasks
    context = ms.TuneContext(mod=tvm.IRModule({"main": func}), target=target, space_generator=rule_space(target),
                             task_name="matmul")
    (design,) = context.generate_design_space()
    assert str(design.trace) == str(default_schedule(func, target).trace)
    assert any(inst.kind.name == "SamplePerfectTile" for inst in design.trace.insts)


def test_the_default_schedule_is_the_first_rule_that_takes_the_kernel():
    x = te.placeholder((64, 64), name="x")
    relu = topi.nn.relu(x)
    scheduled = default_schedule(te.create_prim_func([x, relu]), AVX512)
    loops = scheduled.get_loops(scheduled.get_sblock("compute"))
    assert scheduled.get(loops[-1]).kind == tirx.ForKind.VECTORIZED


def _padded_nchw_convolution():
    x, w = te.placeholder((1, 8, 16, 16), name="x"), te.placeholder((8, 8, 3, 3), name="w")
    return te.create_prim_func([x, w, topi.nn.conv2d_nchw(x, w, 1, 1, 1)])


def test_a_default_schedule_that_splits_a_padded_border_has_the_same_digest_every_time():
    from explorer.tvm.tuning.seeds import trace_digest

    func = _padded_nchw_convolution()
    first, second = default_schedule(func, AVX512), default_schedule(func, AVX512)
    assert any(inst.kind.name == "DecomposePadding" for inst in first.trace.insts)
    assert trace_digest(first.trace) == trace_digest(second.trace)


def test_the_rule_space_defers_the_border_split_to_postprocessing_and_ends_with_the_default():
    from explorer.tvm.schedules.common import deferred_border_splits
    from explorer.tvm.tuning.spaces import SplitBorders

    func = _padded_nchw_convolution()
    with deferred_border_splits():
        design = default_schedule(func, AVX512)
    assert not any(inst.kind.name == "DecomposePadding" for inst in design.trace.insts)
    design.trace.as_python()  # MetaSchedule prints every design: TVM 0.27 cannot print DecomposePadding
    assert SplitBorders(AVX512).apply(design)
    tvm.ir.assert_structural_equal(design.mod, default_schedule(func, AVX512).mod)


def test_the_moves_from_a_reduction_tile_unroll_then_block_it():
    from explorer.tvm.tuning.neighbors import tile_moves

    # [block, steps, unrolled] = [1, 64, 1]: unroll 2, block 2, then unroll 4, block 4
    assert tile_moves([1, 64, 1], 8) == [[1, 32, 2], [2, 32, 1], [1, 16, 4], [4, 16, 1]]


def test_the_moves_from_a_row_tile_respect_its_largest_register_tile():
    from explorer.tvm.tuning.neighbors import tile_moves

    # rows [outer, cache block, tile] = [8, 1, 4]: a cache block of 2, a tile of 2, of 8, two tiles of 2
    assert tile_moves([8, 1, 4], 8)[:4] == [[4, 2, 4], [16, 1, 2], [4, 1, 8], [8, 2, 2]]
    assert all(moved[-1] <= 4 for moved in tile_moves([8, 1, 4], 4))


def test_the_neighbours_take_each_tile_in_turn():
    from explorer.tvm.tuning.neighbors import neighbor_traces

    trace = TiledReduction().apply(_matmul(), AVX512, False).trace
    firsts = [_tiles(t) for t in neighbor_traces(trace)[:3]]
    # columns [1, 1, 4] (first move: 2 vectors, not 4), rows [8, 1, 4] (a cache block of 2 row tiles),
    # reduction [1, 64, 1] (2 steps unrolled): each tile's first move, one tile at a time
    assert firsts == [[[2, 1, 2], [8, 1, 4], [1, 64, 1]],
                      [[1, 1, 4], [4, 2, 4], [1, 64, 1]],
                      [[1, 1, 4], [8, 1, 4], [1, 32, 2]]]
