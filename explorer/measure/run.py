"""Running a bundle's runner on this machine, in a fresh process outside the project."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from explorer.core.errors import ExplorerError


def local_gpu() -> str | None:
    """Why there is no usable NVIDIA GPU here (None: there is one: the driver's libcuda loads and
    ``nvidia-smi -L`` lists a GPU)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver here (libcuda.so.1 does not load)"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no nvidia-smi here"
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"nvidia-smi failed ({err})"
    return None if "GPU" in listed else "nvidia-smi lists no GPU"


def run_bundle(bundle: str | Path, device: str | None = None, out: str | Path | None = None,
               runner_args: list[str] | None = None, timeout: float | None = None, progress: bool = True) -> dict:
    """Run ``bundle``'s runner on this machine in a fresh process (runtime-only TVM from the bundle, started
    outside the project so nothing of it is imported) on ``device`` (default: the bundle's); return its
    results (also written to ``out``, default ``bundle/results.json``)."""
    bundle = Path(bundle).resolve()
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError):
        raise ExplorerError(f"{bundle} is not a measurement bundle (no readable manifest.json)") from None
    device = device or manifest.get("device", "cpu")
    if device == "cuda":
        why = local_gpu()
        if why:
            raise ExplorerError(f"cannot measure on cuda here: {why}; carry {bundle} to a machine with an NVIDIA GPU and "
                                f"run python {bundle.name}/measure_runner.py --device cuda there (not done here)")
    out = Path(out).resolve() if out else bundle / "results.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TVM_USE_RUNTIME_LIB", "TVM_LIBRARY_PATH")}
    cmd = [sys.executable, str(bundle / "measure_runner.py"), "--device", device, "--out", str(out), *(runner_args or [])]
    with tempfile.TemporaryDirectory(prefix="explorer-measure-") as cwd:
        try:
            ran = subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, text=True,
                                 stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE)
        except subprocess.TimeoutExpired:
            raise ExplorerError(f"the bundle's runner ran past {timeout:g} s") from None
    if ran.returncode == 2 or not out.is_file():
        last = ((ran.stderr or "").strip().splitlines() or [f"exit code {ran.returncode}"])[-1]
        raise ExplorerError(f"the bundle's runner failed: {last}")
    return json.loads(out.read_text())
