"""A command-line process a test starts, stops with SIGTERM, and never leaves behind."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def running(*argv: str, **options: Any) -> AsyncIterator[asyncio.subprocess.Process]:
    """The process ``argv`` (stdout and stderr piped), killed on the way out if still running."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **options
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def terminate(process: asyncio.subprocess.Process, deadline: float = 30) -> tuple[bytes, bytes]:
    """SIGTERM, then its stdout and stderr once it has exited (within ``deadline`` seconds)."""
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.communicate(), deadline)
