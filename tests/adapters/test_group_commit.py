"""Group commit: concurrent saves share transactions, yet each keeps its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from uuid import UUID, uuid4

from eventsourcing.persistence import RecordConflictError, StoredEvent

from adapters.postgres.recorder import AccordPostgresRecorder, Save
from adapters.store import StoreConfig
from adapters.wiring import build_accord
from application.journal import RequestRecord
from application.personal_data import MasterKey
from application.settings import Settings
from tests.builders import CTX, new_customer, purchase
from tests.support import gated

WRITERS = 8


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
        gated(group, WRITERS - 1)
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
    # Commands one by one (not gathered into bulk batches first), each its own save.
    with build_accord(postgres, Settings(command_batch=1), None, MasterKey.generate()) as app:
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


def test_the_common_save_needs_only_its_events_columns(postgres: StoreConfig) -> None:
    """Request records and snapshots default to none in ``accord_insert``: a save with
    neither (no request id, no snapshot due) sends four arrays, not thirteen."""
    with build_accord(postgres, Settings(), None, MasterKey.generate()) as app:
        recorder = app.log.recorder
        assert isinstance(recorder, AccordPostgresRecorder)
        plain, journalled, direct = uuid4(), uuid4(), uuid4()
        [first] = recorder.insert_events([_event(plain, 1)]) or []
        [second] = (
            recorder.insert_events([_event(journalled, 1)], **_save(journalled, 1, "r").options)
            or []
        )
        with recorder.datastore.get_connection() as conn:
            [row] = conn.execute(
                recorder.append_events_statement,
                ([direct], [1], ["test:Event"], [b'{"n": 1}']),
                binary=True,
            ).fetchall()

        assert second == first + 1
        assert row["notification_id"] == second + 1
        assert app.log.journal.find_requests(["r"])["r"].position == second
        assert [e.originator_version for e in recorder.select_events(direct)] == [1]
