"""Run this deployment build: ``python run.py --input NAME=FILE.npy ... --output OUT.npz``.

``explorer best`` wrote this file beside the compiled library and ``manifest.json``. It needs only
numpy and TVM's runtime: TVM is imported with ``TVM_USE_RUNTIME_LIB=1``, so ``libtvm_runtime`` is
loaded and TVM's compiler never is. The manifest names the inputs (shapes and dtypes), the outputs,
the strategy and target the build was chosen for and its accuracy against the fp32 model.

Exit codes: 0 the outputs are written; 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["TVM_USE_RUNTIME_LIB"] = "1"  # read when tvm is first imported, below

import numpy as np

HERE = Path(__file__).resolve().parent


class BadInput(Exception):
    """An input that does not match the manifest."""


def read_inputs(pairs: list[str], declared: list[dict]) -> list[np.ndarray]:
    """The arrays of ``NAME=FILE.npy`` pairs, in the manifest's input order, checked against it."""
    by_name = {d["name"]: d for d in declared}
    given: dict[str, np.ndarray] = {}
    for pair in pairs:
        name, sep, file = pair.partition("=")
        if not sep or not file:
            raise BadInput(f"--input {pair!r}: expected NAME=FILE.npy")
        if name not in by_name:
            raise BadInput(f"--input {name}: the model has no input of that name (its inputs: {', '.join(by_name)})")
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise BadInput(f"--input {name}: cannot read {file} as a .npy array ({err})") from None
        want = by_name[name]
        if list(array.shape) != list(want["shape"]) or str(array.dtype) != want["dtype"]:
            raise BadInput(f"--input {name}: {file} holds {array.dtype}{list(array.shape)}; "
                           f"the build takes {want['dtype']}{list(want['shape'])}")
        given[name] = array
    missing = [d["name"] for d in declared if d["name"] not in given]
    if missing:
        raise BadInput(f"missing --input for {', '.join(missing)}")
    return [given[d["name"]] for d in declared]


def run(library: Path, inputs: list[np.ndarray], repeat: int = 0) -> tuple[list[np.ndarray], list[float]]:
    """The library's outputs on ``inputs``, and the seconds of ``repeat`` more inferences."""
    import tvm
    from tvm.runtime.vm import VirtualMachine

    machine = VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    args = [tvm.runtime.tensor(x) for x in inputs]
    out = machine["main"](*args)
    outputs = [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        machine["main"](*args)
        times.append(time.perf_counter() - start)
    return outputs, times


def main(argv: list[str] | None = None) -> int:
    manifest = json.loads((HERE / "manifest.json").read_text())
    ap = argparse.ArgumentParser(description=f"Run the {manifest['strategy']['name']} build of "
                                             f"{manifest['model']['name']} ({manifest['target']['name']}).")
    ap.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                    help="one per model input: " + ", ".join(f"{d['name']} {d['dtype']}{d['shape']}"
                                                             for d in manifest["inputs"]))
    ap.add_argument("--output", required=True, metavar="OUT.npz", help="where to write the outputs")
    ap.add_argument("--repeat", type=int, default=0, help="also time this many inferences and print the median")
    args = ap.parse_args(argv)
    try:
        inputs = read_inputs(args.input, manifest["inputs"])
    except BadInput as err:
        print(f"run.py: {err}", file=sys.stderr)
        return 2
    if manifest.get("threads"):  # the threads its latency was measured with, unless the caller says otherwise
        os.environ.setdefault("TVM_NUM_THREADS", str(manifest["threads"]))
    outputs, times = run(HERE / manifest["library"], inputs, max(args.repeat, 0))
    names = manifest["outputs"] if len(manifest["outputs"]) == len(outputs) else [f"output_{i}" for i in range(len(outputs))]
    np.savez(args.output, **dict(zip(names, outputs)))
    if times:
        import tvm

        print(f"median of {len(times)} inferences: {sorted(times)[len(times) // 2] * 1e3:.3f} ms "
              f"with {tvm.runtime.num_threads()} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
