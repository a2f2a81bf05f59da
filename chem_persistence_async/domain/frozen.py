"""Read-only JSON values: what a flow state shared between loads holds (the engine's cache).

``FrozenDict`` and ``FrozenList`` are a ``dict`` and a ``list`` (equal to them, encoded as them,
``isinstance`` of them) that refuse changes in place, so a caller cannot change a state another
caller is handed too. A copy (``dict(v)``, ``copy.copy``, ``copy.deepcopy``) is a plain one.
"""

from __future__ import annotations

import copy
from typing import Any, NoReturn


def _refuse(*_: object, **__: object) -> NoReturn:
    raise TypeError("a loaded flow's JSON values are read-only: change a copy (dict(value), list(value))")


class FrozenDict(dict[str, Any]):
    """A JSON object that refuses changes."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(value, memo) for key, value in self.items()}

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return (FrozenDict, (dict(self),))


class FrozenList(list[Any]):
    """A JSON array that refuses changes."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [copy.deepcopy(value, memo) for value in self]

    def __reduce__(self) -> tuple[type[FrozenList], tuple[list[Any]]]:
        return (FrozenList, (list(self),))


def freeze(value: Any) -> Any:
    """``value`` (decoded JSON) with every object and array in it read-only. Containers of scalars
    alone are copied in one call each (a call per scalar cost most of a large flow's freezing)."""
    t = type(value)
    if t is dict:
        frozen = FrozenDict(value)
        for key, item in value.items():
            t = type(item)
            if t is dict or t is list:
                dict.__setitem__(frozen, key, freeze(item))
        return frozen
    if t is list:
        for item in value:
            t = type(item)
            if t is dict or t is list:
                return FrozenList([freeze(item) for item in value])
        return FrozenList(value)
    return value
