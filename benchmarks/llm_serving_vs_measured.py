"""Llama-3.1 served by vLLM on H100s, modelled by `explorer serve`, beside the ML.ENERGY leaderboard v3.

Measured (ml-energy/leaderboard, public/data/models/meta-llama__Llama-3.1-{8B,70B}-Instruct__lm-arena-chat.json;
vLLM 0.11.1, bf16, NVML GPU energy, LM-Arena chat task; max_num_seqs 8 / 64 / 256): energy per output
token (all GPUs), median inter-token latency, mean power (all GPUs; printed per GPU) and mean output length
of each row. 8B runs on one H100; 70B on four (tensor parallel, `--devices 4`). The model uses each row's
own mean output length; the prompt length is not published (the explorer's default, 512, is used).
No target figure was fitted to these points.

It then says how many of the named figures (energy per token, inter-token latency and power per GPU of
each row) are within 1.5x of the measurement, and prints the model's predictions for other GPUs, with no
measurement beside them.

    python benchmarks/llm_serving_vs_measured.py [--strategies fused-bf16] [--target gpu] [--models 8b,70b]
                                                 [--no-predictions]
"""

from __future__ import annotations

import argparse
import dataclasses

import pandas as pd

from explorer.scoring.serving import LM_ARENA_CHAT, ServingWorkload
from explorer.sweep.serving import serve
from models import tensor_parallel_name


@dataclasses.dataclass(frozen=True)
class Measured:
    """One leaderboard row: J per output token and power of every GPU together, median ITL."""

    max_num_seqs: int
    joules_per_token: float
    itl_s: float
    power_w: float
    output_tokens: float


@dataclasses.dataclass(frozen=True)
class Case:
    """A model on some H100s, and the leaderboard's rows for it."""

    label: str
    model: str
    devices: int
    rows: tuple[Measured, ...]


CASES = {
    "8b": Case("Llama-3.1-8B-Instruct, 1x H100", "llama-3.1-8b", 1, (
        Measured(8, 0.4548, 7.316e-3, 486.4, 388.7), Measured(64, 0.1186, 11.50e-3, 610.3, 395.5),
        Measured(256, 0.0766, 26.13e-3, 690.5, 404.2))),
    "70b": Case("Llama-3.1-70B-Instruct, 4x H100", "llama-3.1-70b", 4, (
        Measured(8, 3.7587, 16.573e-3, 1765.4, 350.0), Measured(64, 0.79725, 22.432e-3, 2001.5, 352.0),
        Measured(256, 0.47899, 39.837e-3, 2354.3, 349.0))),
}


def compare(case: Case, target: str, strategies: str) -> pd.DataFrame:
    """The model's rows for ``case`` beside its measured ones, with ratios."""
    rows = []
    for m in case.rows:
        w = ServingWorkload(LM_ARENA_CHAT.prompt_tokens, round(m.output_tokens))
        model = tensor_parallel_name(case.model, case.devices)
        for _, r in serve(model, [target], strategies, [m.max_num_seqs], w, progress=False).iterrows():
            measured_w = m.power_w / case.devices
            rows.append({"batch": m.max_num_seqs, "strategy": r["strategy"],
                         "J/token model": r["energy_per_output_token_j"], "J/token measured": m.joules_per_token,
                         "ratio J": r["energy_per_output_token_j"] / m.joules_per_token,
                         "ITL model ms": r["inter_token_latency_s"] * 1e3, "ITL measured ms": m.itl_s * 1e3,
                         "ratio ITL": r["inter_token_latency_s"] / m.itl_s,
                         "W/GPU model": r["mean_power_w"], "W/GPU measured": measured_w,
                         "ratio W": r["mean_power_w"] / measured_w,
                         "links' time": r["interconnect_time_share"]})
    return pd.DataFrame(rows)


#: The ratio of model to measurement every named figure must stay within (issue 36), either way.
AGREEMENT = 1.5

#: Predictions printed with no measurement beside them: (label, model, devices, targets).
PREDICTIONS = (("Llama-3.1-8B-Instruct, one device", "llama-3.1-8b", 1, ("h200", "b200", "mi300x")),)


def within(table: pd.DataFrame) -> tuple[int, int]:
    """How many of the table's energy, latency and power ratios lie within :data:`AGREEMENT` either way,
    of how many."""
    ratios = table[["ratio J", "ratio ITL", "ratio W"]].to_numpy().ravel()
    return int(((ratios <= AGREEMENT) & (ratios >= 1 / AGREEMENT)).sum()), len(ratios)


def predictions(strategies: str) -> pd.DataFrame:
    """The model's serving rows for :data:`PREDICTIONS`, at the leaderboard's batches."""
    frames = []
    for label, model, devices, targets in PREDICTIONS:
        table = serve(tensor_parallel_name(model, devices), list(targets), strategies, [8, 64, 256], LM_ARENA_CHAT,
                      progress=False)
        frames.append(table.assign(case=label)[["case", "target", "strategy", "batch", "achieved_batch",
                                                "energy_per_output_token_j", "inter_token_latency_s", "mean_power_w",
                                                "power_capped"]])
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="gpu")
    ap.add_argument("--strategies", default="fused-bf16")
    ap.add_argument("--models", default="8b,70b", help=f"of {', '.join(CASES)}")
    ap.add_argument("--no-predictions", action="store_true", help="only the measured cases")
    args = ap.parse_args()
    agree = total = 0
    for key in args.models.split(","):
        case = CASES[key]
        print(f"\n{case.label} ({args.target}, {args.strategies})\n")
        table = compare(case, args.target, args.strategies)
        print(table.to_markdown(index=False, floatfmt=".3g"))
        ok, n = within(table)
        agree, total = agree + ok, total + n
    print(f"\n{agree} of {total} named figures within {AGREEMENT}x of the measurement")
    if not args.no_predictions:
        print("\nPredictions, nothing measured beside them (LM-Arena chat lengths: 512 in, 390 out)\n")
        print(predictions(args.strategies).to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
