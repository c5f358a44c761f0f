"""Parsing what a user says about a model's inputs."""

from __future__ import annotations

import pytest

from explorer.core.errors import ExplorerError
from explorer.model.arguments import parse_input_shapes


def test_bad_input_shape_syntax_is_an_error():
    with pytest.raises(ExplorerError, match="expected NAME:D1,D2"):
        parse_input_shapes(["x=1,2"])


