"""Group commit: concurrent saves share transactions, yet each keeps its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import RecordConflictError, StoredEvent

from adapters.group_commit import GroupCommit
from adapters.postgres.recorder import AccordPostgresRecorder, Save
from adapters.store import StoreConfig
from adapters.wiring import build_accord
from application.journal import RequestRecord
from application.personal_data import MasterKey
from application.settings import Settings
from tests.builders import CTX, new_customer, purchase

WRITERS = 8


def _gated(group: GroupCommit[Any, Any], queued: int) -> threading.Event:
    """Hold the first writer's transaction until ``queued`` others wait behind it."""
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


def test_writers_arriving_during_a_transaction_share_the_next_one() -> None:
    batches: list[list[int]] = []

    def write_batch(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(write_batch, lambda item: item * 10)
    _gated(group, WRITERS - 1)
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

    group: GroupCommit[int, int] = GroupCommit(write_batch, write_one)
    _gated(group, WRITERS - 1)

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
    group: GroupCommit[int, int] = GroupCommit(lambda items: list(items), lambda item: item + 1)
    assert [group.submit(i) for i in range(3)] == [1, 2, 3]
    assert not group._leading
    assert (group.batches, group.items) == (3, 3)


# ------------------------------------------------------------ on PostgreSQL


def _event(originator_id: UUID, version: int) -> StoredEvent:
    return StoredEvent(originator_id, version, "test:Event", b'{"n": 1}')


def _save(originator_id: UUID, version: int, request_id: str) -> Save:
    record = RequestRecord(request_id, "print", originator_id, version, None)
    return Save((_event(originator_id, version),), {"requests": (record,)})


def test_a_conflicting_save_fails_alone_and_the_others_commit_gap_free(
    postgres: StoreConfig,
) -> None:
    """One writer's conflict (a version already taken) never fails the saves it shared with."""
    with build_accord(postgres, Settings(), None, MasterKey.generate()) as app:
        recorder = app.log.recorder
        assert isinstance(recorder, AccordPostgresRecorder)
        taken = uuid4()
        recorder.insert_events([_event(taken, 1)])
        start = recorder.max_notification_id() or 0
        group = recorder.group_commit
        before = (group.batches, group.items)
        _gated(group, WRITERS - 1)
        saves = [_save(uuid4(), 1, f"r-{i}") for i in range(WRITERS)]
        saves[4] = _save(taken, 1, "r-4")  # conflicts: version 1 of `taken` exists

        def submit(save: Save) -> Sequence[int] | str:
            try:
                return recorder.insert_events(list(save.events), **save.options) or []
            except RecordConflictError:
                return "conflict"

        with ThreadPoolExecutor(WRITERS) as pool:
            first = pool.submit(submit, saves[0])
            while not group._leading:
                threading.Event().wait(0.001)
            others = list(pool.map(submit, saves[1:]))
            results = [first.result(), *others]

        assert results[4] == "conflict"
        positions = [r[0] for i, r in enumerate(results) if i != 4]
        # The log holds exactly the seven that committed (a rolled-back shared transaction
        # may leave unused numbers: positions are ordered, not contiguous).
        logged = recorder.select_notifications(start + 1, limit=100)
        assert sorted(positions) == [n.id for n in logged]
        assert recorder.find_request("r-4") is None
        for i in (0, 1, 7):
            stored = recorder.find_request(f"r-{i}")
            assert stored is not None
            assert stored.position == results[i][0]
        assert group.items - before[1] == WRITERS
        assert group.batches - before[0] < WRITERS  # some were written together


def test_concurrent_commands_share_transactions(postgres: StoreConfig) -> None:
    with build_accord(postgres, Settings(), None, MasterKey.generate()) as app:
        recorder = app.log.recorder
        assert isinstance(recorder, AccordPostgresRecorder)
        customers = [new_customer(app) for _ in range(WRITERS)]
        before = (recorder.group_commit.batches, recorder.group_commit.items)

        def write(customer_id: UUID) -> list[int]:
            return [
                app.customers.record_interaction(
                    purchase(customer_id, "1", datetime.now(UTC)), CTX
                ).version
                for _ in range(25)
            ]

        with ThreadPoolExecutor(WRITERS) as pool:
            versions = list(pool.map(write, customers))

        assert versions == [list(range(2, 27))] * WRITERS
        batches = recorder.group_commit.batches - before[0]
        items = recorder.group_commit.items - before[1]
        assert items == WRITERS * 25
        assert batches < items  # some transactions were shared
        positions = sorted(
            p for customer_id in customers for p in recorder.positions(customer_id).values()
        )
        assert len(positions) == len(set(positions))
