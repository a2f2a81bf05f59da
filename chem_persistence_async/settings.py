"""Settings, in groups that each part reads on its own, from the environment and keyword arguments.

::

    DatabaseSettings
    ├── connection   ConnectionSettings   the pool, the server, migrations, statement retries
    ├── store        StoreSettings        what the event stores accept and how they group commits
    ├── queue        QueueSettings        the work queue (SPEC 8.1, 8.4)
    └── worker       WorkerSettings       workers (SPEC 8.2)

Every setting has one flat keyword name (``max_connections``, ``worker_concurrency``) and one
documented environment variable (``DATABASE_MAX_CONNECTIONS``, ``CHEM_PERSIST_WORKER_CONCURRENCY``);
``DatabaseSettings.load`` reads both (keywords win) and validates everything at once, so one
``ConfigurationError`` names every bad setting, by the name the caller used for it, with the bad
value echoed (the URL only ever redacted).

The loader is written out here rather than left to pydantic-settings: flat, documented variable
names feeding nested groups, and error messages that know whether a value came from a keyword or
from the environment, would each need a custom source there; here they are one loop.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from chem_persistence_async.errors import ConfigurationError

logger = logging.getLogger("chem_persistence_async.settings")

_ENV_PREFIX = "CHEM_PERSIST_"


def _setting(default: Any, *, env: str, keyword: str | None = None, **constraints: Any) -> Any:
    """A field with its environment variable (and its flat keyword when it is not the field name)."""
    extra: dict[str, str] = {"env": env}
    if keyword is not None:
        extra["keyword"] = keyword
    return Field(default=default, json_schema_extra=extra, **constraints)  # type: ignore[arg-type]


class _Group(BaseModel):
    """A group of settings: frozen, and strict about unknown names."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class ConnectionSettings(_Group):
    """The pool, the server it connects to (or the embedded one), migrations and statement retries.

    The URL is held as a secret: reprs, logs and error messages only ever show ``redacted_url``.
    """

    url: SecretStr | None = _setting(None, env="DATABASE_URL")
    """``postgresql://user:password@host:5432/db`` (password percent-encoded); unset: embedded."""
    min_connections: int = _setting(2, env="DATABASE_MIN_CONNECTIONS", ge=0)
    """Pool minimum."""
    max_connections: int = _setting(16, env="DATABASE_MAX_CONNECTIONS", ge=1, le=10_000)
    """Pool maximum."""
    connect_timeout: float = _setting(10.0, env="DATABASE_CONNECT_TIMEOUT", gt=0)
    """Seconds to establish a connection."""
    acquire_timeout: float = _setting(30.0, env="DATABASE_ACQUIRE_TIMEOUT", gt=0)
    """Seconds to wait for a free pool connection (then ``PoolTimeoutError``)."""
    command_timeout: float | None = _setting(60.0, env="DATABASE_COMMAND_TIMEOUT", gt=0)
    """Seconds per statement, client side."""
    statement_cache_size: int = _setting(100, env="DATABASE_STATEMENT_CACHE_SIZE", ge=0)
    """0 behind PgBouncer in transaction mode."""
    max_inactive_connection_lifetime: float = _setting(300.0, env="DATABASE_MAX_INACTIVE_LIFETIME", ge=0)
    """Seconds before an idle connection is closed."""
    application_name: str = _setting("chem-persistence-async", env="DATABASE_APPLICATION_NAME", max_length=63)
    """Shown in ``pg_stat_activity``."""
    data_dir: Path | None = _setting(None, env="CHEM_PERSIST_DATA_DIR")
    """The embedded server's data directory (used only without a URL)."""
    auto_migrate: bool = _setting(True, env="CHEM_PERSIST_AUTO_MIGRATE")
    """Apply pending migrations on open."""
    retry_delays_ms: tuple[float, ...] = _setting((15.0, 30.0, 45.0), env="CHEM_PERSIST_RETRY_DELAYS_MS")
    """Backoff before each retry of a transient *database* failure (not of a step: see RetryPolicy)."""

    @field_validator("url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if raw == "" else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = url_problem(value.get_secret_value())
            if problem is not None:
                raise PydanticCustomError("bad_url", problem)
        return value

    @field_validator("retry_delays_ms", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                try:
                    return json.loads(value)
                except ValueError:
                    raise PydanticCustomError("bad_list", "not a JSON list of numbers") from None
            return tuple(part for part in value.replace(",", " ").split())
        return value

    @field_validator("retry_delays_ms")
    @classmethod
    def _check_delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay < 0 for delay in value):
            raise ValueError("delays must not be negative")
        return value

    @field_validator("max_connections")
    @classmethod
    def _check_pool_size(cls, value: int, info: ValidationInfo) -> int:
        # A field validator (not a model validator) so it is reported alongside other bad fields.
        minimum = info.data.get("min_connections")
        if minimum is not None and minimum > value:
            raise PydanticCustomError(
                "min_above_max",
                "min_connections ({minimum}) exceeds max_connections ({maximum})",
                {"minimum": minimum, "maximum": value},
            )
        return value

    @property
    def url_value(self) -> str | None:
        """The URL with its password, for the driver only."""
        return None if self.url is None else self.url.get_secret_value()

    @property
    def redacted_url(self) -> str | None:
        return None if self.url is None else redact_url(self.url.get_secret_value())

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield (name, self.redacted_url) if name == "url" else (name, value)


class StoreSettings(_Group):
    """What the event stores accept and how they share commits (read by ``PgEventStore``)."""

    store_artifacts: bool = _setting(True, env="CHEM_PERSIST_STORE_ARTIFACTS")
    """False: the seed's ``no-artifact-insert`` feature (events only)."""
    max_payload_bytes: int = _setting(8 * 1024 * 1024, env="CHEM_PERSIST_MAX_PAYLOAD_BYTES", ge=1024)
    """Larger events or artifacts raise ``PayloadTooLargeError``."""
    group_commit: bool = _setting(True, env="CHEM_PERSIST_GROUP_COMMIT")
    """Coalesce appends from concurrent tasks into one statement per commit."""
    group_commit_writers: int = _setting(2, env="CHEM_PERSIST_GROUP_COMMIT_WRITERS", ge=1, le=1000)
    """Appends (alone or grouped) a store keeps in flight before further ones queue into groups."""
    group_commit_max_events: int = _setting(
        1000, env="CHEM_PERSIST_GROUP_COMMIT_MAX_EVENTS", ge=1, le=100_000
    )
    """Most events in one group statement."""


class QueueSettings(_Group):
    """The work queue's wake-up (SPEC 8.4). (``enqueue``, ``fail`` and ``purge`` take their
    defaults as arguments, the same on every backend.)"""

    notify_window_ms: float = _setting(
        10.0, env="CHEM_PERSIST_QUEUE_NOTIFY_WINDOW_MS", keyword="queue_notify_window_ms", ge=0, le=10_000
    )
    """Enqueues within this window share one NOTIFY (0: one per enqueueing transaction)."""


class WorkerSettings(_Group):
    """A worker's defaults (SPEC 8.2); ``Worker(...)`` arguments override them."""

    concurrency: int = _setting(8, env="CHEM_PERSIST_WORKER_CONCURRENCY", keyword="worker_concurrency", ge=1)
    """Jobs one worker runs at once."""
    queues: tuple[str, ...] = _setting(
        ("default",), env="CHEM_PERSIST_WORKER_QUEUES", keyword="worker_queues", min_length=1
    )
    """Queues it claims from (comma-separated in the environment)."""
    lease: float = _setting(30.0, env="CHEM_PERSIST_WORKER_LEASE", keyword="worker_lease", gt=0)
    """Seconds a claim holds a job; heartbeats renew it every third of that."""
    poll_interval: float = _setting(
        1.0, env="CHEM_PERSIST_WORKER_POLL_INTERVAL", keyword="worker_poll_interval", gt=0
    )
    """Seconds between claims when no wake-up arrives (the fallback to LISTEN)."""
    listen: bool = _setting(True, env="CHEM_PERSIST_WORKER_LISTEN", keyword="worker_listen")
    """Wake on NOTIFY; false behind PgBouncer in transaction mode (polling only)."""
    grace_period: float = _setting(
        30.0, env="CHEM_PERSIST_WORKER_GRACE_PERIOD", keyword="worker_grace_period", ge=0
    )
    """Seconds a stopping worker lets running steps finish before releasing their jobs."""
    records: bool = _setting(True, env="CHEM_PERSIST_WORKER_RECORDS", keyword="worker_records")
    """Keep workflow records (runs and stages, SPEC 9.1) in each step's unit of work."""

    @field_validator("queues", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("queues")
    @classmethod
    def _check_queues(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name for name in value):
            raise ValueError("queue names must not be empty")
        return value


_GROUPS: dict[str, type[_Group]] = {
    "connection": ConnectionSettings,
    "store": StoreSettings,
    "queue": QueueSettings,
    "worker": WorkerSettings,
}


@dataclass(frozen=True)
class SettingInfo:
    """One setting: its group and field, its flat keyword and its environment variable."""

    group: str
    field: str
    keyword: str
    env: str
    default: Any
    doc: str


def _collect() -> tuple[SettingInfo, ...]:
    found = []
    for group, model in _GROUPS.items():
        for name, info in model.model_fields.items():
            extra = info.json_schema_extra
            assert isinstance(extra, dict)
            found.append(
                SettingInfo(
                    group=group,
                    field=name,
                    keyword=str(extra.get("keyword", name)),
                    env=str(extra["env"]),
                    default=info.default,
                    doc=(info.description or "").strip(),
                )
            )
    return tuple(found)


SETTINGS: tuple[SettingInfo, ...] = _collect()
"""Every setting, in documentation order."""

_BY_KEYWORD = {s.keyword: s for s in SETTINGS}
_BY_FIELD = {(s.group, s.field): s for s in SETTINGS}
_ENV_NAMES = {s.env for s in SETTINGS}
assert len(_BY_KEYWORD) == len(SETTINGS), "keywords must be unique"
assert len(_ENV_NAMES) == len(SETTINGS), "environment variables must be unique"


class DatabaseSettings(BaseModel):
    """Everything a ``Database``, its stores, queues and workers can be told, in groups.

    Build it with ``DatabaseSettings.load(**keywords)`` (keywords win over the environment), or
    from groups (``DatabaseSettings(connection=ConnectionSettings(...))``). Each part reads its own
    group: ``settings.connection.max_connections``, ``settings.store.max_payload_bytes``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    connection: ConnectionSettings = Field(default_factory=ConnectionSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)

    KEYWORDS: ClassVar[tuple[str, ...]] = tuple(_BY_KEYWORD)

    @classmethod
    def load(cls, *, environ: Mapping[str, str] | None = None, **keywords: Any) -> DatabaseSettings:
        """Read the environment (``environ``, default ``os.environ``) with ``keywords`` winning.

        A keyword given as ``None`` is not given. Raises one ``ConfigurationError`` naming every
        unknown keyword and every bad value.
        """
        env = os.environ if environ is None else environ
        return _load(_from_environment(env), keywords)

    def replace(self, **keywords: Any) -> DatabaseSettings:
        """A copy with ``keywords`` changed, validated like ``load`` (the environment is not read)."""
        current = {s.keyword: (getattr(getattr(self, s.group), s.field), s.keyword) for s in SETTINGS}
        return _load(current, keywords)

    def flat(self) -> dict[str, Any]:
        """Every setting by its keyword (the URL stays a ``SecretStr``)."""
        return {s.keyword: getattr(getattr(self, s.group), s.field) for s in SETTINGS}


# --- the loader ----------------------------------------------------------------------------------

_Sourced = dict[str, tuple[Any, str]]
"""keyword -> (raw value, the name it was given by: the keyword or the environment variable)."""


def _from_environment(env: Mapping[str, str]) -> _Sourced:
    """The documented variables that are set (names case-insensitive; an empty value is unset)."""
    upper: dict[str, str] = {}
    for name, value in env.items():
        key = name.upper()
        if key not in upper or name == key:  # the upper-case spelling wins over another
            upper[key] = value
    found: _Sourced = {}
    for setting in SETTINGS:
        given = upper.get(setting.env)
        if given is not None and given != "":
            found[setting.keyword] = (given, setting.env)
    for name in upper:
        if name.startswith(_ENV_PREFIX) and name not in _ENV_NAMES and name not in _warned:
            # A warning, not an error: a newer version's variable must not stop an older process.
            _warned.add(name)
            hint = _suggest(name, _ENV_NAMES)
            logger.warning("ignoring unknown environment variable %s%s", name, hint)
    return found


_warned: set[str] = set()
"""Unknown ``CHEM_PERSIST_*`` variables already warned about (once per process is enough)."""


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _load(base: _Sourced, keywords: Mapping[str, Any]) -> DatabaseSettings:
    problems: list[str] = []
    values = dict(base)
    for keyword, value in keywords.items():
        if keyword not in _BY_KEYWORD:
            problems.append(f"unknown setting {keyword!r}{_suggest(keyword, _BY_KEYWORD)}")
        elif value is not None:
            values[keyword] = (value, keyword)

    groups: dict[str, Any] = {}
    for group, model in _GROUPS.items():
        data = {s.field: values[s.keyword][0] for s in SETTINGS if s.group == group and s.keyword in values}
        try:
            groups[group] = model.model_validate(data)
        except ValidationError as exc:
            problems += _describe(group, exc, values)
    if problems:
        raise ConfigurationError("invalid database settings: " + "; ".join(problems))
    return DatabaseSettings(**groups)


def _describe(group: str, exc: ValidationError, values: _Sourced) -> Iterator[str]:
    for error in exc.errors(include_url=False, include_input=False, include_context=True):
        field = str(error["loc"][0]) if error["loc"] else ""
        setting = _BY_FIELD.get((group, field))
        if setting is None:
            yield f"{group}: {error['msg']}"
            continue
        raw, given_as = values.get(setting.keyword, (setting.default, setting.keyword))
        if error["type"] == "min_above_max":
            minimum = _BY_KEYWORD["min_connections"]
            min_name = values.get(minimum.keyword, (None, minimum.keyword))[1]
            ctx = error.get("ctx", {})
            yield f"{min_name} ({ctx.get('minimum')}) exceeds {given_as} ({ctx.get('maximum')})"
            continue
        yield f"{given_as}={_echo(setting, raw)}: {_message(error['msg'])}"


def _message(text: str) -> str:
    return text[len("Value error, ") :] if text.startswith("Value error, ") else text


def _echo(setting: SettingInfo, raw: Any) -> str:
    """The bad value as given, for the message: the URL only redacted, anything long cut short."""
    if setting.keyword == "url":
        text = raw.get_secret_value() if isinstance(raw, SecretStr) else str(raw)
        return repr(redact_url(text))
    shown = repr(raw)
    return shown if len(shown) <= 80 else shown[:77] + "..."


# --- URLs ----------------------------------------------------------------------------------------


def url_problem(url: str) -> str | None:
    """What is wrong with a PostgreSQL URL before a driver sees it, or ``None``.

    The driver would say ``invalid literal for int()`` for a bad port, or resolve a host made of
    half a password when the password holds an unencoded ``@``; this says what to fix. The
    message never repeats the URL (so never a password).
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("postgresql", "postgres"):
        return "must be a postgresql:// URL"
    netloc = parts.netloc
    after_host = parts.path + ("?" + parts.query if parts.query else "") + parts.fragment
    if netloc.count("@") > 1:
        return (
            "the user name or password contains '@': percent-encode it "
            "(write '@' as %40; urllib.parse.quote(password, safe='') does it)"
        )
    if "@" not in netloc and ":" in netloc and "@" in after_host:
        return (
            "the password seems to contain '/', '?' or '#': percent-encode it "
            "(urllib.parse.quote(password, safe='') does it)"
        )
    hosts = netloc.rpartition("@")[2]
    for host in hosts.split(","):
        problem = _port_problem(host)
        if problem:
            return problem
    if parts.query:
        try:
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return "its query string is malformed (expected key=value pairs joined by '&')"
        for key, value in query:
            if key == "port":
                for port in value.split(","):
                    problem = _check_port(port, "the port parameter")
                    if problem:
                        return problem
    return None


def _port_problem(host: str) -> str | None:
    if host.startswith("["):  # [IPv6]:port
        after = host.partition("]")[2]
        port = after[1:] if after.startswith(":") else ""
    else:
        port = host.partition(":")[2]
    if port == "":
        return None
    return _check_port(port, "the port")


def _check_port(port: str, what: str) -> str | None:
    if not port.isdigit() or not port.isascii():
        return f"{what} {port!r} is not a number"
    if not 1 <= int(port) <= 65535:
        return f"{what} {int(port)} is out of range (1-65535)"
    return None


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (user, host and database kept for diagnosis).

    Both places a libpq URL can carry a password are covered: ``user:password@`` and ``?password=``.
    A password with an unencoded ``/``, ``?`` or ``#`` ends the host part early; then everything up
    to the last ``@`` is taken for the user part, so its tail is not shown either.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable url>"
    if password is None and "@" not in parts.netloc and ":" in parts.netloc:
        scheme, _, rest = url.partition("://")
        if "@" in rest:
            user = parts.netloc.partition(":")[0]
            return f"{scheme}://{user}:***@{rest.rpartition('@')[2]}"
    if password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc}")
    if parts.query:
        query = [
            (key, "***" if key.lower() == "password" else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="/*"))
    return urlunsplit(parts)


def _passwords(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:
        return []
    if parts.password is None and "@" not in parts.netloc and ":" in parts.netloc:
        rest = url.partition("://")[2]
        if "@" in rest:  # a password cut short by an unencoded '/', '?' or '#' (see redact_url)
            found.append(rest.rpartition("@")[0].partition(":")[2])
            found.append(parts.netloc.partition(":")[2])  # the part a driver would take for a port
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() == "password"]
    found += [unquote(p) for p in found]
    return sorted({p for p in found if p}, key=len, reverse=True)


def scrub(text: str, url: str | None) -> str:
    """Remove the URL's password (as written or decoded) from ``text`` (messages built from driver errors)."""
    if not url:
        return text
    for password in _passwords(url):
        text = text.replace(password, "***")
    return text
