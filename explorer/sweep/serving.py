"""``explorer serve``: a decoder's serving figures per target, strategy and batch (see
:mod:`explorer.scoring.serving` for their definitions).

Three sweeps' worth of analysis, no build: the prompt's prefill at the prefill batch, and a decode step
at the two contexts :meth:`ServingWorkload.contexts` names, at each batch the KV cache leaves room for.
"""

from __future__ import annotations

import pandas as pd

from cost_models.targets import load_target
from explorer.core.errors import ExplorerError
from explorer.model.phases import Phase
from explorer.model.prepare import prepare
from explorer.scoring.serving import DEVICE_COUNTS, ServingWorkload, achieved_batch, serving_row, smallest_devices
from explorer.sweep.sweep import run_sweep
from explorer.workload.expert_load import read_expert_load
from explorer.workload.reuse import RowLoad, distinct_rows
from models import split_tensor_parallel
from models.decoders import shard_error

#: The columns of ``serving.csv``, in order.
SERVING_COLUMNS = ("model", "target", "strategy", "devices", "batch", "achieved_batch", "prompt_tokens",
                   "output_tokens", "prefill_batch", "energy_per_output_token_j", "prefill_energy_share",
                   "inter_token_latency_s", "output_tokens_per_s", "mean_power_w", "weight_bytes_per_step",
                   "weight_bytes_per_token", "experts_per_step", "expert_routing", "interconnect_bytes_per_token",
                   "interconnect_energy_share", "interconnect_time_share", "power_capped", "fits", "fit_note",
                   "kv_cache_dtype")


def _ok(variants: pd.DataFrame) -> pd.DataFrame:
    return variants[variants["energy_j"].notna()]


def _split_note(cfg, devices: int, device_bytes: float, constant_bytes: float, per_sequence: float,
                activation_bytes: float) -> str:
    """What a fit note adds: the fewest devices the decoder of whole-model config ``cfg`` fits on, split as
    ``--devices`` splits it."""
    if cfg is None:
        return ""
    n = smallest_devices(cfg.kv_heads, lambda k: not shard_error(cfg, k), devices, device_bytes, constant_bytes,
                         per_sequence, activation_bytes)
    return f"; it fits on {n} devices (--devices {n})" if n else f"; it fits on none of {', '.join(map(str, DEVICE_COUNTS))} devices"


def experts_read(cfg, batch: int, load: RowLoad | None = None) -> float | None:
    """The experts a layer's decode step at ``batch`` reads, what the traffic model charges: under uniform
    routing E(1 - (1 - k/E)^B) (:func:`explorer.workload.reuse.distinct_rows`), under a measured ``load``
    its expected distinct experts averaged over the layers; None for a dense decoder (or no config)."""
    if cfg is None or not cfg.experts:
        return None
    if load is not None:
        return load.distinct_rows(batch)
    return distinct_rows(cfg.experts, cfg.experts_per_token, batch)


def routing_of(cfg, load: RowLoad | None) -> str:
    """How ``serving.csv`` states the routing its expert bytes assume: ``uniform``, ``measured (FILE)``,
    or empty for a dense decoder."""
    if cfg is None or not cfg.experts:
        return ""
    return f"measured ({load.source})" if load is not None else "uniform"


def expert_load_of(cfg, model: str, path: str | None) -> RowLoad | None:
    """The measured expert load in the file at ``path`` for the decoder ``cfg`` (None without a path);
    one clear error for a dense decoder or a file that does not fit the mixture."""
    if path is None:
        return None
    if cfg is None or not cfg.experts:
        raise ExplorerError(f"--expert-load: {model} is not a mixture of experts")
    return read_expert_load(path, cfg.experts, cfg.experts_per_token, cfg.layers)


def decoder_config(model: str):
    """The decoder's whole-model config behind a zoo name or config path (``@tpN`` or not), or None."""
    import models as zoo
    from models.hf_configs import ConfigError, load_config

    base = split_tensor_parallel(model)[0]
    try:
        return load_config(base) if base.endswith(".json") else zoo.get_model(base).decoder
    except (KeyError, ConfigError, OSError) as err:  # an unknown zoo name or an unreadable config
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise ExplorerError(f"{model}: {msg}") from None


def serve(model: str, targets: list[str], strategies: str, batches: list[int], workload: ServingWorkload,
          kv_cache_dtype: str = "float16", progress: bool = True, jobs: int | None = None,
          expert_load: str | None = None) -> pd.DataFrame:
    """One row per target, strategy and batch (:data:`SERVING_COLUMNS`); ``model`` may name one device's
    shard (``NAME@tpN``, tensor parallelism over N devices). ``expert_load`` is the path of a mixture's
    measured expert load (:mod:`explorer.workload.expert_load`; default: uniform routing)."""
    devices = split_tensor_parallel(model)[1]
    cfg = decoder_config(model)
    load = expert_load_of(cfg, model, expert_load)
    specs = {t: load_target(t) for t in targets}
    p, o = workload.prompt_tokens, workload.output_tokens
    common = dict(targets=targets, strategies=strategies, build=False, check=False, progress=progress, jobs=jobs,
                  kv_cache_dtype=kv_cache_dtype, tables=False, row_load=load)
    prefill = _ok(run_sweep([model], phases=[Phase("prefill", p)], batches=[workload.prefill_batch], **common).variants)
    if prefill.empty:
        raise ExplorerError(f"{model}: no strategy analysed its prefill; see the sweep's messages above")
    per_sequence = prepare(model, phase=Phase("decode", p + o), batch=1, kv_cache_dtype=kv_cache_dtype).kv_cache_bytes
    plans = {}
    for _, r in prefill.iterrows():
        device = specs[r["target"]].memory[0].capacity_bytes
        for b in batches:
            achieved, why = achieved_batch(b, device, r["constant_bytes"], per_sequence, r["planned_memory_bytes"])
            if why:
                why += _split_note(cfg, devices, device, r["constant_bytes"], per_sequence, r["planned_memory_bytes"])
            plans[(r["target"], r["strategy"], b)] = achieved, why
    step_batches = sorted({a or b for (_, _, b), (a, _) in plans.items()})
    low, high = workload.contexts()
    decode = _ok(run_sweep([model], phases=[Phase("decode", low), Phase("decode", high)], batches=step_batches,
                           **common).variants)
    rows = []
    for (target, strategy, b), (achieved, why) in plans.items():
        pick = decode[(decode["target"] == target) & (decode["strategy"] == strategy) & (decode["batch"] == (achieved or b))]
        at = {int(r["phase"].split(":")[1]): r for _, r in pick.iterrows()}
        pre = prefill[(prefill["target"] == target) & (prefill["strategy"] == strategy)].iloc[0]
        if low not in at or high not in at:
            continue  # its decode failed: the sweep said why
        rows.append({"model": model.rsplit("/", 1)[-1].replace(".json", ""), "target": target, "strategy": strategy,
                     "devices": devices, "kv_cache_dtype": kv_cache_dtype, "experts_per_step": experts_read(cfg, achieved or b, load),
                     "expert_routing": routing_of(cfg, load),
                     **serving_row(workload, b, achieved, why, pre, at[low], at[high], devices)})
    return pd.DataFrame(rows, columns=list(SERVING_COLUMNS))
