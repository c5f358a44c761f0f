"""The explorer's CPU builds against onnxruntime on this machine, in one run, per precision.

For each model, sweeps ``fused`` (fp32) and ``fused-int8`` on the ``cpu`` target, and with
``--trials N`` also ``fused-tuned`` from the records in ``--records`` (empty records: tuning from
scratch, slow on 2 cores). Both runtimes use the threads of the ``cpu`` target. Prints the median
latency of each build beside onnxruntime's at the same precision (fp32 as exported; int8 its own
static QDQ build on the same calibration inputs), with the ratios (build / onnxruntime: below 1
beats it):

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

from _table import print_table  # noqa: E402
from explorer import run_sweep  # noqa: E402
from explorer.strategies import Strategy  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,mobilenetv2,bert-mini,yolo-block")
    p.add_argument("--trials", type=int, default=0, help="also tune fused fp32 with this budget (default: no tuning)")
    p.add_argument("--records", help="tuning-records directory (default: the explorer's cache)")
    p.add_argument("--csv", help="also write the table here")
    args = p.parse_args()
    strategies: list = ["fused", "fused-int8"]
    if args.trials:
        strategies.append(Strategy("fused-tuned-bench", fusion="tvm", tuning=f"metaschedule:{args.trials}"))
    rows = []
    for model in args.models.split(","):
        start = time.perf_counter()
        result = run_sweep([model], targets=["cpu"], strategies=strategies, tuning_records=args.records,
                           progress=False)
        v = result.variants.set_index("strategy")
        ort_fp32 = v.loc["fused", "onnxruntime_latency_s"]
        ort_int8 = v.loc["fused-int8", "onnxruntime_int8_latency_s"]
        row = {"model": model, "onnxruntime fp32 ms": ort_fp32 * 1e3,
               "untuned fp32 ms": v.loc["fused", "measured_latency_s"] * 1e3,
               "untuned fp32 / ort": v.loc["fused", "measured_latency_s"] / ort_fp32,
               "onnxruntime int8 ms": ort_int8 * 1e3,
               "untuned int8 ms": v.loc["fused-int8", "measured_latency_s"] * 1e3,
               "untuned int8 / ort int8": v.loc["fused-int8", "measured_latency_s"] / ort_int8,
               "threads": v.loc["fused", "tvm_threads"]}
        if args.trials:
            tuned = v.loc["fused-tuned-bench"]
            row.update({"tuned fp32 ms": tuned["measured_latency_s"] * 1e3,
                        "tuned fp32 / ort": tuned["measured_latency_s"] / ort_fp32,
                        "trials now": tuned["tuning_trials"]})
        row["wall s"] = time.perf_counter() - start
        rows.append(row)
        print(f"{model}: done in {row['wall s']:.0f} s", file=sys.stderr)
    print_table(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
