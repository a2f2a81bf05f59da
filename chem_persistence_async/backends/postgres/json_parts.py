"""Pieces of the JSON documents the statements take as one parameter (records, job writes,
artifacts), written as bytes: strings escaped as JSON, times as ISO 8601, ``null`` for None."""

from __future__ import annotations

import json.encoder
from collections.abc import Callable
from datetime import datetime

json_string: Callable[[str], str] = json.encoder.encode_basestring


def json_text(value: str | None) -> bytes:
    return b"null" if value is None else json_string(value).encode()


def json_time(value: datetime | None) -> bytes:
    return b"null" if value is None else b'"' + value.isoformat().encode() + b'"'
