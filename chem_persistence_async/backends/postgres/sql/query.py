"""``Query``: a statement written with ``:named`` parameters, compiled once to asyncpg's ``$n``.

Statements name their parameters (``:flow_id``, ``:payloads``) instead of numbering them, so the
pieces they are composed of can be reordered or left out without renumbering, and arguments are
bound by name rather than by their place in a tuple.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
"""``:name``, but neither the second colon of a cast (``::jsonb``) nor a word's inner colon."""


@dataclass(frozen=True, slots=True)
class Query:
    """``text`` with ``$1..$n`` for ``names`` in order; ``args`` binds a mapping by name."""

    text: str
    names: tuple[str, ...]

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The arguments in ``$n`` order; a missing name raises ``KeyError`` (a bug, not input)."""
        return tuple([values[name] for name in self.names])

    def __str__(self) -> str:
        return self.text


def query(text: str) -> Query:
    """Compile ``text``'s ``:name`` parameters to ``$n`` (the same name twice is the same ``$n``)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return Query(_PARAM.sub(number, text), tuple(names))
