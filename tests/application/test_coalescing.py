"""Coalescing: concurrent calls share batches, yet each keeps its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

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


def _until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        threading.Event().wait(0.001)
    raise AssertionError("the condition never held")


def _shared_batch_of(group: Coalescer[int, int], size: int) -> None:
    """Make the group's last batch a shared one of ``size`` items (after one alone)."""
    gated(group, size)
    with ThreadPoolExecutor(size + 1) as pool:
        first = pool.submit(group.submit, -1)
        _until(lambda: group._leading)
        list(pool.map(group.submit, range(-size - 1, -1)))
        first.result()


def test_after_a_shared_batch_the_next_leader_waits_for_as_many_items() -> None:
    """The first caller back from a batch of 3 does not lead a batch of one: it waits for 3."""
    batches: list[list[int]] = []

    def write_batch(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return list(items)

    group: Coalescer[int, int] = Coalescer(write_batch, lambda item: item, linger=60)
    _shared_batch_of(group, 3)
    batches.clear()

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(group.submit, 1)
        _until(lambda: group._lingering)  # the leader waits, its item unwritten
        rest = list(pool.map(group.submit, [2, 3]))

    assert (first.result(), rest) == (1, [2, 3])
    assert batches == [[1, 2, 3]]
    assert group.lingered == 1


def test_a_lingering_leader_writes_what_it_has_when_the_linger_is_up() -> None:
    batches: list[list[int]] = []

    def write_batch(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return list(items)

    group: Coalescer[int, int] = Coalescer(write_batch, lambda item: -item, linger=0.01)
    _shared_batch_of(group, 3)
    batches.clear()

    assert group.submit(7) == -7  # alone: the one-item path, once the wait is over
    assert group.lingered == 1
    assert group.submit(8) == -8  # the last batch held one: nothing to wait for
    assert group.lingered == 1
    assert batches == []
    assert not group._leading


def test_without_linger_a_leader_never_waits() -> None:
    group: Coalescer[int, int] = Coalescer(lambda items: list(items), lambda item: item)
    _shared_batch_of(group, 3)
    assert group.submit(5) == 5
    assert group.lingered == 0


def test_linger_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="linger"):
        Coalescer(lambda items: list(items), lambda item: item, linger=-0.001)
