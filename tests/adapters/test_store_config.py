"""ACCORD_DATABASE_URL selects the store; a bad or unreachable one gives one clear error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.store import StoreConfigError, store_config
from adapters.wiring import build_accord
from application.errors import StoreUnavailableError
from application.personal_data import MasterKey


def test_the_default_store_is_accord_db_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ACCORD_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    config = store_config()
    assert config.kind == "sqlite"
    assert config.sqlite_path == tmp_path / "accord.db"


def test_sqlite_urls_take_relative_and_absolute_paths(tmp_path: Path) -> None:
    assert store_config(f"sqlite:///{tmp_path}/x.db").sqlite_path == tmp_path / "x.db"
    assert store_config(f"sqlite:////{tmp_path}/y.db").sqlite_path == tmp_path / "y.db"


def test_the_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACCORD_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    assert store_config().sqlite_path == tmp_path / "env.db"


def test_postgres_urls_map_onto_the_library_settings() -> None:
    config = store_config("postgresql://crm:s3cret@db.internal:6543/accord?schema=crm&pool_size=3")
    assert config.kind == "postgres"
    assert {
        k: config.env[k]
        for k in (
            "POSTGRES_HOST",
            "POSTGRES_PORT",
            "POSTGRES_DBNAME",
            "POSTGRES_USER",
            "POSTGRES_PASSWORD",
            "POSTGRES_SCHEMA",
            "POSTGRES_POOL_SIZE",
        )
    } == {
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
        "POSTGRES_DBNAME": "accord",
        "POSTGRES_USER": "crm",
        "POSTGRES_PASSWORD": "s3cret",
        "POSTGRES_SCHEMA": "crm",
        "POSTGRES_POOL_SIZE": "3",
    }
    assert "s3cret" not in config.safe_url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://x@y/z", "must start with"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite:///", "names a file"),
        ("sqlite:////no/such/dir/x.db", "does not exist"),
        ("postgresql://user@/db", "names a host and a database"),
        ("postgresql://user@h/db?sslmode=x", "unknown PostgreSQL URL options"),
    ],
)
def test_unusable_urls_are_refused_with_a_reason(url: str, problem: str) -> None:
    with pytest.raises(StoreConfigError, match=problem):
        store_config(url)


def test_an_unreachable_postgres_is_one_clear_error_without_the_password() -> None:
    config = store_config("postgresql://crm:s3cret@127.0.0.1:1/accord?connect_timeout=1")
    started = time.monotonic()

    with pytest.raises(StoreUnavailableError) as unavailable:
        build_accord(config, master_key=MasterKey.generate())

    assert "cannot open the event store" in str(unavailable.value)
    assert "s3cret" not in str(unavailable.value)
    assert time.monotonic() - started < 30  # fails, and does not hang


def test_the_sqlite_store_creates_its_tables_on_first_start(tmp_path: Path) -> None:
    import sqlite3

    app = build_accord(
        store_config(f"sqlite:///{tmp_path}/fresh.db"), master_key=MasterKey.generate()
    )
    app.close()
    with sqlite3.connect(tmp_path / "fresh.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "stored_events",
        "stored_snapshots",
        "accord_requests",
        "accord_claims",
        "accord_data_keys",
    } <= tables
