"""Energy of a workload on a target: compute + traffic per memory level + static power.

Pure numpy/pandas. For each kernel call (one workload row):

- **compute**: every counted operation times the target's energy for that operation kind in that
  dtype (``energy_cast_j`` is the part spent on casts and re-quantization casts) (``TargetSpec.unit_for`` picks the compute unit; a kind the unit does not list is charged as
  an ``add`` there, the cheapest ALU operation every unit has);
- **traffic per level**: the levels from DRAM inward to the innermost level that serves ``global``
  accesses form the cache chain. The bytes moved between chain level ``i`` and level ``i + 1`` are
  the kernel's traffic curve (``traffic_curve``: reuse-aware, see :mod:`explorer.workload.reuse`) evaluated
  at level ``i + 1``'s capacity (``unit_traffic_curve`` when that level is private to each compute
  unit), and are charged at level ``i``'s energy per byte. The innermost
  chain level serves every global load and store the loop nest performs (``access_bytes``).
  Explicit on-chip buffers (GPU ``shared`` memory, ``local`` registers) are charged at the level the
  target says serves them;
- **interconnect**: a collective's row (a tensor-parallel shard's all-reduce or all-gather) sends bytes to
  the other devices: their energy per byte, and a fixed cost per collective plus the bytes over the
  bandwidth as its time (see :mod:`cost_models.interconnect`);
- **latency**: the largest of the compute time, each level's bytes over its bandwidth and the
  interconnect's time;
  ``bound`` names the resource (``compute``, a level name, or ``overhead`` for a call whose fixed
  cost exceeds both). On a CPU target with a ``[core]`` the compute time is the schedule's (see
  :mod:`cost_models.latency`) and each call adds its overhead; elsewhere it is a roofline at each
  dtype's peak rate, and each kernel adds the target's ``kernel_launch_s`` where it has one. On an
  accelerator with ``[units]`` a kernel whose thread blocks fill only part of their last wave keeps the
  units idle for the rest of it: its compute time and its per-unit memories' times are divided by its
  wave efficiency (:func:`cost_models.spec.wave_efficiency`);
- **static** energy is static power times the kernel's time: its measured time where the workload
  has one (``run_time_s``: the build ran on the hardware the target describes), else its
  modelled latency (``latency_source`` says which);
- **compulsory bound**: the least energy any build of the kernel could use on the target: the
  model inputs it reads moved from DRAM once and its weights once from the level that holds all
  the workload's weights (DRAM unless they fit in a cache: from one inference to the next they stay
  there, as the traffic model lets them; a model output can stay in the level it fits in too), its
  MACs at the target's cheapest MAC, and static power over the roofline time of just that.

A workload with a ``devices`` column is one device's shard of a model split over that many devices:
every device runs each row at the same time, so each energy counts every device (static power too) while
the latency is one row's. Bytes and operations stay one device's.

The same computation runs on nominal figures (:func:`score`) and on sampled figures
(:mod:`cost_models.uncertainty`): :func:`quantities` extracts what the figures multiply, once.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from . import interconnect, latency
from .spec import TargetSpec, wave_efficiency
from .workload import check_workload, curve_at, op_columns

PJ = 1e-12

ENERGY_COLUMNS = ("energy_j", "energy_compute_j", "energy_memory_j", "energy_dram_j", "energy_onchip_j",
                  "energy_interconnect_j", "energy_static_j", "latency_s", "compulsory_energy_j")


def _op_figure(target: TargetSpec, kind: str, dtype: str) -> str:
    """Dotted path (see TargetSpec.figures) of the energy figure charged for one operation."""
    unit = target.unit_for(dtype)
    for name in (kind, "add", "mac"):
        try:
            unit.energy_of(name)
            return f"compute.{unit.dtype}.energy_pj.{name}"
        except KeyError:
            continue
    raise AssertionError("every compute unit has a mac energy")  # enforced by the target loader


def global_chain(target: TargetSpec) -> list[int]:
    """Indices of the levels global data passes through: DRAM inward to the level serving it."""
    inner = target.memory.index(target.level_for("global"))
    return list(range(inner + 1))


@dataclasses.dataclass
class Quantities:
    """What a workload asks of a target, before any energy figure is applied (one entry per kernel)."""

    op_counts: dict[str, np.ndarray]       # energy-figure path -> operations charged at it
    cast_counts: dict[str, np.ndarray]     # the part of op_counts that are casts
    unit_ops: dict[str, np.ndarray]        # compute-unit dtype -> ops (a MAC is 2) run on that unit
    level_bytes: dict[str, np.ndarray]     # memory level name -> bytes moved at that level
    compulsory_bytes: np.ndarray           # weights + model inputs, each moved once
    weight_bytes: np.ndarray               # the weights among them, moved from ``weight_level``
    weight_level: str                      # the innermost level holding all the workload's weights
    macs: np.ndarray
    core: latency.CoreQuantities | None    # what the schedules ask of a CPU core (None: roofline)
    run_time_s: np.ndarray                 # measured time of each call, NaN where not measured
    link_bytes: np.ndarray                 # bytes each device sends over the interconnect (collectives)
    collectives: np.ndarray                # 1 for a collective's row, 0 for a kernel's
    devices: int = 1                       # devices running every row at once (a tensor-parallel shard's)
    wave_efficiency: np.ndarray | float = 1.0  # share of the compute units a kernel's waves keep busy


def quantities(workload: pd.DataFrame, target: TargetSpec) -> Quantities:
    """Operation counts per energy figure and bytes per memory level for each kernel of ``workload``."""
    check_workload(workload)
    n = len(workload)
    op_counts: dict[str, np.ndarray] = {}
    cast_counts: dict[str, np.ndarray] = {}
    unit_ops: dict[str, np.ndarray] = {}
    for col, kind, dtype in op_columns(workload):
        counts = workload[col].fillna(0.0).to_numpy(dtype=float)
        path = _op_figure(target, kind, dtype)
        op_counts[path] = op_counts.get(path, np.zeros(n)) + counts
        if kind == "cast":
            cast_counts[path] = cast_counts.get(path, np.zeros(n)) + counts
        if kind != "cast":
            unit = target.unit_for(dtype).dtype
            unit_ops[unit] = unit_ops.get(unit, np.zeros(n)) + counts * (2.0 if kind == "mac" else 1.0)

    levels = target.memory
    level_bytes = {lvl.name: np.zeros(n) for lvl in levels}
    chain = global_chain(target)
    curves = {False: workload["traffic_curve"].astype(str).tolist(),
              True: workload["unit_traffic_curve"].astype(str).tolist()}
    for i in chain[:-1]:
        inner = levels[i + 1]
        level_bytes[levels[i].name] += np.array([curve_at(c, inner.capacity_bytes) for c in curves[inner.per_unit]])
    level_bytes[levels[chain[-1]].name] += workload["access_bytes"].to_numpy(float)
    for access, column in (("shared", "shared_access_bytes"), ("local", "local_access_bytes")):
        level_bytes[target.level_for(access).name] += workload[column].to_numpy(float)
    weights = workload["weight_bytes"].to_numpy(float)
    compulsory = weights + workload["model_input_bytes"].to_numpy(float)
    holding = [levels[i] for i in chain if levels[i].capacity_bytes >= weights.sum()]
    weight_level = holding[-1].name if holding else levels[chain[0]].name
    core = None
    if target.core is not None and "schedule" in workload:
        core = latency.core_quantities(workload["schedule"].fillna("").astype(str).tolist(), target)
    run = workload["run_time_s"].to_numpy(float) if "run_time_s" in workload else np.full(n, np.nan)
    devices = interconnect.workload_devices(workload)
    sent, collectives = interconnect.link_bytes(workload)
    why = interconnect.devices_error(target, devices)
    if why and collectives.any():
        raise ValueError(why)
    waves = 1.0
    if target.units is not None and "grid_blocks" in workload:
        waves = np.array([wave_efficiency(target.units, b) for b in workload["grid_blocks"].fillna(0).to_numpy(float)])
    return Quantities(op_counts, cast_counts, unit_ops, level_bytes, compulsory, weights, weight_level,
                      workload["macs"].to_numpy(float), core, run, sent, collectives, devices, waves)


def evaluate(q: Quantities, target: TargetSpec, figures: dict) -> dict[str, np.ndarray]:
    """Energy (J) and latency (s) per kernel from quantities and figure values.

    ``figures`` maps every path of ``target.figures()`` to a value: a float, or an array of shape
    ``(samples, 1)`` to evaluate many coefficient samples at once (results then have a leading
    samples axis)."""
    compute_pj = sum((counts * figures[path] for path, counts in q.op_counts.items()), 0.0)
    cast_pj = sum((counts * figures[path] for path, counts in q.cast_counts.items()), 0.0)
    if q.core is not None:
        compute_s = latency.compute_seconds(q.core, figures)
        overhead_s = latency.overhead_seconds(q.core, figures)
    else:
        compute_s = sum((ops / figures[f"compute.{dtype}.peak_ops_per_s"] for dtype, ops in q.unit_ops.items()), 0.0)
        compute_s = compute_s / q.wave_efficiency  # a partial last wave leaves units idle (cost_models.spec)
        # an accelerator's kernel launch (a collective's fixed cost is the interconnect's)
        overhead_s = figures["kernel_launch_s"] * (1.0 - q.collectives) if "kernel_launch_s" in figures else 0.0
    level_pj, level_s = {}, {}
    for lvl in target.memory:
        b = q.level_bytes[lvl.name]
        level_pj[lvl.name] = b * figures[f"memory.{lvl.name}.energy_pj_per_byte"]
        level_s[lvl.name] = b / figures[f"memory.{lvl.name}.bandwidth_bytes_per_s"]
        if lvl.private and q.core is not None:
            level_s[lvl.name] = level_s[lvl.name] / q.core.private_share
        if q.core is None and (lvl.per_unit or "local" in lvl.serves):  # each unit's own memory, idle with it
            level_s[lvl.name] = level_s[lvl.name] / q.wave_efficiency
    if q.core is not None:  # the level serving loads and stores is the load/store pipes of the core model
        level_s[target.level_for("global").name] = np.zeros_like(np.asarray(compute_s, float))
    link_s, link_pj = 0.0, 0.0
    if q.collectives.any():
        link = target.interconnect
        link_s = (q.collectives * figures["interconnect.latency_s"]
                  + q.link_bytes / (figures["interconnect.bandwidth_bytes_per_s"] * link.bandwidth_share(q.devices)))
        link_pj = q.link_bytes * figures["interconnect.energy_pj_per_byte"]
    names = [lvl.name for lvl in target.memory]
    times = np.stack(np.broadcast_arrays(compute_s, *[level_s[n] for n in names], link_s), axis=-1)
    latency_s = times.max(axis=-1) + overhead_s
    bounds = np.concatenate([times, np.broadcast_to(overhead_s, latency_s.shape)[..., None]], axis=-1)
    static_s = np.where(np.isnan(q.run_time_s), latency_s, q.run_time_s)

    def full(x):  # every energy has the shape of ``latency_s`` and counts every device running the kernel
        return np.broadcast_to(x, latency_s.shape) * q.devices

    dram = names[0]
    onchip_pj = sum((level_pj[n] for n in names[1:]), 0.0)
    static_w = figures["static_power_w"]

    cheapest_mac = np.minimum.reduce([np.asarray(figures[f"compute.{u.dtype}.energy_pj.mac"]) for u in target.compute])
    fastest = np.maximum.reduce([np.asarray(figures[f"compute.{u.dtype}.peak_ops_per_s"]) for u in target.compute])
    moved = {dram: q.compulsory_bytes - q.weight_bytes}
    moved[q.weight_level] = moved.get(q.weight_level, 0.0) + q.weight_bytes
    move_s = sum(b / figures[f"memory.{n}.bandwidth_bytes_per_s"] for n, b in moved.items())
    bound_s = np.maximum(2 * q.macs / fastest, move_s)
    compulsory_j = (sum(b * figures[f"memory.{n}.energy_pj_per_byte"] for n, b in moved.items())
                    + q.macs * cheapest_mac) * PJ + static_w * bound_s
    out = {
        "energy_compute_j": full(compute_pj * PJ),
        "energy_cast_j": full(cast_pj * PJ),
        "energy_dram_j": full(level_pj[dram] * PJ),
        "energy_onchip_j": full(onchip_pj * PJ),
        "energy_interconnect_j": full(link_pj * PJ),
        "energy_static_j": full(static_w * static_s),
        "latency_s": latency_s,
        "compulsory_energy_j": full(compulsory_j),
        "bound_index": bounds.argmax(axis=-1),
    }
    for n in names[1:]:
        out[f"energy_{n}_j"] = full(level_pj[n] * PJ)
    out["energy_memory_j"] = out["energy_dram_j"] + out["energy_onchip_j"]
    out["energy_j"] = out["energy_compute_j"] + out["energy_memory_j"] + out["energy_interconnect_j"] + out["energy_static_j"]
    return out


def nominal_figures(target: TargetSpec) -> dict[str, float]:
    """Every figure of ``target`` at its cited value."""
    return {path: fig.value for path, fig in target.figures().items()}


def score(workload: pd.DataFrame, target: TargetSpec) -> pd.DataFrame:
    """Per-kernel energy (J), its breakdown by compute, each memory level and static power,
    traffic per level (bytes), modelled latency (s), the bounding resource, the time static power
    is charged over (``latency_source``) and the compulsory bound, appended to ``workload``."""
    q = quantities(workload, target)
    e = evaluate(q, target, nominal_figures(target))
    names = [lvl.name for lvl in target.memory]
    df = workload.copy()
    df["dram_bytes"] = q.level_bytes[names[0]]
    for n in names[1:]:
        df[f"{n}_bytes"] = q.level_bytes[n]
    df["onchip_bytes"] = sum((q.level_bytes[n] for n in names[1:]), np.zeros(len(df)))
    df["compulsory_bytes"] = q.compulsory_bytes
    df["casts"] = sum(q.cast_counts.values(), np.zeros(len(df)))
    df["interconnect_bytes"] = q.link_bytes
    for col in ("energy_compute_j", "energy_cast_j", "energy_dram_j", *[f"energy_{n}_j" for n in names[1:]], "energy_onchip_j",
                "energy_memory_j", "energy_interconnect_j", "energy_static_j", "energy_j", "latency_s", "compulsory_energy_j"):
        df[col] = e[col]
    df["bound"] = np.array(["compute", *names, "interconnect", "overhead"])[e["bound_index"]]
    df["latency_source"] = np.where(np.isnan(q.run_time_s), "modelled", "measured")
    df["wave_efficiency"] = np.broadcast_to(q.wave_efficiency, len(df))
    return df


@dataclasses.dataclass(frozen=True)
class Totals:
    """Whole-variant sums of a scored workload (kernels run one after another); totals add, so the
    totals of several runs (phases, batches) are their sum. Energies in J, bytes in B, time in s."""

    kernels: int = 0
    macs: float = 0.0
    flops: float = 0.0
    dram_bytes: float = 0.0
    onchip_bytes: float = 0.0
    read_bytes: float = 0.0
    write_bytes: float = 0.0
    weight_bytes: float = 0.0
    compulsory_bytes: float = 0.0
    interconnect_bytes: float = 0.0
    casts: float = 0.0
    energy_j: float = 0.0
    energy_compute_j: float = 0.0
    energy_memory_j: float = 0.0
    energy_dram_j: float = 0.0
    energy_onchip_j: float = 0.0
    energy_interconnect_j: float = 0.0
    energy_static_j: float = 0.0
    energy_cast_j: float = 0.0
    latency_s: float = 0.0
    interconnect_latency_s: float = 0.0  # the part of latency_s the collectives take
    compulsory_energy_j: float = 0.0
    power_capped_s: float = 0.0  # the part of latency_s the device's power limit adds (see power_capped)
    latency_by_bound: tuple[tuple[str, float], ...] = ()  # modelled seconds per bounding resource

    #: The columns a totals record fills in a table of variants, in order.
    COLUMNS = ("kernels", "macs", "flops", "dram_bytes", "onchip_bytes", "weight_bytes", "interconnect_bytes",
               "energy_j", "energy_compute_j", "energy_memory_j", "energy_dram_j", "energy_onchip_j",
               "energy_interconnect_j", "energy_static_j", "compulsory_energy_j", "compulsory_ratio", "casts",
               "energy_cast_j", "latency_s", "interconnect_latency_s", "power_capped_s", "bound")

    @classmethod
    def of(cls, scored: pd.DataFrame) -> "Totals":
        """The totals of a scored workload (:func:`score`)."""
        sums = {f.name: float(scored[f.name].sum()) for f in dataclasses.fields(cls)
                if f.name not in ("kernels", "latency_by_bound", "interconnect_latency_s", "power_capped_s")}
        collective = interconnect.collective_rows(scored)
        sums["interconnect_latency_s"] = float(scored["latency_s"].to_numpy()[collective].sum())
        by_bound = scored.groupby("bound")["latency_s"].sum()
        return cls(kernels=int((~collective).sum()), latency_by_bound=tuple((str(b), float(s)) for b, s in by_bound.items()),
                   **sums)

    def __add__(self, other: "Totals") -> "Totals":
        summed = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)
                  if f.name != "latency_by_bound"}
        bounds = dict(self.latency_by_bound)
        for b, s in other.latency_by_bound:
            bounds[b] = bounds.get(b, 0.0) + s
        return Totals(**summed, latency_by_bound=tuple(sorted(bounds.items())))

    @property
    def compulsory_ratio(self) -> float:
        """Energy over the compulsory bound (NaN when the bound is zero)."""
        return self.energy_j / self.compulsory_energy_j if self.compulsory_energy_j else float("nan")

    @property
    def bound(self) -> str:
        """The resource that sets most of the modelled latency."""
        return max(self.latency_by_bound, key=lambda b: b[1])[0] if self.latency_by_bound else ""

    def row(self) -> dict:
        """The :data:`COLUMNS` of this record, by name."""
        return {c: getattr(self, c) for c in self.COLUMNS}


def totals(scored: pd.DataFrame) -> Totals:
    """Whole-variant sums of a scored workload (see :class:`Totals`)."""
    return Totals.of(scored)


def power_capped(t: Totals, target: TargetSpec, devices: int = 1) -> Totals:
    """``t`` as a device with a power limit runs it: where the modelled mean power of one device
    (``t.energy_j`` counts all ``devices``) exceeds ``target.power_limit_w``, the board's power controller
    lowers the clocks until it does not (NVIDIA's H100 holds its 700 W board limit so; DeepGEMM issue 120
    shows Hopper SM clocks falling from 1980 to 1575 MHz when it is reached). The work's energy is kept
    (a lower voltage would lower it: the cap's cost in time is an upper bound), its time grows to that
    energy over the power the limit leaves above static power, and static power is drawn over the longer
    time; ``power_capped_s`` says by how much. Averaged over a whole inference (a decode step, tens of
    milliseconds: the controller's window is of that order), not per kernel."""
    limit = target.power_limit_w
    if limit is None or t.latency_s <= 0:
        return t
    static_w = target.static_power_w.value
    dynamic_j = (t.energy_j - t.energy_static_j) / devices
    if t.energy_j / devices / t.latency_s <= limit.value or limit.value <= static_w:
        return t
    capped_s = dynamic_j / (limit.value - static_w)
    static_j = static_w * capped_s * devices
    return dataclasses.replace(t, latency_s=capped_s, power_capped_s=capped_s - t.latency_s,
                               energy_static_j=static_j, energy_j=t.energy_j - t.energy_static_j + static_j)
