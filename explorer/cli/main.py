"""The ``explorer`` command's entry point and its exit policy.

Exit codes:

- 0: all is well;
- 1: some variants of a sweep failed, crashed, timed out, mismatched onnxruntime (fp32) or broke
  ``--max-accuracy-loss``;
- 2: bad input (one line on stderr saying what is wrong, no traceback);
- 3: an internal error: a bug in the explorer (or in TVM under it), not the user's input. One line says
  so and names the log file the traceback was written to (:func:`write_crash_log`), for a bug report;
- 4: the disk: a file or folder the explorer must write is full, over quota, read-only or not writable
  (one line naming it; what finished is kept);
- 130: interrupted by Ctrl-C or SIGTERM (finished variants are kept).
"""

from __future__ import annotations

import signal
import sys

from explorer.cli.parser import build_parser


def write_crash_log(err: BaseException, argv: list[str]) -> str:
    """Write ``err``'s traceback, the command line and the versions to a new log file (in the cache's
    ``logs`` folder, or the system's temporary folder where that cannot be written); return its path."""
    import datetime
    import os
    import platform
    import tempfile
    import traceback

    from explorer import __version__
    from explorer.store.cache import cache_dir

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"explorer {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
            f"command: explorer {' '.join(argv)}\n\n"
            + "".join(traceback.format_exception(type(err), err, err.__traceback__)))
    for folder in (cache_dir() / "logs", tempfile.gettempdir()):
        try:
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"explorer-crash-{stamp}-{os.getpid()}.log")
            with open(path, "w") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return "(no log: nothing could be written)"


def _terminate_as_interrupt() -> None:
    """Handle SIGTERM as Ctrl-C: the sweep stops the same way and keeps what finished."""
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a verb; every outcome is an exit code of the module docstring, a user's error one
    line and never a traceback."""
    from cost_models.target_file import TargetError
    from explorer.core.errors import DISK_ERRNOS, ExplorerError, SweepStopped, WriteError, one_line

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _terminate_as_interrupt()
    try:
        return args.func(args)
    except SweepStopped as err:
        print(f"explorer: stopped at the first failure (--strict): {err}", file=sys.stderr)
        return 1
    except WriteError as err:
        print(f"explorer: {err}; what finished is kept, and a rerun with room resumes", file=sys.stderr)
        return 4
    except (ExplorerError, TargetError) as err:
        print(f"explorer: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (`explorer cache info | head`)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("explorer: interrupted; finished variants and measured tuning candidates are kept", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            return _internal(err, argv, one_line)
        where = f" {err.filename}" if err.filename else ""
        print(f"explorer: cannot write{where}: {err.strerror or err}; what finished is kept, and a rerun with room "
              "resumes", file=sys.stderr)
        return 4
    except Exception as err:  # anything else is the explorer's fault, not the input's
        return _internal(err, argv, one_line)


def _internal(err: BaseException, argv: list[str], one_line) -> int:
    path = write_crash_log(err, argv)
    print(f"explorer: internal error (a bug, not your input): {one_line(err)}; the traceback is in {path}",
          file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
