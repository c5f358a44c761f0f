"""The workload table from what the TIR walker found (pure Python; no TVM here).

The TVM side (:mod:`explorer.tvm.tir` and :mod:`explorer.tvm.compile`) fills the records below:
the tensors and kernel calls of a variant's ``main`` and, per kernel, its operation counts, buffer
uses and reuse profile. :func:`workload_table` turns them into the one table the cost model reads
(its columns are documented in :mod:`cost_models.workload`), adding reuse *between* kernels: a
tensor an earlier call left in a cache, or scratch memory recycled hot from the allocator.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pandas as pd

from cost_models.workload import FLOAT_DTYPES, dtype_bits, format_schedule
from explorer.workload import reuse


@dataclasses.dataclass
class Tensor:
    """A tensor in the Relax graph."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    origin: str  # "input", "const", "kernel" (written by a kernel call), "view"
    storage: int = -1  # identity of the memory it occupies: a view shares its source's storage
    model_output: bool = False  # returned by ``main``
    density: float = 1.0  # a constant's share of elements that are not zero (pruned weights have less)

    @property
    def nbytes(self) -> int:
        size = 1
        for d in self.shape:
            size *= d
        return int(size * dtype_bits(self.dtype) // 8)


@dataclasses.dataclass
class CallSite:
    """One kernel launch in ``main``."""

    index: int
    kernel: str
    args: list[Tensor]      # PrimFunc parameters in order: inputs then outputs
    n_inputs: int
    members: list[str]      # unfused operator kernels this call covers (itself when not fused)
    eliminated: list[Tensor]  # intermediates of those members that no longer exist as tensors
    collective: str = ""    # a collective over the devices (``all_reduce``, ``all_gather``), not a kernel of ours
    in_place: tuple[int, ...] = ()  # inputs the kernel writes where they are (a KV cache's new rows)


@dataclasses.dataclass
class BufferUse:
    """How one buffer of a kernel is used."""

    name: str
    scope: str           # "param", "global" (kernel scratch), "shared", "local", ...
    param_index: int     # position in the PrimFunc signature, -1 if allocated inside the kernel
    size_bytes: float    # allocated (compacted) size
    load_count: float = 0.0   # loop-weighted element accesses (times lanes)
    store_count: float = 0.0
    load_bytes: float = 0.0
    store_bytes: float = 0.0
    gathered: reuse.Gathered | None = None  # rows another tensor's values choose (see explorer.workload.reuse)
    row_bytes: float = 0.0                   # one such row's bytes

    def read_once_bytes(self, load: reuse.RowLoad | None = None) -> float:
        """The bytes a kernel reading this buffer touches at least once: all of it, or fewer where it
        reads fewer elements (a gather's rows; the expected distinct rows of a gathered one, under
        uniform choices or ``load``)."""
        touched = min(self.size_bytes, self.load_bytes)
        if self.gathered is not None:
            touched = min(touched, self.gathered.expected_rows(self.gathered.total_choices, load) * self.row_bytes)
        return touched


#: TVM allocates kernel buffers up to this size on the stack (``kMaxStackAlloca`` in its
#: LowerTVMBuiltin pass), where LLVM promotes them to registers: a reduction's accumulator that
#: the schedule compacted to a few elements is register traffic, not memory traffic.
STACK_BYTES = 1024


def in_registers(use: BufferUse) -> bool:
    """Whether a kernel-allocated buffer is small enough to live in registers (see STACK_BYTES)."""
    return use.param_index < 0 and use.scope == "global" and 0 < use.size_bytes <= STACK_BYTES


@dataclasses.dataclass
class KernelWorkload:
    """What one PrimFunc does per call."""

    name: str
    ops: Counter  # (kind, dtype) -> count
    buffers: list[BufferUse]
    reuse: reuse.ReuseProfile | None = None  # traffic into a cache vs its capacity, keyed by buffer name
    tensorized_macs: float = 0.0  # the MACs done by dot-product instructions (VPDPBUSD) or tensor cores
    schedule: Counter = dataclasses.field(default_factory=Counter)  # ScheduleKey -> operations
    useful_macs: float | None = None  # MACs before the schedule padded the kernel (None: not padded)
    nest: tuple | None = None  # (loops, sites) of a kernel with gathered sites, to re-count under a measured load
    launch: tuple[int, int, float] = (0, 0, 0.0)  # a GPU kernel's thread blocks, threads a block, shared bytes a block

    @property
    def macs(self) -> float:
        """Executed multiply-adds (a padded kernel's padding included)."""
        return float(sum(n for (kind, _), n in self.ops.items() if kind == "mac"))

    @property
    def flops(self) -> float:
        total = 0.0
        for (kind, dtype), n in self.ops.items():
            if dtype in FLOAT_DTYPES and kind in ("mac", "add", "mul", "div", "cmp", "special"):
                total += 2 * n if kind == "mac" else n
        return total


def _warm_capacities(calls) -> list[dict[int, float]]:
    """For each call, per argument position: the smallest cache capacity at which that tensor is
    already cached when the call starts: its own storage's bytes plus every other storage touched
    since that storage was last touched, at tensor granularity.

    Inferences follow one another (steady state): weights are the same memory every inference, and
    so is activation memory (the static memory planner's storage, ``assign_planned_storage``), so a
    storage first touched in this inference was last touched in the previous one, and whatever the
    whole inference touches in between decides the caches it is still in. A model that fits in a
    cache is served from it. Model inputs are new data: cold at their first touch."""
    n = len(calls)
    seq = [[(t.storage, t.origin != "input") for t in call.args] for call in calls]
    size: dict[int, int] = {}
    for call in calls:
        for t in call.args:
            size[t.storage] = max(size.get(t.storage, 0), t.nbytes)
    last = {s: k - n for k, touched in enumerate(seq) for s, _ in touched}  # the previous inference
    out = []
    for k, touched in enumerate(seq):
        warm = {}
        for pos, (s, recycled) in enumerate(touched):
            j = last[s]
            if j >= 0 or recycled:
                between = {x for i in range(j + 1, k) for x, _ in seq[i % n]} - {s}
                warm[pos] = float(size[s] + sum(size[x] for x in between))
        out.append(warm)
        for s, _ in touched:
            last[s] = k
    return out


def traffic_curve(kernel: KernelWorkload, warm: dict[int, float], per_unit: bool = False) -> str:
    """One call's traffic-versus-capacity curve as ``"capacity:bytes capacity:bytes ..."``.

    It is the kernel's reuse profile (for a cache private to each compute unit if ``per_unit``),
    less a buffer's first touch at the capacities where it is already cached: an argument an
    earlier call left there (``warm``: argument position -> smallest such capacity), or scratch the
    kernel allocates, whenever that scratch fits (allocators hand out recently freed, cache-hot
    memory, so it is never fetched from the level below)."""
    profile = kernel.reuse
    position = {u.name: u.param_index for u in kernel.buffers if u.param_index >= 0}
    warm_at = {buf: warm.get(position[buf], float("inf")) if buf in position else first
               for buf, first in profile.first_touch.items()}
    points: list[tuple[int, int]] = []
    for c in sorted(set(profile.capacities) | set(warm.values()) | set(warm_at.values()) - {float("inf")}):
        total = 0.0
        for buf, moved in profile.at(c, per_unit).items():
            if warm_at.get(buf, float("inf")) <= c:
                moved = max(moved - profile.first_touch.get(buf, 0.0), 0.0)
            total += moved
        if not points or round(total) != points[-1][1]:
            points.append((int(c), round(total)))
    return " ".join(f"{c}:{t}" for c, t in points)


def collective_row(call: CallSite, devices: int) -> dict:
    """The workload row of a collective over ``devices``: the tensor it reads and the one it writes,
    each once from device memory, and ``collective_bytes`` (the whole tensor an all-reduce reduces,
    the whole one an all-gather gathers) for the cost model to send over the interconnect."""
    read = sum(t.nbytes for t in call.args[:call.n_inputs])
    write = sum(t.nbytes for t in call.args[call.n_inputs:])
    moved = read + write
    return {"call_index": call.index, "kernel": call.kernel, "fused_ops": 1, "eliminated_bytes": 0, "macs": 0.0,
            "useful_macs": 0.0, "tensorized_macs": 0.0, "flops": 0.0, "read_bytes": read, "write_bytes": write,
            "weight_bytes": 0.0, "model_input_bytes": 0.0, "scratch_bytes": 0.0, "access_bytes": moved,
            "shared_access_bytes": 0.0, "local_access_bytes": 0.0, "weight_density": 1.0,
            "traffic_curve": f"0:{moved}", "unit_traffic_curve": f"0:{moved}", "schedule": "",
            "collective": call.collective, "collective_bytes": write if call.collective == "all_gather" else read}


def workload_table(calls, kernels: dict[str, KernelWorkload], devices: int = 1):
    """One workload row per kernel call (see :mod:`cost_models.workload` for the columns); a collective
    (a shard's all-reduce or all-gather) is a row of its own, and every row of a shard says on how many
    ``devices`` it runs."""

    rows = []
    warm_at = _warm_capacities(calls)
    for call, warm in zip(calls, warm_at):
        if call.collective:
            rows.append(collective_row(call, devices))
            continue
        k = kernels.get(call.kernel)
        if k is None:
            raise RuntimeError(f"kernel {call.kernel} is called in main but absent from the lowered TIR")
        row = {"call_index": call.index, "kernel": call.kernel, "fused_ops": len(call.members),
               "eliminated_bytes": sum(t.nbytes for t in call.eliminated)}
        read = write = weight = model_in = 0.0
        largest = None  # the kernel's weight matrix: the largest constant it reads (not a bias or scales)
        access = shared = local = scratch = 0.0
        for use in k.buffers:
            if use.param_index >= 0:
                arg = call.args[use.param_index] if use.param_index < len(call.args) else None
                if use.param_index >= call.n_inputs:
                    write += use.size_bytes
                elif use.param_index in call.in_place:  # the elements it writes, not the whole buffer
                    write += min(use.size_bytes, use.store_bytes)
                elif use.load_count > 0:
                    read += use.size_bytes
                    if arg is not None and arg.origin == "const":
                        # a gather reads only the rows it gathers: an embedding table is one row per token,
                        # a mixture's routed experts the distinct ones its tokens choose
                        weight += use.read_once_bytes()
                        if largest is None or arg.nbytes > largest.nbytes:
                            largest = arg
                    elif arg is not None and arg.origin == "input":
                        model_in += use.size_bytes
                access += use.load_bytes + use.store_bytes
            elif use.scope.startswith("shared"):
                shared += use.load_bytes + use.store_bytes
            elif (use.scope.startswith("local") or use.scope.startswith("warp") or use.scope.startswith("wmma")
                  or in_registers(use)):
                local += use.load_bytes + use.store_bytes
            else:
                scratch += use.size_bytes
                access += use.load_bytes + use.store_bytes
        row.update(macs=k.macs, useful_macs=k.macs if k.useful_macs is None else min(k.useful_macs, k.macs),
                   tensorized_macs=k.tensorized_macs, flops=k.flops, read_bytes=read, write_bytes=write, weight_bytes=weight,
                   model_input_bytes=model_in, scratch_bytes=scratch, access_bytes=access, shared_access_bytes=shared,
                   local_access_bytes=local)
        row["weight_density"] = largest.density if largest is not None else 1.0
        row["traffic_curve"] = traffic_curve(k, warm)
        row["unit_traffic_curve"] = traffic_curve(k, warm, per_unit=True)
        row["schedule"] = format_schedule(k.schedule)
        if k.launch[0]:
            row["grid_blocks"], row["block_threads"], row["block_shared_bytes"] = k.launch
        if k.nest is not None:
            row["gathered_nest"] = _nest_record(k, warm, call)
        for (kind, dtype), n in sorted(k.ops.items()):
            row[f"op_{kind}_{dtype}"] = n
        rows.append(row)
    df = pd.DataFrame(rows)
    op_cols = [c for c in df.columns if c.startswith("op_")]
    df[op_cols] = df[op_cols].fillna(0.0)
    if "gathered_nest" in df:
        df["gathered_nest"] = df["gathered_nest"].fillna("")
    for col in ("grid_blocks", "block_threads", "block_shared_bytes"):
        if col in df:
            df[col] = df[col].fillna(0)
    if devices > 1:
        df["devices"] = devices
        df["collective"] = df["collective"].fillna("") if "collective" in df else ""
        df["collective_bytes"] = df["collective_bytes"].fillna(0.0) if "collective_bytes" in df else 0.0
    return df


def _nest_record(k: KernelWorkload, warm: dict[int, float], call: CallSite) -> str:
    """What :func:`with_row_load` needs to re-count a gathered kernel's row (JSON): its loops and sites,
    its parameters' positions, the capacities its arguments are warm at, and its constant reads."""
    loops, sites = k.nest
    consts = [dataclasses.asdict(u) for u in k.buffers if u.param_index >= 0 and u.param_index < call.n_inputs
              and u.load_count > 0 and u.param_index < len(call.args) and call.args[u.param_index].origin == "const"]
    return json.dumps({"loops": [dataclasses.astuple(lp) for lp in loops],
                       "sites": [dataclasses.asdict(st) for st in sites],
                       "buffers": [[u.name, u.param_index] for u in k.buffers],
                       "warm": list(warm.items()), "consts": consts})


def _gathered(g: dict | None) -> reuse.Gathered | None:
    return None if g is None else reuse.Gathered(g["rows"], g["choices"], g["total_choices"], tuple(g["loops"]))


def _site(d: dict) -> reuse.Site:
    return reuse.Site(**{**d, "path": tuple(d["path"]), "terms": tuple(map(tuple, d["terms"])),
                         "gathered": _gathered(d["gathered"])})


def _buffer_use(d: dict) -> BufferUse:
    return BufferUse(**{**d, "gathered": _gathered(d["gathered"])})


def with_row_load(workload: pd.DataFrame, load: reuse.RowLoad | None) -> pd.DataFrame:
    """``workload`` with its gathered kernels' traffic curves and weight bytes re-counted under a measured
    ``load`` of their rows (a mixture's expert load) instead of uniform choices; unchanged without one."""
    if load is None or "gathered_nest" not in workload or not workload["gathered_nest"].astype(bool).any():
        return workload
    out = workload.copy()
    for i, record in out["gathered_nest"].items():
        if not record:
            continue
        nest = json.loads(record)
        loops = [reuse.Loop(*lp) for lp in nest["loops"]]
        profile = reuse.reuse_profile(loops, [_site(st) for st in nest["sites"]], load=load)
        kernel = KernelWorkload(out.at[i, "kernel"], Counter(), [BufferUse(name, "param", pos, 0.0)
                                                                 for name, pos in nest["buffers"]], profile)
        warm = {int(pos): cap for pos, cap in nest["warm"]}
        consts = [_buffer_use(u) for u in nest["consts"]]
        before = sum(u.read_once_bytes() for u in consts)
        out.at[i, "weight_bytes"] = out.at[i, "weight_bytes"] - before + sum(u.read_once_bytes(load) for u in consts)
        out.at[i, "traffic_curve"] = traffic_curve(kernel, warm)
        out.at[i, "unit_traffic_curve"] = traffic_curve(kernel, warm, per_unit=True)
    return out


def tensorized_note(workload: pd.DataFrame) -> str:
    """What share of a variant's int8 and bf16 MACs dot-product instructions or tensor cores do, as the
    sweep log says it (``""`` for a variant with neither)."""
    if workload.empty:
        return ""
    tensorized = workload["tensorized_macs"] if "tensorized_macs" in workload else pd.Series(0.0, workload.index)
    notes = []
    for label, cols in (("int8", ("op_mac_int8", "op_mac_uint8")), ("bf16", ("op_mac_bfloat16",))):
        cols = [c for c in workload.columns if c in cols]
        macs = workload[cols].sum(axis=1) if cols else pd.Series(0.0, workload.index)
        if float(macs.sum()) == 0:
            continue
        # a kernel's tensorized MACs are its own dtype's: a kernel does one precision's MACs
        share = float(tensorized[macs > 0].sum()) / float(macs.sum())
        kernels = int((macs > 0).sum())
        notes.append(f"{label} MACs {share:.0%} tensorized ({int(((tensorized > 0) & (macs > 0)).sum())} of "
                     f"{kernels} {label} kernels)")
    return "; ".join(notes)
