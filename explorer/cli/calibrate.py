"""``explorer calibrate``: fit a target's energy figures to a bundle's measurements."""

from __future__ import annotations


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    ca = sub.add_parser("calibrate", help="fit a target's energy figures to a bundle's measurements and write a "
                                          "calibrated copy of its target file (the cited file is never changed)")
    ca.add_argument("results", metavar="RESULTS", help="the runner's results.json")
    ca.add_argument("--bundle", metavar="DIR", help="the bundle measured (default: the folder of RESULTS)")
    ca.add_argument("--target", help="the target whose figures are fitted (default: the bundle's)")
    ca.add_argument("-o", "--out", required=True, metavar="FILE", help="the calibrated target file to write")
    ca.add_argument("--report", metavar="DIR", help="also write measure_variants.csv, measure_kernels.csv, measure.html")
    ca.add_argument("--ncu", metavar="DIR", help="with --report: ncu CSVs (<variant>.csv) and their call orders")
    ca.set_defaults(func=run)


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    from pathlib import Path

    from explorer.measure.fit import calibrate_target
    from explorer.measure.report import measure_report

    bundle = args.bundle or str(Path(args.results).resolve().parent)
    cal = calibrate_target(bundle, args.results, target=args.target, out=args.out)
    shown = cal.figures[cal.figures["fitted_here"]][["figure", "cited", "low", "high", "fitted", "stderr_range"]]
    print(shown.to_string(index=False))
    s = cal.summary
    print(f"\nmean absolute energy error: {s['mean_abs_error_pct_cited']:.3g}% cited, "
          f"{s['mean_abs_error_pct_lomo']:.3g}% calibrated (leave-one-model-out, {s['models']} models, "
          f"{s['variants']} variants); Spearman {s['spearman_cited']:.3g} -> {s['spearman_lomo']:.3g}")
    if args.report:
        measure_report(bundle, args.results, out=args.report, ncu=args.ncu, calibration=cal)
    print(f"wrote {args.out}" + (f" and {args.report}/" if args.report else ""))
    return 0
