"""Errors a user can act on."""


class ExplorerError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


class SweepStopped(Exception):
    """A ``--strict`` sweep stopped at its first failed variant (what finished is kept)."""
