"""How fast the README's quick-start sweep is from empty caches, where its time goes, and how fast again.

Runs ``explorer sweep MODEL --targets cpu,gpu,npu --strategies all --out DIR`` from a fresh cache with the
default number of workers, then the same command again (which should compile nothing), and with
``--jobs-1`` also once with one worker. Prints the seconds of each against the quick start's budget
(issue 38: at most 60 s from cold caches), the sweep's own split into phases (prepare, compile, time,
score), the workers' seconds (TVM's compile, the TIR analysis, nvcc on the CUDA and the CPU libraries'
export), and the compile seconds per lowering (the ``generic`` one serves ``cpu`` and ``npu``; ``cuda``
serves ``gpu``), with the ratios: rerun speed-up (first / again) and parallel speed-up (jobs 1 / default).

    python benchmarks/sweep_speed.py [--model resnet18] [--targets cpu,gpu,npu] [--strategies all] [--jobs-1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

#: The quick start's budget from cold caches, in seconds (issue 38).
BUDGET_S = 60.0

#: Which lowering compiles each shipped target's variants (the generic one serves the analysis-only npu).
LOWERING = {"cpu": "generic", "npu": "generic", "gpu": "cuda", "h200": "cuda", "b200": "cuda", "mi300x": "rocm"}


def run(args: list[str], cache: str) -> tuple[float, str]:
    """Seconds the CLI took, and its wall-split line."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "explorer.cli", "sweep", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "EXPLORER_CACHE": cache, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    split = next((line for line in proc.stdout.splitlines() if line.startswith("wall ")), "")
    return seconds, split


def per_lowering(variants_csv: Path) -> pd.DataFrame:
    """Compile seconds (TVM's compile and the analysis) per lowering: count, sum and largest."""
    v = pd.read_csv(variants_csv)
    v["lowering"] = v["target"].map(LOWERING).fillna(v["target"])
    one = v.drop_duplicates(["strategy", "lowering"])  # targets sharing a lowering share its compile
    return one.groupby("lowering")["compile_s"].agg(lowerings="count", seconds="sum", largest="max").round(1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--targets", default="cpu,gpu,npu")
    p.add_argument("--strategies", default="all")
    p.add_argument("--jobs-1", action="store_true", help="also sweep with one worker (the parallel speed-up)")
    a = p.parse_args()
    base = [a.model, "--targets", a.targets, "--strategies", a.strategies, "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        cold, split_cold = run([*base, "--out", f"{tmp}/many"], f"{tmp}/cache-many")
        lowerings = per_lowering(Path(tmp) / "many" / "variants.csv")
        again, split_again = run([*base, "--out", f"{tmp}/many"], f"{tmp}/cache-many")
        one, split_one = run([*base, "--jobs", "1", "--out", f"{tmp}/one"], f"{tmp}/cache-one") if a.jobs_1 else (0, "")
    print(f"{'run':<26} {'seconds':>8}  split")
    runs = [("cold caches, default jobs", cold, split_cold), ("again (from the store)", again, split_again)]
    if a.jobs_1:
        runs.append(("cold caches, --jobs 1", one, split_one))
    for name, s, split in runs:
        print(f"{name:<26} {s:8.1f}  {split}")
    print(f"\ncompile per lowering (TVM's compile and the TIR analysis, in workers):\n{lowerings.to_string()}")
    print(f"\ncold sweep / the quick start's {BUDGET_S:.0f} s budget: {cold / BUDGET_S:.2f}")
    print(f"rerun speed-up (cold / again): {cold / again:.1f}x")
    if a.jobs_1:
        print(f"parallel speed-up (jobs 1 / default): {one / cold:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
