"""The ``explorer`` command's argument parser: one subparser per verb, each from its own module."""

from __future__ import annotations

import argparse

from explorer.cli import (
    best,
    cache,
    calibrate,
    catalogue,
    compare,
    doctor,
    fusion,
    measure,
    project,
    run,
    serve,
    sweep,
    tune,
)

#: The verb modules, in the order ``explorer --help`` lists them.
VERBS = (catalogue, doctor, sweep, serve, fusion, tune, best, compare, project, run, measure, calibrate, cache)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``explorer`` command."""
    p = argparse.ArgumentParser(prog="explorer", description="Energy explorer for deep-learning compilation on Apache TVM.")
    sub = p.add_subparsers(dest="verb", required=True)
    for verb in VERBS:
        verb.add_parser(sub)
    return p
