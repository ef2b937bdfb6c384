"""Optimistic concurrency: bounded automatic retries, or a strict expected_version."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import pytest

from application import commands as c
from application.errors import ConcurrencyConflictError, VersionMismatchError
from application.service import Accord
from application.settings import Settings
from domain.aggregate import EventMeta
from domain.customer import Customer
from tests.builders import CTX, log_position, new_customer, purchase
from tests.conftest import AccordFactory
from tests.support import FakeClock


def _interfering_act(rival: Accord, customer_id: UUID, times: int, calls: list[int]):  # type: ignore[no-untyped-def]
    """An act that lets a rival writer commit first, ``times`` times."""

    def act(customer: Customer, meta: EventMeta) -> None:
        calls.append(customer.version)
        if len(calls) <= times:
            rival.customers.update_profile(
                c.UpdateCustomerProfile(customer_id=customer_id, source=f"rival-{len(calls)}"), CTX
            )
        customer.change_tier(
            "KEY" if customer.tier.value != "KEY" else "STANDARD",  # type: ignore[arg-type]
            reason="review",
            effective_from=meta.recorded_at,
            meta=meta,
        )

    return act


def test_a_lost_race_is_decided_again_against_the_new_state(make_accord: AccordFactory) -> None:
    app, rival = make_accord(), make_accord()
    customer_id = new_customer(app)
    calls: list[int] = []

    result = app.executor.update(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="r"),
        CTX,
        kind=Customer,
        aggregate_id=customer_id,
        act=_interfering_act(rival, customer_id, times=1, calls=calls),
    )

    assert calls == [1, 2]  # decided at v1, lost to the rival, decided again at v2
    assert result.version == 3
    customer = app.queries.customer(customer_id)
    assert (customer.source, customer.tier.value) == ("rival-1", "KEY")


def test_retries_are_bounded(make_accord: AccordFactory) -> None:
    app = make_accord(settings=Settings(max_attempts=3))
    rival = make_accord()
    customer_id = new_customer(app)
    calls: list[int] = []

    with pytest.raises(ConcurrencyConflictError):
        app.executor.update(
            c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="r"),
            CTX,
            kind=Customer,
            aggregate_id=customer_id,
            act=_interfering_act(rival, customer_id, times=99, calls=calls),
        )
    assert len(calls) == 3
    assert app.queries.customer(customer_id).tier.value == "STANDARD"


def test_expected_version_is_checked_before_deciding(accord: Accord) -> None:
    customer_id = new_customer(accord)
    position = log_position(accord)

    with pytest.raises(VersionMismatchError) as refused:
        accord.customers.change_tier(
            c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="r", expected_version=2),
            CTX,
        )
    assert (refused.value.expected, refused.value.actual) == (2, 1)
    assert log_position(accord) == position

    ok = accord.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="r", expected_version=1), CTX
    )
    assert ok.version == 2


def test_expected_version_turns_a_lost_race_into_a_mismatch(make_accord: AccordFactory) -> None:
    app, rival = make_accord(), make_accord()
    customer_id = new_customer(app)
    calls: list[int] = []

    with pytest.raises(VersionMismatchError) as refused:
        app.executor.update(
            c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="r", expected_version=1),
            CTX,
            kind=Customer,
            aggregate_id=customer_id,
            act=_interfering_act(rival, customer_id, times=1, calls=calls),
        )
    assert refused.value.actual == 2
    assert calls == [1]


def test_concurrent_writers_on_one_customer_all_land(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(settings=Settings(max_attempts=50), clock=clock)
    customer_id = new_customer(app)

    def write(i: int) -> int:
        return app.customers.record_interaction(
            purchase(customer_id, "1", clock.now(), request_id=f"w-{i}"), CTX
        ).version

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = sorted(pool.map(write, range(40)))

    assert versions == list(range(2, 42))
    assert app.queries.customer(customer_id).purchase_count == 40
