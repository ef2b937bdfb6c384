"""The Partner aggregate, as a specification of its lifecycle and invariants."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from domain.aggregate import EventMeta
from domain.errors import DomainError, Reason
from domain.partner import (
    Agreement,
    AgreementSigned,
    AgreementTerminated,
    CustomerLinked,
    CustomerUnlinked,
    Partner,
    PartnerActivated,
    PartnerEvaluated,
    PartnerPerformanceReviewed,
    PartnerRegistered,
    PartnerReinstated,
    PartnerSuspended,
    PartnerTerminated,
    PartnerTierChanged,
)
from domain.values import (
    AgreementKind,
    DataCategory,
    LinkRole,
    PartnerKind,
    PartnerStatus,
    Purpose,
    Tier,
)

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
SHA = "0123456789abcdef" * 4
DAY = timedelta(days=1)


def meta(at: datetime = NOW) -> EventMeta:
    return EventMeta(
        actor="partner-desk", request_id="req-1", correlation_id="corr-1", recorded_at=at
    )


def registered() -> Partner:
    """A registered partner whose registration event has already been saved."""
    partner = Partner.register(
        uuid4(),
        external_ref="PRM-0001",
        name="West Lake Logistics",
        kind=PartnerKind.DISTRIBUTOR,
        regions=("EAST", "SOUTH"),
        capabilities=("WAREHOUSING",),
        meta=meta(NOW - 30 * DAY),
    )
    partner.collect_events()
    return partner


def evaluate(partner: Partner, at: datetime = NOW) -> None:
    partner.evaluate(
        strength=80,
        reputation=75,
        business_fit=90,
        data_protection=85,
        notes="ISO 27001 certified",
        meta=meta(at),
    )


def sign(
    partner: Partner,
    agreement_id: UUID | None = None,
    *,
    effective_from: datetime = NOW - 10 * DAY,
    effective_to: datetime | None = None,
    confidentiality: bool = True,
    at: datetime = NOW,
) -> UUID:
    agreement_id = agreement_id or uuid4()
    partner.sign_agreement(
        agreement_id,
        kind=AgreementKind.COOPERATION,
        effective_from=effective_from,
        effective_to=effective_to,
        confidentiality=confidentiality,
        permitted_purposes=(Purpose.JOINT_SERVICE, Purpose.SUPPORT),
        permitted_data_categories=(DataCategory.IDENTITY, DataCategory.CONTACT),
        document_sha256=SHA,
        meta=meta(at),
    )
    return agreement_id


def ready() -> Partner:
    """Registered, evaluated and under a confidential agreement in effect now."""
    partner = registered()
    evaluate(partner)
    sign(partner)
    partner.collect_events()
    return partner


def active() -> Partner:
    partner = ready()
    partner.activate(reason="onboarding complete", meta=meta())
    partner.collect_events()
    return partner


def suspended() -> Partner:
    partner = active()
    partner.suspend(reason="audit finding", meta=meta())
    partner.collect_events()
    return partner


def terminated() -> Partner:
    partner = active()
    partner.terminate(reason="contract ended", meta=meta())
    partner.collect_events()
    return partner


def review(partner: Partner, period: str = "2025-Q1", at: datetime = NOW) -> None:
    partner.review_performance(
        period=period,
        revenue=Decimal("125000.00"),
        new_customers=12,
        satisfaction=Decimal("8.5"),
        complaints=1,
        meta=meta(at),
    )


def refused(command: Callable[[], object]) -> Reason:
    """Run a command expected to be refused, and return the reason code."""
    with pytest.raises(DomainError) as refusal:
        command()
    return refusal.value.reason


def agreement(
    *,
    effective_from: datetime = NOW,
    effective_to: datetime | None = None,
    terminated_at: datetime | None = None,
) -> Agreement:
    return Agreement(
        agreement_id=uuid4(),
        kind=AgreementKind.DATA_SHARING,
        effective_from=effective_from,
        effective_to=effective_to,
        confidentiality=True,
        permitted_purposes=(Purpose.MARKETING, Purpose.ANALYTICS),
        permitted_data_categories=(DataCategory.IDENTITY, DataCategory.PURCHASE_HISTORY),
        document_sha256=SHA,
        signed_at=effective_from,
        terminated_at=terminated_at,
    )


# ------------------------------------------------------------------ registration


def test_registration_records_partner_registered_and_starts_registered() -> None:
    partner_id = uuid4()
    partner = Partner.register(
        partner_id,
        external_ref="PRM-0007",
        name="Jade Software",
        kind=PartnerKind.TECHNOLOGY,
        regions=("NORTH",),
        capabilities=("INTEGRATION", "HOSTING"),
        meta=meta(),
    )

    (event,) = partner.pending_events
    assert isinstance(event, PartnerRegistered)
    assert event.originator_id == partner_id
    assert event.originator_version == 1
    assert (event.actor, event.request_id, event.correlation_id) == (
        "partner-desk",
        "req-1",
        "corr-1",
    )
    assert partner.status is PartnerStatus.REGISTERED
    assert partner.tier is Tier.STANDARD
    assert partner.capabilities == ("INTEGRATION", "HOSTING")
    assert partner.evaluation is None
    assert partner.agreements == {}
    assert partner.version == 1


def test_an_evaluation_is_recorded_with_when_it_was_made() -> None:
    partner = registered()

    evaluate(partner)

    (event,) = partner.pending_events
    assert isinstance(event, PartnerEvaluated)
    assert partner.evaluation is not None
    assert partner.evaluation.data_protection == 85
    assert partner.evaluation.evaluated_at == NOW


def test_an_evaluation_score_above_one_hundred_is_rejected() -> None:
    partner = registered()

    with pytest.raises(ValidationError):
        partner.evaluate(
            strength=101,
            reputation=0,
            business_fit=0,
            data_protection=0,
            notes="",
            meta=meta(),
        )

    assert partner.evaluation is None
    assert partner.pending_events == ()


# -------------------------------------------------------------------- activation


def test_an_evaluated_partner_under_a_confidential_agreement_can_be_activated() -> None:
    partner = ready()

    partner.activate(reason="onboarding complete", meta=meta())

    (event,) = partner.pending_events
    assert isinstance(event, PartnerActivated)
    assert event.reason == "onboarding complete"
    assert partner.status is PartnerStatus.ACTIVE
    assert partner.status_reason == "onboarding complete"


def test_activation_requires_an_evaluation() -> None:
    partner = registered()
    sign(partner)
    partner.collect_events()

    reason = refused(lambda: partner.activate(reason="go", meta=meta()))

    assert reason is Reason.EVALUATION_REQUIRED
    assert partner.status is PartnerStatus.REGISTERED
    assert partner.pending_events == ()
    assert partner.version == 2


def test_activation_requires_an_agreement() -> None:
    partner = registered()
    evaluate(partner)
    partner.collect_events()

    reason = refused(lambda: partner.activate(reason="go", meta=meta()))

    assert reason is Reason.CONFIDENTIAL_AGREEMENT_REQUIRED
    assert partner.status is PartnerStatus.REGISTERED
    assert partner.pending_events == ()


def test_an_agreement_without_confidentiality_does_not_allow_activation() -> None:
    partner = registered()
    evaluate(partner)
    sign(partner, confidentiality=False)
    partner.collect_events()

    reason = refused(lambda: partner.activate(reason="go", meta=meta()))

    assert reason is Reason.CONFIDENTIAL_AGREEMENT_REQUIRED
    assert partner.status is PartnerStatus.REGISTERED


def test_an_agreement_not_yet_in_effect_does_not_allow_activation() -> None:
    partner = registered()
    evaluate(partner)
    sign(partner, effective_from=NOW + DAY)
    partner.collect_events()

    reason = refused(lambda: partner.activate(reason="go", meta=meta()))

    assert reason is Reason.CONFIDENTIAL_AGREEMENT_REQUIRED
    assert partner.status is PartnerStatus.REGISTERED


@pytest.mark.parametrize("ended", [NOW, NOW - DAY], ids=["ending-now", "ended"])
def test_an_expired_agreement_does_not_allow_activation(ended: datetime) -> None:
    partner = registered()
    evaluate(partner)
    sign(partner, effective_from=NOW - 90 * DAY, effective_to=ended)
    partner.collect_events()

    reason = refused(lambda: partner.activate(reason="go", meta=meta()))

    assert reason is Reason.CONFIDENTIAL_AGREEMENT_REQUIRED
    assert partner.status is PartnerStatus.REGISTERED


def test_a_terminated_agreement_does_not_allow_activation() -> None:
    partner = registered()
    evaluate(partner)
    agreement_id = sign(partner)
    partner.terminate_agreement(agreement_id, reason="breach", meta=meta(NOW - DAY))
    partner.collect_events()

    reason = refused(lambda: partner.activate(reason="go", meta=meta()))

    assert reason is Reason.CONFIDENTIAL_AGREEMENT_REQUIRED
    assert partner.status is PartnerStatus.REGISTERED


def test_one_confidential_agreement_in_effect_is_enough_among_others() -> None:
    partner = registered()
    evaluate(partner)
    sign(partner, confidentiality=False)
    sign(partner, effective_from=NOW + DAY)
    sign(partner, effective_from=NOW - DAY, effective_to=NOW + DAY)
    partner.collect_events()

    partner.activate(reason="go", meta=meta())

    assert partner.status is PartnerStatus.ACTIVE


def test_activation_is_judged_at_the_recorded_time() -> None:
    partner = registered()
    evaluate(partner, at=NOW - 20 * DAY)
    sign(partner, effective_from=NOW, at=NOW - 20 * DAY)
    partner.collect_events()

    early = refused(lambda: partner.activate(reason="go", meta=meta(NOW - timedelta(seconds=1))))
    partner.activate(reason="go", meta=meta(NOW))

    assert early is Reason.CONFIDENTIAL_AGREEMENT_REQUIRED
    assert partner.status is PartnerStatus.ACTIVE


@pytest.mark.parametrize("state", ["active", "suspended"])
def test_only_a_registered_partner_is_activated(state: str) -> None:
    partner = active() if state == "active" else suspended()
    version = partner.version

    reason = refused(lambda: partner.activate(reason="again", meta=meta()))

    assert reason is Reason.PARTNER_NOT_REGISTERED
    assert partner.pending_events == ()
    assert partner.version == version


# ------------------------------------------------------- suspension, reinstating


def test_an_active_partner_can_be_suspended() -> None:
    partner = active()

    partner.suspend(reason="audit finding", meta=meta())

    (event,) = partner.pending_events
    assert isinstance(event, PartnerSuspended)
    assert partner.status is PartnerStatus.SUSPENDED
    assert partner.status_reason == "audit finding"


@pytest.mark.parametrize("state", ["registered", "suspended"])
def test_only_an_active_partner_is_suspended(state: str) -> None:
    partner = ready() if state == "registered" else suspended()
    status, version = partner.status, partner.version

    reason = refused(lambda: partner.suspend(reason="audit", meta=meta()))

    assert reason is Reason.PARTNER_NOT_ACTIVE
    assert partner.status is status
    assert partner.pending_events == ()
    assert partner.version == version


def test_a_suspension_needs_a_reason() -> None:
    partner = active()

    with pytest.raises(ValidationError):
        partner.suspend(reason="", meta=meta())

    assert partner.status is PartnerStatus.ACTIVE
    assert partner.pending_events == ()


def test_a_suspended_partner_can_be_reinstated() -> None:
    partner = suspended()

    partner.reinstate(reason="audit closed", meta=meta())

    (event,) = partner.pending_events
    assert isinstance(event, PartnerReinstated)
    assert partner.status is PartnerStatus.ACTIVE
    assert partner.status_reason == "audit closed"


@pytest.mark.parametrize("state", ["registered", "active"])
def test_only_a_suspended_partner_is_reinstated(state: str) -> None:
    partner = ready() if state == "registered" else active()
    status = partner.status

    reason = refused(lambda: partner.reinstate(reason="ok", meta=meta()))

    assert reason is Reason.PARTNER_NOT_SUSPENDED
    assert partner.status is status
    assert partner.pending_events == ()


def test_reinstating_rechecks_the_agreement() -> None:
    partner = active()
    (agreement_id,) = partner.agreements
    partner.suspend(reason="audit finding", meta=meta())
    partner.terminate_agreement(agreement_id, reason="audit finding", meta=meta())
    partner.collect_events()
    version = partner.version

    reason = refused(lambda: partner.reinstate(reason="audit closed", meta=meta()))

    assert reason is Reason.CONFIDENTIAL_AGREEMENT_REQUIRED
    assert partner.status is PartnerStatus.SUSPENDED
    assert partner.pending_events == ()
    assert partner.version == version


def test_reinstating_after_the_agreement_expired_is_refused() -> None:
    partner = registered()
    evaluate(partner)
    sign(partner, effective_from=NOW - 10 * DAY, effective_to=NOW + DAY)
    partner.activate(reason="go", meta=meta())
    partner.suspend(reason="audit", meta=meta())
    partner.collect_events()

    reason = refused(lambda: partner.reinstate(reason="back", meta=meta(NOW + 2 * DAY)))

    assert reason is Reason.CONFIDENTIAL_AGREEMENT_REQUIRED
    assert partner.status is PartnerStatus.SUSPENDED


def test_reinstating_under_a_new_agreement_is_allowed() -> None:
    partner = active()
    (old,) = partner.agreements
    partner.suspend(reason="audit finding", meta=meta())
    partner.terminate_agreement(old, reason="audit finding", meta=meta())
    sign(partner, effective_from=NOW)

    partner.reinstate(reason="new agreement signed", meta=meta())

    assert partner.status is PartnerStatus.ACTIVE


# ------------------------------------------------------------------- termination


@pytest.mark.parametrize("state", ["registered", "active", "suspended"])
def test_a_partner_can_be_terminated_from_any_live_status(state: str) -> None:
    partner = {"registered": registered, "active": active, "suspended": suspended}[state]()

    partner.terminate(reason="contract ended", meta=meta())

    (event,) = partner.pending_events
    assert isinstance(event, PartnerTerminated)
    assert partner.status is PartnerStatus.TERMINATED
    assert partner.status_reason == "contract ended"


TERMINATED_REFUSALS: dict[str, Callable[[Partner], object]] = {
    "activate": lambda p: p.activate(reason="again", meta=meta()),
    "reinstate": lambda p: p.reinstate(reason="again", meta=meta()),
    "suspend": lambda p: p.suspend(reason="again", meta=meta()),
    "terminate": lambda p: p.terminate(reason="again", meta=meta()),
    "evaluate": evaluate,
    "sign agreement": sign,
    "link customer": lambda p: p.link_customer(uuid4(), role=LinkRole.RESALE, meta=meta()),
    "change tier": lambda p: p.change_tier(Tier.KEY, reason="late", meta=meta()),
}


@pytest.mark.parametrize("case", list(TERMINATED_REFUSALS))
def test_a_terminated_partner_is_refused_with_partner_terminated(case: str) -> None:
    partner = terminated()
    version, state = partner.version, partner.state()

    reason = refused(lambda: TERMINATED_REFUSALS[case](partner))

    assert reason is Reason.PARTNER_TERMINATED
    assert partner.pending_events == ()
    assert partner.version == version
    assert partner.state() == state


def test_a_terminated_partner_still_gets_its_last_performance_review() -> None:
    partner = terminated()

    review(partner, "2025-Q1")

    (event,) = partner.pending_events
    assert isinstance(event, PartnerPerformanceReviewed)
    assert set(partner.reviews) == {"2025-Q1"}
    assert partner.status is PartnerStatus.TERMINATED


# -------------------------------------------------------------------- agreements


def test_signing_an_agreement_records_it_with_its_terms() -> None:
    partner = registered()
    agreement_id = uuid4()

    sign(partner, agreement_id, effective_from=NOW, effective_to=NOW + 365 * DAY)

    (event,) = partner.pending_events
    assert isinstance(event, AgreementSigned)
    signed = partner.agreements[agreement_id]
    assert signed.effective_from == NOW
    assert signed.effective_to == NOW + 365 * DAY
    assert signed.confidentiality is True
    assert signed.permitted_purposes == (Purpose.JOINT_SERVICE, Purpose.SUPPORT)
    assert signed.document_sha256 == SHA
    assert signed.signed_at == NOW
    assert signed.terminated_at is None


def test_an_agreement_id_already_signed_is_refused() -> None:
    partner = registered()
    agreement_id = sign(partner)
    partner.collect_events()

    reason = refused(lambda: sign(partner, agreement_id, confidentiality=False))

    assert reason is Reason.AGREEMENT_ALREADY_EXISTS
    assert partner.agreements[agreement_id].confidentiality is True
    assert partner.pending_events == ()
    assert partner.version == 2


@pytest.mark.parametrize("length", [timedelta(0), -DAY], ids=["empty", "reversed"])
def test_an_agreement_must_end_after_it_starts(length: timedelta) -> None:
    partner = registered()

    with pytest.raises(ValueError, match="effective_to"):
        sign(partner, effective_from=NOW, effective_to=NOW + length)

    assert partner.agreements == {}
    assert partner.pending_events == ()


def test_an_agreement_document_hash_must_be_a_sha256_hex_digest() -> None:
    partner = registered()

    with pytest.raises(ValidationError):
        partner.sign_agreement(
            uuid4(),
            kind=AgreementKind.COOPERATION,
            effective_from=NOW,
            effective_to=None,
            confidentiality=True,
            permitted_purposes=(),
            permitted_data_categories=(),
            document_sha256="ABC",
            meta=meta(),
        )

    assert partner.agreements == {}


def test_terminating_an_agreement_records_when_and_why() -> None:
    partner = registered()
    agreement_id = sign(partner)
    partner.collect_events()

    partner.terminate_agreement(agreement_id, reason="breach", meta=meta(NOW + DAY))

    (event,) = partner.pending_events
    assert isinstance(event, AgreementTerminated)
    ended = partner.agreements[agreement_id]
    assert ended.terminated_at == NOW + DAY
    assert ended.termination_reason == "breach"
    assert ended.in_effect(NOW)
    assert not ended.in_effect(NOW + DAY)
    assert partner.agreements_in_effect(NOW + DAY) == []


def test_terminating_an_unknown_agreement_is_refused() -> None:
    partner = registered()
    sign(partner)
    partner.collect_events()

    reason = refused(lambda: partner.terminate_agreement(uuid4(), reason="x", meta=meta()))

    assert reason is Reason.AGREEMENT_NOT_FOUND
    assert partner.pending_events == ()


def test_terminating_an_agreement_twice_is_refused() -> None:
    partner = registered()
    agreement_id = sign(partner)
    partner.terminate_agreement(agreement_id, reason="breach", meta=meta())
    partner.collect_events()

    reason = refused(
        lambda: partner.terminate_agreement(agreement_id, reason="again", meta=meta(NOW + DAY))
    )

    assert reason is Reason.AGREEMENT_ALREADY_TERMINATED
    assert partner.agreements[agreement_id].terminated_at == NOW
    assert partner.agreements[agreement_id].termination_reason == "breach"
    assert partner.pending_events == ()


def test_an_agreement_is_in_effect_from_its_start_until_just_before_its_end() -> None:
    term = agreement(effective_from=NOW, effective_to=NOW + DAY)

    assert not term.in_effect(NOW - timedelta(microseconds=1))
    assert term.in_effect(NOW)
    assert term.in_effect(NOW + DAY - timedelta(microseconds=1))
    assert not term.in_effect(NOW + DAY)


def test_an_open_ended_agreement_stays_in_effect() -> None:
    term = agreement(effective_from=NOW)

    assert term.in_effect(NOW + 3650 * DAY)


def test_a_terminated_agreement_is_out_of_effect_from_its_termination() -> None:
    term = agreement(effective_from=NOW, terminated_at=NOW + DAY)

    assert term.in_effect(NOW + DAY - timedelta(microseconds=1))
    assert not term.in_effect(NOW + DAY)
    assert not term.in_effect(NOW + 2 * DAY)


def test_an_agreement_permits_a_listed_purpose_with_listed_categories_only() -> None:
    term = agreement()

    assert term.permits(Purpose.MARKETING, (DataCategory.IDENTITY,))
    assert term.permits(Purpose.ANALYTICS, (DataCategory.IDENTITY, DataCategory.PURCHASE_HISTORY))
    assert term.permits(Purpose.MARKETING, ())
    assert not term.permits(Purpose.SUPPORT, (DataCategory.IDENTITY,))
    assert not term.permits(Purpose.MARKETING, (DataCategory.IDENTITY, DataCategory.CONTACT))


# ------------------------------------------------------------------- performance


def test_a_performance_review_is_recorded_per_period() -> None:
    partner = active()

    review(partner, "2025-Q1")
    review(partner, "2025-03")

    assert set(partner.reviews) == {"2025-Q1", "2025-03"}
    q1 = partner.reviews["2025-Q1"]
    assert q1.revenue == Decimal("125000.00")
    assert q1.new_customers == 12
    assert q1.satisfaction == Decimal("8.5")
    assert q1.complaints == 1
    assert q1.reviewed_at == NOW


def test_a_period_can_be_reviewed_only_once() -> None:
    partner = active()
    review(partner, "2025")
    partner.collect_events()
    before = partner.reviews["2025"]

    reason = refused(lambda: review(partner, "2025", at=NOW + DAY))

    assert reason is Reason.PERIOD_ALREADY_REVIEWED
    assert partner.reviews["2025"] == before
    assert partner.pending_events == ()


@pytest.mark.parametrize("period", ["2025", "2025-Q1", "2025-Q4", "2025-01", "2025-03", "2025-12"])
def test_a_review_period_is_a_year_a_quarter_or_a_month(period: str) -> None:
    partner = active()

    review(partner, period)

    assert period in partner.reviews


@pytest.mark.parametrize(
    "period", ["2025-13", "2025-00", "2025-Q5", "2025-Q0", "25", "2025-3", "2025Q1", "2025-03 "]
)
def test_a_malformed_review_period_is_rejected(period: str) -> None:
    partner = active()
    version = partner.version

    with pytest.raises(ValidationError):
        review(partner, period)

    assert partner.reviews == {}
    assert partner.pending_events == ()
    assert partner.version == version


def test_a_review_satisfaction_above_ten_is_rejected() -> None:
    partner = active()

    with pytest.raises(ValidationError):
        partner.review_performance(
            period="2025",
            revenue=Decimal(0),
            new_customers=0,
            satisfaction=Decimal("10.1"),
            complaints=0,
            meta=meta(),
        )

    assert partner.reviews == {}


# -------------------------------------------------------------------------- tier


def test_a_partner_tier_change_records_from_and_to_tier() -> None:
    partner = active()

    partner.change_tier(Tier.STRATEGIC, reason="top revenue", meta=meta())

    (event,) = partner.pending_events
    assert isinstance(event, PartnerTierChanged)
    assert (event.from_tier, event.to_tier) == (Tier.STANDARD, Tier.STRATEGIC)
    assert event.reason == "top revenue"
    assert partner.tier is Tier.STRATEGIC


@pytest.mark.parametrize("reason", ["", "  "])
def test_a_partner_tier_change_needs_a_reason(reason: str) -> None:
    partner = active()

    refusal = refused(lambda: partner.change_tier(Tier.KEY, reason=reason, meta=meta()))

    assert refusal is Reason.REASON_REQUIRED
    assert partner.tier is Tier.STANDARD
    assert partner.pending_events == ()


def test_a_partner_tier_change_to_the_current_tier_is_refused() -> None:
    partner = active()
    partner.change_tier(Tier.KEY, reason="growth", meta=meta())
    partner.collect_events()

    reason = refused(lambda: partner.change_tier(Tier.KEY, reason="again", meta=meta()))

    assert reason is Reason.TIER_UNCHANGED
    assert partner.pending_events == ()


# --------------------------------------------------------------- customer links


def test_a_customer_can_be_linked_with_a_role() -> None:
    partner = active()
    customer_id = uuid4()

    partner.link_customer(customer_id, role=LinkRole.REFERRAL, meta=meta())

    (event,) = partner.pending_events
    assert isinstance(event, CustomerLinked)
    assert event.customer_id == customer_id
    assert partner.linked_customers == {customer_id: LinkRole.REFERRAL}


def test_a_customer_already_linked_is_refused() -> None:
    partner = active()
    customer_id = uuid4()
    partner.link_customer(customer_id, role=LinkRole.REFERRAL, meta=meta())
    partner.collect_events()

    reason = refused(lambda: partner.link_customer(customer_id, role=LinkRole.CO_SELL, meta=meta()))

    assert reason is Reason.CUSTOMER_ALREADY_LINKED
    assert partner.linked_customers == {customer_id: LinkRole.REFERRAL}
    assert partner.pending_events == ()


def test_unlinking_a_customer_removes_the_link() -> None:
    partner = active()
    kept, dropped = uuid4(), uuid4()
    partner.link_customer(kept, role=LinkRole.RESALE, meta=meta())
    partner.link_customer(dropped, role=LinkRole.SERVICE, meta=meta())
    partner.collect_events()

    partner.unlink_customer(dropped, meta=meta())

    (event,) = partner.pending_events
    assert isinstance(event, CustomerUnlinked)
    assert partner.linked_customers == {kept: LinkRole.RESALE}


def test_an_unlinked_customer_can_be_linked_again() -> None:
    partner = active()
    customer_id = uuid4()
    partner.link_customer(customer_id, role=LinkRole.RESALE, meta=meta())
    partner.unlink_customer(customer_id, meta=meta())

    partner.link_customer(customer_id, role=LinkRole.CO_SELL, meta=meta())

    assert partner.linked_customers == {customer_id: LinkRole.CO_SELL}


def test_unlinking_a_customer_that_is_not_linked_is_refused() -> None:
    partner = active()

    reason = refused(lambda: partner.unlink_customer(uuid4(), meta=meta()))

    assert reason is Reason.CUSTOMER_NOT_LINKED
    assert partner.pending_events == ()


def test_a_terminated_partner_can_still_have_its_customers_unlinked() -> None:
    partner = active()
    customer_id = uuid4()
    partner.link_customer(customer_id, role=LinkRole.RESALE, meta=meta())
    partner.terminate(reason="contract ended", meta=meta())

    partner.unlink_customer(customer_id, meta=meta())

    assert partner.linked_customers == {}
