"""Shared test helpers: stores, clocks and command builders."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg import sql

from adapters.store import StoreConfig, store_config
from application.coalescing import Coalescer
from application.personal_data import WrappedKey

POSTGRES_URL = os.environ.get(
    "ACCORD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


class FakeClock:
    """A clock the test moves by hand (thread-safe)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self._now += timedelta(**delta)
            return self._now

    def tick(self) -> datetime:
        """Move one microsecond on, so successive events have distinct times."""
        return self.advance(microseconds=1)


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return f"{type(error).__name__}: {error}".strip()
    return None


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema for one test, dropped afterwards."""
    schema = f"t_{uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def sqlite_store(directory: Path) -> StoreConfig:
    return store_config(f"sqlite:///{directory / 'accord.db'}")


def postgres_store(schema: str) -> StoreConfig:
    return store_config(f"{POSTGRES_URL}?schema={schema}&pool_size=2&max_overflow=8")


class InMemoryKeyStore:
    """A data-key table in a dict, for vault tests that must control when reads happen."""

    def __init__(self) -> None:
        self.keys: dict[UUID, WrappedKey] = {}

    def get_data_key(self, customer_id: UUID) -> WrappedKey | None:
        return self.keys.get(customer_id)

    def get_data_keys(self, customer_ids: Sequence[UUID]) -> dict[UUID, WrappedKey]:
        return {i: self.keys[i] for i in customer_ids if i in self.keys}

    def create_data_key(self, customer_id: UUID, key: WrappedKey) -> WrappedKey:
        return self.keys.setdefault(customer_id, key)

    def all_data_keys(self) -> list[tuple[UUID, WrappedKey]]:
        return list(self.keys.items())

    def master_key_ids(self) -> set[str]:
        return {key.master_key_id for key in self.keys.values() if key.wrapped is not None}

    def replace_data_keys(self, keys: list[tuple[UUID, WrappedKey]], previous_id: str) -> int:
        self.keys.update(keys)
        return len(keys)


def gated(group: Coalescer[Any, Any], queued: int) -> threading.Event:
    """Hold the first batch (handled alone) until ``queued`` other items wait behind it."""
    release = threading.Event()
    write_one = group._write_one

    def slow_first(item: Any) -> Any:
        if not release.is_set():
            release.wait(timeout=10)
        return write_one(item)

    group._write_one = slow_first

    def watch() -> None:
        while len(group._queue) < queued:
            threading.Event().wait(0.001)
        release.set()

    threading.Thread(target=watch, daemon=True).start()
    return release
