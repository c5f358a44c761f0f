"""The CPU this process runs on, as ``/proc/cpuinfo`` names it: read once, here and nowhere else.

Target files say which CPUs they describe in those terms (``[host]``: vendor, family, models), the
explorer keys its measurements by the CPU's identity, and TVM's code generator is told which
instruction-set extensions the flags show. Off Linux every field is empty.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

#: The ``/proc/cpuinfo`` fields that identify a CPU (x86 and Arm spellings).
IDENTITY_FIELDS = ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU part")


@dataclasses.dataclass(frozen=True)
class HostCPU:
    """One CPU's identity from ``/proc/cpuinfo`` (empty off Linux)."""

    vendor: str = ""
    family: int = -1
    model: int = -1
    model_name: str = ""
    flags: frozenset[str] = frozenset()  # instruction-set extensions, as the kernel spells them
    identity: tuple[tuple[str, str], ...] = ()  # the IDENTITY_FIELDS present, in the file's order


def parse_cpuinfo(text: str) -> HostCPU:
    """The first CPU described by ``text`` (the contents of ``/proc/cpuinfo``)."""
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    identity = tuple((name, fields[name]) for name in fields if name in IDENTITY_FIELDS)
    flags = frozenset((fields.get("flags") or fields.get("Features") or "").split())
    try:
        family, model = int(fields.get("cpu family", -1)), int(fields.get("model", -1))
    except ValueError:
        family, model = -1, -1
    return HostCPU(fields.get("vendor_id", ""), family, model, fields.get("model name", ""), flags, identity)


@functools.lru_cache(maxsize=1)
def host_cpu() -> HostCPU:
    """The CPU this process runs on (``/proc/cpuinfo`` read once; an empty :class:`HostCPU` where
    there is none)."""
    try:
        return parse_cpuinfo(CPUINFO.read_text())
    except OSError:
        return HostCPU()
