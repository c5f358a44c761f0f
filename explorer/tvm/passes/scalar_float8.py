"""Float8 conversions on CPUs one element at a time.

No CPU this project runs on converts float8 in hardware, so TVM legalizes each float8 cast into integer
bit arithmetic with an ``if_then_else`` for its special values (``FP8ComputeLegalize``); in a vectorized
loop that ``if_then_else`` gets a vector condition, which TVM 0.27's LLVM code generator refuses
("if_then_else can only take scalar condition"). The ``if_then_else`` is in the rounding of a value
to float8; widening float8 to float32 is bit arithmetic alone and vectorizes. This pass makes every
vectorized loop whose body rounds a value to float8 serial again, after the CPU schedule, so an ``fp8``
build compiles for the CPU (emulated, as its target file says) and can be checked against onnxruntime,
while its matmuls and convolutions, which only widen their float8 operands, stay vectorized.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

from explorer.tvm.tir.expr import dtype_of


def _rounds_to_float8(stmt) -> bool:
    found = []

    def expr(node, visitor):
        if isinstance(node, tirx.Cast) and dtype_of(node)[0].startswith("float8"):
            found.append(node)
        else:
            visitor.default_visit(node)

    tvm_ffi.structural_visit(stmt, [((tvm.ir.expr.Expr,), expr)])
    return bool(found)


def _serial_loop(loop, mutator):
    body = mutator.mutate(loop.body)
    if loop.kind == tirx.ForKind.VECTORIZED and _rounds_to_float8(body):
        return tirx.For(loop.loop_var, loop.min, loop.extent, tirx.ForKind.SERIAL, body, loop.thread_binding,
                        loop.annotations)
    return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body, loop.thread_binding, loop.annotations)


def _serial(func: tirx.PrimFunc) -> tirx.PrimFunc:
    return func.with_body(tvm_ffi.structural_mutate(func.body, [((tirx.For,), _serial_loop)]))


@tvm.transform.module_pass(opt_level=0, name="explorer.ScalarFloat8Loops")
def scalar_float8_loops(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Every vectorized loop that rounds a value to float8 made serial, in every PrimFunc of ``mod``."""
    out = mod.clone()
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            out[gv] = _serial(func)
    return out
