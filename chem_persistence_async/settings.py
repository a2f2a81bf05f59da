"""Settings for the pool and the stores, read from the environment and validated once.

The URL is held as a secret: reprs, logs and error messages only ever show ``redacted_url``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from chem_persistence_async.errors import ConfigurationError


def _env(name: str, env: str) -> Any:
    return AliasChoices(name, env)


class _DocumentedEnvSource(EnvSettingsSource):
    """Reads only the documented variables (``DATABASE_URL``...), never a bare field name (``URL``)."""

    def _extract_field_info(self, field: Any, field_name: str, model_config: Any = None) -> Any:
        infos = super()._extract_field_info(field, field_name, model_config)
        return [info for info in infos if info[1].upper().startswith(("DATABASE_", "CHEM_PERSIST_"))]


class DatabaseSettings(BaseSettings):
    """Everything a ``Database`` and its stores can be told.

    Environment variables: ``DATABASE_URL``, ``DATABASE_MIN_CONNECTIONS`` (2),
    ``DATABASE_MAX_CONNECTIONS`` (16), ``DATABASE_CONNECT_TIMEOUT`` (10 s),
    ``DATABASE_ACQUIRE_TIMEOUT`` (30 s), ``DATABASE_COMMAND_TIMEOUT`` (60 s),
    ``DATABASE_STATEMENT_CACHE_SIZE`` (100; 0 behind PgBouncer in transaction mode),
    ``CHEM_PERSIST_DATA_DIR``, ``CHEM_PERSIST_AUTO_MIGRATE``, ``CHEM_PERSIST_STORE_ARTIFACTS``,
    ``CHEM_PERSIST_MAX_PAYLOAD_BYTES``, ``CHEM_PERSIST_RETRY_DELAYS_MS``.
    """

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, case_sensitive=False
    )

    url: SecretStr | None = Field(default=None, validation_alias=_env("url", "DATABASE_URL"))
    min_connections: int = Field(
        default=2, ge=0, validation_alias=_env("min_connections", "DATABASE_MIN_CONNECTIONS")
    )
    max_connections: int = Field(
        default=16, ge=1, le=10_000, validation_alias=_env("max_connections", "DATABASE_MAX_CONNECTIONS")
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, validation_alias=_env("connect_timeout", "DATABASE_CONNECT_TIMEOUT")
    )
    acquire_timeout: float = Field(
        default=30.0, gt=0, validation_alias=_env("acquire_timeout", "DATABASE_ACQUIRE_TIMEOUT")
    )
    command_timeout: float | None = Field(
        default=60.0, gt=0, validation_alias=_env("command_timeout", "DATABASE_COMMAND_TIMEOUT")
    )
    statement_cache_size: int = Field(
        default=100, ge=0, validation_alias=_env("statement_cache_size", "DATABASE_STATEMENT_CACHE_SIZE")
    )
    max_inactive_connection_lifetime: float = Field(
        default=300.0,
        ge=0,
        validation_alias=_env("max_inactive_connection_lifetime", "DATABASE_MAX_INACTIVE_LIFETIME"),
    )
    application_name: str = Field(
        default="chem-persistence-async",
        max_length=63,
        validation_alias=_env("application_name", "DATABASE_APPLICATION_NAME"),
    )
    data_dir: Path | None = Field(default=None, validation_alias=_env("data_dir", "CHEM_PERSIST_DATA_DIR"))
    auto_migrate: bool = Field(
        default=True, validation_alias=_env("auto_migrate", "CHEM_PERSIST_AUTO_MIGRATE")
    )
    store_artifacts: bool = Field(
        default=True, validation_alias=_env("store_artifacts", "CHEM_PERSIST_STORE_ARTIFACTS")
    )
    max_payload_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        validation_alias=_env("max_payload_bytes", "CHEM_PERSIST_MAX_PAYLOAD_BYTES"),
    )
    retry_delays_ms: Annotated[tuple[float, ...], NoDecode] = Field(
        default=(15.0, 30.0, 45.0),
        validation_alias=_env("retry_delays_ms", "CHEM_PERSIST_RETRY_DELAYS_MS"),
    )
    group_commit: bool = Field(
        default=True, validation_alias=_env("group_commit", "CHEM_PERSIST_GROUP_COMMIT")
    )
    """Coalesce appends from concurrent tasks into one statement per commit (stores/group_commit.py)."""
    group_commit_writers: int = Field(
        default=2,
        ge=1,
        le=1000,
        validation_alias=_env("group_commit_writers", "CHEM_PERSIST_GROUP_COMMIT_WRITERS"),
    )
    """Appends (alone or grouped) a store keeps in flight before further ones queue into groups."""
    group_commit_max_events: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        validation_alias=_env("group_commit_max_events", "CHEM_PERSIST_GROUP_COMMIT_MAX_EVENTS"),
    )
    """Most events in one group statement."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _DocumentedEnvSource(settings_cls))

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("retry_delays_ms", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return tuple(float(part) for part in value.replace(",", " ").split())
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
            raise ValueError(
                f"DATABASE_MIN_CONNECTIONS ({minimum}) exceeds DATABASE_MAX_CONNECTIONS ({value})"
            )
        return value

    @classmethod
    def load(cls, **overrides: Any) -> DatabaseSettings:
        """Read the environment (overrides win) or raise one ``ConfigurationError`` naming every bad field."""
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc)) from None
        except SettingsError as exc:
            raise ConfigurationError(f"invalid database settings: {exc}") from None

    @property
    def url_value(self) -> str | None:
        return None if self.url is None else self.url.get_secret_value()

    @property
    def redacted_url(self) -> str | None:
        return None if self.url is None else redact_url(self.url.get_secret_value())

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield (name, self.redacted_url) if name == "url" else (name, value)


_ENV_NAMES = {
    name: next((c for c in field.validation_alias.choices if isinstance(c, str) and c.isupper()), name)
    for name, field in DatabaseSettings.model_fields.items()
    if isinstance(field.validation_alias, AliasChoices)
}


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = str(error["loc"][0]) if error["loc"] else "settings"
        problems.append(f"{_ENV_NAMES.get(loc, loc)}: {error['msg']}")
    return "invalid database settings: " + "; ".join(problems)


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (user, host and database kept for diagnosis).

    Both places a libpq URL can carry a password are covered: ``user:password@`` and ``?password=``.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable url>"
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
