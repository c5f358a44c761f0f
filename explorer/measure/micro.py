"""The microbenchmarks a GPU bundle carries: a streaming add that moves DRAM bytes and little else, and a
matmul in fp32 and fp16 that does multiply-adds and little else, so that a calibration can tell the
energy per byte from the energy per operation."""

from __future__ import annotations

from explorer.measure.sources import Instance
from explorer.store.cache import cache_dir, write_atomic
from models._graph import GraphBuilder

#: Microbenchmarks of a GPU bundle: name -> (ONNX builder, strategies).
MICRO_STREAM_ELEMENTS = 2**25  # two 128 MiB inputs and a 128 MiB output: DRAM-bound, far past the L2
MICRO_MATMUL_N = 2048          # 8.6 G multiply-adds on 16 MiB operands: compute-bound


def micro_models() -> list[Instance]:
    """The microbenchmarks, written once into the cache as ONNX files."""
    folder = cache_dir() / "measure" / f"micro-{MICRO_STREAM_ELEMENTS}-{MICRO_MATMUL_N}"
    out = []
    specs = {
        "micro-stream": (lambda g: (g.add_input("a", [MICRO_STREAM_ELEMENTS]), g.add_input("b", [MICRO_STREAM_ELEMENTS]),
                                    g.node("Add", ["a", "b"], "y"), g.add_output("y", [MICRO_STREAM_ELEMENTS])),
                         ("fused",)),
        "micro-matmul": (lambda g: (g.add_input("a", [MICRO_MATMUL_N, MICRO_MATMUL_N]),
                                    g.add_input("b", [MICRO_MATMUL_N, MICRO_MATMUL_N]),
                                    g.node("MatMul", ["a", "b"], "y"),
                                    g.add_output("y", [MICRO_MATMUL_N, MICRO_MATMUL_N])),
                         ("fused", "fused-fp16")),
    }
    for name, (make, strategies) in specs.items():
        path = folder / f"{name}.onnx"
        if not path.exists():
            g = GraphBuilder(0)
            make(g)
            write_atomic(path, g.build(name, f"explorer measure microbenchmark {name}").SerializeToString())
        out.append(Instance(name, str(path), None, None, "auto", strategies, micro=True))
    return out
