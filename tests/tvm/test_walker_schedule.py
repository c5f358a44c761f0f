"""What the TIR walker reads of a schedule: lanes, parallel loops, chains, register-tile sharing. Exact counts on hand-written TIR."""

from __future__ import annotations

from tvm.script import tirx as T

from cost_models import latency
from cost_models.workload import ScheduleKey, format_schedule, parse_schedule
from explorer.tvm.tir import walker as tir_analysis
from tests.conftest import data_target

N = 4096  # elements per kernel below


@T.prim_func
def parallel_vector_fma(A: T.Buffer((N,), "float32"), B: T.Buffer((N,), "float32"), C: T.Buffer((N,), "float32")):
    # C = C * A + B over 2 parallel chunks of 128 vectors of 16 lanes
    for p in T.parallel(2):
        for i in range(N // 32):
            for v in T.vectorized(16):
                C[p * 2048 + i * 16 + v] = C[p * 2048 + i * 16 + v] + A[p * 2048 + i * 16 + v] * B[p * 2048 + i * 16 + v]


@T.prim_func
def scalar_dot(A: T.Buffer((N,), "float32"), B: T.Buffer((N,), "float32"), C: T.Buffer((1,), "float32")):
    # one accumulator: every multiply-add waits for the one before it
    for k in range(N):
        C[0] = C[0] + A[k] * B[k]


@T.prim_func
def gathered_copy(A: T.Buffer((N,), "float32"), B: T.Buffer((N,), "float32")):
    # a vectorized loop whose index is not contiguous along it: loaded lane by lane
    for i in range(N // 16):
        for v in T.vectorized(16):
            B[i * 16 + v] = A[(i * 16 + v) % 64 * 64 + (i * 16 + v) // 64]


def schedule_of(func) -> dict[ScheduleKey, float]:
    return dict(parse_schedule(format_schedule(tir_analysis.analyse_primfunc(func, "k").schedule)))


@T.prim_func
def strided_copy(A: T.Buffer((2 * N,), "float32"), B: T.Buffer((N,), "float32")):
    # every other element: TVM's codegen loads and inserts it lane by lane
    for i in range(N // 16):
        for v in T.vectorized(16):
            B[i * 16 + v] = A[i * 32 + v * 2]


@T.prim_func
def fp16_into_fp32(A: T.Buffer((N,), "float16"), B: T.Buffer((N,), "float16"), C: T.Buffer((16,), "float32")):
    for k in range(N // 16):
        for v in T.vectorized(16):
            C[v] = C[v] + T.Cast("float32", A[k * 16 + v]) * T.Cast("float32", B[k * 16 + v])


@T.prim_func
def fp16_tile(A: T.Buffer((4 * 64,), "float16"), B: T.Buffer((64 * 16,), "float16"), C: T.Buffer((4 * 16,), "float32")):
    # a register tile of 4 rows x 16 lanes: B[k, v] is loaded, and widened, once for the 4 rows
    for k in range(64):
        for i in range(4):
            for v in T.vectorized(16):
                C[i * 16 + v] = C[i * 16 + v] + T.Cast("float32", A[i * 64 + k]) * T.Cast("float32", B[k * 16 + v])


@T.prim_func
def dequantized_tile(A: T.Buffer((4 * 64,), "float32"), Q: T.Buffer((64 * 16,), "int8"), S: T.Buffer((16,), "float32"),
                     C: T.Buffer((4 * 16,), "float32")):
    # a weight dequantized in the matmul: its cast and multiply do not depend on the tile's row
    for k in range(64):
        for i in range(4):
            for v in T.vectorized(16):
                C[i * 16 + v] = C[i * 16 + v] + A[i * 64 + k] * (T.Cast("float32", Q[k * 16 + v]) * S[v])


@T.prim_func
def broadcast_weight(A: T.Buffer((64 * 14,), "float32"), W: T.Buffer((64,), "float32"), C: T.Buffer((14,), "float32")):
    # C[v] += A[k, v] * W[k]: W[k] is one element for all 14 lanes
    for k in range(64):
        for v in T.vectorized(14):
            C[v] = C[v] + A[k * 14 + v] * W[k]


@T.prim_func
def transposed_tile(C: T.Buffer((8 * 32,), "float32")):
    # a 32 x 8 register tile written row by row and read across its rows (stride 32 along the vector)
    acc = T.alloc_buffer((8 * 32,), "float32")
    for i in range(8):
        for v in T.vectorized(32):
            acc[i * 32 + v] = T.float32(1)
    for j in range(32):
        for v in T.vectorized(8):
            C[j * 8 + v] = acc[v * 32 + j]


@T.prim_func
def strided_tile(A: T.Buffer((2 * 64 * 16,), "float32"), W: T.Buffer((8 * 64,), "float32"),
                 C: T.Buffer((8 * 16,), "float32")):
    # an 8-accumulator tile (output channels) over a 16-lane row read with stride 2 (a stride-2 conv)
    for k in range(64):
        for c in T.unroll(8):
            for v in T.vectorized(16):
                C[c * 16 + v] = C[c * 16 + v] + A[k * 32 + v * 2] * W[c * 64 + k]


@T.prim_func
def bf16_dot_tile(A: T.Buffer((4 * 128,), "uint16"), B: T.Buffer((64 * 32,), "uint16"), C: T.Buffer((4 * 16,), "float32")):
    # a register tile of 4 rows x 16 lanes on VDPBF16PS (explorer.tvm.passes.bf16_dot): each step's
    # weight vector B[k] serves the 4 rows, each row's activation pair A[i, k] is broadcast once
    for k in range(64):
        for i in T.unroll(4):
            C[T.ramp(i * 16, 1, 16)] = T.call_pure_extern(
                "float32x16", "explorer_dpbf16ps_512", C[T.ramp(i * 16, 1, 16)],
                T.broadcast(T.reinterpret("int32", A[T.ramp(i * 128 + k * 2, 1, 2)]), 16), B[T.ramp(k * 32, 1, 32)])


@T.prim_func
def vector_erf(A: T.Buffer((N,), "float32"), B: T.Buffer((N,), "float32")):
    for i in range(N // 16):
        for v in T.vectorized(16):
            B[i * 16 + v] = T.erf(A[i * 16 + v])


def test_walker_reads_parallel_extent_and_vector_lanes():
    s = schedule_of(parallel_vector_fma)
    assert s[ScheduleKey("mac", "float32", 16, 2, 0)] == N  # every C element is updated once: no chain
    assert s[ScheduleKey("load", "float32", 16, 2)] == 3 * N
    assert s[ScheduleKey("store", "float32", 16, 2)] == N


def test_walker_counts_one_chain_for_a_scalar_accumulator():
    assert schedule_of(scalar_dot)[ScheduleKey("mac", "float32", 1, 1, 1)] == N


def test_walker_reads_a_stride_2_vector_access_as_a_gather():
    s = schedule_of(strided_copy)
    assert s[ScheduleKey("gather", "float32", 16, 1)] == N
    assert s[ScheduleKey("store", "float32", 16, 1)] == N  # contiguous


def test_walker_reads_a_non_contiguous_vector_access_as_a_gather():
    s = schedule_of(gathered_copy)
    assert s[ScheduleKey("gather", "float32", 16, 1)] == N


def test_a_multiply_add_into_a_wider_accumulator_is_a_wmac_and_its_operands_are_widened():
    s = schedule_of(fp16_into_fp32)
    assert s[ScheduleKey("wmac", "float16", 16, 1, 1)] == N
    assert s[ScheduleKey("widen", "float16", 16, 1)] == 2 * N  # both operands, every element
    k = latency.kernel_cycles(f"wmac:float16:16:1:0={N} widen:float16:16:1:0={2 * N}", data_target("cpu-zen4").core,
                              threads=1)
    # not emulated; with no convert pipes in this file, the 2 widenings per fp32 FMA's worth of lanes on
    # the alu pipes (2 slots each) bound it
    assert k.emulated_elements == 0 and k.cycles == N / 16 * 2


def test_a_dot_product_tile_loads_its_weight_vector_once_for_the_rows_that_share_it():
    walked = tir_analysis.analyse_primfunc(bf16_dot_tile, "k")
    s = dict(parse_schedule(format_schedule(walked.schedule)))
    assert walked.tensorized_macs == walked.ops[("mac", "bfloat16")] == 4 * 64 * 32
    assert s[ScheduleKey("dot", "bfloat16", 32, 1)] == 4 * 64 * 32
    assert s[ScheduleKey("load", "uint16", 32, 1)] == 64 * 32  # not 4 x 64 x 32
    assert s[ScheduleKey("load", "uint16", 2, 1)] == 4 * 64 * 2  # one pair per row and step


def test_a_register_tile_widens_an_operand_once_for_the_rows_that_share_it():
    s = schedule_of(fp16_tile)
    # A: one broadcast per (row, k), 16 lanes each; B: one vector per k for all 4 rows
    assert s[ScheduleKey("widen", "float16", 16, 1)] == 4 * 64 * 16 + 64 * 16


def test_an_operand_dequantized_in_a_register_tile_is_computed_once_for_its_rows():
    ops = tir_analysis.analyse_primfunc(dequantized_tile, "k").ops
    assert ops[("mac", "float32")] == 4 * 64 * 16
    assert ops[("cast", "float32")] == ops[("mul", "float32")] == 64 * 16  # not 4 x 64 x 16


def test_a_load_invariant_along_the_vector_is_one_broadcast():
    s = schedule_of(broadcast_weight)
    assert s[ScheduleKey("broadcast", "float32", 14, 1)] == 64 * 14
    core = data_target("cpu-zen5").core
    both = latency.kernel_cycles(f"broadcast:float32:14:1:0={64 * 14} load:float32:14:1:0={64 * 14}", core, 1)
    assert both.cycles == (64 + 64 * 3) / 2  # one load per broadcast, three per 14-lane vector (8 + 4 + 2)


def test_a_register_tile_read_across_its_rows_is_assembled_lane_by_lane():
    s = schedule_of(transposed_tile)
    assert s[ScheduleKey("gather", "float32", 8, 1)] == 256  # the tile's loads, one per element
    assert ScheduleKey("scatter", "float32", 32, 1) not in s  # its contiguous writes stay in registers


def test_a_gather_the_tile_shares_is_assembled_once_per_tile():
    s = schedule_of(strided_tile)
    assert s[ScheduleKey("mac", "float32", 16, 1, 8)] == 64 * 8 * 16
    assert s[ScheduleKey("gather", "float32", 16, 1)] == 64 * 16  # the same input row for all 8 channels
    assert s[ScheduleKey("broadcast", "float32", 16, 1)] == 64 * 8 * 16  # one weight per channel


def test_the_walker_names_each_special_function():
    assert schedule_of(vector_erf)[ScheduleKey("special-erf", "float32", 16, 1)] == N




@T.prim_func
def guarded_tail(A: T.Buffer((200,), "float32"), B: T.Buffer((200,), "float32")):
    # 2 x 128 threads' worth of work for 200 elements: the guard leaves 56 out
    for i in range(2):
        for tx in T.thread_binding(128, thread="threadIdx.x"):
            if i * 128 + tx < 200:
                B[i * 128 + tx] = A[i * 128 + tx]


@T.prim_func
def padded_tile_load(A: T.Buffer((100,), "float32"), B: T.Buffer((128,), "float32")):
    # a tile of 128 padded with zeros: the load runs where the guard holds, the zero elsewhere
    for bx in T.thread_binding(4, thread="blockIdx.x"):
        for tx in T.thread_binding(32, thread="threadIdx.x"):
            B[bx * 32 + tx] = T.if_then_else(bx * 32 + tx < 100, A[bx * 32 + tx], T.float32(0))


def _uses(func):
    return {u.name: u for u in tir_analysis.analyse_primfunc(func, "k").buffers}


def test_a_guarded_tail_counts_only_the_iterations_the_guard_lets_through():
    uses = _uses(guarded_tail)
    assert (uses["A"].load_count, uses["B"].store_count) == (200, 200)


def test_a_padded_tile_loads_only_the_elements_that_exist():
    uses = _uses(padded_tile_load)
    assert (uses["A"].load_count, uses["B"].store_count) == (100, 128)


@T.prim_func
def launched_copy(A: T.Buffer((4096,), "float32"), B: T.Buffer((4096,), "float32")):
    # 16 blocks of 256 threads, each block staging its 256 elements in shared memory
    bx = T.launch_thread("blockIdx.x", 16)
    tx = T.launch_thread("threadIdx.x", 256)
    S = T.alloc_buffer((256,), "float32", scope="shared")
    S[tx] = A[bx * 256 + tx]
    B[bx * 256 + tx] = S[tx]


def test_a_gpu_kernel_s_launch_is_its_blocks_threads_and_shared_memory():
    assert tir_analysis.analyse_primfunc(launched_copy, "k").launch == (16, 256, 1024)
    assert tir_analysis.analyse_primfunc(guarded_tail, "k").launch == (0, 0, 0.0)  # no blocks: no launch known


@T.prim_func
def repeated_subexpression(A: T.Buffer((N,), "float32"), B: T.Buffer((N,), "float32")):
    # (A + 1) * (A + 1) + A: an inlined chain repeats its producer's expression at every use
    for i in range(N):
        B[i] = (A[i] + T.float32(1)) * (A[i] + T.float32(1)) + A[i]


def test_a_repeated_subexpression_counts_once_as_after_common_subexpression_elimination():
    ops = tir_analysis.analyse_primfunc(repeated_subexpression, "k").ops
    assert ops[("add", "float32")] == 2 * N  # A + 1 once, then + A
    assert ops[("mul", "float32")] == N


@T.prim_func
def recomputed_row_sum(A: T.Buffer((64,), "float32"), B: T.Buffer((256,), "float32"), C: T.Buffer((256,), "float32")):
    # MetaSchedule's layer norm: a row's sum recomputed for every output element, which LLVM hoists
    for i in range(256):
        s = T.alloc_buffer((1,), "float32", scope="local")
        s[0] = T.float32(0)
        for k in range(64):
            s[0] = s[0] + A[k]
        C[i] = B[i] * s[0]


def test_a_statement_that_does_not_vary_with_its_loop_counts_once():
    ops = tir_analysis.analyse_primfunc(recomputed_row_sum, "k").ops
    assert ops[("add", "float32")] == 64  # the sum, hoisted out of the 256 iterations
    assert ops[("mul", "float32")] == 256


@T.prim_func
def fragment_loop(A: T.Buffer((64,), "float32"), C: T.Buffer((64,), "float32")):
    # an intrinsic that reaches its operands through pointers, as tensor-core fragments do: never hoisted
    for k in range(8):
        T.evaluate(T.call_extern("int32", "accumulate_fragment", C.data, A.data))
        C[k] = C[k] + A[k]


def test_a_statement_that_reaches_memory_through_pointers_is_never_hoisted():
    from explorer.tvm.tir.walker import loop_invariant

    loop = fragment_loop.body
    while type(loop).__name__ != "For":
        loop = loop.body
    assert loop_invariant(list(loop.body.seq), loop.loop_var) == [False, False]
