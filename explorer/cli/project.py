"""``explorer project``: what serving each variant of a sweep costs a data centre per day."""

from __future__ import annotations


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    pr = sub.add_parser("project", help="what serving each variant of a sweep costs a data centre per day: "
                                        "kWh, litres of water, kg CO2 and dollars")
    pr.add_argument("run", metavar="RUN", help="a sweep's --out directory")
    pr.add_argument("--requests-per-day", type=float, required=True, metavar="N", help="requests served a day")
    pr.add_argument("--tokens-per-request", type=int, metavar="T",
                    help="decoders: tokens a request generates after its prompt (its prefill plus T decode steps)")
    for flag, name, what in (("--pue", "pue", "power usage effectiveness"),
                             ("--wue", "wue_l_per_kwh", "on-site water, litres per kWh of IT energy"),
                             ("--water-l-per-kwh-electricity", "electricity_water_l_per_kwh",
                              "off-site water of the electricity, litres per kWh generated (0: leave it out)"),
                             ("--grid-g-co2-per-kwh", "grid_g_co2_per_kwh", "grid carbon intensity"),
                             ("--usd-per-kwh", "usd_per_kwh", "electricity price"),
                             ("--utilization", "utilization", "share of the powered time the hardware is busy")):
        pr.add_argument(flag, dest=name, type=float, help=f"{what} (default: cited, printed with its source)")
    pr.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    pr.set_defaults(func=run)


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    from pathlib import Path

    from explorer.reports.project import project, projection_json, projection_markdown, projection_text
    from explorer.reports.writer import write_csv
    from explorer.store.cache import write_atomic

    names = ("pue", "wue_l_per_kwh", "electricity_water_l_per_kwh", "grid_g_co2_per_kwh", "usd_per_kwh", "utilization")
    p = project(args.run, args.requests_per_day, args.tokens_per_request, **{n: getattr(args, n) for n in names})
    write_csv(p.table, Path(args.run) / "project.csv")
    write_atomic(Path(args.run) / "project.md", projection_markdown(p))
    print(projection_json(p) if args.json else projection_text(p) + f"\n\nwrote {args.run}/project.csv and project.md")
    return 0
