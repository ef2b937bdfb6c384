"""Customer commands through the application, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from pydantic import ValidationError

from application import commands as c
from application.errors import (
    AlreadyExistsError,
    DomainError,
    InvalidCommandError,
    NotFoundError,
    Reason,
)
from application.service import Accord
from tests.builders import CTX, log_position, new_customer, purchase, register_customer
from tests.support import FakeClock


def test_registering_a_customer_records_one_event_with_who_and_why(accord: Accord) -> None:
    result = accord.customers.register(register_customer(request_id="req-1"), CTX)

    assert (result.version, result.position) == (1, log_position(accord))
    [event] = list(accord.log.history(result.aggregate_id))
    assert event.topic == "customer.registered"
    assert (event.actor, event.request_id, event.correlation_id) == ("crm-sync", "req-1", "corr-1")
    customer = accord.queries.customer(result.aggregate_id)
    assert customer.display_name == "Hangzhou Lakeside Trading Co."
    assert customer.tier.value == "STANDARD"


def test_a_caller_may_choose_the_customer_id(accord: Accord) -> None:
    chosen = uuid4()
    assert (
        accord.customers.register(register_customer(customer_id=chosen), CTX).aggregate_id == chosen
    )


def test_an_external_reference_names_one_customer_only(accord: Accord) -> None:
    first = accord.customers.register(register_customer(external_ref="CRM-1"), CTX)
    before = log_position(accord)

    with pytest.raises(AlreadyExistsError) as refused:
        accord.customers.register(register_customer(external_ref="CRM-1"), CTX)

    assert refused.value.existing_id == first.aggregate_id
    assert log_position(accord) == before


def test_a_customer_id_cannot_be_registered_twice(accord: Accord) -> None:
    chosen = uuid4()
    accord.customers.register(register_customer(customer_id=chosen), CTX)
    before = log_position(accord)

    with pytest.raises(AlreadyExistsError):
        accord.customers.register(register_customer(customer_id=chosen), CTX)
    assert log_position(accord) == before


def test_acquisition_through_an_unknown_partner_is_not_found(accord: Accord) -> None:
    with pytest.raises(NotFoundError):
        accord.customers.register(register_customer(acquired_via_partner_id=uuid4()), CTX)
    assert log_position(accord) == 0


def test_a_profile_update_records_only_what_changed(accord: Accord) -> None:
    customer_id = new_customer(accord)

    accord.customers.update_profile(
        c.UpdateCustomerProfile(customer_id=customer_id, region="EAST", industry="LOGISTICS"), CTX
    )

    last = list(accord.log.history(customer_id))[-1]
    assert last.topic == "customer.profile_updated"
    assert last.model_dump(include={"region", "industry"}) == {
        "region": None,
        "industry": "LOGISTICS",
    }
    assert accord.queries.customer(customer_id).industry == "LOGISTICS"


def test_an_update_that_changes_nothing_is_refused_and_records_nothing(accord: Accord) -> None:
    customer_id = new_customer(accord, region="EAST")
    before = log_position(accord)

    with pytest.raises(DomainError) as refused:
        accord.customers.update_profile(
            c.UpdateCustomerProfile(customer_id=customer_id, region="EAST"), CTX
        )

    assert refused.value.reason is Reason.NO_CHANGE
    assert log_position(accord) == before


def test_contacts_are_added_with_a_generated_id_and_removed(accord: Accord) -> None:
    customer_id = new_customer(accord)

    added = accord.customers.add_contact(
        c.AddContact(
            customer_id=customer_id,
            name="Chen Jing",
            email="chen.jing@example.cn",
            phone="+86 571 8888 0000",
            title="CFO",
            layer="DECISION",
            function="FINANCE",
            influence=5,
        ),
        CTX,
    )
    assert added.entity_id is not None
    contact = accord.queries.customer(customer_id).contacts[added.entity_id]
    assert (contact.layer.value, contact.function.value, contact.influence) == (
        "DECISION",
        "FINANCE",
        5,
    )

    accord.customers.remove_contact(
        c.RemoveContact(customer_id=customer_id, contact_id=added.entity_id), CTX
    )
    assert accord.queries.customer(customer_id).contacts == {}


def test_purchases_and_refunds_keep_running_totals(accord: Accord, clock: FakeClock) -> None:
    customer_id = new_customer(accord)
    day = clock.now() - timedelta(days=10)

    accord.customers.record_interaction(purchase(customer_id, "1200.50", day), CTX)
    accord.customers.record_interaction(purchase(customer_id, "300", day + timedelta(days=2)), CTX)
    accord.customers.record_interaction(
        purchase(customer_id, "200.50", day + timedelta(days=3), kind="REFUND"), CTX
    )

    customer = accord.queries.customer(customer_id)
    assert (customer.purchase_count, customer.refund_count) == (2, 1)
    assert customer.net_purchases == Decimal("1300.00")
    assert customer.last_purchase_at == day + timedelta(days=2)


def test_a_refund_beyond_net_purchases_is_refused(accord: Accord, clock: FakeClock) -> None:
    customer_id = new_customer(accord)
    accord.customers.record_interaction(purchase(customer_id, "100", clock.now()), CTX)
    before = log_position(accord)

    with pytest.raises(DomainError) as refused:
        accord.customers.record_interaction(
            purchase(customer_id, "100.01", clock.now(), kind="REFUND"), CTX
        )
    assert refused.value.reason is Reason.REFUND_EXCEEDS_PURCHASES
    assert log_position(accord) == before


def test_amounts_in_another_currency_are_invalid_on_the_currency_field(
    accord: Accord, clock: FakeClock
) -> None:
    customer_id = new_customer(accord)
    before = log_position(accord)

    with pytest.raises(InvalidCommandError) as refused:
        accord.customers.record_interaction(
            purchase(customer_id, "10", clock.now(), currency="USD"), CTX
        )
    assert [v.field for v in refused.value.violations] == ["currency"]
    assert log_position(accord) == before


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "PURCHASE"}, "amount is required"),
        ({"kind": "CALL", "amount": "5", "currency": "CNY"}, "only for PURCHASE and REFUND"),
        ({"kind": "SURVEY"}, "satisfaction"),
        ({"kind": "SURVEY", "satisfaction": 11}, "less than or equal to 10"),
        ({"kind": "CALL", "occurred_at": "2026-01-01T10:00:00"}, "time zone"),
    ],
)
def test_interactions_must_carry_the_fields_their_kind_needs(
    fields: dict[str, object], problem: str
) -> None:
    base: dict[str, object] = {
        "customer_id": uuid4(),
        "channel": "PHONE",
        "direction": "OUTBOUND",
        "occurred_at": "2026-01-01T10:00:00+08:00",
    }
    with pytest.raises(ValidationError) as invalid:
        c.RecordInteraction.model_validate({**base, **fields})
    assert problem in str(invalid.value)


def test_validation_errors_name_fields_without_echoing_personal_input() -> None:
    with pytest.raises(ValidationError) as invalid:
        c.AddContact.model_validate(
            {
                "customer_id": str(uuid4()),
                "name": "Wang Fang",
                "email": "not-an-email-wang.fang",
                "layer": "DECISION",
                "function": "NOT_A_FUNCTION",
            }
        )
    error = InvalidCommandError.from_validation(invalid.value)
    assert sorted(v.field for v in error.violations) == ["email", "function"]
    assert "wang.fang" not in str(error)


def test_an_interaction_with_a_partner_must_name_a_known_partner(
    accord: Accord, clock: FakeClock
) -> None:
    customer_id = new_customer(accord)
    with pytest.raises(NotFoundError):
        accord.customers.record_interaction(
            c.RecordInteraction(
                customer_id=customer_id,
                kind="MEETING",
                channel="IN_PERSON",
                direction="OUTBOUND",
                occurred_at=clock.now(),
                partner_id=uuid4(),
            ),
            CTX,
        )


def test_a_tier_change_records_from_to_and_reason(accord: Accord) -> None:
    customer_id = new_customer(accord)

    accord.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="annual review"), CTX
    )

    customer = accord.queries.customer(customer_id)
    assert customer.tier.value == "KEY"
    last = list(accord.log.history(customer_id))[-1]
    assert last.model_dump(include={"from_tier", "to_tier", "reason"}) == {
        "from_tier": "STANDARD",
        "to_tier": "KEY",
        "reason": "annual review",
    }


def test_commands_for_an_unknown_customer_are_not_found(accord: Accord) -> None:
    with pytest.raises(NotFoundError):
        accord.customers.change_tier(
            c.ChangeTier(customer_id=uuid4(), to_tier="KEY", reason="x"), CTX
        )


def test_a_partner_id_is_not_a_customer(accord: Accord) -> None:
    from tests.builders import register_partner

    partner_id = accord.partners.register(register_partner(), CTX).aggregate_id
    with pytest.raises(NotFoundError):
        accord.queries.customer(partner_id)
    with pytest.raises(NotFoundError):
        accord.customers.change_tier(
            c.ChangeTier(customer_id=partner_id, to_tier="KEY", reason="x"), CTX
        )


@pytest.mark.parametrize("field", ["request_id", "external_ref", "display_name", "industry"])
def test_strings_holding_nul_are_refused_by_the_field(field: str) -> None:
    """PostgreSQL stores no NUL in text (nor \\u0000 in jsonb): it failed there, as INTERNAL."""
    with pytest.raises(ValidationError) as refused:
        register_customer(**{field: "a\x00b"})
    assert [e["loc"] for e in refused.value.errors()] == [(field,)]


def test_nul_is_refused_inside_lists_and_nested_fields_too() -> None:
    with pytest.raises(ValidationError) as labels:
        c.RegisterPartner(external_ref="P-1", name="Acme", kind="REFERRAL", regions=("CN", "\x00"))
    assert [e["loc"] for e in labels.value.errors()] == [("regions",)]
    with pytest.raises(ValidationError) as capture:
        c.ConsentCaptureFields(method="WEB\x00", source="s", evidence_ref="e", notice_version="v")
    assert [e["loc"] for e in capture.value.errors()] == [("method",)]
