"""Bulk ingestion: many interactions in one call, each with the outcome it would have alone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from application import commands as c
from application.errors import IdempotencyKeyReusedError, InvalidCommandError, NotFoundError
from application.personal_data import WrappedKey
from application.results import CommandResult
from application.settings import Settings
from domain.customer import InteractionRecorded
from domain.errors import DomainError, Reason
from tests.builders import CTX, log_position, new_customer, purchase
from tests.conftest import AccordFactory
from tests.support import FakeClock


def test_every_item_gets_its_own_outcome_in_order(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    ann, bob = new_customer(app), new_customer(app)
    now = clock.now()
    earlier = app.customers.record_interaction(purchase(ann, "5", now, request_id="old"), CTX)
    start = log_position(app)

    results = app.customers.record_interactions(
        [
            purchase(ann, "10", now, request_id="a-1"),
            purchase(bob, "20", now, request_id="b-1"),
            purchase(uuid4(), "30", now),  # no such customer
            purchase(ann, "40", now + timedelta(days=2)),  # in the future
            purchase(bob, "50", now, currency="EUR"),  # not the base currency
            purchase(ann, "60", now, request_id="a-1"),  # a-1 again, other payload
            purchase(ann, "10", now, request_id="a-1"),  # a-1 again, same payload
            purchase(ann, "5", now, request_id="old"),  # recorded by an earlier call
            purchase(ann, "70", now),
        ],
        CTX,
    )

    recorded_a, recorded_b, unknown, future, euros, reused, again, old, last = results
    assert isinstance(recorded_a, CommandResult)
    assert isinstance(recorded_b, CommandResult)
    assert isinstance(last, CommandResult)
    assert (recorded_a.aggregate_id, recorded_a.version) == (ann, 3)
    assert (recorded_b.aggregate_id, recorded_b.version) == (bob, 2)
    assert (last.aggregate_id, last.version) == (ann, 4)
    assert isinstance(unknown, NotFoundError)
    assert isinstance(future, DomainError)
    assert future.reason is Reason.OCCURRED_IN_FUTURE
    assert isinstance(euros, InvalidCommandError)
    assert isinstance(reused, IdempotencyKeyReusedError)
    assert again == CommandResult(ann, 3, recorded_a.position, recorded_a.entity_id, replayed=True)
    assert old == CommandResult(ann, 2, earlier.position, earlier.entity_id, replayed=True)

    # Exactly the three recorded items reached the log, at the positions reported.
    written = {recorded_a.position, recorded_b.position, last.position}
    assert written == set(range(start + 1, log_position(app) + 1))
    positions = app.log.journal.positions(ann)
    assert positions[3] == recorded_a.position
    assert positions[4] == last.position
    assert app.log.journal.positions(bob)[2] == recorded_b.position
    amounts = [str(e.amount) for e in app.log.history(ann) if isinstance(e, InteractionRecorded)]
    assert amounts == ["5", "10", "70"]
    stored = app.log.journal.find_request("a-1")
    assert stored is not None
    assert stored.position == recorded_a.position


def test_a_retried_batch_returns_the_first_results_and_records_nothing(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    customers = [new_customer(app) for _ in range(3)]
    batch = [
        purchase(customer_id, str(n + 1), clock.now(), request_id=f"r-{n}-{customer_id}")
        for n in range(4)
        for customer_id in customers
    ]
    first = app.customers.record_interactions(batch, CTX)
    position = log_position(app)

    retry = app.customers.record_interactions(batch, CTX)

    assert log_position(app) == position
    assert all(isinstance(r, CommandResult) and r.replayed for r in retry)
    assert [
        (r.aggregate_id, r.version, r.position) for r in retry if isinstance(r, CommandResult)
    ] == [(r.aggregate_id, r.version, r.position) for r in first if isinstance(r, CommandResult)]


def test_a_batch_on_a_stale_copy_is_written_item_by_item_and_loses_nothing(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    """Another process wrote since this one cached the customer: the shared save conflicts."""
    here, elsewhere = make_accord(clock=clock), make_accord(clock=clock)
    customer_id = new_customer(here)
    other = new_customer(here)
    elsewhere.customers.record_interaction(purchase(customer_id, "1", clock.now()), CTX)

    results = here.customers.record_interactions(
        [purchase(customer_id, "2", clock.now()), purchase(other, "3", clock.now())], CTX
    )

    assert [(r.aggregate_id, r.version) for r in results if isinstance(r, CommandResult)] == [
        (customer_id, 3),
        (other, 2),
    ]
    assert [e.originator_version for e in here.log.history(customer_id)] == [1, 2, 3]


def test_many_items_for_one_customer_are_written_together_and_snapshotted(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock, settings=Settings(snapshot_interval=10))
    customer_id = new_customer(app)

    results = app.customers.record_interactions(
        [purchase(customer_id, "1", clock.now()) for _ in range(25)], CTX
    )

    versions = [r.version for r in results if isinstance(r, CommandResult)]
    assert versions == list(range(2, 27))
    positions = [r.position for r in results if isinstance(r, CommandResult)]
    assert positions == sorted(positions)
    assert len(set(positions)) == 25
    assert app.log.snapshots is not None
    snapshot = next(iter(app.log.snapshots.get(customer_id, desc=True, limit=1)))
    assert snapshot.originator_version == 26
    assert app.log.load(customer_id).version == 26


@pytest.mark.parametrize("cache_size", [0, 100])
def test_a_refusal_on_a_stale_copy_is_decided_again_from_the_store(
    make_accord: AccordFactory, clock: FakeClock, cache_size: int
) -> None:
    """Here thinks nothing was bought (refund refused); elsewhere recorded a purchase."""
    here = make_accord(clock=clock, settings=Settings(aggregate_cache_size=cache_size))
    elsewhere = make_accord(clock=clock)
    customer_id = new_customer(here)
    elsewhere.customers.record_interaction(purchase(customer_id, "50", clock.now()), CTX)

    [refund] = here.customers.record_interactions(
        [purchase(customer_id, "20", clock.now(), kind="REFUND")], CTX
    )

    assert isinstance(refund, CommandResult)
    assert refund.version == 3


def test_an_empty_batch_records_nothing(make_accord: AccordFactory, clock: FakeClock) -> None:
    app = make_accord(clock=clock)
    position = log_position(app)
    assert app.customers.record_interactions([], CTX) == []
    assert log_position(app) == position


def test_an_unknown_partner_refuses_only_its_items(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    customer_id = new_customer(app)
    ghost = uuid4()

    results = app.customers.record_interactions(
        [
            c.RecordInteraction(
                customer_id=customer_id,
                kind="CALL",
                channel="PHONE",
                direction="INBOUND",
                occurred_at=clock.now(),
                partner_id=ghost,
            ),
            purchase(customer_id, "1", clock.now()),
        ],
        CTX,
    )

    assert isinstance(results[0], NotFoundError)
    assert isinstance(results[1], CommandResult)
    assert results[1].version == 2


def test_a_batch_reads_the_data_keys_it_seals_with_in_one_read(
    make_accord: AccordFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys leave the vault's cache after seconds; a batch must not then read them one by one."""
    app = make_accord(clock=clock)
    customers = [new_customer(app) for _ in range(3)]
    vault = app.log.vault
    for customer_id in customers:
        vault.forget(customer_id)  # as if their cached keys had expired
    store = vault.store
    one_by_one: list[UUID] = []
    together: list[set[UUID]] = []
    read_one, read_many = store.get_data_key, store.get_data_keys

    def counted_one(customer_id: UUID) -> WrappedKey | None:
        one_by_one.append(customer_id)
        return read_one(customer_id)

    def counted_many(customer_ids: Sequence[UUID]) -> dict[UUID, WrappedKey]:
        together.append(set(customer_ids))
        return read_many(customer_ids)

    monkeypatch.setattr(store, "get_data_key", counted_one)
    monkeypatch.setattr(store, "get_data_keys", counted_many)
    now = clock.now()

    results = app.customers.record_interactions(
        [purchase(customer_id, "10", now, summary="renewal") for customer_id in customers], CTX
    )

    assert all(isinstance(result, CommandResult) for result in results)
    assert one_by_one == []
    assert together == [set(customers)]
    events = app.log.recorder.select_notifications(start=log_position(app) - 2, limit=3)
    assert [b"$enc" in event.state for event in events] == [True, True, True]
