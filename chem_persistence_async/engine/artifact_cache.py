"""``ArtifactCache``: the engine's recently produced and read artifacts, bounded by size.

A step's inputs are the previous step's outputs; the engine keeps the artifacts it just wrote or
read so the next step does not read them back. Least recently used entries go first once the
memory held passes ``max_bytes`` (an artifact larger than that is not kept at all).

An artifact's memory is estimated, not measured: twice its approximate JSON size (Python objects
are larger than their JSON) plus ``ENTRY_OVERHEAD`` for the model, its hash and the entry (a
small artifact measured 2.7 KB with ``tracemalloc``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from chem_persistence_async.domain.artifacts import Artifact

ENTRY_OVERHEAD = 2048


class ArtifactCache:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self._max = max_bytes
        self._items: OrderedDict[str, tuple[Artifact, int]] = OrderedDict()
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, artifact_hash: object) -> bool:
        return artifact_hash in self._items

    def get(self, artifact_hash: str) -> Artifact | None:
        entry = self._items.get(artifact_hash)
        if entry is None:
            return None
        self._items.move_to_end(artifact_hash)
        return entry[0]

    def put_all(self, artifacts: Iterable[Artifact]) -> None:
        for artifact in artifacts:
            self.put(artifact)

    def put(self, artifact: Artifact) -> None:
        items = self._items
        if artifact.hash in items:
            items.move_to_end(artifact.hash)
            return
        json_size = approximate_json_size(artifact.payload) + approximate_json_size(artifact.metadata)
        size = 2 * json_size + ENTRY_OVERHEAD
        if size > self._max:
            return
        items[artifact.hash] = (artifact, size)
        self._bytes += size
        while self._bytes > self._max:
            _, (_, dropped) = items.popitem(last=False)
            self._bytes -= dropped


def approximate_json_size(value: Any) -> int:
    """About how many bytes ``value`` takes as JSON (strings by length, scalars as 8), without
    encoding it: close enough to bound a cache, a fraction of the cost of ``json.dumps``."""
    stack = [value]
    size = 0
    while stack:
        item = stack.pop()
        t = type(item)
        if t is str:
            size += len(item) + 2
        elif t is dict:
            size += 2 + 2 * len(item)
            for key, nested in item.items():
                size += len(key) + 3
                stack.append(nested)
        elif t is list or t is tuple:
            size += 2 + len(item)
            stack.extend(item)
        else:
            size += 8
    return size
