"""The README's commands and example are what the code does."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_usage_example_runs_and_prints_what_its_comments_say(db_url: str) -> None:
    example = _python_blocks()[0]
    expected = ast.literal_eval(re.search(r"# (\[.*\])", example).group(1))  # type: ignore[union-attr]
    result = subprocess.run(
        [sys.executable, "-c", example],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert ast.literal_eval(lines[0]) == expected
    assert re.fullmatch(r"[0-9a-f]{64}", lines[1])
    assert lines[2].split()[:3] == ["fetch", "1", "transient"]


def test_the_readme_names_the_commands_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in README
    assert "test_command=(python -m pytest)" in ci
    assert "pip install . && chem-persist demo" in README
