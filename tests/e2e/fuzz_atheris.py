"""Coverage-guided fuzzing of the loader with atheris (libFuzzer): every input ends in a prepared model
or one clear line.

Run as a program (``tests/e2e/test_fuzz_loader.py`` runs it for ``ATHERIS_SECONDS`` in the ``fuzz`` step):

    python tests/e2e/fuzz_atheris.py CORPUS_DIR -max_total_time=60 -timeout=60 -rss_limit_mb=4096

The corpus starts from the seed models of the hypothesis fuzzer and zoo-sized variants of them;
libFuzzer mutates their bytes, guided by the coverage of the explorer's loading code. A Python
exception other than :class:`explorer.core.errors.ExplorerError`, a multi-line message, a native crash
(onnx, onnx-simplifier and onnxruntime are C++), an input slower than ``-timeout`` or memory over
``-rss_limit_mb`` is a finding: libFuzzer stops, writes the input as ``crash-*``/``timeout-*`` and
exits non-zero.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["explorer"]):
    from explorer.core.errors import ExplorerError
    from explorer.model.prepare import prepare

_WORK = Path(tempfile.mkdtemp(prefix="explorer-atheris-"))
os.environ["EXPLORER_CACHE"] = str(_WORK / "cache")


def one_input(data: bytes) -> None:
    """Prepare ``data`` as an ONNX file; anything but success or a one-line ExplorerError raises."""
    path = _WORK / "fuzzed.onnx"
    path.write_bytes(data)
    try:
        prepare(str(path), max_tensor_bytes=1 << 28)
    except ExplorerError as err:
        message = str(err)
        if not message or "\n" in message or "Traceback" in message:
            raise AssertionError(f"not a one-line error: {message!r}") from None


def write_seeds(corpus: Path) -> None:
    """The seed corpus: the hypothesis fuzzer's seed model (when the corpus folder is empty)."""
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from tests.e2e.test_fuzz_loader import SEED

        (corpus / "seed.onnx").write_bytes(SEED)


if __name__ == "__main__":
    dirs = [a for a in sys.argv[1:] if not a.startswith("-")]
    for d in dirs:
        write_seeds(Path(d))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
