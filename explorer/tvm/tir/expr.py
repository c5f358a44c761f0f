"""What a TIR expression is, to the walker: its dtype and lanes, the operation kind of a node or call,
and whether it is index arithmetic."""

from __future__ import annotations

import tvm
import tvm_ffi

#: The operation kind each binary node counts as.
BINARY_KIND = {
    "Add": "add", "Sub": "add", "Mul": "mul", "Div": "div", "FloorDiv": "div", "FloorMod": "div",
    "Mod": "div", "Max": "cmp", "Min": "cmp", "LT": "cmp", "LE": "cmp", "GT": "cmp", "GE": "cmp",
    "EQ": "cmp", "NE": "cmp",
    # bit operations (unpacking int4 weights) take an integer ALU slot as an add does
    "RShift": "add", "LShift": "add", "BitwiseAnd": "add", "BitwiseOr": "add", "BitwiseXor": "add",
}
#: Calls of transcendental functions: ``special`` operations, each function costed on its own.
SPECIAL_CALLS = {
    "exp", "exp2", "exp10", "log", "log2", "log10", "log1p", "tanh", "sigmoid", "sqrt", "rsqrt", "erf",
    "pow", "sin", "cos", "tan", "atan", "asin", "acos", "sinh", "cosh", "atanh", "asinh", "acosh",
}
#: Calls as cheap as a comparison.
CHEAP_CALLS = {"fabs", "floor", "ceil", "round", "trunc", "nearbyint", "copysign", "isnan", "isinf", "isfinite"}
SELECT_CALLS = {"if_then_else"}
#: Threads that execute one tensor-core fragment operation together.
WARP_SIZE = 32
WMMA_CALLS = {"tvm_mma_sync", "tvm_load_matrix_sync", "tvm_store_matrix_sync", "tvm_fill_fragment"}
#: The ``mma.sync`` path's calls (``tirx.ptx_legacy.mma`` and ``.ldmatrix``, ``tirx.mma_fill_legacy``).
PTX_MMA_CALLS = {"tirx.ptx_legacy.mma", "tirx.ptx_legacy.ldmatrix", "tirx.mma_fill_legacy"}
#: Operand types of a ``ptx_legacy.mma`` call as it abbreviates them.
PTX_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "int8": "int8", "uint8": "uint8",
              "int32": "int32", "e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2", "tf32": "float32"}
LLVM_CALLS = {"call_llvm_pure_intrin", "call_llvm_intrin"}
#: The PrimFunc attribute in which a schedule that pads a kernel (to the tensor-core tile) records its
#: multiply-adds before padding: the kernel's useful MACs, where the walker counts the executed ones.
USEFUL_MACS_ATTR = "explorer.useful_macs"
#: ``tirx.ForKind`` values by name.
FOR_KINDS = {0: "serial", 1: "parallel", 2: "vectorized", 3: "unrolled", 4: "thread_binding"}
#: LLVM intrinsics, and the explorer's external functions wrapping one, that are dot-product
#: instructions: (operand dtype, MACs per call). ``explorer_dpbf16ps_512``: VDPBF16PS
#: (:mod:`explorer.tvm.passes.bf16_dot`), called through ``call_pure_extern``.
TENSOR_INTRINSICS = {"llvm.x86.avx512.vpdpbusd.512": ("int8", 64), "explorer_dpbf16ps_512": ("bfloat16", 32)}
#: The calls whose first argument names an external function.
EXTERN_CALLS = {"call_pure_extern", "call_extern"}
#: LLVM intrinsics that are matrix-core instructions of a whole wavefront: (operand dtype, MACs of one
#: instruction, lanes that issue it together). CDNA 3's MFMA (explorer.tvm.schedules.mfma_intrinsics).
MATRIX_INTRINSICS = {
    "llvm.amdgcn.mfma.f32.16x16x16f16": ("float16", 16 * 16 * 16, 64),
    "llvm.amdgcn.mfma.f32.16x16x16bf16.1k": ("bfloat16", 16 * 16 * 16, 64),
    "llvm.amdgcn.mfma.i32.16x16x32.i8": ("int8", 16 * 16 * 32, 64),
}


def dtype_of(expr) -> tuple[str, int]:
    """(scalar dtype string, lanes) of a TIR expression."""
    dt = expr.ty.dtype if hasattr(expr, "ty") and hasattr(expr.ty, "dtype") else getattr(expr, "dtype", "handle")
    dt = tvm.DataType(str(dt))
    lanes = max(int(dt.lanes), 1)
    base = str(dt).split("x")[0] if lanes > 1 else str(dt)
    return base, lanes


def vars_of(expr) -> list:
    """The variables an expression uses."""
    return list(tvm.tirx.analysis.undefined_vars(expr))


def bytes_of(dtype: str) -> float:
    """Bytes of one element of ``dtype`` as TVM counts its bits."""
    return tvm.DataType(dtype).bits / 8


def int_of(expr) -> int | None:
    """The value of a constant integer (an ``int`` or an ``IntImm``), else None."""
    if isinstance(expr, int):
        return expr
    return int(expr.value) if hasattr(expr, "value") and type(expr).__name__ == "IntImm" else None


def uncast(e):
    """``e`` without the casts around it."""
    while type(e).__name__ == "Cast":
        e = e.value
    return e


def tensor_loads(e) -> list:
    """The outermost loads of an expression (not those inside another load's indices)."""
    found = []
    tvm_ffi.structural_visit(e, [((tvm.ir.expr.TensorLoad,), lambda node, _visitor: found.append(node))])
    return found


def is_index_arithmetic(e) -> bool:
    """Whether an expression is integer arithmetic of loop variables and constants alone (no loads):
    work LLVM strength-reduces or hoists, kept apart from the kernel's arithmetic as indices are."""
    if not dtype_of(e)[0].startswith(("int", "uint")):
        return False
    loads = []
    tvm_ffi.structural_visit(e, [((tvm.ir.expr.TensorLoad,), lambda *node: loads.append(node))])
    return not loads


def llvm_intrinsic(arg) -> str:
    """The name of the LLVM intrinsic a ``call_llvm_(pure_)intrin`` names (by string or by id)."""
    if type(arg).__name__ == "StringImm":
        return str(arg.value)
    ident = int_of(arg)
    if ident is None:
        return ""
    from tvm.target import codegen

    return next((n for n in (*TENSOR_INTRINSICS, *MATRIX_INTRINSICS) if n.startswith("llvm.") and int(codegen.llvm_lookup_intrinsic_id(n)) == ident), "")
