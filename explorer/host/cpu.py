"""This machine's CPU as the explorer uses it, read without TVM: its identity (a cache-key part), its
cores, and the threads a target's builds are timed with."""

from __future__ import annotations

import hashlib
import os
import platform

from cost_models.host import host_cpu
from cost_models.spec import TargetSpec


def cpu_fingerprint() -> str:
    """Identity of this machine's CPU: its architecture and the identifying ``/proc/cpuinfo`` fields
    (:data:`cost_models.host.IDENTITY_FIELDS`), hashed."""
    fields = [platform.machine(), platform.processor()]
    fields += [f"{name}={value}" for name, value in host_cpu().identity]
    return hashlib.sha256("|".join(fields).encode()).hexdigest()[:16]


def _cores_now() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: Read when this module is imported: TVM's runtime pins the threads of a process that runs a
#: build, its main thread included, so the affinity read later can be a single core.
_CORES = _cores_now()


def machine_cores() -> int:
    """Cores this process could run on when the explorer was imported."""
    return _CORES


def timing_threads(target: TargetSpec) -> int:
    """Threads a variant for ``target`` is timed with: the cores the target has, at most this machine's."""
    return min(target.cores or machine_cores(), machine_cores())
