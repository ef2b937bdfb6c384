"""Every read model built in one pass, in batches, equals the same fold applied event by event.

The runner reads each batch once, decodes each event once for every read
model, folds them all and commits them in one transaction, writes the audit
trail's entries in bulk, and keeps the documents it just wrote for the next
batch. None of that may change a document: the reference here is the plainest
fold there is, one decoded event at a time into memory (``MemoryDocs``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import Notification

from adapters.rebuild import plan, rebuild
from adapters.store import StoreConfig
from adapters.wiring import build_accord, build_read_models
from application.errors import ApplicationError, DomainError
from application.personal_data import MasterKey
from application.service import Accord
from application.settings import Settings
from domain.events import DomainEvent
from projections import audit_trail
from projections.audit_trail import AuditTrail, recorded_at, render, stored_body, stored_summary
from projections.catalog import all_projections
from projections.read_models import ReadModels
from projections.runner import Progress, UnitOfWork
from projections.store import Doc
from tests.builders import bulk_purchases
from tests.conftest import AccordFactory, ReadModelsFactory
from tests.projections.memory import MemoryDocs
from tests.projections.test_rebuild_property import World
from tests.support import FakeClock

HISTORY: list[tuple[Any, ...]] = [
    ("customer",),
    ("customer",),
    ("customer",),
    ("partner",),
    ("partner",),
    *[("purchase", i % 3, 10 + i, i * 40) for i in range(12)],
    ("refund", 1, 5),
    ("survey", 2, 9),
    ("contact", 0),
    ("contact", 1),
    ("tier", 0, "KEY"),
    ("potential", 1, "HIGH"),
    ("consent", 0, 0),
    ("consent", 1, 1),
    ("consent", 2, 0),
    ("share", 0, 0),
    ("share", 1, 0),  # refused: no consent for this partner
    ("withdraw", 0, 30),
    ("advance", 20),
    ("purchase", 0, 99, 0),
    ("review", 0, 3),
    ("link", 1, 2),
    ("suspend", 1),
    ("erase", 2),
    ("purchase", 2, 7, 1),
]


def _world(app: Accord, clock: FakeClock) -> None:
    world = World(app, clock)
    for op in HISTORY:
        with contextlib.suppress(DomainError, ApplicationError):  # refused: nothing recorded
            world.run(op)


def _all_notifications(views: ReadModels) -> list[Notification]:
    return list(views.views.read_log(0, 1_000_000))


def _reference(views: ReadModels) -> dict[str, dict[tuple[str, str], tuple[str | None, Doc]]]:
    """Every read model folded one decoded event at a time into memory, with ``apply``."""
    runner = views.runner
    folded = {}
    notifications = _all_notifications(views)
    for projection in all_projections():
        docs = MemoryDocs()
        for notification in notifications:
            if projection.topics is None or notification.topic in projection.topics:
                event = runner.mapper.to_domain_event(notification)
                assert isinstance(event, DomainEvent)
                projection.apply(event, notification, docs)
        folded[projection.name] = docs.dumped()
    return folded


def _active(views: ReadModels, name: str) -> dict[tuple[str, str], tuple[str | None, Doc]]:
    generation, _ = views.views.state(name) or (0, 0)
    return views.views.dump(name, generation)


def test_batched_folds_equal_the_fold_of_one_event_at_a_time(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _world(accord, clock)
    reference = _reference(make_read_models(accord))
    for batch_size in (1, 4, 500):
        views = make_read_models(accord, batch_size=batch_size)
        if batch_size == 1:
            views.runner.catch_up()  # following: every read model in each batch's transaction
        else:
            assert views.runner.rebuild_many(list(views.runner.projections)) is not None
        for name, docs in reference.items():
            assert _active(views, name) == docs, (name, batch_size)


def test_the_audit_trail_reads_stored_bodies_as_the_mapper_decodes_them(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _world(accord, clock)
    views = make_read_models(accord)
    notifications = _all_notifications(views)
    assert len({n.topic for n in notifications}) >= 12  # most kinds of event are here
    for notification in notifications:
        event = views.runner.mapper.to_domain_event(notification)
        event_class, body = stored_body(notification)
        assert event_class is type(event)
        assert stored_summary(event_class, body) == audit_trail.summary(event)
        assert recorded_at(body["timestamp"]) == event.timestamp.isoformat()
        stored, decoded = MemoryDocs(), MemoryDocs()
        AuditTrail().apply_stored(notification, stored)
        AuditTrail().apply(event, notification, decoded)
        assert stored.docs == decoded.docs
        assert stored.log == decoded.log


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-03-01T08:30:00.123456Z",
        "2026-03-01T08:30:00Z",
        "2026-03-01T08:30:00.000000Z",
        "2026-03-01T08:30:00.5Z",
        "2026-03-01T16:30:00.123456+08:00",
        "2026-03-01T08:30:00.123456+00:00",
    ],
)
def test_a_recorded_time_reads_as_the_models_isoformat(timestamp: str) -> None:
    assert recorded_at(timestamp) == datetime.fromisoformat(timestamp).isoformat()


def test_a_rendered_trail_entry_is_the_entry_as_json() -> None:
    entry: Doc = {
        "position": 12,
        "aggregate_id": "0b8b7f9e-4d1d-4a7e-9a3f-2c2b3a1d4e5f",
        "aggregate_type": "customer",
        "version": 3,
        "type": "customer.interaction_recorded",
        "recorded_at": "2026-03-01T08:30:00.123456+00:00",
        "actor": 'crm "sync" \u00e9\u6d4b',
        "request_id": "r\n1",
        "correlation_id": "c\\1",
        "summary": "kind=PURCHASE amount=12.50 note=\u2603",
        "hash": "ab" * 32,
    }
    text = render(entry)
    assert text is not None
    assert json.loads(text) == entry
    assert render({**entry, "actor": 7}) is None  # an edited body: the store encodes it


class _OneEntryStore:
    """A store whose generation holds one committed entry, at position 1, of group "g"."""

    def load(self, name: str, generation: int, kind: str, key: str) -> Doc | None:
        return None

    def entries(
        self, name: str, generation: int, *, after: int, group: str | None, limit: int | None
    ) -> list[Doc]:
        found = [{"n": 1}] if after < 1 and group in (None, "g") else []
        return found[:limit] if limit is not None else found


def test_recorded_entries_are_visible_in_their_batch_after_the_committed_ones() -> None:
    unit = UnitOfWork(_OneEntryStore(), "audit_trail", 1, 1)  # type: ignore[arg-type]
    unit.record([(2, "g", '{"n":2}'), (3, None, '{"n":3}')])
    unit.put("chain", "head", {"position": 3})

    assert list(unit.entries()) == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert list(unit.entries(group="g")) == [{"n": 1}, {"n": 2}]
    assert list(unit.entries(after=1, limit=1)) == [{"n": 2}]
    assert list(unit.entries(limit=1)) == [{"n": 1}]
    assert unit.recorded == [(2, "g", '{"n":2}'), (3, None, '{"n":3}')]  # written once, as given
    assert unit.changes() == [("chain", "head", None, {"position": 3})]


def test_workers_taking_turns_never_fold_on_documents_the_other_moved_on(
    make_accord: AccordFactory, make_read_models: ReadModelsFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    bulk_purchases(app, customers=2, per_customer=40, now=clock.now())
    first, second = (make_read_models(app, batch_size=5) for _ in range(2))
    while first.runner.step() + second.runner.step():
        pass  # each batch moves customer documents the other worker keeps from its own last one

    for name in first.runner.projections:
        live = _active(first, name)
        rebuilt = first.runner.rebuild(name)
        assert rebuilt is not None
        assert first.views.dump(name, rebuilt) == live, name


def test_the_read_models_needing_decoded_events_rebuild_apart_from_the_audit_trail() -> None:
    projections = all_projections()
    assert plan(projections, workers=2) == [
        [p.name for p in projections if p.name != audit_trail.NAME],
        [audit_trail.NAME],
    ]
    assert plan(projections, workers=1) == [[p.name for p in projections]]


@pytest.fixture
def on_postgres(postgres: StoreConfig, master_key: MasterKey, clock: FakeClock) -> Iterator[Accord]:
    with build_accord(postgres, Settings(), clock, master_key) as app:
        yield app


def test_a_rebuild_in_two_processes_equals_the_read_models_built_in_one(
    postgres: StoreConfig, on_postgres: Accord, clock: FakeClock
) -> None:
    app = on_postgres
    _world(app, clock)
    bulk_purchases(app, customers=10, per_customer=30, now=clock.now() - timedelta(days=3))
    views = build_read_models(app, postgres, batch_size=50)
    views.runner.catch_up()
    names = list(views.runner.projections)
    live = {name: _active(views, name) for name in names}

    rebuilt = rebuild(app, postgres, views, names, workers=2)

    assert rebuilt is not None
    assert set(rebuilt.generations) == set(names)
    assert len(rebuilt.worker_peak_rss_kb) == 1
    assert rebuilt.worker_peak_rss_kb[0] > 0
    for name in names:
        version = views.runner.projections[name].version
        assert views.views.state(name) == (rebuilt.generations[name], version)
        assert _active(views, name) == live[name], name


def test_a_rebuild_in_two_processes_stopped_part_way_resumes_to_the_same_result(
    postgres: StoreConfig, on_postgres: Accord, clock: FakeClock
) -> None:
    app = on_postgres
    bulk_purchases(app, customers=30, per_customer=40, now=clock.now())
    views = build_read_models(app, postgres, batch_size=3)
    views.runner.catch_up()
    names = list(views.runner.projections)
    serving = {name: views.views.state(name) or (0, 0) for name in names}
    live = {name: _active(views, name) for name in names}
    progress, stop = Progress("all"), threading.Event()

    def stop_once_under_way() -> None:
        while (
            views.views.position("customer_summary", serving["customer_summary"][0] + 1) or 0
        ) < 30:
            threading.Event().wait(0.01)
        stop.set()

    stopper = threading.Thread(target=stop_once_under_way, daemon=True)
    stopper.start()
    assert rebuild(app, postgres, views, names, workers=2, progress=progress, stop=stop) is None
    stopper.join()

    head = app.log.recorder.max_notification_id() or 0
    paused = [n for n in names if views.views.state(n) == serving[n]]
    assert paused, "every read model finished before the stop"
    for name in paused:  # still served by the old copy, the new one part way (or not begun)
        assert (views.views.position(name, serving[name][0] + 1) or 0) < head, name
    assert "customer_summary" in paused

    resumed = rebuild(app, postgres, views, names, workers=2)
    assert resumed is not None
    for name in names:
        assert resumed.generations[name] > serving[name][0]
        assert (resumed.generations[name] == serving[name][0] + 1) == (name in paused), name
        assert _active(views, name) == live[name], name
