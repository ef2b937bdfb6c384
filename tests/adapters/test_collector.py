"""The server keeps the garbage collector's pauses out of request latency."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from adapters.cli import GC_YOUNG_THRESHOLD, settle_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_settling_freezes_what_is_loaded_and_spaces_young_collections() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0

    settle_collector()

    assert gc.get_freeze_count() > 10_000  # modules, descriptors, schemas: out of sight
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD > 700
