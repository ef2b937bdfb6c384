"""A save of many large events completes, and a conflict in one is still a conflict."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import RecordConflictError

from application.service import Accord
from domain.aggregate import EventMeta
from domain.customer import Customer
from domain.values import Channel, Direction, InteractionKind
from tests.builders import new_customer
from tests.support import FakeClock

SUMMARY = "x" * 3000
"""Sealed, about 4 KB stored: 3,000 of them are a 12 MB insert."""


def _many(app: Accord, customer_id: UUID, clock: FakeClock, count: int) -> Customer:
    customer = app.executor.load(Customer, customer_id)
    meta = EventMeta(
        actor="loader", request_id="bulk", correlation_id="bulk", recorded_at=clock.now()
    )
    for n in range(count):
        customer.record_interaction(
            uuid4(),
            kind=InteractionKind.PURCHASE,
            channel=Channel.WEB,
            direction=Direction.INBOUND,
            occurred_at=clock.now() - timedelta(minutes=n + 1),
            summary=SUMMARY,
            amount=Decimal(1),
            currency="CNY",
            satisfaction=None,
            partner_id=None,
            contact_ids=(),
            meta=meta,
        )
    return customer


def _within(seconds: float, call: Callable[[], object]) -> None:
    """Run ``call`` on a thread: a hang fails the test instead of stalling the suite."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the save did not finish within {seconds} s"
    if failure:
        raise failure[0]


def test_thousands_of_large_events_are_saved_in_one_go(accord: Accord, clock: FakeClock) -> None:
    # PostgreSQL's pipeline mode deadlocked on a message this size: the save hung for ever.
    customer_id = new_customer(accord)
    customer = _many(accord, customer_id, clock, 3000)

    _within(120, lambda: accord.log.save(customer))

    assert accord.executor.load(Customer, customer_id).interaction_count == 3000


def test_a_conflict_in_a_large_save_is_still_a_conflict(accord: Accord, clock: FakeClock) -> None:
    customer_id = new_customer(accord)
    first = _many(accord, customer_id, clock, 200)
    second = _many(accord, customer_id, clock, 200)
    accord.log.save(first)

    with pytest.raises(RecordConflictError):
        _within(60, lambda: accord.log.save(second))
    assert accord.executor.load(Customer, customer_id).interaction_count == 200
