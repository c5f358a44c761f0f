"""Errors a user can act on."""


class ExplorerError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


class SweepStopped(Exception):
    """A ``--strict`` sweep stopped at its first failed variant (what finished is kept)."""


def one_line(err: BaseException) -> str:
    """``Type: last line of the message`` (at most 300 characters of it)."""
    import traceback

    last = traceback.format_exception_only(type(err), err)[-1].strip().splitlines()[-1]
    return f"{type(err).__name__}: {last[:300]}"
