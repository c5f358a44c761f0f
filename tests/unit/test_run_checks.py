"""What explorer run and a sweep's timing refuse or leave empty before any build."""

from __future__ import annotations

import pytest

import explorer
from explorer.core.errors import ExplorerError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A build cache of this module's own, so the first run always compiles."""
    return {"EXPLORER_CACHE": str(tmp_path_factory.mktemp("run-cache"))}


def test_api_rejects_a_target_that_does_not_run_here(matmul_onnx):
    with pytest.raises(ExplorerError, match="compiled as 'none'"):
        explorer.run_variant(str(matmul_onnx), target="npu")


def test_an_onnxruntime_int8_build_that_does_not_run_leaves_its_column_empty_not_the_sweep(monkeypatch):
    # onnxruntime's quantizer makes gpt2 a model its own runtime refuses (the quantized embedding table)
    import types

    from explorer.sweep import sweep

    def refuse(*_args, **_kw):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : QuantizeLinear node 'transformer.wte_QuantizeLinear'")

    monkeypatch.setattr(sweep, "int8_latency", refuse)
    monkeypatch.setattr(sweep, "calibration_feeds", lambda *_a: ([{}], None))
    plan = types.SimpleNamespace(strategy=types.SimpleNamespace(precision="int8"), measurements={2: object()},
                                 model=types.SimpleNamespace(name="gpt2@prefill128"), calibration="c")
    said = []
    bar = types.SimpleNamespace(phase=said.append)
    assert sweep._time_onnxruntime_int8([plan], {"gpt2@prefill128": None}, None, bar) == {("gpt2@prefill128", "c", 2): None}
    assert "does not run (RuntimeError" in said[-1]
