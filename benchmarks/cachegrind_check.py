"""An independent check of the model's DRAM traffic: simulate the caches with valgrind's cachegrind.

For each model and strategy:

1. ``explorer run M --strategy S --target cpu-zen4 --mcpu haswell --repeat 1 --json`` natively: builds the
   variant (once; builds are cached) and gives the model's ``predicted_dram_bytes`` for one inference.
2. The same command under ``valgrind --tool=cachegrind --cache-sim=yes``, once with ``--repeat 1``
   and once with ``--repeat N``, with ``--cached-only`` (nothing is ever compiled under valgrind: the
   cached library is loaded with TVM's runtime library only) and ``TVM_NUM_THREADS=1``. The simulated
   first-level data cache (D1) and last-level cache (LL) are the ``l1`` and ``l3`` levels of the cpu
   ``cpu-zen4`` target file (whatever the host: cachegrind needs power-of-two set counts, which Zen 5's
   48 KiB 12-way L1 does not give with 8 ways), with 8 and 16 ways and 64-byte lines.
3. Simulated DRAM bytes per inference = (LLd misses(N) - LLd misses(1)) x 64 / (N - 1): the
   difference removes everything that is not inference (Python start-up, imports, loading the
   library and the model, preparing inputs), which is the same in both runs.

Why data-side LL misses (``LLd`` = ``DLmr`` + ``DLmw``) and not all ``LL misses``: the model predicts
the traffic of the *tensors* (kernel inputs, outputs, weights and spilled scratch). Instruction-fetch
misses (``ILmr``) are code (the interpreter, TVM's runtime, the kernels' machine code), which the model
does not count; most of it cancels in the difference, but code evicted by data and fetched again on
every inference would not, so it is left out explicitly.

What the two figures mean, and where they differ by construction:

* cachegrind counts a line fetched on every LL miss, reads and writes alike (it simulates
  write-allocate), and does not count write-backs of dirty lines; the model counts each kernel's
  input and output tensors once (``read_bytes`` + ``write_bytes``). An output written for the first
  time is one write-allocate fill in cachegrind and one write in the model, so the two are comparable,
  but neither is the real DRAM traffic of a write-back cache, which also writes dirty lines back.
* cachegrind simulates one D1 and one LL level (no L2, no hardware prefetcher, no other core), with
  LRU replacement and virtual addresses; reuse between kernels of tensors that stay in the 8 MiB LL
  lowers the simulated figure below the model's once-per-kernel count.
* The difference measures *steady-state* inferences: whatever is still in the LL from the previous
  inference (weights and activations of a model whose working set fits in 8 MiB) is not fetched
  again. So does the model: a tensor stays cached from one inference to the next when everything the
  inference touches in between fits beside it; only model inputs arrive cold. The check is meant for
  models whose weights exceed the LL (ResNet-18: 46.7 MB of weights), where the traffic is real.
* valgrind cannot execute AVX-512, which this machine's LLVM host CPU (cascadelake) would use, so the
  builds for this check use ``--mcpu haswell`` (AVX2). The schedule (loop nest, memory traffic) is
  the same; only the vector width of the generated code changes.

Under cachegrind one inference takes about 130 s for a haswell-built fused ResNet-18, and start-up
with the runtime-only library about 25 s; valgrind serialises threads, so ``--jobs`` valgrind
processes run in parallel (the machine has 2 cores).

    python benchmarks/cachegrind_check.py [--models resnet18,mobilenetv2,bert-mini]
        [--strategies baseline,fused] [--repeat 2] [--jobs 2] [--csv PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cost_models.targets import load_target  # noqa: E402
from explorer.core.units import fmt_bytes  # noqa: E402

LINE = 64
TOLERANCE = 1.5
TARGET = "cpu-zen4"  # the simulated caches and the predictions are this file's


def cache_sizes(target: str = TARGET) -> tuple[int, int]:
    """Capacities in bytes of the target's ``l1`` and ``l3`` levels (cachegrind's D1 and LL)."""
    levels = {m.name: int(m.capacity_bytes) for m in load_target(target).memory}
    return levels["l1"], levels["l3"]


def explorer_command(model: str, strategy: str, repeat: int, mcpu: str, cached_only: bool) -> list[str]:
    """The ``explorer run`` command line for one variant."""
    cmd = [sys.executable, "-m", "explorer.cli", "run", model, "--strategy", strategy, "--target", TARGET,
           "--mcpu", mcpu, "--repeat", str(repeat), "--json", "--quiet"]
    return cmd + (["--cached-only"] if cached_only else [])


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # one thread everywhere: valgrind serialises threads anyway, and idle pools only cost start-up
    env.update(TVM_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith(("==", "--"))]
    return lines[-1][:300] if lines else "(no output)"


def parse_cachegrind_out(path: str | Path) -> dict[str, int]:
    """The ``summary:`` totals of a cachegrind out file, by event name (``Ir``, ``DLmr``, ``DLmw``, ...)."""
    events, summary = None, None
    for line in Path(path).read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("summary:"):
            summary = [int(x) for x in line.split()[1:]]
    if events is None or summary is None:
        raise ValueError(f"{path}: no events/summary lines (is it a cachegrind out file?)")
    return dict(zip(events, summary))


def native_run(model: str, strategy: str, mcpu: str) -> dict:
    """Build (or reuse) the variant natively and run it once; the ``explorer run --json`` object."""
    proc = subprocess.run(explorer_command(model, strategy, 1, mcpu, cached_only=False), capture_output=True,
                          text=True, cwd=ROOT, env=_env())
    if proc.returncode != 0:
        raise RuntimeError(f"explorer run failed: {_last_line(proc.stderr)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cachegrind_run(model: str, strategy: str, repeat: int, mcpu: str, l1: int, l3: int,
                   timeout: float | None = None) -> dict[str, int]:
    """Run the cached variant ``repeat`` times under cachegrind; the summary event counts."""
    with tempfile.TemporaryDirectory(prefix="cachegrind-") as tmp:
        out = Path(tmp) / "cachegrind.out"
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", f"--D1={l1},8,{LINE}", f"--LL={l3},16,{LINE}",
               f"--cachegrind-out-file={out}", *explorer_command(model, strategy, repeat, mcpu, cached_only=True)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"valgrind run failed (exit {proc.returncode}): {_last_line(proc.stderr)}")
        return parse_cachegrind_out(out)


@dataclasses.dataclass
class Variant:
    model: str
    strategy: str
    predicted_bytes: float | None = None
    lld: dict = dataclasses.field(default_factory=dict)  # repeat -> LLd misses
    error: str = ""

    def simulated_bytes(self, n: int) -> float | None:
        if 1 not in self.lld or n not in self.lld:
            return None
        return (self.lld[n] - self.lld[1]) * LINE / (n - 1)

    def row(self, n: int) -> dict:
        sim = self.simulated_bytes(n)
        ratio = self.predicted_bytes / sim if sim and self.predicted_bytes is not None else None
        return {"model": self.model, "strategy": self.strategy, "predicted_bytes": self.predicted_bytes,
                "simulated_bytes": sim, "ratio": ratio,
                "within_1.5x": None if ratio is None else bool(1 / TOLERANCE <= ratio <= TOLERANCE),
                "lld_misses_1": self.lld.get(1), f"lld_misses_{n}": self.lld.get(n), "error": self.error}


def _bytes_or_dash(b) -> str:
    return "-" if b is None or b != b else fmt_bytes(b)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,mobilenetv2,bert-mini", help="comma-separated zoo models or .onnx files")
    p.add_argument("--strategies", default="baseline,fused", help="comma-separated strategy names")
    p.add_argument("--repeat", type=int, default=2, help="inferences in the long run (N >= 2; default 2)")
    p.add_argument("--jobs", type=int, default=2, help="processes run at once (default 2)")
    p.add_argument("--mcpu", default="haswell", help="LLVM CPU to build for; valgrind must be able to run it (default haswell)")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per valgrind run (default: none)")
    p.add_argument("--csv", help="also write the table to this CSV file")
    args = p.parse_args(argv)
    if args.repeat < 2:
        p.error("--repeat must be at least 2 (the figure is a difference between N and 1 inferences)")

    import pandas as pd

    l1, l3 = cache_sizes("cpu")
    n = args.repeat
    variants = [Variant(m, s) for m in args.models.split(",") if m for s in args.strategies.split(",") if s]
    print(f"cachegrind D1={l1},8,{LINE} LL={l3},16,{LINE}; mcpu {args.mcpu}; {len(variants)} variants, "
          f"runs of 1 and {n} inferences, {args.jobs} jobs", flush=True)
    start = time.perf_counter()
    pending: dict[Future, tuple[str, Variant, int, float]] = {}

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:8.1f} s] {msg}", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        def submit(kind: str, v: Variant, repeat: int = 1) -> None:
            fut = (pool.submit(native_run, v.model, v.strategy, args.mcpu) if kind == "native" else
                   pool.submit(cachegrind_run, v.model, v.strategy, repeat, args.mcpu, l1, l3, args.timeout))
            pending[fut] = (kind, v, repeat, time.perf_counter())

        for v in variants:
            submit("native", v)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                kind, v, repeat, t0 = pending.pop(fut)
                took = time.perf_counter() - t0
                label = f"{v.model}/{v.strategy} " + ("native build+run" if kind == "native" else f"cachegrind x{repeat}")
                try:
                    result = fut.result()
                except Exception as err:  # noqa: BLE001  (one failing run never stops the others)
                    v.error = v.error or f"{label}: {err}"
                    log(f"FAILED {label} ({took:.1f} s): {err}")
                    continue
                if kind == "native":
                    v.predicted_bytes = result["predicted_dram_bytes"]
                    log(f"done {label} ({took:.1f} s): predicted {fmt_bytes(v.predicted_bytes)}, "
                        f"{'cached build' if result['build_cached'] else 'built'}")
                    for r in (n, 1):  # the long run first: it finishes last
                        submit("cachegrind", v, r)
                else:
                    lld = result["DLmr"] + result["DLmw"]
                    v.lld[repeat] = lld
                    log(f"done {label} ({took:.1f} s): LLd misses {lld:,}")

    table = pd.DataFrame([v.row(n) for v in variants])
    shown = pd.DataFrame({
        "model": table["model"], "strategy": table["strategy"],
        "predicted": table["predicted_bytes"].map(_bytes_or_dash),
        "simulated": table["simulated_bytes"].map(_bytes_or_dash),
        "predicted/simulated": table["ratio"].map(lambda r: "-" if r is None or pd.isna(r) else f"{r:.2f}"),
        f"within {TOLERANCE}x": table["within_1.5x"].map(lambda w: "-" if w is None or pd.isna(w) else ("yes" if w else "no")),
    })
    print()
    print(shown.to_string(index=False))
    for v in variants:
        if v.error:
            print(f"{v.model}/{v.strategy}: {v.error}", file=sys.stderr)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 1 if any(v.error for v in variants) else 0


if __name__ == "__main__":
    sys.exit(main())
