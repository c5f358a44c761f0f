"""What the CPU schedule rules share: the target's vector registers, loop extents, and the stages
they make parallel and vectorized."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math

import tvm_ffi
from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.target import Target
from tvm.target.codegen import llvm_get_cpu_features, llvm_get_vector_width

#: A kernel with fewer output elements than this stays on one core (forking threads costs more)...
MIN_PARALLEL_ELEMENTS = 4096


#: Parallel tasks an element-wise kernel's outer loops are fused into, at least (the rest stay serial loops).
PARALLEL_TASKS = 32


@functools.lru_cache(maxsize=16)
def _vector_bits(target_str: str) -> int:
    target = Target(target_str)
    features = set(llvm_get_cpu_features(target))
    # llvm_get_vector_width says 512 for every x86 mcpu with this wheel (haswell too): x86 by features
    if "avx512f" in features:
        return 512
    if "avx" in features:
        return 256
    if "sse2" in features:
        return 128
    return max(llvm_get_vector_width(target), 128)


def vector_bits(target: Target) -> int:
    """Width in bits of the target's native vector registers (x86: by its CPU features)."""
    return _vector_bits(str(target))


def is_cpu(target: Target) -> bool:
    """Whether ``target`` is a CPU (an llvm target)."""
    return target.kind.name == "llvm"


def vector_lanes(target: Target, dtype_bits: int) -> int:
    """Lanes of ``dtype_bits``-bit elements in the target's native vector register."""
    return max(vector_bits(target) // max(dtype_bits, 8), 1)


def loop_extent(sch: s_tir.Schedule, loop) -> int | None:
    """A loop's extent, or None where it is not a constant."""
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def largest_divisor(extent: int, limit: int) -> int:
    """The largest divisor of ``extent`` not above ``limit`` (1 when none is)."""
    return next((d for d in range(min(limit, extent), 0, -1) if extent % d == 0), 1)


def vars_in(expr) -> set:
    """The variables an expression reads."""
    return set(tirx.analysis.undefined_vars(expr))


def static_elements(buffer) -> int:
    """Elements of ``buffer``, its dynamic dimensions counted as 1."""
    return math.prod(int(d) if isinstance(d, tirx.IntImm) else 1 for d in buffer.shape)


def vectorize_innermost(sch, block, lanes: int) -> None:
    """Vectorize a block's innermost loop by the largest divisor of its extent up to ``lanes``."""
    loops = sch.get_loops(block)
    if not loops:
        return
    extent = loop_extent(sch, loops[-1])
    if extent is None or extent < 2:
        return
    vec = largest_divisor(extent, lanes)
    if vec < 2:
        return
    if vec < extent:
        _, loops_inner = sch.split(loops[-1], factors=[None, vec])
        sch.vectorize(loops_inner)
    else:
        sch.vectorize(loops[-1])


def normalized(func, target):
    """``(schedule, block infos)`` of a CPU PrimFunc, normalized as DLight's rules want it; infos are
    ``None`` where the function is not one or does not normalize."""
    if not isinstance(func, tirx.PrimFunc) or not is_cpu(target):
        return None, None
    sch = s_tir.Schedule(func)
    return sch, normalize_prim_func(sch)


def with_vectorized_output(sch, output, target):
    """``sch`` with the ``output`` block fused, vectorized and parallel (:func:`parallel_vectorized`),
    or ``None`` where its loops do not allow it."""
    try:
        parallel_vectorized(sch, output.block_rv, target)
    except (RuntimeError, ValueError):
        return None
    return sch


#: Tasks a padding stage's loops outside its rows must give for the row loop to stay serial in each task.
MIN_ROW_TASKS = 32


def parallel_rows(sch, block, target) -> None:
    """A padding (or copying) stage run on the cores: the loops outside its rows fused into the parallel
    tasks where they give at least :data:`MIN_ROW_TASKS` (else the rows too), each row a loop of its own
    (fused into the tasks, every pixel recovered its row and column by a division: 19% of yolo-block's
    stem on 2 Zen 4 cores, 9% less time for the kernel without it), the innermost (the border test there
    is on its own index) vectorized where a divisor of its extent fills at least a quarter of a vector
    register. Where the innermost axis has a border itself (:func:`pads_innermost`), the stage is
    decomposed into zeros over the task's rows and a copy of their interiors with no test (TVM's
    ``decompose_padding``): mobilenetv2's NCHW depthwise convolutions of 32 channels at 112 x 112 took
    157-169 us with the test on each element and 127-137 us so, on 2 Zen 4 cores."""
    loops = sch.get_loops(block)
    stmt = sch.get(block)
    if not loops or not stmt.writes:
        raise ValueError("nothing to schedule")
    if len(loops) > 1:
        elements = math.prod(loop_extent(sch, loop) or 0 for loop in loops)
        kept = 2 if len(loops) > 2 and math.prod(loop_extent(sch, loop) or 0 for loop in loops[:-2]) >= MIN_ROW_TASKS else 1
        outer = sch.fuse(*loops[:-kept]) if len(loops) > kept + 1 else loops[0]
        if elements >= MIN_PARALLEL_ELEMENTS:
            sch.parallel(outer)
    lanes = vector_lanes(target, stmt.writes[0].source.dtype.bits)
    loops = sch.get_loops(block)
    if len(loops) > 1 and pads_innermost(stmt):
        if _DEFER_BORDER_SPLITS.get():
            sch.annotate(block, SPLIT_BORDER, 1)
        else:
            _split_border_and_vectorize(sch, block, lanes)
        return
    _vectorize_a_quarter(sch, loops[-1], lanes)


def _split_border_and_vectorize(sch, block, lanes: int) -> None:
    """The end of :func:`parallel_rows` for a stage whose innermost axis has a border: split into zeros
    and a copy of its rows' interiors, the copy's innermost loop vectorized."""
    loops = _split_off_border(sch, block, sch.get_loops(block), lanes)
    _vectorize_a_quarter(sch, loops[-1], lanes)


#: The annotation :func:`parallel_rows` leaves on a padding stage whose split it defers
#: (:func:`deferred_border_splits`).
SPLIT_BORDER = "explorer.split_border"

_DEFER_BORDER_SPLITS = contextvars.ContextVar("defer_border_splits", default=False)


@contextlib.contextmanager
def deferred_border_splits():
    """While active, :func:`parallel_rows` annotates a padding stage it would split into zeros and a
    copy with :data:`SPLIT_BORDER` instead, and :func:`split_annotated_borders` does the rest later
    (tuning's postprocessing). TVM 0.27 cannot print a schedule's trace that holds a
    ``decompose_padding``: its printer of that instruction takes the loop for an object, not a name,
    and MetaSchedule prints every design space it is given."""
    token = _DEFER_BORDER_SPLITS.set(True)
    try:
        yield
    finally:
        _DEFER_BORDER_SPLITS.reset(token)


def split_annotated_borders(sch, target) -> None:
    """Finish the padding stages :func:`parallel_rows` annotated with :data:`SPLIT_BORDER`: each split
    into zeros and a copy of its rows' interiors, then vectorized, as :func:`parallel_rows` does at once."""
    names = []

    def block(node, visitor):
        if SPLIT_BORDER in node.annotations:
            names.append(node.name_hint)
        visitor.default_visit(node)

    tvm_ffi.structural_visit(sch.mod["main"].body, [((s_tir.stmt.SBlock,), block)])
    for name in names:
        block = sch.get_sblock(name)
        sch.unannotate(block, SPLIT_BORDER)
        _split_border_and_vectorize(sch, block, vector_lanes(target, sch.get(block).writes[0].source.dtype.bits))


def fills_a_quarter(vec: int, lanes: int) -> bool:
    """Whether a vector of ``vec`` lanes fills at least a quarter of a register of ``lanes`` (and is a
    vector at all): narrower ones stay scalar."""
    return vec >= max(lanes // 4, 2)


def _vectorize_a_quarter(sch, loop, lanes: int) -> None:
    """Vectorize ``loop`` by the largest divisor of its extent up to ``lanes``, where that fills at
    least a quarter of a vector register (else it stays scalar)."""
    extent = loop_extent(sch, loop) or 1
    vec = largest_divisor(extent, lanes)
    if fills_a_quarter(vec, lanes):
        sch.vectorize(sch.split(loop, factors=[None, vec])[1] if vec < extent else loop)


def _split_off_border(sch, block, loops, lanes: int) -> list:
    """A padding stage as zeros over its task's rows, then the rows' interiors copied without a border
    test (``decompose_padding``); returns the copy's loops (``loops`` unchanged where the block is not
    the padding pattern: then the border stays a test on each element)."""
    shared = len(loops) - (2 if len(loops) > 2 else 1)
    try:
        fill = sch.decompose_padding(block, loops[shared])
    except RuntimeError:
        return loops
    _vectorize_fill(sch, fill, shared, lanes)
    return sch.get_loops(block)


def _vectorize_fill(sch, fill, depth: int, lanes: int) -> None:
    """The constant fill :func:`parallel_rows` splits off a padding stage: its loops below the first
    ``depth`` (those it shares with the copy) fused and vectorized by a divisor of their extent."""
    inner = sch.get_loops(fill)[depth:]
    _vectorize_a_quarter(sch, sch.fuse(*inner) if len(inner) > 1 else inner[0], lanes)


def pads_innermost(stmt) -> bool:
    """Whether a padding block's innermost axis has a border (an NCHW image's rows): then the border
    test differs from lane to lane of a vector along it, and TVM's vectorizer leaves that loop scalar,
    one branch an element."""
    write, read = stmt.writes[0].source, stmt.reads[0].source if stmt.reads else None
    if read is None or len(read.shape) != len(write.shape):
        return False
    return not tvm_ffi.structural_equal(read.shape[-1], write.shape[-1])


#: The most pieces :func:`input_switches` cuts an innermost axis into (more stay one loop).
MAX_INPUT_PIECES = 8


def input_switches(sch, block, extent: int) -> list[int]:
    """The extents of the pieces into which the points where a block's value switches inputs along its
    innermost axis cut that axis (a concatenation along it: ``if v >= 16 then b[v - 16] else a[v]``);
    empty where there are none. In one vector across such a point TVM loads lane by lane, and LLVM
    gathers: each piece a loop of its own loads whole vectors of one input."""
    stmt = sch.get(block)
    axis = stmt.iter_vars[-1].var if stmt.iter_vars else None
    cuts: set[int] = set()

    def condition(node, visitor):
        for var, bound, past in ((node.a, node.b, (tirx.LE, tirx.GT)), (node.b, node.a, (tirx.LT, tirx.GE))):
            if isinstance(var, tirx.Var) and var.same_as(axis) and isinstance(bound, tirx.IntImm):
                # the first index at which the comparison's truth changes
                cut = bound.value + (1 if isinstance(node, past) else 0)
                if 0 < cut < extent:
                    cuts.add(cut)
        visitor.default_visit(node)

    if axis is not None:
        tvm_ffi.structural_visit(stmt.body, [((tirx.LE, tirx.LT, tirx.GE, tirx.GT), condition)])
    if not cuts or len(cuts) >= MAX_INPUT_PIECES:
        return []
    bounds = [0, *sorted(cuts), extent]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def parallel_vectorized(sch, block, target) -> None:
    """Fuse a spatial block's loops, vectorize the inner ``lanes`` (a divisor of the innermost axis's
    extent) and run the rest on the cores (when the block is large enough to pay for it)."""
    loops = sch.get_loops(block)
    stmt = sch.get(block)
    if not loops or not stmt.writes:
        raise ValueError("nothing to schedule")
    lanes = vector_lanes(target, stmt.writes[0].source.dtype.bits)
    extents = [loop_extent(sch, loop) for loop in loops]
    if any(e is None for e in extents):
        raise ValueError("dynamic extent")
    # a vector within one row of the innermost axis: across rows its index has a division by the row
    # length that TVM does not simplify away, and LLVM gathers and scatters it lane by lane. The vector
    # is split off the innermost loop before the rest is fused, so that each lane's index is the loop's
    # own and not a division of the fused index (evaluated lane by lane in int64)
    # where the value switches inputs along the innermost axis, a vector ends there: the vectors of each
    # piece are a loop of their own, and each loads whole vectors of one input
    pieces = input_switches(sch, block, extents[-1]) if len(loops) > 1 else []  # the pieces under outer loops
    vec = largest_divisor(math.gcd(*pieces), lanes) if pieces else largest_divisor(extents[-1], lanes)
    if pieces and not fills_a_quarter(vec, lanes):
        pieces, vec = [], largest_divisor(extents[-1], lanes)
    serial = list(loops)
    if vec > 1:
        rest, vector = sch.split(loops[-1], factors=[None, vec])
        sch.vectorize(vector)
        serial = [*loops[:-1], rest]
        if pieces:
            sch.loop_partition(rest, [p // vec for p in pieces[:-1]] + [None])
            serial = list(loops[:-1])
    # only as many outer loops as make PARALLEL_TASKS are fused: each lane's indices are then the inner
    # loops' own, not divisions of one fused index (a dequantize kernel spent 30 scalar instructions
    # a vector on them, 4x its arithmetic)
    count, tasks = 0, 1
    while count < len(serial) and tasks < PARALLEL_TASKS:
        tasks *= loop_extent(sch, serial[count]) or 1
        count += 1
    outer = sch.fuse(*serial[:count]) if count > 1 else serial[0]
    if math.prod(extents) >= MIN_PARALLEL_ELEMENTS:
        sch.parallel(outer)
