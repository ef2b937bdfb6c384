"""Coalescing: concurrent calls share batches, yet each keeps its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from application.coalescing import Coalescer
from tests.support import gated

WRITERS = 8


def test_writers_arriving_during_a_transaction_share_the_next_one() -> None:
    batches: list[list[int]] = []

    def write_batch(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [item * 10 for item in items]

    group: Coalescer[int, int] = Coalescer(write_batch, lambda item: item * 10)
    gated(group, WRITERS - 1)
    with ThreadPoolExecutor(WRITERS) as pool:
        first = pool.submit(group.submit, 0)
        while not group._leading:
            threading.Event().wait(0.001)
        results = list(pool.map(group.submit, range(1, WRITERS)))

    assert first.result() == 0
    assert results == [item * 10 for item in range(1, WRITERS)]
    assert batches == [list(range(1, WRITERS))]  # one shared transaction for the 7 that waited
    assert (group.batches, group.items) == (2, WRITERS)


def test_a_failing_item_fails_alone_when_the_shared_transaction_fails() -> None:
    def write_batch(items: Sequence[int]) -> list[int]:
        if 3 in items:
            raise ValueError("one bad item spoils the shared transaction")
        return list(items)

    def write_one(item: int) -> int:
        if item == 3:
            raise ValueError("item 3 is refused")
        return item

    group: Coalescer[int, int] = Coalescer(write_batch, write_one)
    gated(group, WRITERS - 1)

    def submit(item: int) -> int | str:
        try:
            return group.submit(item)
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(WRITERS) as pool:
        first = pool.submit(submit, 0)
        while not group._leading:
            threading.Event().wait(0.001)
        results = list(pool.map(submit, range(1, WRITERS)))

    assert first.result() == 0
    assert results == [1, 2, "item 3 is refused", 4, 5, 6, 7]


def test_a_lone_writer_is_written_at_once_and_the_lead_is_released() -> None:
    group: Coalescer[int, int] = Coalescer(lambda items: list(items), lambda item: item + 1)
    assert [group.submit(i) for i in range(3)] == [1, 2, 3]
    assert not group._leading
    assert (group.batches, group.items) == (3, 3)
