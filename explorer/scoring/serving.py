"""Serving figures of a decoder, defined as serving measurements define them (pure pandas).

A server running batch ``B`` in steady state gives each sequence a prefill of its ``P``-token prompt
(run ``b_p`` prompts at a time) and ``O`` decode steps at contexts ``P .. P + O - 1``. Per output token:

    energy = [E_prefill(P) / b_p + sum over L of E_decode(L, B) / B] / O

A decode step's cost is affine in its context (it reads the cache once), so the sum is ``O`` times the
step at the mean context ``P + (O - 1) / 2``, interpolated between two analysed contexts. The
inter-token latency is the decode step at ``P + O / 2``. The batch achieved is ``min(B, what the KV
cache leaves room for at 90% of device memory)``, as vLLM's ``gpu_memory_utilization`` caps it.
Energy is at the accelerator boundary (what NVML counts): the target's compute, memory and static power,
and for a model split over devices their interconnect (what each device's links spend sending).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

#: Share of device memory a server gives weights, activations and the KV cache (vLLM's default
#: ``gpu_memory_utilization``).
MEMORY_UTILIZATION = 0.9


@dataclasses.dataclass(frozen=True)
class ServingWorkload:
    """What one request is: ``prompt_tokens`` in, ``output_tokens`` out; prompts prefilled
    ``prefill_batch`` at a time."""

    prompt_tokens: int
    output_tokens: int
    prefill_batch: int = 1

    def contexts(self) -> tuple[int, int]:
        """The two decode contexts analysed: the first and one past the last step's."""
        return self.prompt_tokens, self.prompt_tokens + self.output_tokens


#: The ML.ENERGY benchmark's LM-Arena chat task as the leaderboard v3 measured it: mean output lengths
#: of 389-404 tokens for Llama-3.1-8B-Instruct on one H100 (ml-energy/leaderboard, public/data/models/
#: meta-llama__Llama-3.1-8B-Instruct__lm-arena-chat.json). Its mean prompt length is not published (the
#: prompts are whole LMArena conversations up to each user turn); 512 is this project's assumption.
LM_ARENA_CHAT = ServingWorkload(prompt_tokens=512, output_tokens=390)


def achieved_batch(batch: int, device_bytes: float, constant_bytes: float, kv_bytes_per_sequence: float,
                   activation_bytes: float = 0.0) -> tuple[int, str]:
    """``(batch achieved, why not the whole model fits)``: the batch capped by the KV cache room left at
    :data:`MEMORY_UTILIZATION` of ``device_bytes``; 0 and the reason where even one sequence does not fit."""
    room = MEMORY_UTILIZATION * device_bytes - constant_bytes - activation_bytes
    if room < kv_bytes_per_sequence:
        return 0, (f"weights {constant_bytes / 1e9:.1f} GB and one sequence's cache {kv_bytes_per_sequence / 1e9:.2f} GB "
                   f"exceed {MEMORY_UTILIZATION:.0%} of the device's {device_bytes / 1e9:.1f} GB")
    return min(batch, int(room // kv_bytes_per_sequence)), ""


#: The device counts :func:`smallest_devices` tries (tensor parallelism stays within one NVLink or
#: Infinity Fabric domain of up to 8 devices in practice; beyond, up to 64).
DEVICE_COUNTS = (1, 2, 4, 8, 16, 32, 64)


def smallest_devices(kv_heads: int, splits, devices: int, device_bytes: float, constant_bytes: float,
                     kv_bytes_per_sequence: float, activation_bytes: float = 0.0) -> int | None:
    """The fewest devices (of :data:`DEVICE_COUNTS`) over which a decoder whose one-device shard over
    ``devices`` holds ``constant_bytes`` of weights and ``kv_bytes_per_sequence`` of cache a sequence
    fits one sequence: the weights split evenly, the cache by key/value heads (each device at least
    one, replicated); ``splits(n)`` says whether its heads split over ``n`` devices. None where none does."""
    for n in DEVICE_COUNTS:
        if not splits(n):
            continue
        weights = constant_bytes * devices / n
        kv = kv_bytes_per_sequence * max(kv_heads // n, 1) / max(kv_heads // devices, 1)
        if MEMORY_UTILIZATION * device_bytes - weights - activation_bytes >= kv:
            return n
    return None


def _at(context: float, low: pd.Series, high: pd.Series, contexts: tuple[int, int]) -> pd.Series:
    """The affine interpolation (or extrapolation) of a decode figure to ``context``."""
    c1, c2 = contexts
    return low + (high - low) * (context - c1) / (c2 - c1)


def serving_row(workload: ServingWorkload, batch: int, achieved: int, why: str, prefill: pd.Series,
                decode_low: pd.Series, decode_high: pd.Series, devices: int = 1) -> dict:
    """One ``serving.csv`` row from the prefill variant (at ``workload.prefill_batch``) and the decode
    variants at the two contexts (at the achieved batch, or at ``batch`` where the model does not fit).
    With ``devices`` over one the variants are one device's shard (tensor parallelism) whose energies
    count every device (:mod:`cost_models.energy`): the energy per output token is the deployment's, the
    mean power one device's, and the interconnect's bytes those one device sends. The weights a decode step
    reads are one device's: a mixture of experts' distinct routed experts at the step's batch. ``power_capped``
    says that the device's power limit stretched the prefill's or a decode step's time
    (:func:`cost_models.energy.power_capped`)."""
    p, o, bp = workload.prompt_tokens, workload.output_tokens, workload.prefill_batch
    step_batch = achieved or batch
    contexts = workload.contexts()
    figures = ["energy_j", "latency_s", "energy_interconnect_j", "interconnect_bytes", "interconnect_latency_s",
               "weight_bytes"]
    mean = _at(p + (o - 1) / 2, *(row.reindex(figures).astype(float).fillna(0.0) for row in (decode_low, decode_high)),
               contexts)
    itl = float(_at(p + o / 2, decode_low[["latency_s"]], decode_high[["latency_s"]], contexts)["latency_s"])
    pre = prefill.reindex(figures).astype(float).fillna(0.0) / bp  # per sequence
    decode = o * mean / step_batch  # per sequence, all its steps
    cycle_s = step_batch * pre["latency_s"] + o * mean["latency_s"]  # prefill and decode of one batch
    cycle_j = step_batch * (pre["energy_j"] + decode["energy_j"])
    sequence_j = pre["energy_j"] + decode["energy_j"]
    return {
        "prompt_tokens": p, "output_tokens": o, "prefill_batch": bp, "batch": batch, "achieved_batch": achieved,
        "energy_per_output_token_j": sequence_j / o,
        "prefill_energy_share": pre["energy_j"] / sequence_j,
        "inter_token_latency_s": itl,
        "output_tokens_per_s": step_batch * o / cycle_s,
        "mean_power_w": cycle_j / cycle_s / devices,
        "weight_bytes_per_step": float(mean["weight_bytes"]),
        "weight_bytes_per_token": float(mean["weight_bytes"]) / step_batch,
        "interconnect_bytes_per_token": (pre["interconnect_bytes"] + decode["interconnect_bytes"]) / o,
        "interconnect_energy_share": (pre["energy_interconnect_j"] + decode["energy_interconnect_j"]) / sequence_j,
        "interconnect_time_share": float((step_batch * pre["interconnect_latency_s"] + o * mean["interconnect_latency_s"])
                                         / cycle_s),
        "power_capped": any(float(r.get("power_capped_s") or 0.0) > 0 for r in (prefill, decode_low, decode_high)),
        "fits": not why, "fit_note": why,
    }
