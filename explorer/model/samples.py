"""Real inputs from a folder of ``.npy`` files: the check input and int8 calibration samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from explorer.core.errors import ExplorerError
from explorer.core.prepared import PreparedModel


def load_samples(prepared: PreparedModel, directory: str | Path) -> list[dict[str, np.ndarray]]:
    """Calibration inputs from ``directory``: ``*.npy`` files, one sample each, for a one-input model;
    ``<input name>/*.npy`` (paired by sorted file name) for a model with several inputs."""
    root = Path(directory)
    if not root.is_dir():
        raise ExplorerError(f"calibration directory {str(root)!r} does not exist")
    names = [i.name for i in prepared.inputs]
    if len(names) == 1:
        files = {names[0]: sorted(root.glob("*.npy"))}
    else:
        files = {n: sorted((root / n).glob("*.npy")) for n in names}
    counts = {n: len(f) for n, f in files.items()}
    if not all(counts.values()) or len(set(counts.values())) != 1:
        layout = "*.npy files" if len(names) == 1 else "a folder per input (" + ", ".join(names) + ") of .npy files"
        raise ExplorerError(f"calibration directory {str(root)!r} needs {layout}; found {counts}")
    samples = []
    for i in range(next(iter(counts.values()))):
        sample = {}
        for spec in prepared.inputs:
            arr = np.load(files[spec.name][i])
            if tuple(arr.shape) != tuple(spec.shape):
                raise ExplorerError(f"{files[spec.name][i]}: shape {tuple(arr.shape)}, the model's input "
                                    f"{spec.name!r} is {tuple(spec.shape)}")
            sample[spec.name] = arr.astype(spec.dtype)
        samples.append(sample)
    return samples
