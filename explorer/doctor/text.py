"""``explorer doctor``'s report as a person reads it."""

from __future__ import annotations

from explorer.doctor.checks import Report


def _renamed(tvm: dict) -> str:
    own = tvm["llvm_own_name"]
    return "" if own == tvm["llvm_cpu"] else f" (LLVM names this host {own}, which lacks extensions its flags show)"


def report_text(r: Report) -> str:
    """The report as a person reads it."""
    flags = ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in r.tvm["cpu_features"].items())
    gens = ", ".join(k for k, on in r.tvm["codegen"].items() if on)
    lines = [
        "packages: " + ", ".join(f"{k} {v}" for k, v in r.packages.items()),
        f"LLVM {r.tvm['llvm_version']}: builds for {r.tvm['llvm_cpu']}{_renamed(r.tvm)} ({r.tvm['llvm_triple']}); {flags}",
        f"cores: {r.cores}; TVM's runtime defaults to {r.threads['tvm_default']} thread(s); the explorer times "
        f"cpu variants and onnxruntime with {r.threads['explorer_times_cpu_with']}",
        f"TVM code generators: {gens}",
        r.cpu_target,
        f"int8 kernels here: {r.tvm['int8_kernels']}; bf16: {r.tvm['bf16_kernels']}",
        "tools: " + "; ".join(f"{k}: {v}" for k, v in r.tools.items()),
        "targets (a one-kernel model swept on each):",
        *[f"  {t}: {what}" for t, what in r.targets.items()],
    ]
    return "\n".join(lines)
