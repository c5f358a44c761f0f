"""Nsight Compute: the mode that profiles one inference per variant, and its CSV read back as DRAM bytes
per kernel call."""

from __future__ import annotations

import csv
import ctypes
import io
import re
import sys
from pathlib import Path

from .arrays import Arrays
from .bundle import BadInput, write_json
from .timing import call_order, load_variant

#: Nsight Compute's units, as multiples of the base unit (bytes, seconds, hertz).
NCU_UNITS = {"byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12,
             "nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
             "": 1.0, "%": 1.0, "cycle": 1.0, "hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}


def parse_ncu_csv(text: str) -> list[dict]:
    """Nsight Compute's ``--csv`` output (one row per kernel launch and metric, with ``==PROF==`` and
    program lines around it) as one dict per launch, in launch order: ``id``, ``kernel`` (the mangled or
    plain name as ncu prints it) and ``metrics`` (name -> value in base units: bytes, seconds)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        raise BadInput("no ncu CSV table found (its header starts with \"ID\")")
    rows = csv.DictReader(io.StringIO("\n".join(line for line in lines[start:] if line.startswith('"'))))
    launches: dict = {}
    for row in rows:
        try:
            launch_id = int(row["ID"])
        except (KeyError, ValueError):
            continue
        name = row.get("Kernel Name") or row.get("Function Name") or row.get("Name") or ""
        entry = launches.setdefault(launch_id, {"id": launch_id, "kernel": name, "metrics": {}})
        metric, raw = row.get("Metric Name"), (row.get("Metric Value") or "").replace(",", "").strip()
        if not metric:
            continue
        unit = (row.get("Metric Unit") or "").strip().lower()
        try:
            value = float(raw)
        except ValueError:
            continue
        entry["metrics"][metric] = value * NCU_UNITS.get(unit, 1.0)
    return [launches[k] for k in sorted(launches)]


def function_of(kernel: str) -> str:
    """The TVM function a CUDA kernel belongs to: ``fused_add_kernel`` and ``fused_add_kernel_1`` ->
    ``fused_add`` (a demangled signature's arguments dropped)."""
    name = kernel.split("(", 1)[0].strip()
    return re.sub(r"_kernel(_\d+)?$", "", name)


def bytes_per_call(launches: list[dict], calls: list[str]) -> list[dict]:
    """ncu's launches of one inference summed per kernel call of ``calls`` (the call order an
    instrumented inference gave): each launch goes to the next call of its function. Each call:
    ``call``, ``kernel``, ``launches``, ``dram_read_bytes``, ``dram_write_bytes``, ``dram_bytes`` and
    ``gpu_time_s`` (None where ncu had no such metric)."""
    out = [{"call": i, "kernel": name, "launches": 0, "dram_read_bytes": None, "dram_write_bytes": None,
            "gpu_time_s": None} for i, name in enumerate(calls)]
    at = 0
    for launch in launches:
        fn = function_of(launch["kernel"])
        j = at
        while j < len(calls) and calls[j] != fn:
            j += 1
        if j == len(calls):  # not a call of this inference (e.g. an extra launch): look from the start
            j = next((k for k, name in enumerate(calls) if name == fn), None)
            if j is None:
                continue
        at = j
        call = out[j]
        call["launches"] += 1
        for key, metric in (("dram_read_bytes", "dram__bytes_read.sum"), ("dram_write_bytes", "dram__bytes_write.sum"),
                            ("gpu_time_s", "gpu__time_duration.sum")):
            if metric in launch["metrics"]:
                call[key] = (call[key] or 0.0) + launch["metrics"][metric]
        if j + 1 < len(calls) and calls[j + 1] != fn:
            at = j + 1
    for call in out:
        parts = [call["dram_read_bytes"], call["dram_write_bytes"]]
        call["dram_bytes"] = None if all(p is None for p in parts) else sum(p or 0.0 for p in parts)
    return out


def run_ncu_mode(tvm, variants: list[dict], arrays: Arrays, dev, out: Path) -> int:
    """Each variant: warm up, then one inference between cuProfilerStart and cuProfilerStop."""
    cuda_driver = ctypes.CDLL("libcuda.so.1")
    orders = {}
    for variant in variants:
        vm, args = load_variant(tvm, variant, arrays, dev)
        for _ in range(2):
            vm["main"](*args)
        orders[variant["id"]] = call_order(vm, args)
        dev.sync()
        cuda_driver.cuProfilerStart()
        vm["main"](*args)
        dev.sync()
        cuda_driver.cuProfilerStop()
        print(f"profiled {variant['id']}", file=sys.stderr, flush=True)
    write_json(out, {"calls": orders})
    return 0
