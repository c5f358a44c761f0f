"""A decoder analysed by its distinct layers: the calls of the layer that stands for many, repeated.

A model built from its config holds its first, second, third and last layers
(:func:`models.decoders.representative_layers`); the third stands for every middle layer (the third pair
for every middle pair, where layers alternate: gpt-oss's sliding-window and full attention). After the
compile, :func:`repeat_layer` makes the call sequence of the whole model: that layer's calls once for
each layer it stands for. Each copy gets its own weights, KV cache and model outputs (fresh storages,
as the whole model has them) and shares the activation memory the static planner gave the original,
which settles into the same storages layer after layer. Kernels are analysed once; the workload table
(:func:`explorer.workload.table.workload_table`) then sees every call of the whole inference, so the
reuse between calls, and whether the model fits a cache, are judged on the whole model.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

from explorer.workload.table import CallSite, Tensor

#: A layer's weight or KV cache, as the importer names it (``model_layers_2_mlp_up_proj_weight``,
#: ``past_key_values_2_key``).
_LAYER = re.compile(r"(?:^|[._])layers[._](\d+)[._]|^past_key_values[._](\d+)[._]")


def layer_of(tensor: Tensor) -> int | None:
    """The layer a weight or cache tensor belongs to, from its name; None for any other."""
    m = _LAYER.search(tensor.name)
    return int(m[1] or m[2]) if m else None


def segment(calls: list[CallSite], layer: int) -> tuple[int, int]:
    """``(start, end)``: the calls of ``layer``, from the one after the previous layer's last call with a
    weight of its own to its own last such call (so a call without weights goes with the next layer's)."""
    owners = [{layer_of(t) for t in c.args if t.origin in ("const", "input")} - {None} for c in calls]
    mine = [i for i, o in enumerate(owners) if layer in o]
    if not mine:
        raise ValueError(f"no kernel call reads a weight or the cache of layer {layer}")
    before = [i for i, o in enumerate(owners[:mine[0]]) if o and min(o) < layer]
    return (before[-1] + 1 if before else 0), mine[-1] + 1


def repeat_layer(calls: list[CallSite], layers: tuple[int, ...], count: int, constant_bytes: int
                 ) -> tuple[list[CallSite], int]:
    """The call sequence with the calls of the unit of ``layers`` (one layer, or consecutive ones that
    differ: gpt-oss's sliding-window and full attention) repeated to stand for ``count`` units, and the
    constant bytes of the whole model (see the module doc)."""
    start, end = segment(calls, layers[0])[0], segment(calls, layers[-1])[1]
    inside = calls[start:end]
    written = {id(t) for c in inside for t in c.args[c.n_inputs:]}
    read = {id(t) for c in calls for t in c.args[:c.n_inputs]}
    # a later call that reads only what the unit wrote and whose results nothing reads (a cast of its new
    # keys and values into the cache's dtype, returned) is the unit's too: each copy has its own
    tied = [c for c in calls[end:] if c.n_inputs and all(id(t) in written for t in c.args[:c.n_inputs])
            and not any(id(t) in read for t in c.args[c.n_inputs:])]
    unit = inside + tied
    in_unit = {id(c) for c in unit}
    outside = {t.storage for c in calls if id(c) not in in_unit for t in c.args + c.eliminated}
    # what no other layer touches is this unit's own: its weights, its cache and the planned storage of
    # its new keys and values (returned, so live to the end); the activation memory is shared
    own = {t.storage: t for c in unit for t in c.args if t.storage not in outside}
    fresh = itertools.count(max(t.storage for c in calls for t in c.args) + 1)
    copies: list[CallSite] = []
    tied_copies: list[CallSite] = []
    for _ in range(count - 1):
        renamed = {s: next(fresh) for s in own}

        def moved(t: Tensor) -> Tensor:
            return dataclasses.replace(t, storage=renamed[t.storage]) if t.storage in renamed else t

        def copy(c: CallSite) -> CallSite:
            return dataclasses.replace(c, args=[moved(t) for t in c.args], eliminated=[moved(t) for t in c.eliminated])

        copies += [copy(c) for c in inside]
        tied_copies += [copy(c) for c in tied]
    after = calls[end:]
    last_tied = max((i for i, c in enumerate(after) if id(c) in in_unit), default=-1)
    ordered = calls[:end] + copies + after[:last_tied + 1] + tied_copies + after[last_tied + 1:]
    out = [dataclasses.replace(c, index=i) for i, c in enumerate(ordered)]
    weights = sum(t.nbytes for t in own.values() if t.origin == "const")
    return out, constant_bytes + (count - 1) * weights
