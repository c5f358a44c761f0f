"""How much the explorer's own work costs next to TVM's compile, per zoo model.

Prints, for each model and strategy: TVM compile time (strategy passes, lowering and LLVM code
generation), TIR analysis time, energy scoring time (all three shipped targets), and the ratio of
analysis + scoring to compile. Everything is measured in this one run.

    python benchmarks/analysis_overhead.py [model ...]
"""

from __future__ import annotations

import sys
import time

from cost_models import energy
from cost_models.targets import list_targets, load_target
from explorer import tir_analysis, tvm_compile
from explorer.loading import prepare
from explorer.strategies import get_strategy


def main(names: list[str]) -> None:
    targets = [load_target(t) for t in list_targets()]
    print(f"{'model':<12} {'strategy':<9} {'compile s':>9} {'analyse s':>9} {'score s':>8} {'overhead':>9}")
    for name in names:
        model = prepare(name)
        for strategy in ("baseline", "fused"):
            t0 = time.perf_counter()
            lowered = tvm_compile.compile_variant(str(model.path), model.sha256, get_strategy(strategy), "generic",
                                                  tvm_compile.host_target(), build=True)
            t1 = time.perf_counter()
            work = tir_analysis.workload_table(lowered.calls, tir_analysis.analyse_module(lowered.tir))
            t2 = time.perf_counter()
            for target in targets:
                energy.totals(energy.score(work, target))
            t3 = time.perf_counter()
            print(f"{name:<12} {strategy:<9} {t1 - t0:9.2f} {t2 - t1:9.3f} {t3 - t2:8.3f} {(t3 - t1) / (t1 - t0):9.2%}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["mlp", "resnet18", "mobilenetv2", "bert-mini"])
