"""The default CPU schedules: register tiles, the loop each one tiles, and exact results."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import relax, s_tir, te, tirx, topi

from explorer.tvm import tir_pipeline
from explorer.tvm.passes.operator_rewrites import bound_kernels_as_operators
from explorer.tvm.pipeline import strategy_passes
from explorer.tvm.schedules.tiled_reduction import TiledReduction
from explorer.tvm.schedules.tiling import register_tile, reuse_axis

AVX512 = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})


def _kernel(out) -> s_tir.Schedule:
    return s_tir.Schedule(te.create_prim_func([*out.op.input_tensors, out]))


def _nhwc_depthwise(h=14, c=96):
    x = te.placeholder((1, h + 2, h + 2, c), name="x")
    w = te.placeholder((3, 3, c), name="w")
    kh, kw = te.reduce_axis((0, 3), "kh"), te.reduce_axis((0, 3), "kw")
    return te.compute((1, h, h, c), lambda n, i, j, k: te.sum(x[n, i + kh, j + kw, k] * w[kh, kw, k],
                                                              axis=[kh, kw]), name="dw")


def _accumulator_loops(func) -> list[tuple[int, tirx.ForKind]]:
    """(extent, kind) of the loops inside the reduction of the scheduled kernel's accumulator."""
    sch = s_tir.Schedule(func)
    block = sch.get_sblock("T_matmul_update")
    return [(int(sch.get(loop).extent), sch.get(loop).kind) for loop in sch.get_loops(block)[-3:]]


def _relu6_between_convolutions(model_dir):
    from onnx import TensorProto, helper, numpy_helper

    from tests.conftest import make_model

    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(np.array([0.0], np.float32), "lo"),  # (1,): as the zoo's mobilenetv2
             numpy_helper.from_array(np.array([6.0], np.float32), "hi")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c", "lo", "hi"], ["r"]),
             helper.make_node("Conv", ["r", "W"], ["y"], pads=[1, 1, 1, 1])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], inits)
    from explorer.tvm.frontend import import_onnx

    return import_onnx(model)


def _ops(mod) -> list[str]:
    found = []
    for block in mod["main"].body.blocks:
        for b in block.bindings:
            if isinstance(b.value, relax.Call):
                found.append(b.value.op.name if isinstance(b.value.op, tvm.ir.Op) else "kernel")
    return found


def _one_row_layer_norm(width=768):
    """Relax's LayerNorm of one token, legalized: a sum, a mean, a variance sum, then the output."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 1, width), "float32"))
    g, b = relax.Var("g", relax.TensorType((width,), "float32")), relax.Var("b", relax.TensorType((width,), "float32"))
    with bb.function("main", [x, g, b]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.nn.layer_norm(x, g, b, axes=[-1], epsilon=1e-5)))
        bb.emit_func_output(out)
    return relax.transform.LegalizeOps()(bb.get())["layer_norm"]


def _outer_loop_kind(func, block: str) -> tirx.ForKind:
    sch = s_tir.Schedule(func)
    return sch.get(sch.get_loops(sch.get_sblock(block))[0]).kind


def _matmul_module(columns: int, rows: int = 32):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, rows), "float32"))
    weight = np.random.default_rng(3).standard_normal((rows, columns)).astype("float32")
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.matmul(x, relax.const(weight))))
        bb.emit_func_output(out)
    return bb.get(), weight


def test_register_tile_takes_the_most_multiply_adds_per_load_in_24_registers():
    assert register_tile(56, 1) == (8, 1)    # one vector: 8 rows, 8 FMAs for 9 loads
    assert register_tile(14, 36) == (7, 3)   # 21 FMAs for 10 loads; 7 x 4 = 28 accumulators is too many
    assert register_tile(8, 4) == (4, 4)     # 16 FMAs for 8 loads beats 8 x 2 (16 for 10)
    assert register_tile(13, 5) == (1, 1)    # no row tile divides 13, no vector tile divides 5


def test_avx2_tiles_keep_half_the_accumulators_of_avx512():
    from explorer.tvm.schedules.tiling import tile_registers

    avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})
    assert (tile_registers(AVX512), tile_registers(avx2)) == (24, 12)  # of 32 and 16 vector registers
    assert register_tile(14, 36, tile_registers(avx2)) == (2, 4)  # 7 x 3 = 21 would spill on 16 registers


def test_a_depthwise_convolution_tiles_along_the_row_its_weights_do_not_depend_on():
    sch = _kernel(_nhwc_depthwise())
    assert reuse_axis(sch, sch.get_sblock("dw"), 4) == 2  # n h [w] c: every operand is read along c


def test_a_matmul_tiles_its_rows():
    a, b = te.placeholder((32, 64), name="a"), te.placeholder((64, 48), name="b")
    sch = _kernel(topi.matmul(a, b))
    assert reuse_axis(sch, sch.get_sblock("T_matmul"), 2) == 0


def test_a_wide_matmul_keeps_rows_times_several_vectors_of_accumulators():
    a, b = te.placeholder((32, 64), name="a"), te.placeholder((64, 64), name="b")  # 64 columns: 4 vectors
    func = te.create_prim_func([a, b, topi.matmul(a, b)])
    scheduled = TiledReduction().apply(func, AVX512, False)
    loops = _accumulator_loops(scheduled.mod["main"])
    assert [extent for extent, _ in loops] == [4, 4, 16]  # register_tile(32, 4): 4 rows x 4 vectors
    assert loops[-1][1] == tirx.ForKind.VECTORIZED


def test_the_register_tile_is_unrolled_so_its_accumulators_stay_in_registers():
    a, b = te.placeholder((32, 64), name="a"), te.placeholder((64, 64), name="b")
    scheduled = TiledReduction().apply(te.create_prim_func([a, b, topi.matmul(a, b)]), AVX512, False)
    # left to LLVM, a loop over the tile's rows with a heavy body (mobilenetv2's bf16 depthwise at stride
    # 2) stayed a loop, and its accumulators an array on the stack
    assert [kind for _, kind in _accumulator_loops(scheduled.mod["main"])] == [
        tirx.ForKind.UNROLLED, tirx.ForKind.UNROLLED, tirx.ForKind.VECTORIZED]


@pytest.mark.parametrize("kernel", ["depthwise", "matmul"])
def test_the_tiled_kernels_compute_what_numpy_does(kernel):
    rng = np.random.default_rng(0)
    if kernel == "depthwise":
        out = _nhwc_depthwise(h=14, c=32)
        x, w = out.op.input_tensors
    else:
        x, w = te.placeholder((28, 40), name="a"), te.placeholder((40, 96), name="b")
        out = topi.matmul(x, w)
    args = [rng.standard_normal([int(d) for d in t.shape]).astype("float32") for t in (x, w)]
    func = te.create_prim_func([x, w, out])
    scheduled = TiledReduction().apply(func, AVX512, False)
    assert scheduled is not None
    host = tvm.target.Target({"kind": "llvm"})
    lib = tvm.compile(scheduled.mod, target=host)
    result = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], "float32"))
    lib["main"](*[tvm.runtime.tensor(a) for a in args], result)
    if kernel == "depthwise":
        xa, wa = args
        expected = sum(xa[:, i:i + 14, j:j + 14, :] * wa[i, j] for i in range(3) for j in range(3))
    else:
        expected = args[0] @ args[1]
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_a_clip_imports_as_relax_maximum_and_minimum(model_dir):
    rewrite = tvm.transform.Sequential([bound_kernels_as_operators, relax.transform.FoldConstant()])
    ops = _ops(rewrite(_relu6_between_convolutions(model_dir)))  # FoldConstant: the importer's NaN checks
    assert ops == ["relax.nn.conv2d", "relax.maximum", "relax.minimum", "relax.nn.conv2d"]


def test_an_nhwc_build_transposes_only_its_input_and_output_around_a_relu6(model_dir):
    from explorer.core.strategies import get_strategy
    from explorer.tvm.pipeline import PipelineContext

    ctx = PipelineContext(get_strategy("fused-nhwc"), "generic")
    with tvm.target.Target({"kind": "llvm"}):
        mod = strategy_passes(ctx, schedule=False)(_relu6_between_convolutions(model_dir))
    transposes = [name for name in (str(gv.name_hint) for gv in mod.functions) if "transpose" in name]
    assert len(transposes) == 2, transposes  # the input's into NHWC and the output's back


def test_a_one_row_layer_norm_reduces_once_not_once_per_element():
    # DLight's CPU rule alone computes the row's sums under the output's loop: 768 x 768 additions
    from explorer.tvm.pipeline import cpu_default_schedule

    mod = tvm.IRModule({"layer_norm": _one_row_layer_norm().with_attr("global_symbol", "layer_norm")})
    with AVX512:
        sch = s_tir.Schedule(cpu_default_schedule()(mod)["layer_norm"])
    for reduction in ("x_sum", "x_var_sum"):
        iterations = int(np.prod([int(sch.get(loop).extent) for loop in sch.get_loops(sch.get_sblock(reduction))]))
        assert iterations == 768, reduction


def test_a_one_row_layer_norm_computes_what_numpy_does():
    from explorer.tvm.pipeline import cpu_default_schedule

    mod = tvm.IRModule({"layer_norm": _one_row_layer_norm(64).with_attr("global_symbol", "layer_norm")})
    with AVX512:
        scheduled = cpu_default_schedule()(mod)
    lib = tvm.tirx.build(scheduled, target=tvm.target.Target({"kind": "llvm"}))
    rng = np.random.default_rng(0)
    x, g, b = rng.standard_normal((1, 1, 64)).astype("float32"), rng.standard_normal(64).astype("float32"), \
        rng.standard_normal(64).astype("float32")
    out = tvm.runtime.tensor(np.zeros((1, 1, 64), "float32"))
    lib["layer_norm"](*(tvm.runtime.tensor(a) for a in (x, g, b)), out)
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * g + b
    assert np.allclose(out.numpy(), want, atol=1e-5)


def test_a_decode_gemv_runs_on_every_core_though_it_has_few_outputs():
    # 2304 outputs (under MIN_PARALLEL_ELEMENTS) of a 768-long reduction each: 1.8 M multiply-adds
    x, w = te.placeholder((1, 768), name="x"), te.placeholder((768, 2304), name="w")
    gemv = TiledReduction().apply(te.create_prim_func([x, w, topi.matmul(x, w)]), AVX512, False)
    assert _outer_loop_kind(gemv.mod["main"], "T_matmul_update") == tirx.ForKind.PARALLEL
    # the same outputs from a 4-long reduction: 9 k multiply-adds stay on one core
    x, w = te.placeholder((1, 4), name="x"), te.placeholder((4, 2304), name="w")
    small = TiledReduction().apply(te.create_prim_func([x, w, topi.matmul(x, w)]), AVX512, False)
    assert _outer_loop_kind(small.mod["main"], "T_matmul_update") == tirx.ForKind.SERIAL


def test_a_prime_vocabulary_is_padded_to_whole_vectors_and_sliced_back():
    from explorer.tvm.passes.matmul_weights import pad_matmul_columns

    mod, weight = _matmul_module(columns=67)  # 67 is prime: one lane at a time
    padded = relax.transform.LegalizeOps()(pad_matmul_columns(mod))
    kernels = {gv.name_hint: f for gv, f in padded.functions_items() if isinstance(f, tirx.PrimFunc)}
    assert [int(d) for d in kernels["matmul"].params[1].shape] == [32, 80]  # 67 -> 5 x 16 columns of zeros after
    assert "strided_slice" in kernels
    lib = tvm.compile(padded, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(lib, tvm.cpu())
    x = np.random.default_rng(4).standard_normal((1, 32)).astype("float32")
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), x @ weight, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("columns", [40, 72, 96])  # too few columns; 72 = 8 x 9 and 96 = 16 x 6 vectorize
def test_columns_that_vectorize_are_left_alone(columns):
    from explorer.tvm.passes.matmul_weights import pad_matmul_columns

    mod, _ = _matmul_module(columns)
    assert tvm_ffi.structural_equal(pad_matmul_columns(mod), mod)


def test_an_element_wise_kernel_runs_only_enough_outer_loops_in_parallel_tasks():
    from explorer.tvm.schedules.parallel_elementwise import ParallelElementwise

    a = te.placeholder((784, 512), name="a")
    out = te.compute((784, 512), lambda i, j: a[i, j] * 2.0, name="scaled")
    scheduled = ParallelElementwise().apply(te.create_prim_func([a, out]), AVX512, False)
    sch = s_tir.Schedule(scheduled.mod["main"])
    loops = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock("scaled"))]
    # rows in parallel, 32 vectors of 16 lanes in each: no lane's index divides a fused one
    assert [(int(loop.extent), loop.kind) for loop in loops] == [
        (784, tirx.ForKind.PARALLEL), (32, tirx.ForKind.SERIAL), (16, tirx.ForKind.VECTORIZED)]


def _channel_concatenation():
    """Two NHWC tensors of 16 and 32 channels concatenated along the channels, scaled into a third."""
    from explorer.tvm.schedules.parallel_elementwise import ParallelElementwise

    a, b = te.placeholder((1, 6, 6, 16), name="a"), te.placeholder((1, 6, 6, 32), name="b")
    joined = topi.concatenate([a, b], axis=3)
    out = te.compute(joined.shape, lambda n, h, w, c: joined[n, h, w, c] * 2.0, name="scaled")
    func = te.create_prim_func([a, b, out])
    return ParallelElementwise().apply(func, AVX512, False).mod


def test_a_concatenation_along_the_vector_axis_runs_one_vector_loop_per_input():
    mod = _channel_concatenation()
    loops = []

    def loop(node, visitor):
        loops.append((int(node.min), int(node.extent), node.kind))
        visitor.default_visit(node)

    tvm_ffi.structural_visit(mod["main"].body, [((tirx.For,), loop)])
    # in each task, the 16 channels of a as one vector, then the 32 of b as two
    serial, vector = tirx.ForKind.SERIAL, tirx.ForKind.VECTORIZED
    assert loops[1:] == [(0, 1, serial), (0, 16, vector), (1, 2, serial), (0, 16, vector)]
    asm = tvm.tirx.build(mod, target=AVX512, pipeline=tir_pipeline.register()).inspect_source("asm")
    assert "gather" not in asm


def test_the_concatenation_in_pieces_computes_what_numpy_does():
    lib = tvm.tirx.build(_channel_concatenation(), target=AVX512, pipeline=tir_pipeline.register())
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1, 6, 6, 16), "float32"), rng.standard_normal((1, 6, 6, 32), "float32")
    out = tvm.runtime.tensor(np.zeros((1, 6, 6, 48), "float32"))
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), out)
    np.testing.assert_array_equal(out.numpy(), np.concatenate([a, b], axis=3) * 2)


def test_a_one_dimensional_concatenation_is_one_vector_loop():
    from explorer.tvm.schedules.parallel_elementwise import ParallelElementwise

    a, b = te.placeholder((16,), name="a"), te.placeholder((32,), name="b")
    out = topi.concatenate([a, b], axis=0)
    scheduled = ParallelElementwise().apply(te.create_prim_func([a, b, out]), AVX512, False)
    assert scheduled is not None  # no outer loop to hold the pieces: the vector loop is left whole


def _padded_nhwc_depthwise(h=10, c=32):
    x = te.placeholder((1, h, h, c), name="x")
    w = te.placeholder((3, 3, c), name="w")
    padded = topi.nn.pad(x, [0, 1, 1, 0], [0, 1, 1, 0], name="pad")
    kh, kw = te.reduce_axis((0, 3), "kh"), te.reduce_axis((0, 3), "kw")
    out = te.compute((1, h, h, c), lambda n, i, j, k: te.sum(padded[n, i + kh, j + kw, k] * w[kh, kw, k],
                                                             axis=[kh, kw]), name="dw")
    return x, w, out


def test_a_padded_convolution_reads_its_input_through_the_border_test_not_a_padded_copy():
    x, w, out = _padded_nhwc_depthwise()
    scheduled = TiledReduction().apply(te.create_prim_func([x, w, out]), AVX512, False)
    script = scheduled.mod.script()
    assert 'T.sblock("pad")' not in script and 'T.sblock("dw_update")' in script


def test_the_inlined_padding_computes_what_numpy_does():
    x, w, out = _padded_nhwc_depthwise()
    rng = np.random.default_rng(1)
    xa, wa = rng.standard_normal((1, 10, 10, 32)).astype("float32"), rng.standard_normal((3, 3, 32)).astype("float32")
    scheduled = TiledReduction().apply(te.create_prim_func([x, w, out]), AVX512, False)
    lib = tvm.compile(scheduled.mod, target=tvm.target.Target({"kind": "llvm"}))
    result = tvm.runtime.tensor(np.zeros((1, 10, 10, 32), "float32"))
    lib["main"](tvm.runtime.tensor(xa), tvm.runtime.tensor(wa), result)
    padded = np.pad(xa, [(0, 0), (1, 1), (1, 1), (0, 0)])
    expected = sum(padded[:, i:i + 10, j:j + 10, :] * wa[i, j] for i in range(3) for j in range(3))
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_an_nchw_depthwise_convolution_keeps_its_padded_copy_whose_border_would_differ_per_lane():
    x, w = te.placeholder((1, 8, 10, 32), name="x"), te.placeholder((8, 1, 3, 3), name="w")
    out = topi.nn.depthwise_conv2d_nchw(x, w, stride=1, padding=1, dilation=1)  # vectorized along the width
    scheduled = TiledReduction().apply(te.create_prim_func([x, w, out]), AVX512, False)
    assert 'T.sblock("PaddedInput")' in scheduled.mod.script()


def test_an_nchw_padded_copy_is_zeros_then_its_rows_copied_whole_vectors_at_a_time():
    x, w = te.placeholder((1, 32, 112, 112), name="x"), te.placeholder((32, 1, 3, 3), name="w")
    out = topi.nn.depthwise_conv2d_nchw(x, w, stride=1, padding=1, dilation=1)
    sch = s_tir.Schedule(TiledReduction().apply(te.create_prim_func([x, w, out]), AVX512, False).mod["main"])
    copy = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock("PaddedInput"))]
    fill = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock("PaddedInput_pad_const"))]
    # each channel a task: its 114 x 114 zeros 12 lanes at a time, then the 112 inner rows copied 16 lanes
    # at a time with no border test (a test on each lane kept TVM's vectorizer from the loop)
    assert [(int(loop.extent), loop.kind) for loop in fill] == [
        (32, tirx.ForKind.PARALLEL), (1083, tirx.ForKind.SERIAL), (12, tirx.ForKind.VECTORIZED)]
    assert [(int(loop.extent), loop.kind) for loop in copy] == [
        (32, tirx.ForKind.PARALLEL), (112, tirx.ForKind.SERIAL), (7, tirx.ForKind.SERIAL), (16, tirx.ForKind.VECTORIZED)]


def test_the_decomposed_nchw_padding_computes_what_numpy_does():
    x, w = te.placeholder((1, 4, 10, 10), name="x"), te.placeholder((4, 1, 3, 3), name="w")
    out = topi.nn.depthwise_conv2d_nchw(x, w, stride=2, padding=1, dilation=1)
    scheduled = TiledReduction().apply(te.create_prim_func([x, w, out]), AVX512, False)
    assert 'T.sblock("PaddedInput_pad_const")' in scheduled.mod.script()
    rng = np.random.default_rng(2)
    xa, wa = rng.standard_normal((1, 4, 10, 10)).astype("float32"), rng.standard_normal((4, 1, 3, 3)).astype("float32")
    lib = tvm.compile(scheduled.mod, target=tvm.target.Target({"kind": "llvm"}))
    result = tvm.runtime.tensor(np.zeros((1, 4, 5, 5), "float32"))
    lib["main"](tvm.runtime.tensor(xa), tvm.runtime.tensor(wa), result)
    padded = np.pad(xa, [(0, 0), (0, 0), (1, 1), (1, 1)])
    expected = sum(padded[:, :, i:i + 10:2, j:j + 10:2] * wa[None, :, 0, i, j, None, None] for i in range(3) for j in range(3))
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-5)


def _dense_nhwc_convolution(epilogue):
    x, w = te.placeholder((1, 10, 10, 8), name="x"), te.placeholder((3, 3, 8, 32), name="w")
    conv = topi.nn.conv2d_nhwc(x, w, stride=1, padding=1, dilation=1)  # 3 x 3 x 32 = 288 steps an element
    return te.create_prim_func([x, w, te.compute(conv.shape, lambda *i: epilogue(conv(*i)), name="epilogue")])


def test_a_dense_convolution_with_a_relu_reads_its_input_through_the_border_test():
    scheduled = TiledReduction().apply(_dense_nhwc_convolution(lambda v: te.max(v, 0.0)), AVX512, False)
    assert 'T.sblock("pad_temp")' not in scheduled.mod.script()


def test_a_dense_convolution_with_a_heavy_epilogue_keeps_its_padded_copy():
    silu = lambda v: v / (1.0 + te.exp(-v)) * 0.5 + v * v - 1.0  # noqa: E731  (7 operations an element)
    scheduled = TiledReduction().apply(_dense_nhwc_convolution(silu), AVX512, False)
    assert 'T.sblock("pad_temp")' in scheduled.mod.script()


def test_a_kept_padded_copy_runs_its_rows_in_parallel_and_each_row_as_a_loop_of_its_own():
    silu = lambda v: v / (1.0 + te.exp(-v)) * 0.5 + v * v - 1.0  # noqa: E731  (heavy: the copy is kept)
    x, w = te.placeholder((1, 40, 40, 16), name="x"), te.placeholder((3, 3, 16, 16), name="w")
    conv = topi.nn.conv2d_nhwc(x, w, stride=1, padding=1, dilation=1)
    func = te.create_prim_func([x, w, te.compute(conv.shape, lambda *i: silu(conv(*i)), name="epilogue")])
    scheduled = TiledReduction().apply(func, AVX512, False)
    sch = s_tir.Schedule(scheduled.mod["main"])
    loops = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock("pad_temp"))]
    # 42 padded rows as tasks, 42 pixels of 16 channels in each: no pixel's index divides a fused one
    assert [(int(loop.extent), loop.kind) for loop in loops] == [
        (42, tirx.ForKind.PARALLEL), (42, tirx.ForKind.SERIAL), (16, tirx.ForKind.VECTORIZED)]


def test_a_padded_copy_of_few_rows_still_fuses_them_into_its_tasks():
    silu = lambda v: v / (1.0 + te.exp(-v)) * 0.5 + v * v - 1.0  # noqa: E731
    x, w = te.placeholder((1, 6, 6, 16), name="x"), te.placeholder((3, 3, 16, 16), name="w")
    conv = topi.nn.conv2d_nhwc(x, w, stride=1, padding=1, dilation=1)
    func = te.create_prim_func([x, w, te.compute(conv.shape, lambda *i: silu(conv(*i)), name="epilogue")])
    sch = s_tir.Schedule(TiledReduction().apply(func, AVX512, False).mod["main"])
    assert [int(sch.get(loop).extent) for loop in sch.get_loops(sch.get_sblock("pad_temp"))] == [64, 16]


def test_epilogue_ops_counts_the_arithmetic_of_each_output_element():
    from explorer.tvm.schedules.tiling import epilogue_ops, reduction_kernel

    func = _dense_nhwc_convolution(lambda v: te.min(te.max(v + 1.0, 0.0), 6.0))
    sch = s_tir.Schedule(func)
    _, _, epilogues, _ = reduction_kernel(sch)
    assert epilogue_ops(sch, epilogues) == 3  # add, max, min
