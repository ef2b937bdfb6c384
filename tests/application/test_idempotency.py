"""request_id idempotency (AIP-155): a retry returns the first result, records nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from application import commands as c
from application.context import CallContext
from application.errors import IdempotencyKeyReusedError
from application.results import CommandResult
from application.service import Accord
from domain.errors import DomainError, Reason
from tests.builders import CTX, log_position, new_customer, purchase, register_customer
from tests.support import FakeClock


def test_a_retried_registration_returns_the_first_result_and_records_nothing(
    accord: Accord,
) -> None:
    command = register_customer(request_id="crm-42")
    first = accord.customers.register(command, CTX)
    position = log_position(accord)

    again = accord.customers.register(command, CTX)

    assert (again.aggregate_id, again.version, again.position) == (
        first.aggregate_id,
        first.version,
        first.position,
    )
    assert again.replayed
    assert not first.replayed
    assert log_position(accord) == position


def test_a_retried_update_returns_the_created_entity_id(accord: Accord, clock: FakeClock) -> None:
    customer_id = new_customer(accord)
    command = purchase(customer_id, "99", clock.now(), request_id="pos-7")
    first = accord.customers.record_interaction(command, CTX)
    accord.customers.record_interaction(purchase(customer_id, "1", clock.now()), CTX)
    position = log_position(accord)

    again = accord.customers.record_interaction(command, CTX)

    assert again.entity_id == first.entity_id
    assert (again.version, again.position) == (first.version, first.position)
    assert log_position(accord) == position
    assert accord.queries.customer(customer_id).purchase_count == 2


def test_the_same_request_id_with_another_payload_is_refused(accord: Accord) -> None:
    accord.customers.register(register_customer(request_id="crm-43", external_ref="A"), CTX)
    position = log_position(accord)

    with pytest.raises(IdempotencyKeyReusedError):
        accord.customers.register(register_customer(request_id="crm-43", external_ref="B"), CTX)
    assert log_position(accord) == position


def test_the_same_request_id_from_another_principal_is_refused(accord: Accord) -> None:
    command = register_customer(request_id="crm-44")
    accord.customers.register(command, CTX)
    with pytest.raises(IdempotencyKeyReusedError):
        accord.customers.register(command, CallContext(actor="someone-else"))


def test_commands_without_a_request_id_are_not_deduplicated(
    accord: Accord, clock: FakeClock
) -> None:
    customer_id = new_customer(accord)
    command = purchase(customer_id, "10", clock.now())
    accord.customers.record_interaction(command, CTX)
    accord.customers.record_interaction(command, CTX)
    assert accord.queries.customer(customer_id).purchase_count == 2


def test_only_requests_sent_with_an_id_are_journalled(accord: Accord, clock: FakeClock) -> None:
    """An id the caller never had cannot be retried: its events carry it, the journal does not."""
    customer_id = new_customer(accord)
    accord.customers.record_interaction(purchase(customer_id, "10", clock.now()), CTX)
    accord.customers.record_interaction(
        purchase(customer_id, "20", clock.now(), request_id="pos-8"), CTX
    )
    accord.customers.record_interactions(
        [
            purchase(customer_id, "30", clock.now()),
            purchase(customer_id, "40", clock.now(), request_id="pos-9"),
        ],
        CTX,
    )

    events = list(accord.log.history(customer_id))
    assert len(events) == 5  # registered, then four interactions
    journal = accord.log.journal
    found = {event.request_id: journal.find_request(event.request_id) for event in events}
    assert {request_id for request_id, stored in found.items() if stored is not None} == {
        "pos-8",
        "pos-9",
    }
    assert all(request_id for request_id in found)  # every event still names its request
    assert len(found) == 5


def test_concurrent_retries_of_one_request_record_it_once(accord: Accord, clock: FakeClock) -> None:
    customer_id = new_customer(accord)
    command = purchase(customer_id, "10", clock.now(), request_id="burst-1")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results: list[CommandResult] = list(
            pool.map(lambda _: accord.customers.record_interaction(command, CTX), range(16))
        )

    assert len({(r.version, r.position, r.entity_id) for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert accord.queries.customer(customer_id).purchase_count == 1


def test_a_command_refused_by_an_invariant_leaves_its_request_id_free(accord: Accord) -> None:
    customer_id = new_customer(accord)
    refused = c.ChangeTier(
        customer_id=customer_id, to_tier="STANDARD", reason="x", request_id="t-1"
    )
    with pytest.raises(Exception, match="already STANDARD"):
        accord.customers.change_tier(refused, CTX)

    accepted = c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="x", request_id="t-1")
    assert accord.customers.change_tier(accepted, CTX).version == 2


def test_an_exact_retry_of_a_refused_command_is_refused_again_after_the_state_changed(
    accord: Accord,
) -> None:
    customer_id = new_customer(accord)
    refused = c.ChangeTier(
        customer_id=customer_id, to_tier="STANDARD", reason="x", request_id="t-2"
    )
    with pytest.raises(DomainError) as first:
        accord.customers.change_tier(refused, CTX)
    accord.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="y"), CTX
    )
    position = log_position(accord)

    # Decided afresh it would be accepted now (KEY -> STANDARD): the client that
    # saw the refusal would never learn its command was recorded after all.
    with pytest.raises(DomainError) as again:
        accord.customers.change_tier(refused, CTX)

    assert again.value.reason is first.value.reason is Reason.TIER_UNCHANGED
    assert log_position(accord) == position
    assert accord.queries.customer(customer_id).tier == "KEY"


def test_an_exact_retry_of_a_refused_interaction_is_refused_again_in_a_batch(
    accord: Accord, clock: FakeClock
) -> None:
    customer_id = new_customer(accord)
    refund = purchase(customer_id, "50", clock.now(), kind="REFUND", request_id="r-1")
    with pytest.raises(DomainError) as first:
        accord.customers.record_interaction(refund, CTX)
    accord.customers.record_interaction(purchase(customer_id, "100", clock.now()), CTX)
    position = log_position(accord)

    (again,) = accord.customers.record_interactions([refund], CTX)

    assert isinstance(again, DomainError)
    assert again.reason is first.value.reason is Reason.REFUND_EXCEEDS_PURCHASES
    assert log_position(accord) == position
    assert accord.queries.customer(customer_id).refund_count == 0


def test_a_refused_request_id_reused_after_it_was_recorded_is_a_reused_key(
    accord: Accord,
) -> None:
    customer_id = new_customer(accord)
    refused = c.ChangeTier(
        customer_id=customer_id, to_tier="STANDARD", reason="x", request_id="t-3"
    )
    with pytest.raises(DomainError):
        accord.customers.change_tier(refused, CTX)
    accord.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="x", request_id="t-3"), CTX
    )

    with pytest.raises(IdempotencyKeyReusedError):
        accord.customers.change_tier(refused, CTX)
