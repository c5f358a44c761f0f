"""The ``explorer`` command's entry point and its exit policy.

Exit codes: 0 all is well; 1 some variants of a sweep failed, crashed, timed out, mismatched
onnxruntime (fp32) or broke ``--max-accuracy-loss``; 2 bad input (one line on stderr, no traceback);
130 interrupted (finished variants are kept).
"""

from __future__ import annotations

import sys

from explorer.cli.parser import build_parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a verb; user errors print one line and exit non-zero, never a traceback."""
    from cost_models.target_file import TargetError
    from explorer.core.errors import ExplorerError, SweepStopped

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SweepStopped as err:
        print(f"explorer: stopped at the first failure (--strict): {err}", file=sys.stderr)
        return 1
    except (ExplorerError, TargetError, KeyError, ValueError, RuntimeError, FileNotFoundError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"explorer: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explorer: interrupted; finished variants and measured tuning candidates are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
