"""The explorer's CPU builds against onnxruntime on this machine, in one run, per precision.

For each model, sweeps on the ``cpu`` target the untuned builds of each precision in both layouts
(``fused`` and ``fused-nhwc`` in fp32; ``fused-int8`` and ``fused-nhwc-int8``), and with
``--trials N`` also both precisions tuned with that budget from the records in ``--records``
(empty records: tuning from scratch, slow on 2 cores; the tuning time is printed). Both runtimes
use the threads of the ``cpu`` target. Prints the median latency of the untuned ``fused`` builds,
of the tuned ones and of the best build of each precision beside onnxruntime's at the same precision
(fp32 as exported; int8 its own static QDQ build on the same calibration inputs), with the ratios
(build / onnxruntime: below 1 beats it):

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
    fp32 = ["fused", "fused-nhwc"]
    int8 = ["fused-int8", "fused-nhwc-int8"]
    if args.trials:
        fp32.append(Strategy("fused-tuned-bench", fusion="tvm", tuning=f"metaschedule:{args.trials}"))
        int8.append(Strategy("fused-int8-tuned-bench", fusion="tvm", precision="int8",
                             tuning=f"metaschedule:{args.trials}"))
    rows = []
    for model in args.models.split(","):
        start = time.perf_counter()
        result = run_sweep([model], targets=["cpu"], strategies=fp32 + int8, tuning_records=args.records,
                           progress=False)
        v = result.variants.set_index("strategy")
        ms = v["measured_latency_s"] * 1e3
        ort_fp32 = v.loc["fused", "onnxruntime_latency_s"] * 1e3
        ort_int8 = v.loc["fused-int8", "onnxruntime_int8_latency_s"] * 1e3
        best_fp32 = ms[[s if isinstance(s, str) else s.name for s in fp32]].idxmin()
        best_int8 = ms[[s if isinstance(s, str) else s.name for s in int8]].idxmin()
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
                    "int8 / fp32 (best)": ms[best_int8] / ms[best_fp32], "threads": v.loc["fused", "tvm_threads"]})
        if args.trials:
            row.update({"trials": f"{args.trials} per strategy", "tuning s": result.phases_s.get("compile", 0.0)})
        row["wall s"] = time.perf_counter() - start
        rows.append(row)
        print(f"{model}: done in {row['wall s']:.0f} s", file=sys.stderr)
    print_table(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
