"""Settings (SPEC section 6): groups, the environment and keywords, one clear error, no password."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from chem_persistence_async import Database
from chem_persistence_async.errors import ConfigurationError
from chem_persistence_async.settings import (
    SETTINGS,
    ConnectionSettings,
    DatabaseSettings,
    QueueSettings,
    StoreSettings,
    WorkerSettings,
    redact_url,
    scrub,
)

SECRET = "s3cr3t-Pa55"
URL = f"postgresql://alice:{SECRET}@db.example.com:5432/chem"

README_ENV_NAMES = [
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
    "CHEM_PERSIST_GROUP_COMMIT",
    "CHEM_PERSIST_GROUP_COMMIT_WRITERS",
    "CHEM_PERSIST_GROUP_COMMIT_MAX_EVENTS",
]
"""The variables README's configuration table documented before settings were grouped."""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test from an environment that sets none of the settings (by any name)."""
    names = {s.env for s in SETTINGS} | {s.keyword.upper() for s in SETTINGS} | set(README_ENV_NAMES)
    for name in list(os.environ):
        if name.upper() in names or name.upper().startswith("CHEM_PERSIST_"):
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
    connection = settings.connection
    assert connection.url is None
    assert connection.url_value is None
    assert connection.redacted_url is None
    assert connection.min_connections == 2
    assert connection.max_connections == 16
    assert connection.connect_timeout > 0
    assert connection.acquire_timeout > 0
    assert connection.statement_cache_size == 100
    assert connection.auto_migrate is True
    assert connection.retry_delays_ms == (15.0, 30.0, 45.0)
    assert settings.store.store_artifacts is True
    assert settings.store.max_payload_bytes == 8 * 1024 * 1024
    assert settings.store.group_commit is True
    assert settings == DatabaseSettings()  # loading an empty environment gives the models' defaults


def test_queue_and_worker_defaults() -> None:
    settings = DatabaseSettings.load()
    assert settings.worker == WorkerSettings(
        concurrency=8, queues=("default",), lease=30.0, poll_interval=1.0, listen=True, grace_period=30.0
    )
    assert settings.queue == QueueSettings(notify_window_ms=10.0)


def test_every_setting_sits_in_one_group_with_one_variable_and_one_keyword() -> None:
    groups = {"connection": ConnectionSettings, "store": StoreSettings}
    groups |= {"queue": QueueSettings, "worker": WorkerSettings}
    assert {s.group for s in SETTINGS} == set(groups)
    for setting in SETTINGS:
        assert setting.field in groups[setting.group].model_fields
        assert setting.env.startswith(("DATABASE_", "CHEM_PERSIST_"))
        assert setting.doc, f"{setting.keyword} has no docstring"
    assert len({s.env for s in SETTINGS}) == len({s.keyword for s in SETTINGS}) == len(SETTINGS)
    assert {s.env for s in SETTINGS} >= set(README_ENV_NAMES)  # no documented variable was renamed
    by_env = {s.env: s.keyword for s in SETTINGS}
    assert by_env["CHEM_PERSIST_WORKER_CONCURRENCY"] == "worker_concurrency"
    assert by_env["CHEM_PERSIST_QUEUE_NOTIFY_WINDOW_MS"] == "queue_notify_window_ms"
    assert by_env["DATABASE_MAX_CONNECTIONS"] == "max_connections"


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
    monkeypatch.setenv("CHEM_PERSIST_GROUP_COMMIT", "false")
    monkeypatch.setenv("CHEM_PERSIST_GROUP_COMMIT_WRITERS", "5")
    monkeypatch.setenv("CHEM_PERSIST_GROUP_COMMIT_MAX_EVENTS", "50")
    monkeypatch.setenv("CHEM_PERSIST_WORKER_CONCURRENCY", "3")
    monkeypatch.setenv("CHEM_PERSIST_WORKER_QUEUES", "high, default")
    monkeypatch.setenv("CHEM_PERSIST_WORKER_LEASE", "12.5")
    monkeypatch.setenv("CHEM_PERSIST_WORKER_POLL_INTERVAL", "0.25")
    monkeypatch.setenv("CHEM_PERSIST_WORKER_LISTEN", "off")
    monkeypatch.setenv("CHEM_PERSIST_QUEUE_NOTIFY_WINDOW_MS", "25")
    settings = DatabaseSettings.load()
    connection = settings.connection
    assert connection.url_value == URL
    assert connection.min_connections == 3
    assert connection.max_connections == 40
    assert connection.connect_timeout == 2.5
    assert connection.acquire_timeout == 7.0
    assert connection.command_timeout == 11.0
    assert connection.statement_cache_size == 0
    assert connection.application_name == "bench"
    assert connection.data_dir == tmp_path
    assert connection.auto_migrate is False
    assert settings.store.store_artifacts is False
    assert settings.store.max_payload_bytes == 4096
    assert settings.store.group_commit is False
    assert settings.store.group_commit_writers == 5
    assert settings.store.group_commit_max_events == 50
    assert settings.worker.concurrency == 3
    assert settings.worker.queues == ("high", "default")
    assert settings.worker.lease == 12.5
    assert settings.worker.poll_interval == 0.25
    assert settings.worker.listen is False
    assert settings.queue.notify_window_ms == 25


def test_lower_case_environment_names_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("database_max_connections", "9")
    assert DatabaseSettings.load().connection.max_connections == 9


def test_postgres_scheme_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    assert DatabaseSettings.load().connection.url_value == "postgres://u@h/db"


def test_empty_url_means_no_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    assert DatabaseSettings.load().connection.url is None
    assert DatabaseSettings.load(url="").connection.url is None


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://env@envhost/envdb")
    monkeypatch.setenv("DATABASE_MIN_CONNECTIONS", "5")
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "6")
    monkeypatch.setenv("CHEM_PERSIST_WORKER_CONCURRENCY", "2")
    settings = DatabaseSettings.load(url=URL, min_connections=1, max_connections=4, worker_concurrency=6)
    assert settings.connection.url_value == URL
    assert settings.connection.min_connections == 1
    assert settings.connection.max_connections == 4
    assert settings.worker.concurrency == 6


def test_none_overrides_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "12")
    settings = DatabaseSettings.load(max_connections=None, url=None)
    assert settings.connection.max_connections == 12


def test_settings_are_frozen() -> None:
    settings = DatabaseSettings.load()
    with pytest.raises(ValidationError):
        settings.connection.max_connections = 99  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.store = StoreSettings()  # type: ignore[misc]


def test_retry_delays_from_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHEM_PERSIST_RETRY_DELAYS_MS", "[5, 10, 20]")
    assert DatabaseSettings.load().connection.retry_delays_ms == (5.0, 10.0, 20.0)


def test_retry_delays_as_a_string_override() -> None:
    assert DatabaseSettings.load(retry_delays_ms="1, 2 3").connection.retry_delays_ms == (1.0, 2.0, 3.0)


def test_retry_delays_comma_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The validator splits "15,30,45"; read from the environment this must work too."""
    monkeypatch.setenv("CHEM_PERSIST_RETRY_DELAYS_MS", "15,30,45")
    assert DatabaseSettings.load().connection.retry_delays_ms == (15.0, 30.0, 45.0)


def test_unrelated_generic_variables_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the documented names are settings: a generic URL or DATA_DIR in the environment is not ours."""
    monkeypatch.setenv("URL", "postgresql://intruder:pw@elsewhere/other")
    monkeypatch.setenv("MIN_CONNECTIONS", "7")
    settings = DatabaseSettings.load()
    assert settings.connection.url is None
    assert settings.connection.min_connections == 2


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
    if env != "DATABASE_URL":
        assert repr(value) in message  # the bad value is echoed


def test_min_above_max(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DATABASE_MIN_CONNECTIONS", "20")
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "5")
    message = _load_error()
    assert "DATABASE_MIN_CONNECTIONS" in message
    assert "DATABASE_MAX_CONNECTIONS" in message


def test_min_above_max_names_each_side_as_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "50")
    message = _load_error(min_connections=60, url=URL)
    assert "min_connections (60) exceeds DATABASE_MAX_CONNECTIONS (50)" in message
    message = _load_error(min_connections=9, max_connections=3, url=URL)
    assert "min_connections (9) exceeds max_connections (3)" in message
    assert "DATABASE_" not in message


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
    with pytest.raises(ValueError, match="max_connections='many'"):
        DatabaseSettings.load(max_connections="many")


# --- the password never shows -------------------------------------------------------------------------


def test_repr_and_str_hide_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    settings = DatabaseSettings.load()
    for text in (repr(settings), str(settings), f"{settings}", repr(settings.model_dump())):
        assert SECRET not in text
    assert SECRET not in repr(settings.flat())
    assert "db.example.com" in repr(settings)
    assert settings.connection.redacted_url == "postgresql://alice:***@db.example.com:5432/chem"
    assert settings.connection.url_value == URL  # the secret is still there for the driver


def test_dump_json_hides_the_password() -> None:
    settings = DatabaseSettings.load(url=URL)
    assert SECRET not in settings.model_dump_json()


def test_repr_hides_a_password_given_as_a_query_parameter() -> None:
    settings = DatabaseSettings.load(url=f"postgresql://alice@db.example.com/chem?password={SECRET}")
    assert SECRET not in repr(settings)
    assert SECRET not in (settings.connection.redacted_url or "")


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


# --- keywords: named as given, misspellings refused ---------------------------------------------------


def test_a_bad_keyword_value_is_named_by_the_keyword_and_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "-1")
    message = _load_error(max_connections=0, worker_queues="", statement_cache_size="none", url=URL)
    assert "max_connections=0: Input should be greater than or equal to 1" in message
    assert "worker_queues='': " in message
    assert "statement_cache_size='none': " in message
    assert "DATABASE_CONNECT_TIMEOUT='-1': " in message  # the environment's by its variable
    assert "DATABASE_MAX_CONNECTIONS" not in message
    assert "DATABASE_STATEMENT_CACHE_SIZE" not in message


def test_a_bad_url_keyword_is_echoed_redacted() -> None:
    message = _load_error(url=f"mysql://alice:{SECRET}@db.example.com/chem")
    assert "url='mysql://alice:***@db.example.com/chem': must be a postgresql:// URL" in message


def test_a_long_bad_value_is_cut_short() -> None:
    message = _load_error(application_name="x" * 500)
    assert "application_name='xxxx" in message
    assert len(message) < 300


@pytest.mark.parametrize(
    ("keyword", "suggestion"),
    [
        ("max_conections", "max_connections"),
        ("worker_concurency", "worker_concurrency"),
        ("groupcommit", "group_commit"),
    ],
)
def test_a_misspelled_keyword_is_refused_with_the_close_match(keyword: str, suggestion: str) -> None:
    message = _load_error(**{keyword: 5})
    assert f"unknown setting {keyword!r} (did you mean {suggestion}?)" in message


def test_an_unknown_keyword_with_no_close_match_is_refused_too() -> None:
    message = _load_error(frobnicate=True, max_connections=0)
    assert "unknown setting 'frobnicate'" in message
    assert "did you mean" not in message.split(";")[0]
    assert "max_connections=0" in message  # reported with the other problems, in one error


def test_database_connect_refuses_a_misspelled_keyword_at_the_call() -> None:
    """Refused when ``connect`` is called: no server is needed to learn of the typo."""
    with pytest.raises(
        ConfigurationError, match=r"unknown setting 'max_conections' \(did you mean max_connections\?\)"
    ):
        Database.connect("postgresql://nobody@127.0.0.1:1/none", max_conections=5)
    with pytest.raises(ConfigurationError, match="unknown setting 'max_conections'"):
        Database.from_env(max_conections=5)


async def test_database_open_refuses_a_misspelled_keyword_next_to_given_settings() -> None:
    settings = DatabaseSettings.load(url=URL)
    with pytest.raises(ConfigurationError, match="unknown setting 'max_conections'"):
        await Database.open(settings=settings, max_conections=5)


def test_replace_changes_only_what_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = DatabaseSettings.load(url=URL, max_connections=7, group_commit=False)
    monkeypatch.setenv("DATABASE_MIN_CONNECTIONS", "5")  # replace does not read the environment
    changed = settings.replace(min_connections=1, worker_concurrency=2)
    assert changed.connection.min_connections == 1
    assert changed.connection.max_connections == 7
    assert changed.connection.url_value == URL
    assert changed.store.group_commit is False
    assert changed.worker.concurrency == 2
    assert settings.connection.min_connections == 2
    with pytest.raises(ConfigurationError, match="min_connections \\(9\\) exceeds max_connections \\(7\\)"):
        settings.replace(min_connections=9)


def test_unknown_chem_persist_variable_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CHEM_PERSIST_GROUP_COMMITS", "false")
    with caplog.at_level(logging.WARNING, logger="chem_persistence_async.settings"):
        settings = DatabaseSettings.load()
    assert settings.store.group_commit is True  # the misspelled variable did nothing...
    assert (  # ...and said so
        "ignoring unknown environment variable CHEM_PERSIST_GROUP_COMMITS (did you mean CHEM_PERSIST_GROUP_COMMIT?)"
        in caplog.text
    )


def test_a_group_built_by_hand_checks_itself() -> None:
    with pytest.raises(ValidationError):
        ConnectionSettings(min_connections=5, max_connections=2)
    with pytest.raises(ValidationError):
        WorkerSettings(concurrency=0)
    with pytest.raises(ValidationError):
        DatabaseSettings(connection=ConnectionSettings(), extra=1)  # type: ignore[call-arg]


# --- URLs that a driver would misread ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql://alice:{SECRET}@db:abc/chem", "the port 'abc' is not a number"),
        (f"postgresql://alice:{SECRET}@db:65536/chem", "the port 65536 is out of range (1-65535)"),
        (f"postgresql://alice:{SECRET}@db:5432,db2:x/chem", "the port 'x' is not a number"),
        (f"postgresql://alice:{SECRET}@[::1]:abc/chem", "the port 'abc' is not a number"),
        ("postgresql://alice:s3cr3t@Pa55@db/chem", "contains '@': percent-encode it"),
        ("postgresql://alice:s3cr3t/Pa55@db/chem", "seems to contain '/', '?' or '#': percent-encode it"),
        ("postgresql://alice:s3cr3t#Pa55@db/chem", "seems to contain '/', '?' or '#': percent-encode it"),
        (f"postgresql://alice:{SECRET}@db/chem?port=99999", "the port parameter 99999 is out of range"),
        (f"postgresql://alice:{SECRET}@db/chem?sslmode", "its query string is malformed"),
        (f"postgresql://alice:{SECRET}@[db/chem", "not a valid URL"),
    ],
)
def test_url_mistakes_are_named_without_the_password(url: str, problem: str) -> None:
    message = _load_error(url=url)
    assert problem in message
    assert "s3cr3t" not in message
    assert "Pa55" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:p%40ss@db:5432/chem",
        "postgresql://db1:5432,db2:5433/chem",
        "postgresql://[::1]:5432/chem",
        "postgresql://[::1]/chem",
        "postgresql:///chem?host=/var/run/postgresql",
        "postgresql://alice@db/chem?sslmode=require&application_name=x",
        "postgres://u@h/db",
    ],
)
def test_valid_urls_pass(url: str) -> None:
    assert DatabaseSettings.load(url=url).connection.url_value == url


def test_a_password_cut_short_by_a_slash_is_redacted_whole() -> None:
    url = "postgresql://alice:s3cr3t/Pa55@db.example.com/chem"
    assert redact_url(url) == "postgresql://alice:***@db.example.com/chem"
    assert scrub("got s3cr3t/Pa55 and s3cr3t", url) == "got *** and ***"
