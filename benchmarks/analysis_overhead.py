"""How much the explorer's own work costs next to TVM's compile, per zoo model.

Prints, for each model and strategy: TVM compile time (strategy passes, lowering and LLVM code
generation), TIR analysis time (the walker and the workload table), energy scoring time (every
shipped target file), and the ratio of analysis + scoring to compile. Everything is measured in this one
run, in this process (no worker, no cache).

    python benchmarks/analysis_overhead.py [model ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cost_models import energy  # noqa: E402
from cost_models.targets import list_targets, load_target  # noqa: E402
from explorer.core.strategies import get_strategy  # noqa: E402
from explorer.model.prepare import prepare  # noqa: E402
from explorer.tvm import codegen  # noqa: E402
from explorer.tvm.compile import compile_variant  # noqa: E402
from explorer.tvm.compiler_facts import resolve_mcpu  # noqa: E402
from explorer.tvm.tir.walker import analyse_module  # noqa: E402
from explorer.workload.table import workload_table  # noqa: E402


def main(names: list[str]) -> None:
    targets = [load_target(t) for t in list_targets()]
    llvm = codegen.llvm_target(resolve_mcpu())
    print(f"{'model':<12} {'strategy':<9} {'compile s':>9} {'analyse s':>9} {'score s':>8} {'overhead':>9}")
    for name in names:
        model = prepare(name)
        for strategy in ("baseline", "fused"):
            t0 = time.perf_counter()
            compiled = compile_variant(str(model.path), model.sha256, get_strategy(strategy), "generic", llvm,
                                       build=True)
            t1 = time.perf_counter()
            work = workload_table(compiled.calls, analyse_module(compiled.tir))
            t2 = time.perf_counter()
            for target in targets:
                energy.totals(energy.score(work, target))
            t3 = time.perf_counter()
            print(f"{name:<12} {strategy:<9} {t1 - t0:9.2f} {t2 - t1:9.3f} {t3 - t2:8.3f} {(t3 - t1) / (t1 - t0):9.2%}",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["mlp", "resnet18", "mobilenetv2", "bert-mini"])
