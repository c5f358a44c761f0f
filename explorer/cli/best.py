"""``explorer best``: choose the best variant under latency and accuracy limits and export its build."""

from __future__ import annotations

from explorer.cli.arguments import calibration_arg, model_args


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    b = sub.add_parser("best", help="choose the best variant under latency and accuracy limits and export its build")
    model_args(b)
    b.add_argument("--target", default="cpu", help="a CPU target that runs here (default: cpu)")
    b.add_argument("--objective", choices=("energy", "latency", "edp"), default="energy",
                   help="what to minimise: modelled energy, latency (measured where measured), or their product "
                        "(default: energy)")
    b.add_argument("--max-latency-ms", type=float, metavar="MS", help="latency limit per inference")
    b.add_argument("--max-accuracy-loss", type=float, default=1.0, metavar="PCT",
                   help="a reduced-precision build is chosen only within this relative L2 error of its outputs "
                        "against fp32, in percent (default: 1)")
    b.add_argument("--from", dest="from_run", metavar="RUN",
                   help="choose among the variants of this sweep's --out directory (read from its store) "
                        "instead of sweeping now")
    b.add_argument("--strategies", default="all", help="strategies to sweep without --from (default: all untuned)")
    b.add_argument("--portable", action="store_true", help="compile for generic x86-64 (runs on any x86 machine) "
                                                           "instead of this host's CPU")
    b.add_argument("--inputs", metavar="DIR", help="real inputs, as for sweep: the first is the check input")
    calibration_arg(b)
    b.add_argument("-o", "--out", required=True, metavar="DIR", help="directory to export the build into")
    b.set_defaults(func=run)


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    from explorer.core.errors import InputError
    from explorer.deploy.best import Limits, objective_text
    from explorer.deploy.export import export_best
    from explorer.model.arguments import parse_input_shapes, parse_input_values

    if args.max_latency_ms is not None and args.max_latency_ms <= 0:
        raise InputError(f"--max-latency-ms must be positive, got {args.max_latency_ms:g}")
    if args.max_accuracy_loss < 0:
        raise InputError(f"--max-accuracy-loss must not be negative, got {args.max_accuracy_loss:g}")
    limits = Limits(None if args.max_latency_ms is None else args.max_latency_ms / 1e3, args.max_accuracy_loss)
    done = export_best(args.model, target=args.target, objective=args.objective, out=args.out, limits=limits,
                       run=args.from_run, strategies=args.strategies, portable=args.portable, progress=not args.quiet,
                       input_shapes=parse_input_shapes(args.input_shape),
                       input_values=parse_input_values(args.input_value), calibration=args.calibration,
                       inputs=args.inputs)
    m = done.manifest
    shown = done.candidates[["strategy", "energy_j", "latency_used_s", "accuracy_loss_pct", "ineligible_because"]]
    print(shown.rename(columns={"latency_used_s": "latency_s", "ineligible_because": "not chosen because"})
          .to_string(index=False))
    value = float(done.candidates.iloc[0]["objective_value"])
    print(f"\nbest by {m.objective}: {m.strategy['name']} ({objective_text(m.objective, value)}); accuracy loss "
          f"{'n/a' if m.accuracy_loss_pct is None else f'{m.accuracy_loss_pct:.3g}%'} "
          f"(limit {m.max_accuracy_loss_pct:g}%)")
    inputs = " ".join(f"--input {i['name']}={done.out}/inputs/{i['name']}.npy" for i in m.inputs)
    print(f"exported to {done.out}/ (model.so for mcpu {m.target['mcpu']}, manifest.json, run.py)\n"
          f"run it: python {done.out}/run.py {inputs} --output out.npz")
    return 0
