"""The explorer's TIR pipeline (explorer.tvm.tir_pipeline) vectorizes ``nearbyint``, the rounding of
ONNX's ``Round`` and of every int8 quantization, and the build cache's key covers the pipeline's code."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import numpy as np
import tvm
from tvm import s_tir, te, tirx

from explorer.store.cache import COMPILE_CODE, SOURCE_ROOT
from explorer.tvm import tir_pipeline

ZEN4 = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})


def _vector_rounding():
    """``nearbyint`` of 4 x 64 floats, the rows parallel and 16 lanes vectorized, as the default CPU
    schedule leaves a quantization's rounding."""
    x = te.placeholder((4, 64), "float32", name="x")
    y = te.compute((4, 64), lambda i, j: tirx.nearbyint(x[i, j]), name="y")
    sch = s_tir.Schedule(te.create_prim_func([x, y]))
    i, j = sch.get_loops(sch.get_sblock("y"))
    sch.parallel(i)
    sch.vectorize(sch.split(j, [None, 16])[1])
    return sch.mod


def test_nearbyint_runs_as_vector_instructions_not_gathers():
    asm = tvm.tirx.build(_vector_rounding(), target=ZEN4, pipeline=tir_pipeline.register()).inspect_source("asm")
    assert "vrndscaleps" in asm
    assert "gather" not in asm and "scatter" not in asm


def test_vectorized_nearbyint_rounds_halves_to_even():
    lib = tvm.tirx.build(_vector_rounding(), target=ZEN4, pipeline=tir_pipeline.register())
    x = np.tile(np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999998, 126.5, -127.5], "float32"), 32).reshape(4, 64)
    y = tvm.runtime.tensor(np.zeros((4, 64), "float32"))
    lib["main"](tvm.runtime.tensor(x), y)
    np.testing.assert_array_equal(y.numpy(), np.rint(x))


def test_the_build_key_covers_every_explorer_tvm_module_the_compiler_imports():
    # in a fresh interpreter: this one has imported modules the compiler does not
    code = ("import sys, explorer.tvm.compile, explorer.tvm.tuning.builder\n"
            "print('\\n'.join(m.__file__ for n, m in list(sys.modules.items())\n"
            "                 if n.startswith('explorer.tvm.') and getattr(m, '__file__', None)))")
    files = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                           cwd=SOURCE_ROOT).stdout.split()
    modules = [str(Path(f).resolve().relative_to(SOURCE_ROOT)) for f in files]
    assert "explorer/tvm/tir_pipeline.py" in modules
    missing = [m for m in modules if not m.endswith("__init__.py")
               and not any(fnmatch.fnmatch(m, pattern) for pattern in COMPILE_CODE)]
    assert missing == []
