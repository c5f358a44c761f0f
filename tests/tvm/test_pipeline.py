"""The strategy pipeline's factory maps and the keys that separate what is compiled."""

from __future__ import annotations

from dataclasses import replace

import pytest

from explorer.core.strategies import AXES, get_strategy
from explorer.deploy import run as deploy
from explorer.store import lowerings


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A build cache of this module's own, so the first run always compiles."""
    return {"EXPLORER_CACHE": str(tmp_path_factory.mktemp("run-cache"))}


def test_pipeline_factory_maps_are_the_strategy_axes():
    from explorer.tvm import pipeline

    assert {"fusion": list(pipeline.FUSION), "layout": list(pipeline.LAYOUT),
            "precision": list(pipeline.PRECISION)} == {k: list(v) for k, v in AXES.items()}
    assert list(pipeline.PRECISION_AFTER_LEGALIZE) == list(pipeline.PRECISION)


def test_an_unknown_axis_value_lists_the_known_ones():
    from explorer.tvm import pipeline

    with pytest.raises(KeyError, match="unknown layout 'nchw16c'; known: native, nhwc"):
        pipeline.lookup(pipeline.LAYOUT, "layout", "nchw16c")


def test_keys_separate_strategies_lowerings_and_runs(matmul_onnx):
    from explorer.core.variant import LoweringRequest
    from explorer.model.prepare import prepare

    m = prepare(str(matmul_onnx))
    req = LoweringRequest(str(m.path), m.sha256, get_strategy("fused"), "generic", mcpu="haswell", build=True)
    variants = [req, replace(req, strategy=get_strategy("baseline")),
                replace(req, mcpu="znver4"), replace(req, build=False)]
    keys = [lowerings.lowering_key(r) for r in variants]
    assert len(set(keys)) == 4
    # the export path and the scoring target of an untuned strategy do not change what is compiled
    assert lowerings.lowering_key(replace(req, export="/x.so", scoring="npu")) == keys[0]


def test_keys_separate_cpus_strategies_models_and_calibrations(matmul_onnx, conv_add_relu_onnx):
    from explorer.core.strategies import get_strategy
    from explorer.model.prepare import prepare

    m, c = prepare(str(matmul_onnx)), prepare(str(conv_add_relu_onnx))
    fused, base = get_strategy("fused"), get_strategy("baseline")
    keys = {deploy.build_key(m, fused, "haswell"), deploy.build_key(m, fused, "znver4"),
            deploy.build_key(m, base, "haswell"), deploy.build_key(c, fused, "haswell"),
            deploy.build_key(m, fused, "haswell", "cal-a"), deploy.build_key(m, fused, "haswell", "cal-b")}
    assert len(keys) == 6
    assert deploy.build_key(m, fused, "haswell") == deploy.build_key(m, fused, "haswell")


