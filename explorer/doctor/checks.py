"""``explorer doctor``: what this machine and its installation can do, each checked by doing it.

Versions come from the installed packages; LLVM's view of the CPU, the runtime's default threads
and the code generators from TVM itself (in a spawned process, so this one stays light); the tools
from the PATH, run for their version; and for each shipped target, a one-kernel model is really
swept (in a temporary cache): built and run, built only, or analysed only.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("apache-tvm", "apache-tvm-ffi", "onnx", "onnxruntime", "onnxsim", "numpy", "pandas", "xgboost-cpu", "ray")
TOOLS = {"nvcc": ["nvcc", "--version"], "valgrind": ["valgrind", "--version"]}


@dataclasses.dataclass
class Report:
    """Everything ``explorer doctor`` found."""

    packages: dict[str, str]
    tvm: dict
    tools: dict[str, str]
    cores: int
    threads: dict[str, int]
    targets: dict[str, str]
    cpu_target: str = ""  # which file ``cpu`` names here, and whether it describes this host


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _tool(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not found"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"fails to run ({type(err).__name__})"
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    return (next((ln for ln in lines if "release" in ln.lower() or "version" in ln.lower()), lines[-1] if lines else "")
            .strip()[:80])


def _rocm_tools() -> str:
    from explorer.host.toolchain import find_lld, rocm_missing, rocm_path

    missing = rocm_missing()
    return f"missing {missing}" if missing else f"{find_lld()} with the device bitcode of {rocm_path()}"


def _probe() -> dict:
    from explorer.tvm.probe import probe

    return probe()


def _tiny_model(folder: Path) -> str:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "doctor",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "doctor.onnx"
    onnx.save(model, str(path))
    return str(path)


#: What a target's row says this machine can do with it.
CAN_DO = {"ok": "build and run (checked against onnxruntime)", "built-not-run": "build (nothing here runs it)",
          "analysed": "analyse only", "emulated": "analyse (emulated dtypes)", "codegen-failed": "analyse; build fails"}


def _targets() -> dict[str, str]:
    from cost_models.targets import list_targets
    from explorer.sweep.sweep import run_sweep

    saved = os.environ.get("EXPLORER_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EXPLORER_CACHE"] = tmp
        try:
            names = list_targets()
            rows = run_sweep([_tiny_model(Path(tmp))], targets=names, strategies=["fused"], progress=False).variants
        finally:
            if saved is None:
                os.environ.pop("EXPLORER_CACHE", None)
            else:
                os.environ["EXPLORER_CACHE"] = saved
    return {r.target: CAN_DO.get(r.status_kind, r.status) for r in rows.itertuples()}


def diagnose() -> Report:
    """Check this machine (takes some seconds: TVM is imported and a tiny model swept)."""
    from cost_models.targets import load_target
    from explorer.host.cpu import machine_cores, timing_threads
    from explorer.host.process import in_compiler_process

    tvm = in_compiler_process(_probe)
    cpu = load_target("cpu")
    return Report(packages={p: _version(p) for p in PACKAGES}, tvm=tvm,
                  tools={**{name: _tool(cmd) for name, cmd in TOOLS.items()}, "ROCm build": _rocm_tools()},
                  cores=machine_cores(),
                  threads={"tvm_default": tvm["tvm_default_threads"], "explorer_times_cpu_with": timing_threads(cpu)},
                  targets=_targets(), cpu_target=cpu_target_text(cpu))


def cpu_target_text(cpu) -> str:
    """Which file the ``cpu`` target loads on this host and whether it describes it."""
    from cost_models.host import host_cpu

    host = host_cpu()
    named = f"{host.model_name or 'unknown CPU'} ({host.vendor or '?'} family {host.family} model {host.model})"
    if cpu.describes_host:
        return f"cpu = {cpu.file}, which describes this host, {named}: static energy is charged over measured time"
    return (f"cpu = {cpu.file}, which does NOT describe this host, {named}: no shipped CPU file does, so static "
            "energy is charged over modelled time")
