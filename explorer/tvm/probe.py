"""What this machine's TVM can do, asked of TVM itself (for ``explorer doctor``)."""

from __future__ import annotations

#: CPU features that decide which int8 and bf16 kernels LLVM can emit.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512vnni", "avx512bf16", "avx512fp16", "amx-int8", "amx-bf16")


def probe() -> dict:
    """LLVM's version and view of the host CPU, the runtime's default thread count, and which code
    generators the installed TVM has."""
    import tvm
    from tvm.target import codegen

    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.passes.bf16_dot import has_avx512_bf16
    from explorer.tvm.passes.vnni import has_vnni

    cpu = host_llvm_cpu()
    host = tvm.target.Target({"kind": "llvm", "mcpu": cpu})
    features = set(codegen.llvm_get_cpu_features(host))
    return {
        "llvm_version": int(codegen.llvm_version_major()),
        "llvm_cpu": cpu,
        "llvm_own_name": str(codegen.llvm_get_system_cpu()),
        "llvm_triple": str(codegen.llvm_get_system_triple()),
        "cpu_features": {f: f in features for f in CPU_FEATURES},
        "int8_kernels": ("u8 x s8 on VPDPBUSD (dot_16x4_vnni) for conv2d and matmul; s8 x s8 vector code for "
                         "depthwise ones" if has_vnni(host) else "s8 x s8 vector code (no avx512vnni)"),
        "bf16_kernels": ("bf16 x bf16 into fp32 on VDPBF16PS (explorer_dpbf16ps_16x2) for conv2d and matmul; "
                         "bf16 operands widened for fp32 FMAs elsewhere" if has_avx512_bf16(host)
                         else "bf16 operands widened to fp32 for fp32 FMAs (no avx512bf16)"),
        "tvm_default_threads": int(tvm.runtime.num_threads()),
        "codegen": {kind: tvm.get_global_func(f"target.build.{kind}", allow_missing=True) is not None
                    for kind in ("llvm", "cuda", "rocm", "opencl", "metal", "webgpu", "vulkan")},
    }
