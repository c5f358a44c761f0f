"""``explorer doctor``: what this machine and installation can do, each checked by doing it."""

from __future__ import annotations


def add_parser(sub) -> None:
    """Add the verb and its arguments to the ``explorer`` command's subparsers."""
    d = sub.add_parser("doctor", help="what this machine can do: versions, CPU, threads, code generators, tools, "
                                      "and each target checked by sweeping a one-kernel model")
    d.add_argument("--json", action="store_true", help="one JSON object instead of text")
    d.set_defaults(func=run)


def run(args) -> int:
    """Run the verb on its parsed arguments; return the exit code."""
    import dataclasses
    import json

    from explorer.doctor.checks import diagnose
    from explorer.doctor.text import report_text

    report = diagnose()
    print(json.dumps(dataclasses.asdict(report)) if args.json else report_text(report))
    return 0
