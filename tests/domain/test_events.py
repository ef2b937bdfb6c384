"""Events as stored facts: stable names, immutability, replay and snapshots."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from domain.aggregate import Aggregate, EventMeta
from domain.customer import (
    ContactAdded,
    Customer,
    CustomerProfileUpdated,
    CustomerRegistered,
    InteractionRecorded,
)
from domain.events import AGGREGATE_TYPES, DomainEvent
from domain.partner import Partner
from domain.personal import personal_fields, redact
from domain.snapshot import Snapshot, StaleSnapshotError
from domain.values import (
    AgreementKind,
    Channel,
    CompanySize,
    ContactFunction,
    ContactLayer,
    CustomerKind,
    DataCategory,
    Direction,
    InteractionKind,
    LinkRole,
    PartnerKind,
    PotentialValue,
    Purpose,
    Tier,
)

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)

TOPICS = frozenset(
    {
        "customer.registered",
        "customer.profile_updated",
        "customer.contact_added",
        "customer.contact_removed",
        "customer.interaction_recorded",
        "customer.tier_changed",
        "customer.consent_granted",
        "customer.consent_withdrawn",
        "customer.data_shared",
        "customer.data_share_refused",
        "customer.personal_data_erased",
        "partner.registered",
        "partner.evaluated",
        "partner.agreement_signed",
        "partner.agreement_terminated",
        "partner.activated",
        "partner.suspended",
        "partner.reinstated",
        "partner.terminated",
        "partner.performance_reviewed",
        "partner.tier_changed",
        "partner.customer_linked",
        "partner.customer_unlinked",
    }
)
"""Every topic the domain records. Topics name stored history forever: a rename
here is a data migration, not a refactoring, so changing this list must be deliberate."""


def meta(at: datetime = NOW) -> EventMeta:
    return EventMeta(actor="crm-sync", request_id="req-1", correlation_id="corr-1", recorded_at=at)


def domain_event_classes() -> list[type[DomainEvent]]:
    """Every concrete event class defined by the domain package."""
    found: list[type[DomainEvent]] = []
    pending = list(DomainEvent.__subclasses__())
    while pending:
        klass = pending.pop()
        pending.extend(klass.__subclasses__())
        if "topic" in klass.__dict__ and klass.__module__.startswith("domain."):
            found.append(klass)
    return found


def customer_with_history() -> Customer:
    """A customer that has been through every kind of customer event."""
    customer = Customer.register(
        uuid4(),
        external_ref="CRM-0001",
        display_name="Lakeside Trading",
        kind=CustomerKind.ORGANISATION,
        industry="RETAIL",
        region="EAST",
        size=CompanySize.SMALL,
        source="TRADE_FAIR",
        acquired_via_partner_id=uuid4(),
        potential_value=PotentialValue.MEDIUM,
        meta=meta(NOW - 60 * DAY),
    )
    customer.update_profile({"region": "SOUTH", "size": CompanySize.LARGE}, meta(NOW - 50 * DAY))
    kept, removed = uuid4(), uuid4()
    for contact_id, name in ((kept, "Li Wei"), (removed, "Wang Fang")):
        customer.add_contact(
            contact_id,
            name=name,
            email=f"{name.split()[0].lower()}@example.com",
            phone=None,
            title="Buyer",
            layer=ContactLayer.MANAGEMENT,
            function=ContactFunction.FINANCE,
            influence=3,
            meta=meta(NOW - 40 * DAY),
        )
    customer.remove_contact(removed, meta(NOW - 30 * DAY))
    for kind, amount, occurred in (
        (InteractionKind.PURCHASE, Decimal("120.50"), NOW - 20 * DAY),
        (InteractionKind.PURCHASE, Decimal("80.00"), NOW - 25 * DAY),
        (InteractionKind.REFUND, Decimal("20.50"), NOW - 10 * DAY),
        (InteractionKind.MEETING, None, NOW - 15 * DAY),
    ):
        customer.record_interaction(
            uuid4(),
            kind=kind,
            channel=Channel.IN_PERSON,
            direction=Direction.OUTBOUND,
            occurred_at=occurred,
            summary="quarterly review",
            amount=amount,
            currency="CNY" if amount is not None else None,
            satisfaction=None,
            partner_id=None,
            contact_ids=(kept,),
            meta=meta(NOW - 5 * DAY),
        )
    customer.change_tier(Tier.KEY, reason="growth", effective_from=NOW, meta=meta())
    return customer


def partner_with_history() -> Partner:
    """A partner that has been through every kind of partner event."""
    partner = Partner.register(
        uuid4(),
        external_ref="PRM-0001",
        name="West Lake Logistics",
        kind=PartnerKind.RESELLER,
        regions=("EAST",),
        capabilities=("WAREHOUSING", "DELIVERY"),
        meta=meta(NOW - 60 * DAY),
    )
    partner.evaluate(
        strength=70, reputation=80, business_fit=90, data_protection=95, notes="", meta=meta()
    )
    first, second = uuid4(), uuid4()
    for agreement_id in (first, second):
        partner.sign_agreement(
            agreement_id,
            kind=AgreementKind.RESALE,
            effective_from=NOW - 30 * DAY,
            effective_to=NOW + 365 * DAY,
            confidentiality=True,
            permitted_purposes=(Purpose.SALES_COOPERATION,),
            permitted_data_categories=(DataCategory.IDENTITY, DataCategory.CONTACT),
            document_sha256="ab" * 32,
            meta=meta(),
        )
    partner.activate(reason="onboarded", meta=meta())
    partner.suspend(reason="audit", meta=meta())
    partner.terminate_agreement(first, reason="superseded", meta=meta())
    partner.reinstate(reason="audit closed", meta=meta())
    partner.review_performance(
        period="2025-Q1",
        revenue=Decimal("1000.50"),
        new_customers=3,
        satisfaction=Decimal("7.5"),
        complaints=0,
        meta=meta(),
    )
    partner.change_tier(Tier.STRATEGIC, reason="top reseller", meta=meta())
    kept, dropped = uuid4(), uuid4()
    partner.link_customer(kept, role=LinkRole.RESALE, meta=meta())
    partner.link_customer(dropped, role=LinkRole.REFERRAL, meta=meta())
    partner.unlink_customer(dropped, meta=meta())
    partner.terminate(reason="contract ended", meta=meta())
    return partner


def replay(events: Sequence[DomainEvent]) -> Any:
    aggregate: Any = None
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


HISTORIES = {"customer": customer_with_history, "partner": partner_with_history}


# ------------------------------------------------------------------------ topics


def test_the_domain_records_exactly_the_known_topics() -> None:
    assert {klass.topic for klass in domain_event_classes()} == TOPICS


def test_every_event_class_has_its_own_topic() -> None:
    classes = domain_event_classes()

    assert len({klass.topic for klass in classes}) == len(classes)


def test_every_event_is_registered_under_its_topic() -> None:
    for klass in domain_event_classes():
        assert DomainEvent.registry[klass.topic] is klass
        assert DomainEvent.for_topic(klass.topic) is klass


def test_an_unknown_topic_is_not_found() -> None:
    with pytest.raises(LookupError, match=r"customer\.teleported"):
        DomainEvent.for_topic("customer.teleported")


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_a_topic_is_a_stable_name_and_not_a_module_path(topic: str) -> None:
    assert ":" not in topic
    assert not topic.startswith("domain.")
    assert re.fullmatch(r"(customer|partner)\.[a-z]+(_[a-z]+)*", topic)
    klass = DomainEvent.for_topic(topic)
    assert topic.split(".")[0] == klass.aggregate_type
    assert klass.aggregate_type in AGGREGATE_TYPES


def test_a_second_event_cannot_take_a_topic_already_in_use() -> None:
    with pytest.raises(TypeError, match="already taken"):

        class Impostor(DomainEvent):
            topic = "customer.registered"

    assert DomainEvent.registry["customer.registered"] is CustomerRegistered


def test_only_registration_events_start_a_new_version_history() -> None:
    customer_events = customer_with_history().collect_events()
    partner_events = partner_with_history().collect_events()

    for events in (customer_events, partner_events):
        assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
        assert len({e.originator_id for e in events}) == 1


# ---------------------------------------------------------------------- immutable


def test_an_event_is_frozen() -> None:
    (event, *_) = customer_with_history().collect_events()

    with pytest.raises(ValidationError):
        event.actor = "mallory"  # type: ignore[misc]

    assert event.actor == "crm-sync"


def test_an_event_refuses_fields_it_does_not_define() -> None:
    with pytest.raises(ValidationError):
        CustomerProfileUpdated(
            originator_id=uuid4(),
            originator_version=2,
            timestamp=NOW,
            actor="crm-sync",
            request_id="req-1",
            correlation_id="corr-1",
            tier="KEY",  # type: ignore[call-arg]
        )


@pytest.mark.parametrize("blank", ["actor", "request_id", "correlation_id"])
def test_an_event_must_name_who_asked_and_under_which_keys(blank: str) -> None:
    envelope: dict[str, Any] = {
        "originator_id": uuid4(),
        "originator_version": 2,
        "timestamp": NOW,
        "actor": "crm-sync",
        "request_id": "req-1",
        "correlation_id": "corr-1",
    }
    envelope[blank] = ""

    with pytest.raises(ValidationError):
        CustomerProfileUpdated(region="SOUTH", **envelope)


@pytest.mark.parametrize("history", list(HISTORIES))
def test_an_event_body_with_its_envelope_rebuilds_the_same_event(history: str) -> None:
    for event in HISTORIES[history]().collect_events():
        body = event.body()
        assert "originator_id" not in body
        assert "originator_version" not in body
        rebuilt = type(event)(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            **body,
        )
        assert rebuilt == event


def test_a_current_body_needs_no_upcasting() -> None:
    body = {"region": "SOUTH"}

    assert CustomerProfileUpdated.upcast(body, CustomerProfileUpdated.schema_version) == body


# ------------------------------------------------------------------------- replay


@pytest.mark.parametrize("history", list(HISTORIES))
def test_replaying_the_recorded_events_rebuilds_the_same_state(history: str) -> None:
    original = HISTORIES[history]()
    events = original.collect_events()

    rebuilt = replay(events)

    assert type(rebuilt) is type(original)
    assert rebuilt.state() == original.state()
    assert rebuilt.version == original.version == len(events)
    assert rebuilt.pending_events == ()


def test_a_replayed_customer_keeps_its_running_totals() -> None:
    rebuilt = replay(customer_with_history().collect_events())

    assert isinstance(rebuilt, Customer)
    assert rebuilt.interaction_count == 4
    assert rebuilt.purchase_count == 2
    assert rebuilt.net_purchases == Decimal("180.00")
    assert rebuilt.first_purchase_at == NOW - 25 * DAY
    assert rebuilt.last_purchase_at == NOW - 20 * DAY
    assert rebuilt.last_interaction_at == NOW - 10 * DAY
    assert rebuilt.region == "SOUTH"
    assert len(rebuilt.contacts) == 1
    assert rebuilt.tier is Tier.KEY


def test_an_event_that_skips_a_version_is_not_applied() -> None:
    events = customer_with_history().collect_events()
    customer = replay(events[:1])
    state = customer.state()

    with pytest.raises(ValueError, match="does not follow"):
        customer.apply(events[2])

    assert customer.version == 1
    assert customer.state() == state


def test_an_event_already_applied_is_not_applied_again() -> None:
    events = customer_with_history().collect_events()
    customer = replay(events[:3])
    state = customer.state()

    with pytest.raises(ValueError, match="does not follow"):
        customer.apply(events[2])

    assert customer.version == 3
    assert customer.state() == state


def test_an_event_of_another_aggregate_is_not_applied() -> None:
    ours = customer_with_history().collect_events()
    theirs = customer_with_history().collect_events()
    customer = replay(ours[:1])

    with pytest.raises(ValueError, match="does not follow"):
        customer.apply(theirs[1])

    assert customer.version == 1


# ---------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("history", list(HISTORIES))
def test_a_snapshot_restores_the_same_state(history: str) -> None:
    original: Aggregate = HISTORIES[history]()
    original.collect_events()

    snapshot = Snapshot.take(original, NOW + DAY)
    restored = snapshot.mutate(None)

    assert type(restored) is type(original)
    assert restored.state() == original.state()
    assert restored.version == original.version
    assert snapshot.originator_id == original.id
    assert snapshot.originator_version == original.version
    assert snapshot.timestamp == NOW + DAY
    assert snapshot.aggregate_type == original.type_name


@pytest.mark.parametrize("history", list(HISTORIES))
def test_a_snapshot_survives_a_round_trip_through_json(history: str) -> None:
    original: Aggregate = HISTORIES[history]()

    stored = Snapshot.take(original, NOW).model_dump_json()
    restored = Snapshot.model_validate_json(stored).mutate(None)

    assert restored.state() == original.state()


def test_a_restored_aggregate_continues_from_the_snapshot_version() -> None:
    events = customer_with_history().collect_events()
    customer = replay(events[:-1])
    restored = Snapshot.take(customer, NOW).mutate(None)

    restored.apply(events[-1])

    assert restored.state() == replay(events).state()
    assert restored.pending_events == ()


@pytest.mark.parametrize("state_version", [0, Customer.state_version + 1])
def test_a_snapshot_of_another_state_version_is_stale(state_version: int) -> None:
    snapshot = Snapshot.take(customer_with_history(), NOW)
    stale = snapshot.model_copy(update={"state_version": state_version})

    with pytest.raises(StaleSnapshotError, match="stale"):
        stale.mutate(None)


# ------------------------------------------------------------------ personal data


def test_a_registered_customer_name_is_personal_data() -> None:
    assert personal_fields(CustomerRegistered) == {"display_name"}


def test_a_changed_customer_name_is_personal_data() -> None:
    assert personal_fields(CustomerProfileUpdated) == {"display_name"}


def test_a_contact_name_email_and_phone_are_personal_data() -> None:
    assert personal_fields(ContactAdded) == {"name", "email", "phone"}


def test_an_interaction_summary_is_personal_data() -> None:
    assert personal_fields(InteractionRecorded) == {"summary"}


def test_partner_events_hold_no_personal_data() -> None:
    for klass in domain_event_classes():
        if klass.aggregate_type == "partner":
            assert personal_fields(klass) == frozenset(), klass.topic


def test_redaction_replaces_personal_values_and_keeps_the_rest() -> None:
    values = {"display_name": "Zhang San", "industry": "RETAIL", "region": "EAST"}

    redacted = redact(CustomerRegistered, values, "[erased]")

    assert redacted == {"display_name": "[erased]", "industry": "RETAIL", "region": "EAST"}
    assert values["display_name"] == "Zhang San"
