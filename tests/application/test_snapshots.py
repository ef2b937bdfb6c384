"""Snapshots every N events: a long-lived customer loads from its latest snapshot."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from application import commands as c
from application.journal import VersionGuard
from application.service import Accord
from application.settings import Settings
from domain.aggregate import EventMeta
from domain.customer import Customer
from domain.snapshot import Snapshot
from domain.values import Channel, Direction, InteractionKind
from tests.builders import CTX, new_customer
from tests.conftest import AccordFactory
from tests.support import FakeClock

INTERVAL = 500


def test_a_customer_with_20000_interactions_loads_from_a_snapshot(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    writer = make_accord(settings=Settings(snapshot_interval=INTERVAL), clock=clock)
    customer_id = new_customer(writer)
    customer = writer.executor.load(Customer, customer_id)
    meta = EventMeta(
        actor="loader", request_id="bulk", correlation_id="bulk", recorded_at=clock.now()
    )
    for batch in range(40):  # 40 saves of 500 interactions: the test's own bulk path
        for i in range(500):
            customer.record_interaction(
                uuid4(),
                kind=InteractionKind.PURCHASE,
                channel=Channel.WEB,
                direction=Direction.INBOUND,
                occurred_at=clock.now() - timedelta(minutes=batch * 500 + i),
                summary="",
                amount=Decimal(2),
                currency="CNY",
                satisfaction=None,
                partner_id=None,
                contact_ids=(),
                meta=meta,
            )
        writer.log.save(customer)
    # One more command through the normal path, past the last snapshot.
    writer.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="volume"), CTX
    )

    reader = make_accord(settings=Settings(snapshot_interval=INTERVAL), clock=clock)
    decoded_before = reader.log.event_mapper.decoded
    loaded = reader.queries.customer(customer_id)

    assert loaded.version == 20_002
    assert loaded.purchase_count == 20_000
    assert loaded.purchased_total == Decimal(40_000)
    assert loaded.tier.value == "KEY"
    decoded = reader.log.event_mapper.decoded - decoded_before
    # The last batch ended at v20001 and crossed a multiple of 500, so it was
    # snapshotted there: the load decodes that snapshot and the one event after it.
    assert decoded == 2
    assert decoded <= INTERVAL + 1


def test_a_snapshot_is_taken_when_a_save_crosses_the_interval(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(settings=Settings(snapshot_interval=3), clock=clock)
    customer_id = new_customer(app)
    for reason in ("a", "b", "c", "d", "e", "f"):
        app.customers.change_tier(
            c.ChangeTier(
                customer_id=customer_id,
                to_tier="KEY" if reason in "ace" else "STANDARD",
                reason=reason,
            ),
            CTX,
        )
    assert app.log.snapshots is not None
    versions = [s.originator_version for s in app.log.snapshots.get(customer_id)]
    assert versions == [3, 6]


def test_a_stale_snapshot_is_ignored_and_the_events_replayed(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(settings=Settings(snapshot_interval=1000), clock=clock)
    customer_id = new_customer(app)
    app.customers.change_tier(c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="a"), CTX)
    current = app.executor.load(Customer, customer_id)
    stale = Snapshot(
        originator_id=customer_id,
        originator_version=2,
        timestamp=clock.now(),
        aggregate_type="customer",
        state_version=Customer.state_version - 1,
        state={"shape": "of an older release"},
    )
    assert app.log.snapshots is not None
    app.log.snapshots.put([stale])

    loaded = app.queries.customer(customer_id)

    assert loaded.state() == current.state()


def _tier_changes(app: Accord, customer_id: UUID, count: int) -> None:
    for n in range(count):
        app.customers.change_tier(
            c.ChangeTier(
                customer_id=customer_id, to_tier="KEY" if n % 2 == 0 else "STANDARD", reason="r"
            ),
            CTX,
        )


def _snapshot_versions(app: Accord, customer_id: UUID) -> list[int]:
    assert app.log.snapshots is not None
    return [s.originator_version for s in app.log.snapshots.get(customer_id)]


def test_a_snapshot_is_written_in_its_events_transaction(
    make_accord: AccordFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No write of its own: the snapshot store's recorder is never asked."""
    app = make_accord(settings=Settings(snapshot_interval=3), clock=clock)
    assert app.log.snapshots is not None

    def separate_write(*args: object, **kwargs: object) -> None:
        raise AssertionError("a snapshot written in a transaction of its own")

    monkeypatch.setattr(app.log.snapshots.recorder, "insert_events", separate_write)
    customer_id = new_customer(app)
    _tier_changes(app, customer_id, 5)

    assert _snapshot_versions(app, customer_id) == [3, 6]
    assert app.queries.customer(customer_id).version == 6


@pytest.mark.parametrize("route", ["plain", "guarded"])
def test_a_snapshot_is_stored_only_when_its_events_commit(
    make_accord: AccordFactory, clock: FakeClock, route: str
) -> None:
    """Both ways a save is written (PostgreSQL's one-statement save, and the one with
    version guards): a save that fails on a taken version leaves no snapshot behind."""
    app = make_accord(settings=Settings(snapshot_interval=1000), clock=clock)
    customer_id = new_customer(app)
    customer = app.executor.load(Customer, customer_id)
    mapper = app.log.event_mapper
    snapshot = mapper.to_stored_event(Snapshot.take(customer, clock.now()))
    guards = (VersionGuard(customer_id, 1),) if route == "guarded" else ()
    taken = StoredEvent(customer_id, 1, "test:Event", b"{}")  # version 1 is the registration
    recorder = app.log.recorder

    with pytest.raises(IntegrityError):
        recorder.insert_events([taken], snapshots=(snapshot,), guards=guards)
    assert _snapshot_versions(app, customer_id) == []

    other = uuid4()
    recorder.insert_events(
        [StoredEvent(other, 1, "test:Event", b"{}")], snapshots=(snapshot,), guards=guards
    )
    assert _snapshot_versions(app, customer_id) == [1]


def test_a_snapshot_already_stored_does_not_fail_the_save(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(settings=Settings(snapshot_interval=1000), clock=clock)
    customer_id = new_customer(app)
    customer = app.executor.load(Customer, customer_id)
    snapshot = app.log.event_mapper.to_stored_event(Snapshot.take(customer, clock.now()))
    first, second = uuid4(), uuid4()

    app.log.recorder.insert_events(
        [StoredEvent(first, 1, "test:Event", b"{}")], snapshots=(snapshot,)
    )
    app.log.recorder.insert_events(
        [StoredEvent(second, 1, "test:Event", b"{}")], snapshots=(snapshot,)
    )

    assert _snapshot_versions(app, customer_id) == [1]
    assert [e.originator_version for e in app.log.recorder.select_events(second)] == [1]
