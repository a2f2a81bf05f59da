"""A real PgBouncer (Debian's ``pgbouncer`` package) in transaction mode, in front of the test server.

Started as a plain subprocess (never a daemon) from a temporary ``pgbouncer.ini``, listening on a free
TCP port on 127.0.0.1 and forwarding every database name to the test server, over TCP or over the
embedded server's unix socket. As root it runs under another user (PgBouncer refuses root): the owner
of the server's unix socket, so that it can reach it, else ``nobody``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

APT_PACKAGE = "pgbouncer"


def pgbouncer_binary() -> str | None:
    """The ``pgbouncer`` executable (Debian puts it in /usr/sbin, not always on a user's PATH)."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    for candidate in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class ServerAddress:
    """Where the test server listens and who logs in, from its URL (TCP, or a unix socket directory)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.user = unquote(parts.username) if parts.username else query.get("user", "postgres")
        password = parts.password if parts.password is not None else query.get("password")
        self.password = unquote(password) if password else ""
        self.host = parts.hostname or query.get("host") or "/var/run/postgresql"
        self.port = parts.port or int(query.get("port", "5432"))

    @property
    def unix_socket(self) -> Path | None:
        return Path(self.host) / f".s.PGSQL.{self.port}" if self.host.startswith("/") else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quote_ini(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PgBouncer:
    def __init__(self, server_url: str, *, pool_size: int = 2) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError(f"pgbouncer is not installed (apt-get install {APT_PACKAGE})")
        self.binary = binary
        self.server = ServerAddress(server_url)
        self.pool_size = pool_size
        self.port = 0
        self.workdir = Path(tempfile.mkdtemp(prefix="chem-pgbouncer-"))
        self.log_path = self.workdir / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: str | None = None
        if os.geteuid() == 0:
            self._run_as = self._unprivileged_user()

    def _unprivileged_user(self) -> str:
        sock = self.server.unix_socket
        if sock is not None:
            owner = sock.stat().st_uid
            if owner != 0:
                return pwd.getpwuid(owner).pw_name
        return "nobody"

    def _write_config(self) -> Path:
        server = self.server
        ini = self.workdir / "pgbouncer.ini"
        users = self.workdir / "userlist.txt"
        # The password (the test server's, if it has one) goes only into this 0600 file, never a log.
        users.write_text(
            " ".join('"' + v.replace('"', '""') + '"' for v in (server.user, server.password)) + "\n"
        )
        ini.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={_quote_ini(server.host)} port={server.port}",
                    "",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {users}",
                    "pool_mode = transaction",
                    f"default_pool_size = {self.pool_size}",
                    "max_client_conn = 200",
                    "server_login_retry = 1",
                    "",
                ]
            )
        )
        for path in (self.workdir, ini, users):
            path.chmod(0o700 if path.is_dir() else 0o600)
            if self._run_as is not None:
                entry = pwd.getpwnam(self._run_as)
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return ini

    def start(self, *, timeout: float = 30.0) -> None:
        """Start it and wait (polling, under ``timeout``) until it accepts connections."""
        last_log = ""
        for _ in range(3):  # a free port can be taken by someone else before PgBouncer binds it
            self.port = _free_port()
            ini = self._write_config()
            command = [self.binary, *(["-u", self._run_as] if self._run_as else []), str(ini)]
            with self.log_path.open("wb") as log:
                self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_until_listening(timeout):
                return
            last_log = self.log_path.read_text(errors="replace")
            self.stop()
            if "Address already in use" not in last_log:
                break
        raise RuntimeError(f"pgbouncer did not start:\n{last_log}")

    def _wait_until_listening(self, timeout: float) -> bool:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def url(self, direct_url: str) -> str:
        """``direct_url`` (a database on the test server) as reached through this PgBouncer."""
        database = urlsplit(direct_url).path.lstrip("/")
        auth = quote(self.server.user, safe="")
        if self.server.password:
            auth += ":" + quote(self.server.password, safe="")
        return urlunsplit(("postgresql", f"{auth}@127.0.0.1:{self.port}", "/" + database, "", ""))

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # SIGTERM: immediate shutdown
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
