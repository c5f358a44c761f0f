"""The GPU's schedule of a mixture's routed matmul (:mod:`explorer.tvm.passes.experts`).

``out[t, j, n] = sum_r x[t, j, r] W[index[t, j], n, r]``, with ``W`` kept ``[E, N, K]`` on GPUs.
DLight's rules either decline it (its weight's row is another tensor's value) or give each token its
own thread block, which then reads its experts' weights apart from every other token's: at a decode
step of 64 sequences routed to 8 of 128 experts, 512 expert matrices from DRAM where 126 distinct ones
exist. This schedule keeps the tokens inside each tile of output columns instead: a block computes
:data:`COLUMNS` columns (one thread each) of one of the k experts a token runs for :data:`TOKENS`
tokens, and the blocks of one column tile run over every token, so the routed experts' slice of that
tile is fetched once and the tokens that share an expert read it from cache (the device's L2 between
the blocks of a token's different experts), as a serving engine's grouped kernel does (vLLM's
``fused_moe`` sorts tokens by expert for the same reason). The k experts are a grid axis of their own so
that a decode step's few tokens still fill the SMs (Qwen3-30B-A3B at batch 8: 96 blocks, not 12). A
thread reads its column's weights along K, whole cache lines at a time.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.gpu.base import GPUScheduleRule

#: Output columns a thread block computes, one a thread.
COLUMNS = 64

#: Tokens a thread block computes (each thread keeps their accumulators in registers).
TOKENS = 8


class RoutedMatmul(GPUScheduleRule):
    """The schedule of the module docstring for a kernel whose reduction is a routed matmul (its block
    named ``routed_matmul``); element-wise work before it is inlined, after it computed by each thread for
    its columns."""

    def apply(self, func, target, tunable):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
        names = [sch.get(b).name_hint for b in blocks]
        if "routed_matmul" not in names:
            return None
        at = names.index("routed_matmul")
        main = blocks[at]
        for b in blocks[:at]:  # the routing weights' arithmetic, an activation's cast
            try:
                sch.compute_inline(b)
            except Exception:
                return None
        loops = sch.get_loops(main)
        if len(loops) != 5:
            return None
        t, j, z, n, r = loops
        column_block, column = sch.split(n, factors=[None, COLUMNS])
        token_block, token = sch.split(t, factors=[None, TOKENS])
        sch.reorder(column_block, j, token_block, column, token, z, r)
        sch.bind(column_block, "blockIdx.x")
        sch.bind(j, "blockIdx.z")  # each of a token's k experts a block of its own: k times the blocks
        sch.bind(token_block, "blockIdx.y")
        sch.bind(column, "threadIdx.x")
        write_back = sch.cache_write(main, 0, "local")
        sch.reverse_compute_at(write_back, column)
        epilogue = blocks[at + 1:]
        try:
            for b in epilogue[:-1]:  # element-wise steps into the last: one output element per step
                sch.compute_inline(b)
            if epilogue:  # per thread, for its columns, reading its accumulators where they are
                sch.reverse_compute_at(epilogue[-1], column)
                sch.compute_inline(write_back)
        except Exception:
            return None
        return sch
