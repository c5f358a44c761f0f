"""A corpus of hostile Hugging Face configs through the CLI: each one line on stderr, exit 2, before any
work (the fuzzer in tests/unit/test_config_fuzz.py covers the rest of the space)."""

from __future__ import annotations

import json

import pytest

import models.hf_configs

LLAMA = json.loads((models.hf_configs.CONFIG_DIR / "llama-3.1-8b.json").read_text())

CASES = {
    "missing field": ({"num_hidden_layers": None}, "the config has no 'num_hidden_layers'"),
    "mistyped field": ({"hidden_size": "4096"}, "'hidden_size' must be a positive integer, not '4096'"),
    "zero size": ({"intermediate_size": 0}, "'intermediate_size' must be a positive integer, not 0"),
    "negative size": ({"vocab_size": -5}, "'vocab_size' must be a positive integer, not -5"),
    "heads that do not divide the width": ({"hidden_size": 4100}, "hidden_size 4100 is not a multiple of 32 heads"),
    "unknown rope scaling": ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
                             "rope_scaling type 'dynamic' is not built"),
    "a hundred trillion parameters": ({"num_hidden_layers": 200000}, "parameters, beyond the 2e+13 the builder takes"),
    "a dimension past 32 bits": ({"intermediate_size": 2**40}, "'intermediate_size' is 1099511627776, beyond"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_config_is_one_line_and_exit_2_before_any_work(cli, tmp_path, case):
    change, message = CASES[case]
    raw = {k: v for k, v in {**LLAMA, **change}.items() if v is not None}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    done = cli("serve", path, "--target", "gpu", "--batch", 8, "--quiet", env={"EXPLORER_CACHE": str(tmp_path / "c")})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "c" / "lowerings").exists()  # refused before anything was compiled
