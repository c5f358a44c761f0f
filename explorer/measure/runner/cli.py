"""The runner's command: ``python measure_runner.py --device cuda --out results.json`` (see the package).

Exit codes: 0 every chosen variant measured; 1 some failed (their entries say why); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

from .arrays import Arrays
from .bundle import ROOT, BadInput, ncu_subset, pick, read_manifest, write_json
from .environment import import_tvm, loaded_libraries, setup_imports
from .ncu import bytes_per_call, parse_ncu_csv, run_ncu_mode
from .nvml import NVML, idle_power
from .timing import measure_variant


def parser() -> argparse.ArgumentParser:
    """The runner's arguments."""
    ap = argparse.ArgumentParser(description="Measure the variants of this explorer bundle (see runner/__init__.py).")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                    help="where to run (auto: the device the bundle was built for)")
    ap.add_argument("--variant", action="append", default=[], metavar="ID", help="variant id or pattern (repeatable)")
    ap.add_argument("--out", default=None, metavar="FILE", help="results JSON (default: results.json beside the runner, "
                                                                 "ncu-calls.json with --ncu)")
    ap.add_argument("--list", action="store_true", help="print the variant ids and exit")
    ap.add_argument("--ncu-subset", type=int, metavar="N", help="with --list: only N variants to profile with ncu")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats (default 5)")
    ap.add_argument("--min-repeat-ms", type=int, default=200, help="each repeat runs inferences for at least this long")
    ap.add_argument("--warmup", type=int, default=3, help="untimed inferences before timing (default 3)")
    ap.add_argument("--kernel-runs", type=int, default=5, help="instrumented inferences for per-kernel times (default 5)")
    ap.add_argument("--energy-window-s", type=float, default=1.0, help="seconds of inferences per energy window")
    ap.add_argument("--energy-windows", type=int, default=3, help="energy windows per variant (default 3)")
    ap.add_argument("--idle-every", type=int, default=5, help="measure idle power every N variants (default 5)")
    ap.add_argument("--settle-s", type=float, default=1.0, help="seconds idle before an idle-power window")
    ap.add_argument("--time-budget-s", type=float, default=0, help="start no variant after this many seconds (0: none)")
    ap.add_argument("--threads", type=int, help="CPU: TVM runtime threads")
    ap.add_argument("--outputs", metavar="DIR", help="also save each variant's first outputs as DIR/ID.npz")
    ap.add_argument("--resume", action="store_true", help="keep the variants --out already holds and measure the rest "
                                                           "(one that killed the runner is recorded as failed)")
    ap.add_argument("--outputs-max-mb", type=float, default=4.0, help="with --outputs: skip outputs larger than this")
    ap.add_argument("--ncu", action="store_true", help="one profiled inference per variant (run under ncu)")
    ap.add_argument("--parse-ncu", metavar="CSV", help="print bytes per kernel call from an ncu CSV (needs --calls)")
    ap.add_argument("--calls", metavar="JSON", help="the ncu-calls.json an --ncu run wrote")
    return ap


def results_header(manifest: dict, args, tvm, info: dict, dev, nvml: NVML | None, nvml_error: str | None) -> dict:
    """The results file before any variant: the bundle, this machine, the runtime, the options and the device."""
    device = args.device
    results = {
        "bundle": {"created": manifest["created"], "target": manifest["target"], "source": manifest.get("source"),
                   "tvm_version": manifest["tvm_version"]},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(), "platform": platform.platform(),
        "python": platform.python_version(), "device": {"kind": device},
        "tvm": {"file": tvm.__file__, "runtime_only": bool(tvm.base._RUNTIME_ONLY),
                "loaded": sorted(map(str, tvm.base._LOADED_LIBS)), "threads": int(tvm.runtime.num_threads()), **info},
        "options": {k: getattr(args, k) for k in ("repeat", "min_repeat_ms", "warmup", "kernel_runs", "energy_window_s",
                                                  "energy_windows", "idle_every", "settle_s")},
        "idle": [], "variants": [],
    }
    if nvml is not None:
        results["device"].update(nvml.info())
    elif device == "cuda":
        results["device"]["nvml_error"] = nvml_error
    if device == "cuda":
        for key, attr in (("cuda_name", "device_name"), ("compute_version", "compute_version")):
            try:
                results["device"][key] = getattr(dev, attr)
            except Exception:  # an attribute this runtime cannot query
                results["device"][key] = None
    return results


def resume(results: dict, out: Path, variants: list[dict]) -> list[dict]:
    """Take over what an earlier run wrote to ``out`` (one that died while measuring a variant: that one is
    recorded as failed); return the variants still to measure."""
    try:
        before = json.loads(out.read_text())
    except ValueError:
        before = {}
    results["variants"] = before.get("variants", [])
    results["idle"] = before.get("idle", [])
    crashed = before.get("running")
    done = {e["id"] for e in results["variants"]}
    if crashed and crashed not in done:
        v = next((v for v in variants if v["id"] == crashed), {"model": None, "strategy": None})
        results["variants"].append({"id": crashed, "model": v["model"], "strategy": v["strategy"],
                                    "status": "failed: the runner process died while measuring it"})
        done.add(crashed)
    return [v for v in variants if v["id"] not in done]


def measure_all(variants: list[dict], results: dict, out: Path, args, tvm, arrays: Arrays, dev,
                nvml: NVML | None) -> int:
    """Measure ``variants`` one after another, rewriting ``out`` after each; the number that failed."""
    started = time.perf_counter()
    failed = 0
    for i, variant in enumerate(variants):
        if args.time_budget_s and time.perf_counter() - started > args.time_budget_s:
            results["stopped"] = f"time budget of {args.time_budget_s:g} s spent before {variant['id']}"
            break
        if nvml is not None and i % max(args.idle_every, 1) == 0:
            results["idle"].append(idle_power(nvml, args.energy_window_s, args.settle_s))
        print(f"[{i + 1}/{len(variants)}] {variant['id']} ...", file=sys.stderr, flush=True)
        results["running"] = variant["id"]
        write_json(out, results)
        try:
            entry = measure_variant(tvm, variant, arrays, dev, args, nvml, results["idle"])
        except Exception as err:  # one failing variant never stops the others
            failed += 1
            last = (str(err).strip().splitlines() or [type(err).__name__])[-1][:300]
            entry = {"id": variant["id"], "model": variant["model"], "strategy": variant["strategy"],
                     "status": f"failed: {type(err).__name__}: {last}"}
        arrays.forget(set())
        entry["predicted"] = variant.get("predicted")
        results["variants"].append(entry)
        results["running"] = None
        line = entry["status"] if entry["status"] != "ok" else f"{entry['latency_s'] * 1e3:.4g} ms" + (
            f", {entry['energy_j'] * 1e3:.4g} mJ" if "energy_j" in entry else "")
        print(f"    {line}", file=sys.stderr, flush=True)
        results["loaded_libraries"] = loaded_libraries()
        write_json(out, results)
    if nvml is not None:
        results["idle"].append(idle_power(nvml, args.energy_window_s, args.settle_s))
    results["loaded_libraries"] = loaded_libraries()
    results["elapsed_s"] = time.perf_counter() - started
    write_json(out, results)
    return failed


def main(argv: list[str] | None = None) -> int:
    """Run the command; the exit code."""
    args = parser().parse_args(argv)
    try:
        manifest = read_manifest()
        if args.parse_ncu:
            if not args.calls or not args.variant:
                raise BadInput("--parse-ncu needs --calls ncu-calls.json and --variant ID")
            calls = json.loads(Path(args.calls).read_text())["calls"][args.variant[0]]
            print(json.dumps(bytes_per_call(parse_ncu_csv(Path(args.parse_ncu).read_text()), calls), indent=1))
            return 0
        if args.list:
            ids = ncu_subset(manifest, args.ncu_subset) if args.ncu_subset else [v["id"] for v in pick(manifest, args.variant)]
            print("\n".join(ids))
            return 0
        device = manifest.get("device", "cpu") if args.device == "auto" else args.device
        args.device = device
        variants = pick(manifest, args.variant)
        if args.threads:
            os.environ["TVM_NUM_THREADS"] = str(args.threads)
        info = setup_imports(manifest)
        tvm = import_tvm(device)
    except BadInput as err:
        print(f"measure_runner: {err}", file=sys.stderr)
        return 2
    dev = tvm.cuda(0) if device == "cuda" else tvm.cpu(0)
    if device == "cuda" and not dev.exist:
        print("measure_runner: no CUDA device (tvm.cuda(0) does not exist)", file=sys.stderr)
        return 2
    arrays = Arrays(manifest)
    out = Path(args.out) if args.out else ROOT / ("ncu-calls.json" if args.ncu else "results.json")
    if args.ncu:
        return run_ncu_mode(tvm, variants, arrays, dev, out)
    nvml, nvml_error = None, None
    if device == "cuda":
        try:
            nvml = NVML(0)
        except Exception as err:  # no pynvml, no driver's NVML, or no device: time without energy
            nvml_error = f"{type(err).__name__}: {err}"
    results = results_header(manifest, args, tvm, info, dev, nvml, nvml_error)
    if args.resume and out.is_file():  # a runner that crashed (a segfault inside TVM) or was stopped: go on
        variants = resume(results, out, variants)
    failed = measure_all(variants, results, out, args, tvm, arrays, dev, nvml)
    print(f"wrote {out}", file=sys.stderr)
    return 1 if failed else 0
