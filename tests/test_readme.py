"""The README's commands and snippets are what the code does: every ```python block runs as
printed (a program of its own, against a fresh database) and prints what its ``# …`` comments say."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def _expected_lines(block: str) -> list[str]:
    """``print(...)  # <value>``: each printed line, in order, should read ``<value>``."""
    return [m.group(1).strip() for m in re.finditer(r"^[ \t]*print\(.*\)[ \t]*#[ \t]*(.+)$", block, re.M)]


def _run(block: str, db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", block],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_readme_has_runnable_snippets() -> None:
    assert len(BLOCKS) >= 5
    for block in BLOCKS:
        assert "asyncio.run(main())" in block, block[:200]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"snippet{i + 1}" for i in range(len(BLOCKS))])
def test_every_snippet_runs_as_printed(index: int, db_url: str) -> None:
    block = BLOCKS[index]
    result = _run(block, db_url)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout.splitlines()
    for expected in _expected_lines(block):
        assert any(_same(line, expected) for line in printed), (expected, printed)


def _same(line: str, expected: str) -> bool:
    """A printed line reads as the comment says: the same Python value, or the same text."""
    try:
        return bool(ast.literal_eval(line) == ast.literal_eval(expected))
    except (ValueError, SyntaxError):
        return line.strip() == expected


def test_the_first_example_prints_its_timeline(db_url: str) -> None:
    lines = _run(BLOCKS[0], db_url).stdout.splitlines()
    assert re.fullmatch(r"[0-9a-f]{64}", lines[1])
    assert lines[2].split()[:3] == ["fetch", "1", "transient"]


def test_the_readme_names_the_commands_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -n auto" in README
    assert "test_command=(python -m pytest -n auto)" in ci
    assert "pip install . && chem-persist demo" in README
