"""The Customer aggregate, as a specification of its decisions and invariants."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from domain.aggregate import EventMeta
from domain.customer import (
    CLOCK_TOLERANCE,
    ContactAdded,
    ContactRemoved,
    Customer,
    CustomerProfileUpdated,
    CustomerRegistered,
    InteractionRecorded,
    TierChanged,
)
from domain.errors import DomainError, Reason
from domain.values import (
    Channel,
    CompanySize,
    ContactFunction,
    ContactLayer,
    CustomerKind,
    Direction,
    InteractionKind,
    PotentialValue,
    Tier,
)

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
PARTNER_ID = UUID("7d0c3c52-6a0e-4c55-8f39-0c1f4b2b9a10")


def meta(at: datetime = NOW, *, request_id: str = "req-1") -> EventMeta:
    return EventMeta(
        actor="crm-sync",
        request_id=request_id,
        correlation_id="corr-1",
        recorded_at=at,
    )


def registered(at: datetime = NOW) -> Customer:
    """A registered customer whose registration event has already been saved."""
    customer = Customer.register(
        uuid4(),
        external_ref="CRM-0001",
        display_name="Lakeside Trading",
        kind=CustomerKind.ORGANISATION,
        industry="RETAIL",
        region="EAST",
        size=CompanySize.MEDIUM,
        source="TRADE_FAIR",
        acquired_via_partner_id=None,
        potential_value=PotentialValue.MEDIUM,
        meta=meta(at),
    )
    customer.collect_events()
    return customer


def add_contact(customer: Customer, contact_id: UUID | None = None) -> UUID:
    contact_id = contact_id or uuid4()
    customer.add_contact(
        contact_id,
        name="Li Wei",
        email="li.wei@example.com",
        phone="+86 571 0000 0000",
        title="Head of Procurement",
        layer=ContactLayer.DECISION,
        function=ContactFunction.PROCUREMENT,
        influence=4,
        meta=meta(),
    )
    return contact_id


def record(
    customer: Customer,
    kind: InteractionKind = InteractionKind.CALL,
    *,
    occurred_at: datetime = NOW,
    amount: Decimal | None = None,
    contact_ids: tuple[UUID, ...] = (),
    at: datetime = NOW,
) -> None:
    monetary = kind in (InteractionKind.PURCHASE, InteractionKind.REFUND)
    customer.record_interaction(
        uuid4(),
        kind=kind,
        channel=Channel.PHONE,
        direction=Direction.INBOUND,
        occurred_at=occurred_at,
        summary="asked about delivery dates",
        amount=amount,
        currency="CNY" if monetary else None,
        satisfaction=None,
        partner_id=None,
        contact_ids=contact_ids,
        meta=meta(at),
    )


def refused(command: Callable[[], object]) -> Reason:
    """Run a command expected to be refused, and return the reason code."""
    with pytest.raises(DomainError) as refusal:
        command()
    return refusal.value.reason


# ------------------------------------------------------------------ registration


def test_registration_records_customer_registered_as_version_one() -> None:
    customer_id = uuid4()
    customer = Customer.register(
        customer_id,
        external_ref="CRM-0042",
        display_name="Zhang San",
        kind=CustomerKind.PERSON,
        industry="HEALTHCARE",
        region="NORTH",
        size=None,
        source="REFERRAL",
        acquired_via_partner_id=PARTNER_ID,
        potential_value=PotentialValue.HIGH,
        meta=EventMeta(
            actor="alice@accord",
            request_id="req-42",
            correlation_id="corr-42",
            recorded_at=NOW,
        ),
    )

    (event,) = customer.pending_events
    assert isinstance(event, CustomerRegistered)
    assert event.originator_id == customer_id
    assert event.originator_version == 1
    assert event.timestamp == NOW
    assert (event.actor, event.request_id, event.correlation_id) == (
        "alice@accord",
        "req-42",
        "corr-42",
    )
    assert event.display_name == "Zhang San"
    assert event.acquired_via_partner_id == PARTNER_ID


def test_a_registered_customer_starts_standard_with_no_history() -> None:
    customer = registered()

    assert customer.version == 1
    assert customer.created_on == NOW
    assert customer.modified_on == NOW
    assert customer.external_ref == "CRM-0001"
    assert customer.display_name == "Lakeside Trading"
    assert customer.size is CompanySize.MEDIUM
    assert customer.tier is Tier.STANDARD
    assert customer.tier_effective_from == NOW
    assert customer.contacts == {}
    assert customer.interaction_count == 0
    assert customer.net_purchases == 0
    assert customer.last_interaction_at is None


def test_collecting_events_hands_them_over_once() -> None:
    customer = registered()
    add_contact(customer)

    collected = customer.collect_events()

    assert [type(e) for e in collected] == [ContactAdded]
    assert customer.pending_events == ()
    assert customer.collect_events() == []


# ----------------------------------------------------------------------- profile


def test_a_profile_update_records_only_the_fields_that_changed() -> None:
    customer = registered()

    customer.update_profile(
        {
            "display_name": "Lakeside Trading",  # unchanged
            "region": "SOUTH",  # changed
            "potential_value": PotentialValue.HIGH,  # changed
            "industry": None,  # not given
        },
        meta(NOW + timedelta(hours=1)),
    )

    (event,) = customer.pending_events
    assert isinstance(event, CustomerProfileUpdated)
    assert event.originator_version == 2
    assert event.region == "SOUTH"
    assert event.potential_value is PotentialValue.HIGH
    assert event.display_name is None
    assert event.industry is None
    assert event.model_dump(exclude_none=True).keys() - {
        "originator_id",
        "originator_version",
        "timestamp",
        "actor",
        "request_id",
        "correlation_id",
    } == {"region", "potential_value"}
    assert customer.region == "SOUTH"
    assert customer.potential_value is PotentialValue.HIGH
    assert customer.industry == "RETAIL"
    assert customer.version == 2
    assert customer.modified_on == NOW + timedelta(hours=1)


def test_a_profile_update_that_changes_nothing_is_refused_with_no_change() -> None:
    customer = registered()

    reason = refused(
        lambda: customer.update_profile(
            {"display_name": "Lakeside Trading", "region": "EAST", "source": None}, meta()
        )
    )

    assert reason is Reason.NO_CHANGE
    assert customer.pending_events == ()
    assert customer.version == 1


def test_an_empty_profile_update_is_refused_with_no_change() -> None:
    customer = registered()

    assert refused(lambda: customer.update_profile({}, meta())) is Reason.NO_CHANGE


def test_a_profile_update_naming_a_field_outside_the_profile_is_rejected() -> None:
    customer = registered()

    with pytest.raises(ValueError, match="tier"):
        customer.update_profile({"tier": Tier.KEY, "region": "SOUTH"}, meta())

    assert customer.pending_events == ()
    assert customer.tier is Tier.STANDARD
    assert customer.region == "EAST"


# ---------------------------------------------------------------------- contacts


def test_adding_a_contact_records_it_among_the_current_contacts() -> None:
    customer = registered()
    contact_id = uuid4()

    add_contact(customer, contact_id)

    (event,) = customer.pending_events
    assert isinstance(event, ContactAdded)
    assert event.contact_id == contact_id
    assert event.email == "li.wei@example.com"
    contact = customer.contacts[contact_id]
    assert contact.name == "Li Wei"
    assert contact.layer is ContactLayer.DECISION
    assert contact.function is ContactFunction.PROCUREMENT
    assert contact.influence == 4
    assert contact.added_on == NOW
    assert customer.version == 2


def test_a_contact_id_already_in_use_is_refused_with_contact_already_exists() -> None:
    customer = registered()
    contact_id = add_contact(customer)
    customer.collect_events()

    reason = refused(lambda: add_contact(customer, contact_id))

    assert reason is Reason.CONTACT_ALREADY_EXISTS
    assert customer.pending_events == ()
    assert customer.version == 2


def test_a_contact_influence_outside_one_to_five_is_rejected() -> None:
    customer = registered()

    with pytest.raises(ValueError, match="influence"):
        customer.add_contact(
            uuid4(),
            name="Li Wei",
            email=None,
            phone=None,
            title=None,
            layer=ContactLayer.OPERATIONAL,
            function=ContactFunction.USER,
            influence=6,
            meta=meta(),
        )

    assert customer.pending_events == ()
    assert customer.contacts == {}
    assert customer.version == 1


def test_removing_a_contact_takes_it_out_of_the_current_contacts() -> None:
    customer = registered()
    kept, removed = add_contact(customer), add_contact(customer)
    customer.collect_events()

    customer.remove_contact(removed, meta())

    (event,) = customer.pending_events
    assert isinstance(event, ContactRemoved)
    assert event.contact_id == removed
    assert set(customer.contacts) == {kept}
    assert customer.version == 4


def test_removing_an_unknown_contact_is_refused_with_contact_not_found() -> None:
    customer = registered()
    add_contact(customer)
    customer.collect_events()

    reason = refused(lambda: customer.remove_contact(uuid4(), meta()))

    assert reason is Reason.CONTACT_NOT_FOUND
    assert customer.pending_events == ()
    assert customer.version == 2


def test_a_contact_cannot_be_removed_twice() -> None:
    customer = registered()
    contact_id = add_contact(customer)
    customer.remove_contact(contact_id, meta())
    customer.collect_events()

    assert refused(lambda: customer.remove_contact(contact_id, meta())) is Reason.CONTACT_NOT_FOUND


# ------------------------------------------------------------------ interactions


def test_an_interaction_is_recorded_with_its_business_time() -> None:
    customer = registered()
    contact_id = add_contact(customer)
    customer.collect_events()
    occurred = NOW - timedelta(days=2)

    record(customer, InteractionKind.MEETING, occurred_at=occurred, contact_ids=(contact_id,))

    (event,) = customer.pending_events
    assert isinstance(event, InteractionRecorded)
    assert event.kind is InteractionKind.MEETING
    assert event.occurred_at == occurred
    assert event.timestamp == NOW
    assert event.contact_ids == (contact_id,)
    assert customer.interaction_count == 1
    assert customer.last_interaction_at == occurred


def test_a_non_monetary_interaction_leaves_the_purchase_totals_alone() -> None:
    customer = registered()

    record(customer, InteractionKind.CALL)

    assert customer.interaction_count == 1
    assert customer.purchase_count == 0
    assert customer.refund_count == 0
    assert customer.purchased_total == 0
    assert customer.first_purchase_at is None
    assert customer.last_purchase_at is None
    assert customer.last_interaction_at == NOW


def test_purchases_update_the_running_totals() -> None:
    customer = registered()
    first, second = NOW - timedelta(days=10), NOW - timedelta(days=3)

    record(customer, InteractionKind.PURCHASE, occurred_at=first, amount=Decimal("120.50"))
    record(customer, InteractionKind.PURCHASE, occurred_at=second, amount=Decimal("79.50"))

    assert customer.interaction_count == 2
    assert customer.purchase_count == 2
    assert customer.purchased_total == Decimal("200.00")
    assert customer.net_purchases == Decimal("200.00")
    assert customer.first_purchase_at == first
    assert customer.last_purchase_at == second
    assert customer.last_interaction_at == second


def test_an_interaction_learned_late_does_not_move_the_latest_times_back() -> None:
    customer = registered()
    recent, older = NOW - timedelta(days=1), NOW - timedelta(days=30)

    record(customer, InteractionKind.PURCHASE, occurred_at=recent, amount=Decimal(50))
    record(customer, InteractionKind.PURCHASE, occurred_at=older, amount=Decimal(20))
    record(customer, InteractionKind.CALL, occurred_at=older)

    assert customer.first_purchase_at == older
    assert customer.last_purchase_at == recent
    assert customer.last_interaction_at == recent
    assert customer.interaction_count == 3
    assert customer.purchased_total == Decimal(70)


def test_a_refund_adjusts_the_net_purchases_without_touching_the_purchases() -> None:
    customer = registered()
    bought = NOW - timedelta(days=5)
    record(customer, InteractionKind.PURCHASE, occurred_at=bought, amount=Decimal(100))

    record(customer, InteractionKind.REFUND, occurred_at=NOW, amount=Decimal(30))

    assert customer.refund_count == 1
    assert customer.refunded_total == Decimal(30)
    assert customer.purchase_count == 1
    assert customer.purchased_total == Decimal(100)
    assert customer.net_purchases == Decimal(70)
    assert customer.last_purchase_at == bought
    assert customer.last_interaction_at == NOW


def test_a_refund_cannot_exceed_net_purchases() -> None:
    customer = registered()
    record(customer, InteractionKind.PURCHASE, amount=Decimal(100))
    record(customer, InteractionKind.REFUND, amount=Decimal(60))
    customer.collect_events()

    reason = refused(lambda: record(customer, InteractionKind.REFUND, amount=Decimal("40.01")))

    assert reason is Reason.REFUND_EXCEEDS_PURCHASES
    assert customer.pending_events == ()
    assert customer.version == 3
    assert customer.refunded_total == Decimal(60)
    assert customer.refund_count == 1


def test_a_refund_without_any_purchase_is_refused() -> None:
    customer = registered()

    reason = refused(lambda: record(customer, InteractionKind.REFUND, amount=Decimal("0.01")))

    assert reason is Reason.REFUND_EXCEEDS_PURCHASES
    assert customer.interaction_count == 0


def test_a_refund_of_exactly_the_net_purchases_is_allowed() -> None:
    customer = registered()
    record(customer, InteractionKind.PURCHASE, amount=Decimal("100.00"))
    record(customer, InteractionKind.REFUND, amount=Decimal("60.00"))

    record(customer, InteractionKind.REFUND, amount=Decimal("40.00"))

    assert customer.net_purchases == 0
    assert customer.refund_count == 2
    assert customer.version == 4


def test_an_interaction_naming_an_unknown_contact_is_refused() -> None:
    customer = registered()
    known = add_contact(customer)
    customer.collect_events()

    reason = refused(lambda: record(customer, contact_ids=(known, uuid4())))

    assert reason is Reason.CONTACT_NOT_FOUND
    assert customer.pending_events == ()
    assert customer.interaction_count == 0
    assert customer.version == 2


def test_an_interaction_naming_a_removed_contact_is_refused() -> None:
    customer = registered()
    contact_id = add_contact(customer)
    customer.remove_contact(contact_id, meta())
    customer.collect_events()

    reason = refused(lambda: record(customer, contact_ids=(contact_id,)))

    assert reason is Reason.CONTACT_NOT_FOUND
    assert customer.pending_events == ()
    assert customer.version == 3


def test_an_interaction_occurring_beyond_the_clock_tolerance_is_refused() -> None:
    customer = registered()

    reason = refused(
        lambda: record(customer, occurred_at=NOW + CLOCK_TOLERANCE + timedelta(microseconds=1))
    )

    assert reason is Reason.OCCURRED_IN_FUTURE
    assert customer.pending_events == ()
    assert customer.last_interaction_at is None
    assert customer.version == 1


@pytest.mark.parametrize(
    "ahead",
    [timedelta(0), timedelta(minutes=4, seconds=59), CLOCK_TOLERANCE],
    ids=["at-recorded-time", "within-tolerance", "at-tolerance"],
)
def test_an_interaction_slightly_ahead_of_the_recorded_time_is_allowed(
    ahead: timedelta,
) -> None:
    customer = registered()

    record(customer, occurred_at=NOW + ahead)

    assert customer.last_interaction_at == NOW + ahead
    assert customer.version == 2


def test_the_clock_tolerance_is_five_minutes() -> None:
    assert timedelta(minutes=5) == CLOCK_TOLERANCE


# -------------------------------------------------------------------------- tier


def test_a_tier_change_records_from_and_to_tier_and_when_it_takes_effect() -> None:
    customer = registered()
    effective = NOW + timedelta(days=1)

    customer.change_tier(
        Tier.KEY, reason="annual revenue above threshold", effective_from=effective, meta=meta()
    )

    (event,) = customer.pending_events
    assert isinstance(event, TierChanged)
    assert event.from_tier is Tier.STANDARD
    assert event.to_tier is Tier.KEY
    assert event.reason == "annual revenue above threshold"
    assert event.effective_from == effective
    assert customer.tier is Tier.KEY
    assert customer.tier_effective_from == effective


def test_a_second_tier_change_starts_from_the_tier_reached() -> None:
    customer = registered()
    customer.change_tier(Tier.KEY, reason="growth", effective_from=NOW, meta=meta())
    customer.collect_events()

    customer.change_tier(Tier.STRATEGIC, reason="board decision", effective_from=NOW, meta=meta())

    (event,) = customer.pending_events
    assert isinstance(event, TierChanged)
    assert (event.from_tier, event.to_tier) == (Tier.KEY, Tier.STRATEGIC)


@pytest.mark.parametrize("reason", ["", "   ", "\t\n"])
def test_a_tier_change_without_a_reason_is_refused(reason: str) -> None:
    customer = registered()

    refusal = refused(
        lambda: customer.change_tier(Tier.KEY, reason=reason, effective_from=NOW, meta=meta())
    )

    assert refusal is Reason.REASON_REQUIRED
    assert customer.pending_events == ()
    assert customer.tier is Tier.STANDARD
    assert customer.version == 1


def test_a_tier_change_to_the_current_tier_is_refused() -> None:
    customer = registered()

    reason = refused(
        lambda: customer.change_tier(
            Tier.STANDARD, reason="re-confirmed", effective_from=NOW, meta=meta()
        )
    )

    assert reason is Reason.TIER_UNCHANGED
    assert customer.pending_events == ()
    assert customer.tier_effective_from == NOW
    assert customer.version == 1


# ------------------------------------------------------- refusals record nothing

KNOWN_CONTACT = UUID("3b9e1f7e-0c7a-4f6e-9d55-2a3c9a0e7b11")
REMOVED_CONTACT = UUID("5c2d8a90-1b4e-4d7a-a1f3-6e8b0c9d2f22")

REFUSALS: dict[str, tuple[Callable[[Customer], object], Reason]] = {
    "no-op profile update": (
        lambda c: c.update_profile({"region": "EAST"}, meta()),
        Reason.NO_CHANGE,
    ),
    "duplicate contact": (
        lambda c: add_contact(c, KNOWN_CONTACT),
        Reason.CONTACT_ALREADY_EXISTS,
    ),
    "remove removed contact": (
        lambda c: c.remove_contact(REMOVED_CONTACT, meta()),
        Reason.CONTACT_NOT_FOUND,
    ),
    "interaction with removed contact": (
        lambda c: record(c, contact_ids=(REMOVED_CONTACT,)),
        Reason.CONTACT_NOT_FOUND,
    ),
    "refund beyond purchases": (
        lambda c: record(c, InteractionKind.REFUND, amount=Decimal("75.01")),
        Reason.REFUND_EXCEEDS_PURCHASES,
    ),
    "interaction in the future": (
        lambda c: record(c, occurred_at=NOW + timedelta(hours=1)),
        Reason.OCCURRED_IN_FUTURE,
    ),
    "tier change without reason": (
        lambda c: c.change_tier(Tier.STRATEGIC, reason=" ", effective_from=NOW, meta=meta()),
        Reason.REASON_REQUIRED,
    ),
    "tier change to current tier": (
        lambda c: c.change_tier(Tier.KEY, reason="again", effective_from=NOW, meta=meta()),
        Reason.TIER_UNCHANGED,
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_command_records_nothing_and_leaves_the_customer_unchanged(case: str) -> None:
    command, expected = REFUSALS[case]
    customer = registered()
    add_contact(customer, KNOWN_CONTACT)
    add_contact(customer, REMOVED_CONTACT)
    customer.remove_contact(REMOVED_CONTACT, meta())
    record(customer, InteractionKind.PURCHASE, amount=Decimal(100))
    record(customer, InteractionKind.REFUND, amount=Decimal(25))
    customer.change_tier(Tier.KEY, reason="growth", effective_from=NOW, meta=meta())
    customer.collect_events()
    version, state = customer.version, customer.state()

    assert refused(lambda: command(customer)) is expected

    assert customer.pending_events == ()
    assert customer.version == version
    assert customer.state() == state
