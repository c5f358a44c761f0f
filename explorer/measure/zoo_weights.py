"""The zoo's weights as a measurement bundle regenerates them: the seeded draws a zoo model is built
from, recorded while it builds, replayed with numpy, and the sha256 of every way a strategy's passes
keep a draw (as it is, transposed, in float16, packed in blocks of columns), so that a lifted weight
can be named by its draw.
"""

from __future__ import annotations

import hashlib

import numpy as np

from explorer.measure.runner.arrays import replay_draws, transform


def zoo_draws(base: str, batch: int | None) -> tuple[int, list[list]] | None:
    """The seed and the ordered weight draws (``[kind, shape, a, b]``) of zoo model ``base``, recorded
    while the zoo builds it; None for a model that is not in the zoo."""
    import models as zoo
    from models import _graph

    try:
        info = zoo.get_model(base)
    except KeyError:
        return None
    seeds: list[int] = []
    draws: list[list] = []
    orig_init, orig_normal, orig_uniform = _graph.GraphBuilder.__init__, _graph.GraphBuilder.normal, _graph.GraphBuilder.uniform

    def init(self, seed):
        seeds.append(int(seed))
        orig_init(self, seed)

    def normal(self, shape, std):
        draws.append(["normal", [int(d) for d in shape], float(np.float32(std)), 0.0])
        return orig_normal(self, shape, std)

    def uniform(self, shape, low, high):
        draws.append(["uniform", [int(d) for d in shape], float(low), float(high)])
        return orig_uniform(self, shape, low, high)

    _graph.GraphBuilder.__init__, _graph.GraphBuilder.normal, _graph.GraphBuilder.uniform = init, normal, uniform
    try:
        if info.decoder is None and batch is not None:
            info.build(batch=batch)
        else:
            info.build()
    finally:
        _graph.GraphBuilder.__init__, _graph.GraphBuilder.normal, _graph.GraphBuilder.uniform = (orig_init, orig_normal,
                                                                                                 orig_uniform)
    if len(seeds) != 1:
        return None
    return seeds[0], draws


#: How a lifted weight may derive from a zoo draw (steps applied in order by the runner's own
#: :func:`~explorer.measure.runner.arrays.transform`, so that the two never disagree);
#: each may be followed by ``pack<B>``, the CPU's blocks of ``B`` output columns
#: (:func:`explorer.tvm.passes.packed_weights.pack_columns`).
TRANSFORMS = ("identity", "transpose", "float16", "transpose,float16")
#: Vector lanes a packed block may have been cut to (128- to 512-bit vectors of fp32 and fp16).
PACK_LANES = (4, 8, 16, 32)


def _ways(w: np.ndarray) -> list[str]:
    ways = []
    for name in TRANSFORMS:
        if "transpose" in name and w.ndim != 2:
            continue
        ways.append(name)
        columns = w.shape[0] if name.startswith("transpose") else w.shape[-1]
        blocks = {next(d for d in range(min(lanes, columns), 0, -1) if columns % d == 0) for lanes in PACK_LANES}
        ways += [f"{name},pack{block}" for block in sorted(blocks) if block > 1]
    return ways


def draw_index(seed: int, draws: list[list]) -> dict[str, tuple[int, str]]:
    """sha256 of each draw's bytes in each way :func:`transform` may keep it -> (draw index, way)."""
    index: dict[str, tuple[int, str]] = {}
    for i, w in enumerate(replay_draws(seed, draws)):
        for how in _ways(w):
            index.setdefault(hashlib.sha256(transform(w, how).tobytes()).hexdigest(), (i, how))
    return index
