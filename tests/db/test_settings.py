"""Settings from the environment (SPEC section 6): defaults, overrides, one clear error, no password."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from chem_persistence_async.errors import ConfigurationError
from chem_persistence_async.settings import DatabaseSettings, redact_url, scrub

SECRET = "s3cr3t-Pa55"
URL = f"postgresql://alice:{SECRET}@db.example.com:5432/chem"

ENV_NAMES = [
    "DATABASE_URL",
    "DATABASE_MIN_CONNECTIONS",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_CONNECT_TIMEOUT",
    "DATABASE_ACQUIRE_TIMEOUT",
    "DATABASE_COMMAND_TIMEOUT",
    "DATABASE_STATEMENT_CACHE_SIZE",
    "DATABASE_MAX_INACTIVE_LIFETIME",
    "DATABASE_APPLICATION_NAME",
    "CHEM_PERSIST_DATA_DIR",
    "CHEM_PERSIST_AUTO_MIGRATE",
    "CHEM_PERSIST_STORE_ARTIFACTS",
    "CHEM_PERSIST_MAX_PAYLOAD_BYTES",
    "CHEM_PERSIST_RETRY_DELAYS_MS",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test from an environment that sets none of the settings (by any name)."""
    field_names = {name.upper() for name in DatabaseSettings.model_fields}
    for name in list(os.environ):
        if name.upper() in set(ENV_NAMES) | field_names:
            monkeypatch.delenv(name)


def _load_error(**overrides: object) -> str:
    with pytest.raises(ConfigurationError) as info:
        DatabaseSettings.load(**overrides)
    message = str(info.value)
    assert SECRET not in message
    assert SECRET not in repr(info.value)
    assert info.value.__cause__ is None  # the pydantic error (which may hold the input) is not chained
    return message


# --- reading the environment -------------------------------------------------------------------------


def test_defaults_with_an_empty_environment() -> None:
    settings = DatabaseSettings.load()
    assert settings.url is None
    assert settings.url_value is None
    assert settings.redacted_url is None
    assert settings.min_connections == 2
    assert settings.max_connections == 16
    assert settings.connect_timeout > 0
    assert settings.acquire_timeout > 0
    assert settings.statement_cache_size == 100
    assert settings.auto_migrate is True
    assert settings.store_artifacts is True


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DATABASE_MIN_CONNECTIONS", "3")
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "40")
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "2.5")
    monkeypatch.setenv("DATABASE_ACQUIRE_TIMEOUT", "7")
    monkeypatch.setenv("DATABASE_COMMAND_TIMEOUT", "11")
    monkeypatch.setenv("DATABASE_STATEMENT_CACHE_SIZE", "0")
    monkeypatch.setenv("DATABASE_APPLICATION_NAME", "bench")
    monkeypatch.setenv("CHEM_PERSIST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHEM_PERSIST_AUTO_MIGRATE", "false")
    monkeypatch.setenv("CHEM_PERSIST_STORE_ARTIFACTS", "0")
    monkeypatch.setenv("CHEM_PERSIST_MAX_PAYLOAD_BYTES", "4096")
    settings = DatabaseSettings.load()
    assert settings.url_value == URL
    assert settings.min_connections == 3
    assert settings.max_connections == 40
    assert settings.connect_timeout == 2.5
    assert settings.acquire_timeout == 7.0
    assert settings.command_timeout == 11.0
    assert settings.statement_cache_size == 0
    assert settings.application_name == "bench"
    assert settings.data_dir == tmp_path
    assert settings.auto_migrate is False
    assert settings.store_artifacts is False
    assert settings.max_payload_bytes == 4096


def test_lower_case_environment_names_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("database_max_connections", "9")
    assert DatabaseSettings.load().max_connections == 9


def test_postgres_scheme_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    assert DatabaseSettings.load().url_value == "postgres://u@h/db"


def test_empty_url_means_no_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    assert DatabaseSettings.load().url is None


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://env@envhost/envdb")
    monkeypatch.setenv("DATABASE_MIN_CONNECTIONS", "5")
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "6")
    settings = DatabaseSettings.load(url=URL, min_connections=1, max_connections=4)
    assert settings.url_value == URL
    assert settings.min_connections == 1
    assert settings.max_connections == 4


def test_none_overrides_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "12")
    settings = DatabaseSettings.load(max_connections=None, url=None)
    assert settings.max_connections == 12


def test_settings_are_frozen() -> None:
    settings = DatabaseSettings.load()
    with pytest.raises(ValidationError):
        settings.max_connections = 99  # type: ignore[misc]


def test_retry_delays_from_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHEM_PERSIST_RETRY_DELAYS_MS", "[5, 10, 20]")
    assert DatabaseSettings.load().retry_delays_ms == (5.0, 10.0, 20.0)


def test_retry_delays_as_a_string_override() -> None:
    assert DatabaseSettings.load(retry_delays_ms="1, 2 3").retry_delays_ms == (1.0, 2.0, 3.0)


def test_retry_delays_comma_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The validator splits "15,30,45"; read from the environment this must work too."""
    monkeypatch.setenv("CHEM_PERSIST_RETRY_DELAYS_MS", "15,30,45")
    assert DatabaseSettings.load().retry_delays_ms == (15.0, 30.0, 45.0)


def test_unrelated_generic_variables_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the documented names are settings: a generic URL or DATA_DIR in the environment is not ours."""
    monkeypatch.setenv("URL", "postgresql://intruder:pw@elsewhere/other")
    monkeypatch.setenv("MIN_CONNECTIONS", "7")
    settings = DatabaseSettings.load()
    assert settings.url is None
    assert settings.min_connections == 2


# --- bad values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("DATABASE_MIN_CONNECTIONS", "two"),
        ("DATABASE_MAX_CONNECTIONS", "1.5"),
        ("DATABASE_MIN_CONNECTIONS", "-1"),
        ("DATABASE_MAX_CONNECTIONS", "0"),
        ("DATABASE_CONNECT_TIMEOUT", "-1"),
        ("DATABASE_ACQUIRE_TIMEOUT", "0"),
        ("DATABASE_COMMAND_TIMEOUT", "-5"),
        ("DATABASE_STATEMENT_CACHE_SIZE", "-1"),
        ("CHEM_PERSIST_MAX_PAYLOAD_BYTES", "10"),
        ("CHEM_PERSIST_RETRY_DELAYS_MS", "[10, -1]"),
        ("DATABASE_URL", f"mysql://alice:{SECRET}@db/chem"),
        ("DATABASE_URL", f"http://alice:{SECRET}@db/chem"),
    ],
)
def test_one_bad_value(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv(env, value)
    message = _load_error()
    assert env in message
    assert message.startswith("invalid database settings")


def test_min_above_max(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DATABASE_MIN_CONNECTIONS", "20")
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "5")
    message = _load_error()
    assert "DATABASE_MIN_CONNECTIONS" in message
    assert "DATABASE_MAX_CONNECTIONS" in message


def test_min_above_max_from_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "50")
    message = _load_error(min_connections=9, max_connections=3, url=URL)
    assert "DATABASE_MIN_CONNECTIONS" in message


def test_every_bad_field_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"mysql://alice:{SECRET}@db.example.com/chem")
    monkeypatch.setenv("DATABASE_MIN_CONNECTIONS", "lots")
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "nine")
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "-3")
    monkeypatch.setenv("DATABASE_ACQUIRE_TIMEOUT", "soon")
    message = _load_error()
    for env in (
        "DATABASE_URL",
        "DATABASE_MIN_CONNECTIONS",
        "DATABASE_MAX_CONNECTIONS",
        "DATABASE_CONNECT_TIMEOUT",
        "DATABASE_ACQUIRE_TIMEOUT",
    ):
        assert env in message
    # Fields are named by their environment variable, not their Python name.
    assert "connect_timeout:" not in message
    assert "min_connections:" not in message


def test_min_above_max_is_reported_with_other_bad_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DATABASE_MIN_CONNECTIONS", "20")
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "5")
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "-1")
    message = _load_error()
    assert "DATABASE_CONNECT_TIMEOUT" in message
    assert "DATABASE_MIN_CONNECTIONS" in message


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="DATABASE_MAX_CONNECTIONS"):
        DatabaseSettings.load(max_connections="many")


# --- the password never shows -------------------------------------------------------------------------


def test_repr_and_str_hide_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    settings = DatabaseSettings.load()
    for text in (repr(settings), str(settings), f"{settings}", repr(settings.model_dump())):
        assert SECRET not in text
    assert "db.example.com" in repr(settings)
    assert settings.redacted_url == "postgresql://alice:***@db.example.com:5432/chem"
    assert settings.url_value == URL  # the secret is still there for the driver


def test_dump_json_hides_the_password() -> None:
    settings = DatabaseSettings.load(url=URL)
    assert SECRET not in settings.model_dump_json()


def test_repr_hides_a_password_given_as_a_query_parameter() -> None:
    settings = DatabaseSettings.load(url=f"postgresql://alice@db.example.com/chem?password={SECRET}")
    assert SECRET not in repr(settings)
    assert SECRET not in (settings.redacted_url or "")


# --- redact_url and scrub -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (URL, "postgresql://alice:***@db.example.com:5432/chem"),
        ("postgresql://alice@db/chem", "postgresql://alice@db/chem"),
        ("postgresql://db/chem", "postgresql://db/chem"),
        (f"postgresql://:{SECRET}@db/chem", "postgresql://:***@db/chem"),
        (f"postgresql://alice:{SECRET}@[::1]:5432/chem", "postgresql://alice:***@[::1]:5432/chem"),
        ("postgresql://alice:p@ss@db/chem", "postgresql://alice:***@db/chem"),
        (
            f"postgresql://alice:{SECRET}@db/chem?sslmode=require",
            "postgresql://alice:***@db/chem?sslmode=require",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    redacted = redact_url(url)
    assert redacted == expected
    assert SECRET not in redacted
    assert "p@ss" not in redacted


def test_redact_url_of_an_unparseable_url_shows_nothing() -> None:
    assert redact_url(f"postgresql://alice:{SECRET}@[bad") == "<unparseable url>"


def test_scrub_removes_the_password() -> None:
    text = f"connection to db.example.com failed: password {SECRET} rejected ({SECRET})"
    scrubbed = scrub(text, URL)
    assert SECRET not in scrubbed
    assert scrubbed == "connection to db.example.com failed: password *** rejected (***)"


def test_scrub_leaves_text_alone_without_a_password() -> None:
    assert scrub("nothing secret", None) == "nothing secret"
    assert scrub("nothing secret", "") == "nothing secret"
    assert scrub("alice at db", "postgresql://alice@db/chem") == "alice at db"
    assert scrub("text", "postgresql://[bad") == "text"


def test_scrub_removes_a_percent_encoded_password_in_both_forms() -> None:
    url = "postgresql://alice:p%40ss%2Fword@db/chem"
    scrubbed = scrub("raw p%40ss%2Fword, decoded p@ss/word", url)
    assert "p%40ss%2Fword" not in scrubbed
    assert "p@ss/word" not in scrubbed
