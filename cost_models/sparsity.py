"""What a target's hardware makes of pruned weights: a model of the hardware, not of a sparse build.

A sparse strategy's build runs its pruned weights dense (TVM has no schedule that uses sparse tensor
cores), and its workload records each kernel's measured ``weight_density`` (the share of its weights
that are not zero). :func:`effective_workload` turns that workload into the one the target's hardware
would run, as its ``[sparsity]`` table says (:class:`cost_models.spec.SparsitySupport`):

- **2:4** on a unit that runs it (NVIDIA's sparse tensor cores, AMD's sparse MFMA): half of each
  exploited kernel's multiply-adds, and its weights stored as the kept half plus
  ``two_four_metadata_bits`` per kept value. Where the sparse units are the tensor or matrix units
  (``two_four_tensorized_only``), only a kernel's tensorized multiply-adds are exploited.
- **zeros skipped** on a unit that skips them whatever their pattern (``unstructured_dtypes``: an NPU
  with zero-skipping and compressed weights), for ``unstructured:P`` and ``2:4`` weights alike: the
  multiply-adds scale with the density, and the weights are stored as the kept values plus
  ``unstructured_index_bits`` per kept value.
- anything else runs dense: nothing changes.

The weights' compressed bytes come off every level's traffic (they are read once from DRAM at least);
the on-chip accesses of the loop nest are left as they are.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .spec import TargetSpec
from .workload import dtype_bytes, op_columns

#: A kernel whose weights are denser than this is not pruned (its density comes from the data).
PRUNED_BELOW = 0.99
#: 2:4 hardware needs at most 2 of every 4 weights kept.
TWO_FOUR_DENSITY = 0.5 + 1e-6


@dataclasses.dataclass(frozen=True)
class SparsityEffect:
    """What the hardware made of a variant's pruned weights."""

    sparsity: str
    exploited_macs: float     # multiply-adds the hardware skips
    dense_macs: float         # multiply-adds of the pruned kernels, run dense
    weight_bytes_saved: float

    def note(self, target: TargetSpec) -> str:
        """One line for the variant's status: what was modelled, and that the build runs dense."""
        if self.dense_macs == 0:
            return f"sparsity {self.sparsity}: no pruned kernel"
        if self.exploited_macs == 0:
            return (f"sparsity {self.sparsity}: {target.name} runs the pruned weights dense (its hardware, as its "
                    "target file says, exploits none of them here)")
        return (f"sparsity {self.sparsity} modelled: {target.name} skips {self.exploited_macs / self.dense_macs:.0%} of "
                f"the pruned kernels' multiply-adds and reads {self.weight_bytes_saved / 1e6:.3g} MB less of their "
                "compressed weights; the build itself runs dense")


def _less(curve: str, saved: float) -> str:
    points = [p.split(":") for p in curve.split()]
    return " ".join(f"{c}:{max(round(float(b) - saved), 0)}" for c, b in points)


def effective_workload(workload: pd.DataFrame, target: TargetSpec, sparsity: str) -> tuple[pd.DataFrame, SparsityEffect]:
    """``workload`` as ``target``'s hardware runs its pruned weights (see the module doc), and a summary."""
    if sparsity == "none" or "weight_density" not in workload:
        return workload, SparsityEffect(sparsity, 0.0, 0.0, 0.0)
    support = target.sparsity
    out = workload.copy()
    exploited_total = dense_total = saved_total = 0.0
    macs = {dtype: col for col, kind, dtype in op_columns(workload) if kind == "mac"}
    tensorized = (workload["tensorized_macs"] / workload["macs"].where(workload["macs"] > 0)).fillna(0.0).clip(0, 1) \
        if "tensorized_macs" in workload else pd.Series(0.0, workload.index)
    for i, row in workload.iterrows():
        density = float(row["weight_density"])
        if density >= PRUNED_BELOW or row["weight_bytes"] <= 0:
            continue
        dense_total += float(sum(row[c] for c in macs.values()))
        saved = 0.0
        for dtype, col in macs.items():
            count = float(row[col])
            # 2:4 units take 2:4 weights; zero-skipping units take any zeros, 2:4 ones too
            two_four = sparsity == "2:4" and dtype in support.two_four_dtypes and density <= TWO_FOUR_DENSITY
            if count <= 0 or not (two_four or dtype in support.unstructured_dtypes):
                continue
            share = float(tensorized[i]) if two_four and support.two_four_tensorized_only else 1.0
            kept = 0.5 if two_four else density
            skipped = count * share * (1 - kept)
            out.at[i, col] = count - skipped
            exploited_total += skipped
            b = dtype_bytes(dtype)
            stored = (0.5 + 0.5 * support.two_four_metadata_bits / (8 * b) if two_four
                      else density * (1 + support.unstructured_index_bits / (8 * b)))
            saved = max(saved, float(row["weight_bytes"]) * share * max(1 - stored, 0.0))
        if saved > 0:
            out.at[i, "weight_bytes"] = float(row["weight_bytes"]) - saved
            out.at[i, "traffic_curve"] = _less(row["traffic_curve"], saved)
            out.at[i, "unit_traffic_curve"] = _less(row["unit_traffic_curve"], saved)
            saved_total += saved
    out["sparse_skipped_macs"] = (workload[list(macs.values())].sum(axis=1) - out[list(macs.values())].sum(axis=1)
                                  if macs else np.zeros(len(out)))
    return out, SparsityEffect(sparsity, exploited_total, dense_total, saved_total)
