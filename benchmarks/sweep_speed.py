"""How fast a sweep is from empty caches, with one worker and with the default, and again from its store.

Runs ``explorer sweep MODEL --targets cpu,gpu,npu --strategies all --out DIR`` three times, each in a
fresh cache of its own: with ``--jobs 1``, with the default number of workers, and the default run's
command again (which should compile nothing). Prints the seconds of each, the sweep's own split into
phases, and the ratios: parallel speed-up (jobs 1 / default) and rerun speed-up (first / again).

    python benchmarks/sweep_speed.py [--model resnet18] [--targets cpu,gpu,npu] [--strategies all]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], cache: str) -> tuple[float, str]:
    """Seconds the CLI took, and its wall-split line."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "explorer.cli", "sweep", *args, "--quiet"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "EXPLORER_CACHE": cache, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    split = next((line for line in proc.stdout.splitlines() if line.startswith("wall ")), "")
    return seconds, split


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--targets", default="cpu,gpu,npu")
    p.add_argument("--strategies", default="all")
    a = p.parse_args()
    base = [a.model, "--targets", a.targets, "--strategies", a.strategies]
    with tempfile.TemporaryDirectory() as tmp:
        one, split_one = run([*base, "--jobs", "1", "--out", f"{tmp}/one"], f"{tmp}/cache-one")
        many, split_many = run([*base, "--out", f"{tmp}/many"], f"{tmp}/cache-many")
        again, split_again = run([*base, "--out", f"{tmp}/many"], f"{tmp}/cache-many")
    print(f"{'run':<22} {'seconds':>8}  split")
    for name, s, split in (("--jobs 1", one, split_one), ("default jobs", many, split_many),
                           ("default jobs, again", again, split_again)):
        print(f"{name:<22} {s:8.1f}  {split}")
    print(f"\nparallel speed-up (jobs 1 / default): {one / many:.2f}x")
    print(f"rerun speed-up (first / again): {many / again:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
