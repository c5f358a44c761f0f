"""Llama-3.1-8B-Instruct on one H100, modelled by `explorer serve`, beside the ML.ENERGY leaderboard v3.

Measured (ml-energy/leaderboard, public/data/models/meta-llama__Llama-3.1-8B-Instruct__lm-arena-chat.json;
vLLM 0.11.1, bf16, NVML GPU energy, LM-Arena chat task; max_num_seqs 8 / 64 / 256): energy per output
token, median inter-token latency, mean GPU power and mean output length of each row. The model uses each
row's own mean output length; the prompt length is not published (the explorer's default, 512, is used).
No target figure was fitted to these points.

    python benchmarks/llm_serving_vs_measured.py [--strategies fused-bf16] [--target gpu]
"""

from __future__ import annotations

import argparse

import pandas as pd

from explorer.scoring.serving import LM_ARENA_CHAT, ServingWorkload
from explorer.sweep.serving import serve

#: (max_num_seqs, J per output token, median ITL s, mean power W, mean output tokens)
MEASURED = ((8, 0.4548, 7.316e-3, 486.4, 388.7), (64, 0.1186, 11.50e-3, 610.3, 395.5), (256, 0.0766, 26.13e-3, 690.5, 404.2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="gpu")
    ap.add_argument("--strategies", default="fused-bf16")
    args = ap.parse_args()
    rows = []
    for batch, joules, itl, watts, out_tokens in MEASURED:
        w = ServingWorkload(LM_ARENA_CHAT.prompt_tokens, round(out_tokens))
        for _, r in serve("llama-3.1-8b", [args.target], args.strategies, [batch], w, progress=False).iterrows():
            rows.append({"batch": batch, "strategy": r["strategy"],
                         "J/token model": r["energy_per_output_token_j"], "J/token measured": joules,
                         "ratio J": r["energy_per_output_token_j"] / joules,
                         "ITL model ms": r["inter_token_latency_s"] * 1e3, "ITL measured ms": itl * 1e3,
                         "ratio ITL": r["inter_token_latency_s"] / itl,
                         "power model W": r["mean_power_w"], "power measured W": watts,
                         "ratio W": r["mean_power_w"] / watts})
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
