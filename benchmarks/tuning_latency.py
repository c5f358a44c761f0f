"""Measured CPU latency: untuned TVM, MetaSchedule-tuned TVM and onnxruntime, in one run.

For each model, sweeps ``fused`` and a tuned strategy on the ``cpu`` target (tuning whatever the
records database lacks: slow on 2 cores, see the README) and prints the median latency of each
(TVM's time evaluator after a warm-up; onnxruntime on the same input), with the ratios:

    python benchmarks/tuning_latency.py                       # resnet18, mobilenetv2, bert-mini
    python benchmarks/tuning_latency.py --models mlp --strategy fused-tuned --records /tmp/records
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,mobilenetv2,bert-mini")
    p.add_argument("--strategy", default="fused-tuned", help="the tuned strategy (default: fused-tuned)")
    p.add_argument("--records", help="tuning-records directory (default: the explorer's cache)")
    p.add_argument("--csv", help="also write the table here")
    args = p.parse_args()
    rows = []
    for model in args.models.split(","):
        start = time.perf_counter()
        result = run_sweep([model], targets=["cpu"], strategies=["fused", args.strategy], tuning_records=args.records)
        v = result.variants.set_index("strategy")
        untuned, tuned = v.loc["fused"], v.loc[args.strategy]
        ort = tuned["onnxruntime_latency_s"]
        rows.append({
            "model": model, "untuned ms": untuned["measured_latency_s"] * 1e3, "tuned ms": tuned["measured_latency_s"] * 1e3,
            "onnxruntime ms": ort * 1e3, "untuned/tuned": untuned["measured_latency_s"] / tuned["measured_latency_s"],
            "tuned/onnxruntime": tuned["measured_latency_s"] / ort, "kernels tuned now": tuned["tuned_kernels"],
            "trials now": tuned["tuning_trials"], "wall s": time.perf_counter() - start,
        })
        print(f"{model}: done in {rows[-1]['wall s']:.0f} s", file=sys.stderr)
    print_table(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
