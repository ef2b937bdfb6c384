"""State now, as of a version, and as recorded at a time."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from application import commands as c
from application.errors import InvalidCommandError, NotFoundError
from application.service import Accord
from tests.builders import CTX, new_customer
from tests.support import FakeClock


def _customer_with_history(accord: Accord, clock: FakeClock):  # type: ignore[no-untyped-def]
    customer_id = new_customer(accord)  # v1 at t0
    t0 = clock.now()
    clock.advance(days=1)
    accord.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="a"), CTX
    )
    t1 = clock.now()
    clock.advance(days=1)
    accord.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="STRATEGIC", reason="b"), CTX
    )
    return customer_id, t0, t1


def test_state_as_of_a_version(accord: Accord, clock: FakeClock) -> None:
    customer_id, _, _ = _customer_with_history(accord, clock)

    assert accord.queries.customer(customer_id).tier.value == "STRATEGIC"
    assert accord.queries.customer(customer_id, as_of_version=2).tier.value == "KEY"
    assert accord.queries.customer(customer_id, as_of_version=1).tier.value == "STANDARD"


def test_state_as_recorded_at_a_time(accord: Accord, clock: FakeClock) -> None:
    customer_id, t0, t1 = _customer_with_history(accord, clock)

    assert accord.queries.customer(customer_id, as_of_time=t0).version == 1
    assert accord.queries.customer(customer_id, as_of_time=t1).tier.value == "KEY"
    assert accord.queries.customer(customer_id, as_of_time=t1 + timedelta(hours=23)).version == 2
    assert accord.queries.customer(customer_id, as_of_time=clock.now()).version == 3


def test_before_it_existed_a_customer_is_not_found(accord: Accord, clock: FakeClock) -> None:
    customer_id, t0, _ = _customer_with_history(accord, clock)
    with pytest.raises(NotFoundError):
        accord.queries.customer(customer_id, as_of_time=t0 - timedelta(microseconds=1))


def test_a_version_beyond_the_current_one_is_not_found(accord: Accord, clock: FakeClock) -> None:
    customer_id, _, _ = _customer_with_history(accord, clock)
    with pytest.raises(NotFoundError):
        accord.queries.customer(customer_id, as_of_version=4)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"as_of_version": 0}, "as_of_version"),
        ({"as_of_version": 1, "as_of_time": "now"}, "as_of_version"),
        ({"as_of_time": "naive"}, "as_of_time"),
    ],
)
def test_time_travel_arguments_are_validated(
    accord: Accord, clock: FakeClock, kwargs: dict[str, object], field: str
) -> None:
    customer_id = new_customer(accord)
    if kwargs.get("as_of_time") == "now":
        kwargs["as_of_time"] = clock.now()
    if kwargs.get("as_of_time") == "naive":
        kwargs["as_of_time"] = clock.now().replace(tzinfo=None)
    with pytest.raises(InvalidCommandError) as invalid:
        accord.queries.customer(customer_id, **kwargs)  # type: ignore[arg-type]
    assert invalid.value.violations[0].field == field


def test_an_unknown_id_is_not_found_in_every_mode(accord: Accord, clock: FakeClock) -> None:
    unknown = uuid4()
    for kwargs in ({}, {"as_of_version": 1}, {"as_of_time": clock.now()}):
        with pytest.raises(NotFoundError):
            accord.queries.partner(unknown, **kwargs)
