"""A griffe extension for the API reference: the explorer's docstrings name code with Sphinx-style roles
(``:func:`explorer.x.y```, ``:class:`~explorer.x.Y```); in the rendered markdown they become code spans
(the last component only, where the role asks for it with ``~``)."""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|exc|obj):`(~?)([^`]+)`")


def _code(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite every docstring's roles as code spans once it is loaded."""

    def on_instance(self, *, node, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value).replace("``", "`")
