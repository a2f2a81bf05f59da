"""Minting event ids: many random UUIDs at the cost of one read of the OS random source."""

from __future__ import annotations

import os
from collections import deque
from itertools import repeat
from uuid import UUID, SafeUUID


def new_event_ids(count: int) -> list[UUID]:
    """``count`` random (version 4) UUIDs from one read of the OS random source: ``uuid4()`` reads
    it once per id, and ``UUID.__init__`` costs as much again."""
    if count == 1:
        one = object.__new__(UUID)
        _SET_UUID_INT(one, int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET)
        _SET_UUID_SAFE(one, _SAFE_UNKNOWN)
        return [one]
    data = os.urandom(16 * count)
    ints = [int.from_bytes(data[i : i + 16]) & _UUID4_CLEAR | _UUID4_SET for i in range(0, 16 * count, 16)]
    ids = list(map(object.__new__, repeat(UUID, count)))
    deque(map(_SET_UUID_INT, ids, ints), maxlen=0)
    deque(map(_SET_UUID_SAFE, ids, repeat(_SAFE_UNKNOWN, count)), maxlen=0)
    return ids


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (4 << 76) | (0x8000 << 48)
"""What ``UUID(bytes=..., version=4)`` does to the random bits: version 4, RFC 4122 variant."""
_SET_UUID_INT = UUID.__dict__["int"].__set__
_SET_UUID_SAFE = UUID.__dict__["is_safe"].__set__
_SAFE_UNKNOWN = SafeUUID.unknown
