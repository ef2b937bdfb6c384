"""Fixtures: the same behaviour suite runs against a SQLite file and PostgreSQL.

With ``CI=true`` an unreachable PostgreSQL fails the run instead of skipping
its half of the suite: CI must prove both stores, every time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from adapters.store import StoreConfig
from adapters.wiring import build_accord, build_read_models
from application.clock import Clock
from application.personal_data import MasterKey
from application.service import Accord
from application.settings import Settings
from projections.read_models import ReadModels
from tests.support import (
    FakeClock,
    postgres_reachable,
    postgres_schema,
    postgres_store,
    sqlite_store,
)

_pg_problem: str | bool | None = False  # False: not yet checked


def _require_postgres() -> None:
    global _pg_problem
    if _pg_problem is False:
        _pg_problem = postgres_reachable()
    if isinstance(_pg_problem, str):
        message = f"PostgreSQL is not reachable: {_pg_problem}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: PostgreSQL is required)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreConfig]:
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        yield sqlite_store(tmp_path)
        return
    _require_postgres()
    with postgres_schema() as schema:
        yield postgres_store(schema)


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[StoreConfig]:
    """A fresh PostgreSQL store, for behaviour that needs real parallel writers."""
    _require_postgres()
    with postgres_schema() as schema:
        yield postgres_store(schema)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


AccordFactory = Callable[..., Accord]


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def make_accord(store: StoreConfig, master_key: MasterKey) -> Iterator[AccordFactory]:
    """Build (and later close) applications over the test's store, sharing one master key."""
    with ExitStack() as stack:

        def make(
            settings: Settings | None = None,
            clock: Clock | None = None,
            key: MasterKey | None = None,
        ) -> Accord:
            app = build_accord(store, settings or Settings(), clock, key or master_key)
            stack.callback(app.close)
            return app

        yield make


@pytest.fixture
def accord(make_accord: AccordFactory, clock: FakeClock) -> Accord:
    return make_accord(clock=clock)


ReadModelsFactory = Callable[..., ReadModels]


@pytest.fixture
def make_read_models(store: StoreConfig) -> Iterator[ReadModelsFactory]:
    """Read models over the test's store for a given application (stopped afterwards)."""
    with ExitStack() as stack:

        def make(app: Accord, projections: Any = None, *, batch_size: int = 500) -> ReadModels:
            read_models = build_read_models(app, store, projections, batch_size=batch_size)
            stack.callback(read_models.stop)
            return read_models

        yield make
