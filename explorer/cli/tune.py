"""``explorer tune``: fill a model's MetaSchedule records on this CPU."""

from __future__ import annotations

from explorer.cli.arguments import calibration_arg, model_args


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    t = sub.add_parser("tune", help="tune a model's kernels on this CPU with MetaSchedule and keep the records")
    model_args(t)
    t.add_argument("--strategy", default="fused-tuned", help="a tuned strategy (default: fused-tuned)")
    t.add_argument("--trials", type=int, help="trial budget across the model (default: the strategy's); each kernel "
                   "gets trials // kernels, counting the candidates already in the records")
    t.add_argument("--tuning-records", metavar="DIR", help="records directory (default: one per target in the cache)")
    t.add_argument("--space", help="design space searched: rules (the default schedules' tile sizes as decisions), "
                   "tvm (MetaSchedule's own) or rules+tvm (the default)")
    calibration_arg(t)
    t.set_defaults(func=run)


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    from explorer.model.arguments import parse_input_shapes, parse_input_values
    from explorer.sweep.tune import tune_model

    stats = tune_model(args.model, strategy=args.strategy, trials=args.trials, records=args.tuning_records,
                       input_shapes=parse_input_shapes(args.input_shape), progress=not args.quiet,
                       input_values=parse_input_values(args.input_value), calibration=args.calibration,
                       space=args.space)
    rate = f" in {stats.seconds:.0f} s, {stats.trials_per_minute:.1f} trials/min" if stats.trials else ""
    print(f"{args.model}: {stats.tasks} kernels, {stats.tuned} tuned now ({stats.trials} trials{rate}), "
          f"{stats.reused} already tuned to this budget")
    return 0
