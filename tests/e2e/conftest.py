"""End-to-end fixtures: one real `accord serve` per test module and store kind.

A server per module keeps the suite fast; tests in a module share it and so
work with fresh ids (never "the first customer") and compare log positions
relative to their own writes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import _require_postgres
from tests.e2e.harness import Served, serve
from tests.support import postgres_schema, postgres_store, sqlite_store


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A running server with a token per role, on a fresh store of each kind."""
    workdir = tmp_path_factory.mktemp(f"served-{request.param}")
    if request.param == "sqlite":
        server = serve(sqlite_store(workdir), workdir)
        yield server
        server.stop()
        return
    _require_postgres()
    with postgres_schema() as schema:
        server = serve(postgres_store(schema), workdir)
        yield server
        server.stop()
