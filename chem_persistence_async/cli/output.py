"""How the command line prints: progress on stderr, results as plain tables on stdout."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from chem_persistence_async.domain.flow import FlowInstance, StepStatus


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def status(instance: FlowInstance) -> str:
    if instance.completed:
        return "completed"
    for slot in instance.steps:
        if slot.status is StepStatus.FAILED:
            last = slot.errors[-1] if slot.errors else None
            why = f" ({last.error_class.value}): {last.error_message}" if last is not None else ""
            return f"failed at step {slot.step_id!r}{why}"
    return "not finished"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
