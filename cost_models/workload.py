"""The workload table: the only thing that crosses from ``explorer`` (which reads TVM IR) to the cost model.

One row per kernel call of a compiled variant. It records what the IR says, target-neutrally, so the
same workload can be scored on any target without touching TVM again.

Columns (all counts are for one call of the kernel):

``kernel``               name of the TIR PrimFunc
``call_index``           position of the call in the Relax ``main`` function
``op_<kind>_<dtype>``    operations of ``kind`` (see :data:`cost_models.spec.OP_KINDS`) in ``dtype``
                         (``float32``, ``float16``, ``bfloat16``, ``int8``, ``int32``, ...). Index
                         arithmetic is not counted; a multiply feeding an accumulation is one ``mac``.
                         For ``cast`` the dtype is the destination dtype.
``macs``                 multiply-accumulates of any dtype
``tensorized_macs``      the part of ``macs`` done by dot-product instructions (x86 ``VPDPBUSD``) or
                         tensor-core fragment operations
``flops``                floating-point operations: 2 per floating ``mac`` plus one per other floating
                         add/mul/div/cmp/special operation (casts and selects are not FLOPs)
``read_bytes``           bytes of the kernel's global input buffers (each buffer counted once)
``write_bytes``          bytes of the kernel's global output buffers (each buffer counted once)
``weight_bytes``         the constants (weights) the kernel reads, each at most once: no more than its
                         loads of it (a gather from an embedding table reads one row per token)
``weight_density``       optional: the share of the kernel's weight matrix (its largest constant) that is
                         not zero: below 1 where a sparse strategy pruned it (see ``cost_models.sparsity``)
``model_input_bytes``    bytes of model inputs the kernel reads (what must come from DRAM at least once)
``scratch_bytes``        bytes of global buffers the kernel allocates for itself
``access_bytes``         loop-trip-weighted bytes of every load and store of a global buffer
``shared_access_bytes``  loop-trip-weighted bytes of loads and stores of on-chip ``shared`` buffers
``local_access_bytes``   loop-trip-weighted bytes of loads and stores of ``local`` (register) buffers
``traffic_curve``        bytes of global data moved into a cache of a given capacity, as a step function
                         ``"c0:b0 c1:b1 ..."`` (``c0`` = 0, capacities ascending, bytes non-increasing):
                         a cache of capacity ``C`` receives ``b_i`` for the largest ``c_i <= C``. It
                         counts 64-byte lines, reuse inside the kernel's loop nest, and tensors an
                         earlier kernel left in the cache (see :mod:`explorer.workload.reuse`).
``unit_traffic_curve``   the same for a cache private to each compute unit (a GPU SM's L1), summed
                         over units: loops spread over units (thread blocks) carry no reuse in it.
``schedule``             how the schedule runs that work, as ``"kind:dtype:lanes:parallel:chains=count
                         ..."`` (see :class:`ScheduleKey`): for each kind of operation (the op kinds,
                         ``wmac`` for a multiply-add into a wider accumulator (int8 into int32, fp16
                         into fp32), ``dot`` for dot-product instructions, ``mma`` for tensor-core fragment
                         operations, ``load`` and ``store`` for accesses of memory, ``broadcast`` for a
                         load of one element into every lane) the operations or
                         elements run at that many vector lanes under parallel loops of that extent.
                         Optional: a table without it is scored by the roofline alone.
``devices``              optional: the devices a tensor-parallel shard runs on, every one of them each row
                         at the same time (1 where absent; see :mod:`cost_models.interconnect`)
``collective``           optional: ``all_reduce`` or ``all_gather`` for a collective's row (the tensor it
                         reads and writes counted in the byte columns), empty for a kernel's
``collective_bytes``     optional: the whole tensor a collective reduces or gathers
``grid_blocks``          optional: a GPU kernel's thread blocks, what the wave model of a target with
                         ``[units]`` reads (0 or absent: no launch known); ``block_threads`` and
                         ``block_shared_bytes`` say each block's threads and shared memory
``gathered_nest``        optional, not read here: a kernel with gathered reads (a mixture's routed experts)
                         keeps its loop nest as JSON, for ``explorer.workload.table.with_row_load`` to
                         re-count its traffic under a measured expert load before scoring
``measured_s``           optional: the call's time measured on the hardware the target describes; where
                         present (not NaN), static power is charged over it (see ``cost_models.energy``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Mapping

import numpy as np
import pandas as pd

OP_COLUMN = re.compile(r"^op_(?P<kind>[a-z]+)_(?P<dtype>[a-z0-9]+)$")

_DTYPE_BITS = re.compile(r"^[a-z]+?(\d+)")


def dtype_bits(dtype: str) -> int:
    """Bits of one element of ``dtype`` as TVM counts them (``bool`` is 8, ``float8_e4m3fn`` 8, a vector
    type ``float32x16`` one lane's); :class:`ValueError` for a name that carries no width."""
    if dtype == "bool":
        return 8
    if dtype == "handle":
        return 64
    m = _DTYPE_BITS.match(dtype.split("x")[0] if re.search(r"x\d+$", dtype) else dtype)
    if not m:
        raise ValueError(f"unknown dtype {dtype!r}")
    return int(m.group(1))


def dtype_bytes(dtype: str) -> float:
    """Bytes of one element of ``dtype`` (fractional for sub-byte types)."""
    return dtype_bits(dtype) / 8

REQUIRED_COLUMNS = (
    "kernel", "call_index", "macs", "flops", "read_bytes", "write_bytes", "weight_bytes", "model_input_bytes",
    "access_bytes", "shared_access_bytes", "local_access_bytes", "traffic_curve", "unit_traffic_curve",
)

FLOAT_DTYPES = frozenset({"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"})


@dataclasses.dataclass(frozen=True, order=True)
class ScheduleKey:
    """How a group of a kernel's operations runs: ``lanes`` at a time (the dtype's lanes times the
    vectorized loops around them; for ``dot``/``mma`` the MACs of one instruction), under parallel loops
    of extent ``parallel`` (1: none), and for an accumulation the independent accumulators ``chains``
    its innermost reduction loop updates (0: not an accumulation). Accesses are ``load``/``store``
    (contiguous vectors), ``broadcast`` (one element for every lane) and ``gather``/``scatter`` (a
    vector assembled or taken apart one lane at a time); ``widen`` is an operand of a ``wmac``
    converted from its narrow ``dtype`` to the accumulator's."""

    kind: str
    dtype: str
    lanes: int
    parallel: int = 1
    chains: int = 0


def format_schedule(counts: Mapping[ScheduleKey, float]) -> str:
    """The ``schedule`` column's text for operation counts by :class:`ScheduleKey`."""
    return " ".join(f"{k.kind}:{k.dtype}:{k.lanes}:{k.parallel}:{k.chains}={counts[k]:.6g}"
                    for k in sorted(counts) if counts[k] > 0)


@functools.lru_cache(maxsize=65536)
def parse_schedule(text: str) -> tuple[tuple[ScheduleKey, float], ...]:
    """``(key, count)`` pairs of a ``schedule`` column's text; raises ``ValueError`` if malformed."""
    out = []
    for item in text.split():
        try:
            head, count = item.split("=")
            kind, dtype, lanes, parallel, chains = head.split(":")
            out.append((ScheduleKey(kind, dtype, int(lanes), int(parallel), int(chains)), float(count)))
        except ValueError:
            raise ValueError(f"malformed schedule entry {item[:60]!r}: expected 'kind:dtype:lanes:parallel:chains=count'") from None
    return tuple(out)


def op_columns(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(column, kind, dtype)`` for every operation-count column of a workload table."""
    out = []
    for col in df.columns:
        m = OP_COLUMN.match(str(col))
        if m:
            out.append((col, m["kind"], m["dtype"]))
    return out


def check_workload(df: pd.DataFrame) -> None:
    """Raise ``ValueError`` if ``df`` lacks a column the cost model needs."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"workload table lacks columns {missing}")


@functools.lru_cache(maxsize=65536)
def parse_curve(curve: str) -> tuple[np.ndarray, np.ndarray]:
    """``(capacities, bytes)`` of a ``traffic_curve`` string; raises ``ValueError`` if malformed."""
    try:
        points = [tuple(float(x) for x in p.split(":")) for p in curve.split()]
        caps, moved = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    except (ValueError, IndexError):
        raise ValueError(f"malformed traffic_curve {curve[:60]!r}: expected 'capacity:bytes ...'") from None
    if not len(caps) or caps[0] != 0 or np.any(np.diff(caps) <= 0):
        raise ValueError(f"malformed traffic_curve {curve[:60]!r}: capacities must start at 0 and ascend")
    return caps, moved


def curve_at(curve: str, capacity: float) -> float:
    """Bytes a cache of ``capacity`` bytes receives, from a ``traffic_curve`` string."""
    caps, moved = parse_curve(curve)
    return float(moved[np.searchsorted(caps, capacity, side="right") - 1])
