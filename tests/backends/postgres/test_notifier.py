"""The NOTIFY coalescer (SPEC 8.4) on its own: one send per window, nothing left pending."""

from __future__ import annotations

import asyncio

from chem_persistence_async.backends.postgres.wakeup import Notifier


async def test_a_queue_enqueued_while_a_notify_is_in_flight_is_announced_without_another_enqueue() -> None:
    sent: list[list[str]] = []
    in_flight = asyncio.Event()
    release = asyncio.Event()

    async def send(queues: list[str]) -> None:
        sent.append(queues)
        if len(sent) == 1:
            in_flight.set()
            await release.wait()

    notifier = Notifier(send, window=0.001)
    notifier.enqueued({"a"})
    await asyncio.wait_for(in_flight.wait(), 5)
    notifier.enqueued({"b"})  # committed while the first NOTIFY is still being sent
    release.set()
    await asyncio.wait_for(notifier.aclose(), 5)
    assert sent == [["a"], ["b"]]
    assert notifier.sent == 2


async def test_enqueues_within_one_window_share_one_notify() -> None:
    sent: list[list[str]] = []

    async def send(queues: list[str]) -> None:
        sent.append(queues)

    notifier = Notifier(send, window=0.05)
    for queue in ("b", "a", "b"):
        notifier.enqueued({queue})
    await asyncio.wait_for(notifier.aclose(), 5)
    assert sent == [["a", "b"]]
