"""How true the latency model is: modelled against measured latency of every CPU variant and kernel.

Sweeps each model on the ``cpu`` target (the file describing this host, see ``explorer doctor``) under
every untuned CPU strategy, plus the tuned ones where the tuning records hold trials for the model
(``--tuned``: tuned strategies are only scheduled from records, never tuned here). Every build runs on
this machine: its end-to-end median is ``measured_latency_s``, each kernel call's median (timed
around the VM's calls) ``measured_s``. Nothing in the latency model is fitted to these times: its
figures are the target file's (cited, or measured by ``benchmarks/cpu_microbench.py``).

Prints, per variant, the modelled latency, the measured one and their ratio; then across all
variants the median ratio, the Spearman rank correlation, and per model the spread of the ratio
(worst- over best-predicted strategy); and across kernels the median ratio, the worst and the
Spearman correlation. Kernels shorter than ``--min-kernel-us`` are left out of the kernel figures:
the timing callback around each call costs about a microsecond of its own.

Latency on a shared machine drifts by a quarter or more within minutes, so after each model's sweep
its builds are timed again in ``--rounds`` interleaved rounds (each a median of 5 repeats; 0: keep the
sweep's own figure), and the variant's measured latency is the median over the rounds: the strategies
of a model, which the spread compares, then share whatever the machine did. The fastest round
(``measured_min_latency_s``) is reported beside it, with its own summary line: other tenants of a shared
machine only ever slow a run (on the Zen 4 VM, mobilenetv2's and yolo-block's memory-heavy builds took up
to 2x as long for minutes at a time while a dependent-FMA loop kept its rate), so the quietest round is
the figure closest to what the model describes, an otherwise idle machine.

    python benchmarks/latency_truth.py [--models mlp,resnet18,...] [--strategies a,b] [--tuned] [--rounds 5] [--csv PATH]
    python benchmarks/latency_truth.py --models gpt2 --phase decode:128 --kv-cache-dtype float16   # a decoder
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _table import print_table  # noqa: E402

from cost_models.targets import load_target  # noqa: E402
from explorer import list_strategies, run_sweep  # noqa: E402
from explorer.core.strategies import get_strategy  # noqa: E402
from explorer.core.variant import TimingRequest  # noqa: E402
from explorer.host.cpu import timing_threads  # noqa: E402
from explorer.measure.agreement import spearman  # noqa: E402
from explorer.model.int8_calibration import calibrate  # noqa: E402
from explorer.model.phases import Phase, parse_phases  # noqa: E402
from explorer.model.prepare import prepare  # noqa: E402
from explorer.store.builds import library_path
from explorer.sweep.reference import reference  # noqa: E402
from explorer.sweep.timing import LocalTimer  # noqa: E402
from explorer.tvm.compiler_facts import resolve_mcpu

MODELS = ("mlp", "resnet18", "resnet50", "mobilenetv2", "bert-mini", "yolo-block")


def interleaved_latency_s(model: str, strategies: list[str], rounds: int, phase: Phase | None = None,
                          kv_cache_dtype: str = "auto") -> dict[str, list[float]]:
    """Seconds of each strategy's cached CPU library on the check input in each of ``rounds`` rounds
    that time every library once each, with the ``cpu`` target's threads (a decoder in ``phase``)."""
    prepared = prepare(model, phase=phase, kv_cache_dtype=kv_cache_dtype)
    ref = reference(prepared)
    cal = calibrate(prepared) if any(get_strategy(s).precision == "int8" for s in strategies) else None
    mcpu = resolve_mcpu()
    libraries = {s: str(library_path(prepared, get_strategy(s), mcpu,
                                     cal.key if get_strategy(s).precision == "int8" else "")) for s in strategies}
    timer = LocalTimer(timing_threads(load_target("cpu")), isolate=True)
    runs: dict[str, list[float]] = {s: [] for s in libraries}
    try:
        for _ in range(rounds):
            names = list(libraries)
            requests = [TimingRequest(libraries[n], tuple(ref.inputs), 5) for n in names]
            for i, measured in timer.map(requests, [None] * len(requests)):
                if hasattr(measured, "latency_runs_s"):
                    runs[names[i]].append(float(np.median(measured.latency_runs_s)))
    finally:
        timer.close()
    return {s: r for s, r in runs.items() if r}


def summary(variants: pd.DataFrame, kernels: pd.DataFrame, min_kernel_s: float,
            measured: str = "measured_latency_s") -> dict:
    """The figures the issue asks for, from swept variants (their ``measured`` column) and kernels that ran."""
    variants = variants.assign(measured_latency_s=variants[measured])
    ratio = variants["latency_s"] / variants["measured_latency_s"]
    spread = (variants.assign(ratio=ratio).groupby("model")["ratio"].agg(lambda r: r.max() / r.min()))
    timed = kernels[kernels["measured_s"] >= min_kernel_s]
    kratio = timed["latency_s"] / timed["measured_s"]
    return {
        "variants": len(variants), "median_ratio": float(ratio.median()),
        "spearman": spearman(variants["latency_s"], variants["measured_latency_s"]),
        "worst_model_spread": float(spread.max()), "spread_by_model": spread.to_dict(),
        "kernels": len(timed), "kernel_median_ratio": float(kratio.median()),
        "kernel_ratio_p10": float(kratio.quantile(0.1)), "kernel_ratio_p90": float(kratio.quantile(0.9)),
        "kernel_worst_ratio": float(kratio.iloc[np.argmax(np.abs(np.log(kratio.to_numpy())))]) if len(kratio) else float("nan"),
        "kernel_spearman": spearman(timed["latency_s"], timed["measured_s"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo models or .onnx files")
    ap.add_argument("--strategies", default="", help="comma-separated strategies (default: every untuned one)")
    ap.add_argument("--tuned", action="store_true", help="also the tuned strategies, from the tuning records")
    ap.add_argument("--min-kernel-us", type=float, default=20.0, help="shortest kernel call counted (default 20 us)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved re-timing rounds per model (default 5; 0: none)")
    ap.add_argument("--csv", default="", help="also write the variants' table to this CSV file")
    ap.add_argument("--out", default="", help="keep the sweeps here (default: a temporary directory)")
    ap.add_argument("--phase", default="", help="a decoder's phase (prefill:P or decode:L), e.g. for gpt2")
    ap.add_argument("--kv-cache-dtype", default="auto", help="the dtype a phase keeps its cache in (default: auto)")
    args = ap.parse_args()
    phase = parse_phases(args.phase)[0] if args.phase else None

    target = load_target("cpu")
    print(f"target cpu = {target.file}: {'describes this host' if target.describes_host else 'does NOT describe this host'}")
    if args.strategies:
        strategies = args.strategies.split(",")
    else:
        strategies = [s.name for s in list_strategies() if not s.tuned or args.tuned]
    out = Path(args.out or tempfile.mkdtemp(prefix="latency-truth-"))
    variants, kernels = [], []
    for model in args.models.split(","):
        result = run_sweep([model], targets=["cpu"], strategies=strategies, out=out / Path(model).stem,
                           phases=[phase] if phase else None, kv_cache_dtype=args.kv_cache_dtype)
        ran = result.variants[result.variants["measured_latency_s"].notna()].copy()
        if args.rounds and len(ran):
            retimed = interleaved_latency_s(model, list(ran["strategy"]), args.rounds, phase, args.kv_cache_dtype)
            ran["measured_min_latency_s"] = [min(retimed[s]) if s in retimed else m
                                             for s, m in zip(ran["strategy"], ran["measured_latency_s"])]
            ran["measured_latency_s"] = [float(np.median(retimed[s])) if s in retimed else m
                                         for s, m in zip(ran["strategy"], ran["measured_latency_s"])]
        else:
            ran["measured_min_latency_s"] = ran["measured_latency_s"]
        variants.append(ran)
        kernels.append(result.kernels[result.kernels["strategy"].isin(ran["strategy"])])
    v, k = pd.concat(variants, ignore_index=True), pd.concat(kernels, ignore_index=True)
    v = v.assign(ratio=v["latency_s"] / v["measured_latency_s"])
    print_table(v[["model", "strategy", "latency_s", "measured_latency_s", "ratio", "measured_min_latency_s", "bound",
                   "kernel_time_share"]].to_dict("records"), csv=args.csv or None)
    for label, column in (("median of the rounds", "measured_latency_s"), ("fastest round", "measured_min_latency_s")):
        s = summary(v, k, args.min_kernel_us * 1e-6, column)
        print(f"\n{s['variants']} variants, measured as the {label}: median modelled/measured {s['median_ratio']:.2f}, "
              f"Spearman {s['spearman']:.3f}, worst within-model spread {s['worst_model_spread']:.2f}x")
        print("spread by model: " + ", ".join(f"{m} {x:.2f}x" for m, x in s["spread_by_model"].items()))
    print(f"{s['kernels']} kernel calls of at least {args.min_kernel_us:g} us: median {s['kernel_median_ratio']:.2f}, "
          f"10-90% {s['kernel_ratio_p10']:.2f}-{s['kernel_ratio_p90']:.2f}, worst {s['kernel_worst_ratio']:.3g}, "
          f"Spearman {s['kernel_spearman']:.3f}")


if __name__ == "__main__":
    main()
