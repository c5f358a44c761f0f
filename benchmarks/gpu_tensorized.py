"""How much of each GPU build's work the tensor cores do, and the 2:4 and weight-only effects they make possible.

For every model, precision and GPU target: the share of the useful multiply-adds on ``mma`` instructions,
the executed (padded) over useful multiply-adds, and the untensorized kernels that do the most of the
rest (a decode step's attention GEMVs, one row per head, are left to SIMT lanes on purpose). Then two
ratios of issue 32: the 2:4 fp16 build's MAC energy over the dense one on resnet18, and an int4
weight-only decode step's weight bytes and latency over bf16's. Last, attention (the
fused kernels of :mod:`explorer.tvm.passes.fused_attention`), in decode and in prefill: its share of the
step's energy and latency. Analysis only (``--no-build``), so it runs on a machine without a GPU.

    python benchmarks/gpu_tensorized.py [--targets gpu,h200,b200] [--models resnet18,bert-mini,gpt2]
"""

from __future__ import annotations

import argparse

import pandas as pd

import explorer

#: (model, phase, batch) of each row; a decoder's decode step at batch 8, as a server runs it.
CASES = {"resnet18": [(None, 1)], "bert-mini": [(None, 1)], "gpt2": [("prefill:128", 1), ("decode:128", 8)],
         "llama-3.1-8b": [("prefill:512", 1), ("decode:512", 8)]}
STRATEGIES = ["fused-fp16", "fused-bf16", "fused-int8", "fused-fp8"]


def _sweep(model: str, targets: list[str], strategies: list[str], phase: str | None, batch: int):
    """The analysis-only sweep of one case (its ``.variants`` and ``.kernels``)."""
    kwargs = {"phases": phase, "batches": [batch]} if phase else {}
    return explorer.run_sweep([model], targets=targets, strategies=strategies, build=False, progress=False, **kwargs)


def _untensorized(kernels: pd.DataFrame) -> str:
    rest = kernels.assign(left=kernels.useful_macs * (1 - kernels.tensorized_macs / kernels.macs.where(kernels.macs > 0)))
    top = rest[rest.left > 0].groupby("kernel").left.sum().sort_values(ascending=False).head(2)
    total = rest.left.sum()
    return ", ".join(f"{k} {v / total:.0%}" for k, v in top.items())


def tensorized_rows(models: list[str], targets: list[str]) -> pd.DataFrame:
    rows = []
    for model in models:
        for phase, batch in CASES[model]:
            strategies = [s for s in STRATEGIES if not (s == "fused-int8" and model.startswith("llama"))]
            result = _sweep(model, targets, strategies, phase, batch)
            for _, v in result.variants.iterrows():
                k = result.kernels[(result.kernels.strategy == v.strategy) & (result.kernels.target == v.target)]
                rows.append({"model": model, "phase": phase or "-", "batch": batch, "target": v.target,
                             "strategy": v.strategy, "tensorized": v.tensorized_share,
                             "executed / useful": v.macs / v.useful_macs, "largest untensorized": _untensorized(k)})
    return pd.DataFrame(rows)


def effect_rows() -> pd.DataFrame:
    sparse = _sweep("resnet18", ["gpu"], ["fused-fp16", "fused-fp16-2:4"], None, 1).kernels
    mac_j = sparse.groupby("strategy").energy_compute_j.sum()
    wo = _sweep("gpt2", ["gpu"], ["fused-bf16", "fused-int4w-bf16"], "decode:128", 8).variants.set_index("strategy")
    return pd.DataFrame([
        {"check": "resnet18 fp16 2:4 compute energy / dense (gpu)", "ratio": mac_j["fused-fp16-2:4"] / mac_j["fused-fp16"]},
        {"check": "gpt2 decode b8 int4w-bf16 weight bytes / bf16 (gpu)",
         "ratio": wo.loc["fused-int4w-bf16", "weight_bytes"] / wo.loc["fused-bf16", "weight_bytes"]},
        {"check": "gpt2 decode b8 int4w-bf16 latency / bf16 (gpu)",
         "ratio": wo.loc["fused-int4w-bf16", "latency_s"] / wo.loc["fused-bf16", "latency_s"]},
    ])


#: Decode steps and prefills whose attention the fused kernels take: (model, phase, batch).
ATTENTION_CASES = [("gpt2", "decode:128", 8), ("llama-3.1-8b", "decode:512", 8), ("llama-3.1-8b", "decode:512", 64),
                   ("llama-3.1-8b", "prefill:512", 1), ("llama-3.1-8b", "prefill:2048", 1)]


def attention_rows(target: str = "gpu") -> pd.DataFrame:
    """Attention in ``fused-bf16``: the step's energy and latency, the attention kernels' part of them
    (a decode step's split kernel and merge, a prefill's tensor-core kernel, or MatMul -> Softmax ->
    MatMul before them), and the fused kernel's executed over useful multiply-adds (keys and rows padded
    to whole tiles)."""
    rows = []
    for model, phase, batch in ATTENTION_CASES:
        result = _sweep(model, [target], ["fused-bf16"], phase, batch)
        v, k = result.variants.iloc[0], result.kernels
        att = k[k.kernel.str.contains("attention|softmax|matmul5|matmul6")]
        split = k[k.kernel.str.contains("fused_attention_split|fused_attention_prefill")]
        rows.append({"model": model, "phase": phase, "batch": batch, "step energy J": v.energy_j,
                     "step latency ms": v.latency_s * 1e3, "attention energy share": att.energy_j.sum() / v.energy_j,
                     "attention latency share": att.latency_s.sum() / v.latency_s,
                     "fused executed / useful": split.macs.sum() / split.useful_macs.sum() if len(split) else None})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="gpu,h200,b200")
    ap.add_argument("--models", default="resnet18,bert-mini,gpt2,llama-3.1-8b")
    args = ap.parse_args()
    print(tensorized_rows(args.models.split(","), args.targets.split(",")).to_markdown(index=False, floatfmt=".3g"))
    print()
    print(effect_rows().to_markdown(index=False, floatfmt=".3g"))
    print()
    print(attention_rows().to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
