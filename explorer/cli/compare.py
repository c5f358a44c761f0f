"""``explorer compare``: what changed between two sweeps, per variant and per kernel."""

from __future__ import annotations

from explorer.cli.arguments import positive_int
from explorer.reports.compare import DEFAULT_MIN_CHANGE


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    c = sub.add_parser("compare", help="what changed between two sweeps, per variant and per kernel")
    c.add_argument("run_a", metavar="RUN_A", help="a sweep's --out directory")
    c.add_argument("run_b", metavar="RUN_B", help="another sweep's --out directory")
    c.add_argument("--min-change", type=float, default=100 * DEFAULT_MIN_CHANGE, metavar="PCT",
                   help=f"list a figure's change only from this many percent (default: {100 * DEFAULT_MIN_CHANGE:g}; "
                        "re-timing alone moves measured latency by more)")
    c.add_argument("--limit", type=positive_int, default=20, help="kernel changes printed (default: 20; "
                                                                    "compare.html has all)")
    c.add_argument("--html", default="compare.html", metavar="FILE",
                   help="also write the comparison here (default: compare.html; '' for none)")
    c.set_defaults(func=run)


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    from pathlib import Path

    from explorer.reports.compare import compare_html, compare_runs, compare_text

    c = compare_runs(args.run_a, args.run_b, args.min_change / 100)
    print(compare_text(c, args.limit))
    if args.html:
        Path(args.html).write_text(compare_html(c))
        print(f"\nwrote {args.html}")
    return 0
