"""The explorer's CPU builds against onnxruntime on this machine, in one run, per precision.

For each model, sweeps on the ``cpu`` target the untuned builds of each precision in both layouts
(``fused`` and ``fused-nhwc`` in fp32; ``fused-int8`` and ``fused-nhwc-int8``; ``fused-bf16`` and
``fused-nhwc-bf16``, which onnxruntime's CPU provider has no fast build of, so the best bf16 build is
set beside onnxruntime's fp32 and the best fp32 build), and with
``--trials N`` also both precisions tuned with that budget from the records in ``--records``
(empty records: tuning from scratch, slow on 2 cores; the tuning time is printed). Both runtimes
use the threads of the ``cpu`` target. Prints the median latency of the untuned ``fused`` builds,
of the tuned ones and of the best build of each precision beside onnxruntime's at the same precision
(fp32 as exported; int8 its own static QDQ build on the same calibration inputs), with the ratios
(build / onnxruntime: below 1 beats it), and how many fp32 builds' outputs match onnxruntime's.

Latency on a shared machine drifts by a quarter within minutes, so the sweep's own measurements
(cached, and onnxruntime's from whenever it was first timed) are not what the ratios use: after the
sweep, every build and both onnxruntime builds are timed again in ``--rounds`` interleaved rounds
(each a median of 5 repeats), and each figure is the median over the rounds:

    python benchmarks/builds_vs_onnxruntime.py
    python benchmarks/builds_vs_onnxruntime.py --models resnet18 --trials 512 --records /tmp/empty-records
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _table import print_table  # noqa: E402

from cost_models.targets import load_target  # noqa: E402
from explorer import run_sweep  # noqa: E402
from explorer.core.strategies import Strategy, get_strategy  # noqa: E402
from explorer.core.variant import Failure, TimingRequest  # noqa: E402
from explorer.host.cpu import timing_threads  # noqa: E402
from explorer.model.int8_calibration import calibrate, calibration_feeds  # noqa: E402
from explorer.model.prepare import prepare  # noqa: E402
from explorer.store.builds import library_path
from explorer.sweep.ort_int8 import quantized_path  # noqa: E402
from explorer.sweep.reference import onnxruntime_latency, reference  # noqa: E402
from explorer.sweep.timing import LocalTimer  # noqa: E402
from explorer.tvm.compiler_facts import resolve_mcpu


def paired_latencies_ms(model: str, strategies: list, rounds: int) -> tuple[dict[str, float], float, float]:
    """Median ms of each strategy's cached CPU library and of onnxruntime fp32 and int8 on the check
    input, timed in ``rounds`` interleaved rounds with the ``cpu`` target's threads."""
    prepared = prepare(model)
    ref = reference(prepared)
    cal = calibrate(prepared)
    mcpu, threads = resolve_mcpu(), timing_threads(load_target("cpu"))
    libraries = {}
    for s in strategies:
        strategy = s if isinstance(s, Strategy) else get_strategy(s)
        key = cal.key if strategy.precision == "int8" else ""
        libraries[strategy.name] = str(library_path(prepared, strategy, mcpu, key))
    int8_model = str(quantized_path(prepared, calibration_feeds(prepared)[0], cal.key))
    timer = LocalTimer(threads, isolate=True)
    runs: dict[str, list[float]] = {name: [] for name in [*libraries, "ort fp32", "ort int8"]}
    try:
        for _ in range(rounds):
            names = list(libraries)
            requests = [TimingRequest(libraries[n], tuple(ref.inputs), 5) for n in names]
            for i, measured in timer.map(requests, [None] * len(requests)):
                if isinstance(measured, Failure):  # one failed round does not end the run: it is said and left out
                    print(f"{model}: {names[i]} did not time in this round: {measured.status}", file=sys.stderr)
                    continue
                runs[names[i]].append(float(np.median(measured.latency_runs_s)))
            runs["ort fp32"].append(onnxruntime_latency(prepared, ref.feed(prepared), 5, threads=threads))
            runs["ort int8"].append(onnxruntime_latency(int8_model, ref.feed(prepared), 5, threads=threads))
    finally:
        timer.close()
    ms = {name: float(np.median(r)) * 1e3 if r else float("nan") for name, r in runs.items()}
    return {n: ms[n] for n in libraries}, ms["ort fp32"], ms["ort int8"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,mobilenetv2,bert-mini,yolo-block")
    p.add_argument("--trials", type=int, default=0, help="also tune fused fp32 with this budget (default: no tuning)")
    p.add_argument("--records", help="tuning-records directory (default: the explorer's cache)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds after the sweep (default 5)")
    p.add_argument("--csv", help="also write the table here")
    args = p.parse_args()
    fp32 = ["fused", "fused-nhwc"]
    int8 = ["fused-int8", "fused-nhwc-int8"]
    bf16 = ["fused-bf16", "fused-nhwc-bf16"]
    if args.trials:
        fp32.append(Strategy("fused-tuned-bench", fusion="tvm", tuning=f"metaschedule:{args.trials}"))
        int8.append(Strategy("fused-int8-tuned-bench", fusion="tvm", precision="int8",
                             tuning=f"metaschedule:{args.trials}"))
    rows = []
    for model in args.models.split(","):
        start = time.perf_counter()
        result = run_sweep([model], targets=["cpu"], strategies=fp32 + int8 + bf16, tuning_records=args.records,
                           progress=False)
        v = result.variants.set_index("strategy")
        failed = list(v.index[v["measured_latency_s"].isna()])
        if failed:
            raise SystemExit(f"{model}: {', '.join(failed)} did not run: {v.loc[failed, 'status'].tolist()}")
        times, ort_fp32, ort_int8 = paired_latencies_ms(model, fp32 + int8 + bf16, args.rounds)
        ms = pd.Series(times)
        exact = v[v.precision == "fp32"]  # int8 rows have no tolerance: their error is quantization's
        best_fp32 = ms[[s if isinstance(s, str) else s.name for s in fp32]].idxmin()
        best_int8 = ms[[s if isinstance(s, str) else s.name for s in int8]].idxmin()
        best_bf16 = ms[bf16].idxmin()
        row = {"model": model, "ort fp32 ms": ort_fp32, "untuned fp32 ms": ms["fused"],
               "untuned / ort": ms["fused"] / ort_fp32}
        if args.trials:
            row.update({"tuned fp32 ms": ms["fused-tuned-bench"], "tuned / ort": ms["fused-tuned-bench"] / ort_fp32})
        row.update({"best fp32": best_fp32, "best fp32 / ort": ms[best_fp32] / ort_fp32,
                    "ort int8 ms": ort_int8, "untuned int8 ms": ms["fused-int8"],
                    "untuned int8 / ort int8": ms["fused-int8"] / ort_int8})
        if args.trials:
            row.update({"tuned int8 ms": ms["fused-int8-tuned-bench"],
                        "tuned int8 / ort int8": ms["fused-int8-tuned-bench"] / ort_int8})
        row.update({"best int8": best_int8, "best int8 / ort int8": ms[best_int8] / ort_int8,
                    "int8 / fp32 (best)": ms[best_int8] / ms[best_fp32], "best bf16": best_bf16,
                    "best bf16 ms": ms[best_bf16], "best bf16 / ort fp32": ms[best_bf16] / ort_fp32,
                    "bf16 / fp32 (best)": ms[best_bf16] / ms[best_fp32], "threads": v.loc["fused", "tvm_threads"],
                    "fp32 outputs match": f"{int(exact.within_tolerance.sum())} of {len(exact)}"})
        if args.trials:
            row.update({"trials": f"{args.trials} per strategy", "tuning s": result.phases_s.get("compile", 0.0)})
        row["wall s"] = time.perf_counter() - start
        rows.append(row)
        print(f"{model}: done in {row['wall s']:.0f} s", file=sys.stderr)
    print_table(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
