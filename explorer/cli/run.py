"""``explorer run``: build one variant for this CPU (cached) and time inferences."""

from __future__ import annotations

import sys

from explorer.cli.arguments import calibration_arg, model_args
from explorer.core.units import fmt_si


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    r = sub.add_parser("run", help="build one variant for this CPU (cached) and time inferences")
    model_args(r)
    r.add_argument("--strategy", default="fused", help="strategy name (default: fused)")
    r.add_argument("--target", default="cpu", help="an llvm target that runs here, for the predicted figures (default: cpu)")
    r.add_argument("--repeat", type=int, default=10, help="number of timed inferences (default: 10)")
    r.add_argument("--mcpu", help="LLVM CPU to build for (default: this host's CPU)")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    r.add_argument("--cached-only", action="store_true",
                   help="never compile: fail when the build is not in the cache (predicted figures are "
                        "omitted when only they are missing)")
    r.add_argument("--inputs", metavar="DIR",
                   help="real inputs: .npy files (a folder per input for models with several); the first sample "
                        "is timed, all calibrate int8 (default: a seeded sample)")
    calibration_arg(r)
    r.set_defaults(func=run)


#: Keys of ``explorer run --json``.
RUN_JSON_KEYS = ("model", "strategy", "target", "mcpu", "repeat", "latency_ms", "latency_median_ms", "latency_min_ms",
                 "latency_max_ms", "predicted_dram_bytes", "predicted_energy_j", "predicted_latency_s",
                 "build_cached", "library", "threads")


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    import json

    from explorer.deploy.run import run_variant
    from explorer.model.arguments import parse_input_shapes, parse_input_values

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    r = run_variant(args.model, strategy=args.strategy, target=args.target, repeat=args.repeat, mcpu=args.mcpu,
                    input_shapes=parse_input_shapes(args.input_shape), cached_only=args.cached_only,
                    progress=progress, input_values=parse_input_values(args.input_value), inputs=args.inputs,
                    calibration=args.calibration)
    if args.json:
        print(json.dumps({k: r[k] for k in RUN_JSON_KEYS}))
        return 0
    print(f"{r['model']} / {r['strategy']} on {r['target']} (mcpu {r['mcpu']}), "
          f"{'cached build' if r['build_cached'] else 'built now'}: {r['repeat']} run{'s' if r['repeat'] > 1 else ''} "
          f"with {r['threads']} thread{'s' if r['threads'] > 1 else ''}")
    print(f"latency: median {r['latency_median_ms']:.3f} ms, min {r['latency_min_ms']:.3f} ms, "
          f"max {r['latency_max_ms']:.3f} ms")
    if r["predicted_energy_j"] is None:
        print("predicted: not cached for the current cost model (run without --cached-only)")
    else:
        print(f"predicted: energy {fmt_si(r['predicted_energy_j'], 'J')}, DRAM {fmt_si(r['predicted_dram_bytes'], 'B')}, "
              f"latency {fmt_si(r['predicted_latency_s'], 's')}")
    return 0
