"""Errors a user can act on."""

import errno


class ExplorerError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


class UnknownName(ExplorerError, KeyError):
    """A name the user gave (a strategy, a model, a figure) that nothing is registered under. A KeyError
    too, for callers that look names up."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputError(ExplorerError, ValueError):
    """A value the user gave that cannot be used (a negative limit, an inconsistent definition). A
    ValueError too, for callers that validate values."""


class WriteError(ExplorerError):
    """A file or folder the explorer must write is full, over quota, read-only or not writable: the
    disk's problem, not the input's nor a bug (``explorer`` exits 4). The message names the path."""


#: The errno values of an OSError that make it a :class:`WriteError`.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class SweepStopped(Exception):
    """A ``--strict`` sweep stopped at its first failed variant (what finished is kept)."""


def one_line(err: BaseException) -> str:
    """``Type: last line of the message`` (at most 300 characters of it)."""
    import traceback

    name = type(err).__name__
    last = traceback.format_exception_only(type(err), err)[-1].strip().splitlines()[-1]
    for prefix in (f"{type(err).__module__}.{type(err).__qualname__}: ", f"{name}: "):
        last = last.removeprefix(prefix)  # the exception's own line names its type already
    return f"{name}: {last[:300]}"
