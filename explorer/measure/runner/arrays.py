"""The arrays a variant takes: inputs read or regenerated as the explorer samples them, weights
regenerated (a zoo draw replayed exactly, anything else as seeded numbers of its mean and spread)."""

from __future__ import annotations

import json

from .bundle import ROOT, BadInput


def sample_inputs(inputs: list[dict], seed: int):
    """The explorer's seeded inputs (``PreparedModel.sample_inputs``): standard normal floats, integers
    in ``[0, high)``, filled ones (masks) constant."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for spec in inputs:
        shape = tuple(spec["shape"])
        if spec.get("fill") is not None:
            out[spec["name"]] = np.full(shape, spec["fill"]).astype(spec["dtype"])
        elif spec["dtype"].startswith("float"):
            out[spec["name"]] = rng.standard_normal(shape).astype(spec["dtype"])
        else:
            out[spec["name"]] = rng.integers(0, spec["high"], shape).astype(spec["dtype"])
    return out


def replay_draws(seed: int, draws: list):
    """The zoo's weight draws from its seed, in order (as ``models._graph.GraphBuilder`` draws them)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for kind, shape, a, b in draws:
        if kind == "normal":
            yield (rng.standard_normal(tuple(shape), dtype=np.float32) * np.float32(a)).astype(np.float32)
        else:
            yield rng.uniform(a, b, size=tuple(shape)).astype(np.float32)


def transform(array, how: str):
    """A zoo draw as a strategy's passes left it: ``identity``, ``transpose``, ``float16`` or both, then
    perhaps ``pack<B>`` (blocks of ``B`` output columns, the CPU's packed weights)."""
    import numpy as np

    for step in how.split(","):
        if step == "transpose":
            array = array.T
        elif step == "float16":
            array = array.astype(np.float16)
        elif step.startswith("pack"):
            block = int(step[4:])
            *lead, n = array.shape
            array = np.moveaxis(array.reshape(*lead, n // block, block), -2, 0)
    return np.ascontiguousarray(array)


class Arrays:
    """The manifest's arrays, made once each (numpy; ``bfloat16`` as its bits in uint16)."""

    def __init__(self, manifest: dict):
        self.manifest = manifest
        self.specs = manifest["arrays"]
        self.cache: dict = {}
        self.draws: dict = {}
        self.samples: dict = {}

    def get(self, aid: str):
        """The array ``aid`` of the manifest, made on first use."""
        if aid not in self.cache:
            self.cache[aid] = self._make(self.specs[aid])
        return self.cache[aid]

    def forget(self, keep: set) -> None:
        """Drop every array but those in ``keep`` (a variant's arrays are made again for the next)."""
        for aid in list(self.cache):
            if aid not in keep:
                del self.cache[aid]
        self.draws.clear()

    def _make(self, spec: dict):
        import numpy as np

        kind = spec["kind"]
        if kind == "file":
            return np.load(ROOT / spec["file"], allow_pickle=False)
        if kind == "sample":
            key = (json.dumps(spec["inputs"]), spec["seed"])
            if key not in self.samples:
                self.samples = {key: sample_inputs(spec["inputs"], spec["seed"])}
            return self.samples[key][spec["name"]]
        if kind == "zoo":
            model = spec["zoo"]
            if model not in self.draws:
                zoo = self.manifest["zoo"][model]
                self.draws = {model: list(replay_draws(zoo["seed"], zoo["draws"]))}
            return transform(self.draws[model][spec["draw"]], spec["transform"])
        if kind == "synthetic":
            rng = np.random.default_rng(int(spec["sha256"][:12], 16))
            shape, dtype = tuple(spec["shape"]), spec["dtype"]
            if "mean" in spec:
                values = rng.standard_normal(shape, dtype=np.float32) * np.float32(spec["std"]) + np.float32(spec["mean"])
                if dtype == "bfloat16":
                    return (values.view(np.uint32) >> 16).astype(np.uint16)
                return values.astype(dtype)
            return rng.integers(spec["low"], spec["high"] + 1, shape).astype(dtype)
        raise BadInput(f"unknown array kind {kind!r} in the manifest")


def to_device(tvm, array, dtype: str, dev):
    """A TVM tensor of ``array`` on ``dev`` (bfloat16 from its uint16 bits)."""
    if dtype == "bfloat16" and str(array.dtype) == "uint16":
        return tvm.runtime.tensor(array, device=dev)._create_view(tuple(array.shape), "bfloat16")
    return tvm.runtime.tensor(array, device=dev)
