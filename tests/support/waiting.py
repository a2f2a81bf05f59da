"""Waiting for something to become true, under a deadline: never a sleep that hopes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(
    condition: Callable[[], Awaitable[bool]], deadline_s: float, what: str, *, every: float = 0.01
) -> None:
    """Poll ``condition`` every ``every`` seconds until it holds; fail the test naming ``what``
    once ``deadline_s`` seconds have passed."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not await condition():
        assert loop.time() < end, f"timed out after {deadline_s:g}s waiting for {what}"
        await asyncio.sleep(every)
