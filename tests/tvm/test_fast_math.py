"""Vectorizable exp and its kin for CPU builds (explorer.tvm.passes.fast_math): sigmoid goes through
fast_exp in float32 only, and the built kernel calls no scalar expf yet stays within float32 rounding."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from explorer.tvm.codegen import runtime_modules
from explorer.tvm.passes.fast_math import fast_math


def _sigmoid_module(dtype: str, n: int = 1024):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n,), dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.sigmoid(x))
        bb.emit_func_output(out)
    return bb.get()


def _ops(mod) -> set[str]:
    found = set()
    relax.analysis.post_order_visit(mod["main"], lambda e: found.add(e.op.name) if isinstance(e, relax.Call)
                                    and isinstance(e.op, tvm.ir.Op) else None)
    return found


def test_a_float32_sigmoid_becomes_a_kernel_of_fast_exp():
    mod = fast_math(_sigmoid_module("float32"))
    assert "relax.sigmoid" not in _ops(mod)
    assert any(gv.name_hint.startswith("fast_sigmoid") for gv in mod.get_global_vars())


def test_a_float16_sigmoid_keeps_the_exact_operator():
    assert "relax.sigmoid" in _ops(fast_math(_sigmoid_module("float16")))


def test_the_built_sigmoid_calls_no_scalar_expf_and_stays_within_float32_rounding():
    mod = fast_math(_sigmoid_module("float32"))
    mod = relax.transform.LegalizeOps()(mod)
    exe = tvm.compile(mod, tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3"}))
    asm = "".join(m.inspect_source("asm") for m in runtime_modules(exe.mod) if m.kind == "llvm")
    assert "fast_sigmoid" in asm and "expf" not in asm  # the exact sigmoid's asm calls expf
    x = np.linspace(-30, 30, 1024, dtype="float32")
    vm = relax.VirtualMachine(exe, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-x.astype("float64"))), rtol=2e-6, atol=1e-7)
