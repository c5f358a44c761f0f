"""MetaSchedule trials per minute, each run from empty records, in turn:

- ``tvm``: TVM's defaults: ``LocalBuilder`` (a new process pool every batch, a new builder and runner
  per group of kernels) and its evolutionary search (512 candidates bred for 4 generations per batch)
  in its own design space;
- ``pool``: the explorer's builder (one pool kept across batches and groups, :mod:`explorer.tvm.tuning.builder`)
  with TVM's search and space;
- ``explorer``: that builder and the search sized to the trials (:func:`explorer.tvm.tuning.search.search_strategy`)
  in the default rules' space and TVM's, what ``explorer tune`` and tuned strategies use.

Every run first measures the default schedules and their neighbours (:mod:`explorer.tvm.tuning.neighbors`).

    python benchmarks/tuning_throughput.py                      # resnet18, 64 trials each
    python benchmarks/tuning_throughput.py --model mobilenetv2 --trials 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.core.strategies import get_strategy  # noqa: E402
from explorer.model.prepare import prepare  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--trials", type=int, default=64, help="model-wide budget of each run (default 64)")
    args = p.parse_args()
    from explorer.tvm.tuning.apply import tune_prepared

    prepared = prepare(args.model)
    rates = {}
    for name, builder, search, space in (("tvm", "local", "tvm", "tvm"), ("pool", "persistent", "tvm", "tvm"),
                                         ("explorer", "persistent", "sized", "rules+tvm")):
        with tempfile.TemporaryDirectory(prefix="tuning-throughput-") as records:
            stats = tune_prepared(str(prepared.path), prepared.sha256, get_strategy("fused-tuned"), args.trials,
                                  records, progress=True, builder=builder, search=search, space=space)
        rates[name] = stats.trials_per_minute
        print(f"{name:>10}: {stats.trials} trials in {stats.seconds:.0f} s = {stats.trials_per_minute:.1f} "
              f"trials/min", flush=True)
    print(f"pool / tvm: {rates['pool'] / rates['tvm']:.2f}x; explorer / tvm: {rates['explorer'] / rates['tvm']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
