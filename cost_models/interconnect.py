"""What a tensor-parallel shard's collectives send between devices, and what that costs.

A workload of one device's shard (a ``devices`` column over 1) has a row per collective: ``collective``
names it (``all_reduce``, ``all_gather``) and ``collective_bytes`` is the whole tensor (the one an
all-reduce sums, the one an all-gather assembles). Each device sends, by the ring algorithms NCCL and
RCCL use for all but the smallest messages (Patarasuk and Yuan, "Bandwidth optimal all-reduce algorithms
for clusters of workstations", JPDC 69(2), 2009; NCCL's performance notes, ``nccl-tests/doc/PERFORMANCE.md``):

- an all-reduce over ``N`` devices: ``2 (N - 1) / N`` of the tensor (a reduce-scatter, then an
  all-gather, each ``N - 1`` steps of an ``N``-th of it);
- an all-gather: ``(N - 1) / N`` of the gathered tensor (each device's part to each of the others).

A collective then takes the interconnect's fixed cost per collective (``latency_s``: launch,
synchronisation and the first hop, what a small all-reduce measures) plus those bytes over the bus
bandwidth the interconnect achieves per device (``bandwidth_bytes_per_s``: NCCL's ``busbw``, which is
defined so that bytes sent over it is the time); in a full mesh, a collective over fewer devices than the
domain reaches only the links to its peers (:meth:`cost_models.spec.Interconnect.bandwidth_share`). The
energy is the bytes sent at the path's energy per byte. The device's static power over the collective's
time is charged as for any kernel (:mod:`cost_models.energy`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .spec import TargetSpec

#: Share of the whole tensor each device sends, by collective, over ``N`` devices (see the module doc).
SENT_SHARE = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
}


def sent_bytes(collective: str, tensor_bytes: float, devices: int) -> float:
    """Bytes one device sends in ``collective`` of a ``tensor_bytes`` tensor over ``devices`` devices."""
    if collective not in SENT_SHARE:
        raise ValueError(f"unknown collective {collective!r}; known: {', '.join(SENT_SHARE)}")
    return SENT_SHARE[collective](devices) * tensor_bytes


def workload_devices(workload: pd.DataFrame) -> int:
    """The devices a workload's model runs on (its ``devices`` column; 1 without one)."""
    if "devices" not in workload or not len(workload):
        return 1
    return int(workload["devices"].fillna(1).max())


def collective_rows(workload: pd.DataFrame) -> np.ndarray:
    """Whether each row of ``workload`` is a collective's (a kernel's is not)."""
    if "collective" not in workload:
        return np.zeros(len(workload), bool)
    return (workload["collective"].fillna("").astype(str) != "").to_numpy()


def link_bytes(workload: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(bytes each device sends, collectives)`` per row of ``workload`` (zeros for a kernel)."""
    collective = collective_rows(workload)
    if not collective.any():
        return np.zeros(len(workload)), collective.astype(float)
    devices = workload_devices(workload)
    kinds = workload["collective"].fillna("").astype(str).tolist()
    tensor = workload["collective_bytes"].fillna(0.0).to_numpy(float)
    sent = np.array([sent_bytes(k, b, devices) if k else 0.0 for k, b in zip(kinds, tensor)])
    return sent, collective.astype(float)


def devices_error(target: TargetSpec, devices: int) -> str:
    """Why ``target`` cannot serve a model split over ``devices`` devices, or ''."""
    if devices <= 1:
        return ""
    link = target.interconnect
    if link is None:
        return f"target {target.name} has no [interconnect] table: it models one device, not {devices}"
    if devices > link.domain_devices:
        return (f"{devices} devices exceed the {link.domain_devices} that {target.name}'s {link.name} joins; "
                "the network between domains is not modelled")
    return ""
