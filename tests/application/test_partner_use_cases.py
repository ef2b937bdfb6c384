"""Partner commands through the application, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from application import commands as c
from application.errors import (
    AlreadyExistsError,
    DomainError,
    InvalidCommandError,
    NotFoundError,
    Reason,
)
from application.service import Accord
from tests.builders import CTX, SHA, active_partner, log_position, new_customer, register_partner
from tests.support import FakeClock


def test_a_partner_goes_from_registration_to_active(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())

    partner = accord.queries.partner(partner_id)
    assert partner.status.value == "ACTIVE"
    assert partner.evaluation is not None
    assert partner.evaluation.data_protection == 90
    [agreement] = partner.agreements.values()
    assert agreement.confidentiality
    assert agreement.in_effect(clock.now())
    assert [e.topic for e in accord.log.history(partner_id)] == [
        "partner.registered",
        "partner.evaluated",
        "partner.agreement_signed",
        "partner.activated",
    ]


def test_activation_without_a_confidential_agreement_is_refused(
    accord: Accord, clock: FakeClock
) -> None:
    partner_id = accord.partners.register(register_partner(), CTX).aggregate_id
    accord.partners.evaluate(
        c.EvaluatePartner(
            partner_id=partner_id, strength=1, reputation=1, business_fit=1, data_protection=1
        ),
        CTX,
    )
    accord.partners.sign_agreement(
        c.SignAgreement(
            partner_id=partner_id,
            kind="REFERRAL",
            effective_from=clock.now() - timedelta(days=1),
            confidentiality=False,
            permitted_purposes=["MARKETING"],
            permitted_data_categories=["IDENTITY"],
            document_sha256=SHA,
        ),
        CTX,
    )
    before = log_position(accord)

    with pytest.raises(DomainError) as refused:
        accord.partners.activate(c.ActivatePartner(partner_id=partner_id), CTX)
    assert refused.value.reason is Reason.CONFIDENTIAL_AGREEMENT_REQUIRED
    assert log_position(accord) == before


def test_a_terminated_partner_cannot_come_back(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())
    accord.partners.terminate(c.TerminatePartner(partner_id=partner_id, reason="breach"), CTX)

    with pytest.raises(DomainError) as refused:
        accord.partners.reinstate(c.ReinstatePartner(partner_id=partner_id, reason="appeal"), CTX)
    assert refused.value.reason is Reason.PARTNER_TERMINATED


def test_suspension_and_reinstatement(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())
    accord.partners.suspend(c.SuspendPartner(partner_id=partner_id, reason="audit finding"), CTX)
    assert accord.queries.partner(partner_id).status.value == "SUSPENDED"
    accord.partners.reinstate(c.ReinstatePartner(partner_id=partner_id, reason="remediated"), CTX)
    assert accord.queries.partner(partner_id).status.value == "ACTIVE"


def test_agreements_are_signed_and_terminated(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())
    [agreement_id] = accord.queries.partner(partner_id).agreements

    accord.partners.terminate_agreement(
        c.TerminateAgreement(partner_id=partner_id, agreement_id=agreement_id, reason="expired"),
        CTX,
    )

    agreement = accord.queries.partner(partner_id).agreements[agreement_id]
    assert agreement.termination_reason == "expired"
    assert not agreement.in_effect(clock.now())


def test_performance_is_reviewed_once_per_period(accord: Accord) -> None:
    partner_id = accord.partners.register(register_partner(), CTX).aggregate_id
    review = c.ReviewPartnerPerformance(
        partner_id=partner_id,
        period="2026-Q1",
        revenue=Decimal("1500000"),
        currency="CNY",
        new_customers=12,
        satisfaction=Decimal("8.5"),
        complaints=1,
    )
    accord.partners.review_performance(review, CTX)
    assert accord.queries.partner(partner_id).reviews["2026-Q1"].new_customers == 12

    with pytest.raises(DomainError) as refused:
        accord.partners.review_performance(review, CTX)
    assert refused.value.reason is Reason.PERIOD_ALREADY_REVIEWED


def test_revenue_in_another_currency_is_invalid(accord: Accord) -> None:
    partner_id = accord.partners.register(register_partner(), CTX).aggregate_id
    with pytest.raises(InvalidCommandError) as refused:
        accord.partners.review_performance(
            c.ReviewPartnerPerformance(
                partner_id=partner_id,
                period="2026",
                revenue=Decimal(1),
                currency="EUR",
                new_customers=0,
                satisfaction=Decimal(5),
                complaints=0,
            ),
            CTX,
        )
    assert refused.value.violations[0].field == "currency"


def test_customers_are_linked_once_and_unlinked(accord: Accord) -> None:
    partner_id = accord.partners.register(register_partner(), CTX).aggregate_id
    customer_id = new_customer(accord)

    accord.partners.link_customer(
        c.LinkCustomer(partner_id=partner_id, customer_id=customer_id, role="CO_SELL"), CTX
    )
    assert accord.queries.partner(partner_id).linked_customers == {customer_id: "CO_SELL"}
    with pytest.raises(DomainError) as refused:
        accord.partners.link_customer(
            c.LinkCustomer(partner_id=partner_id, customer_id=customer_id, role="RESALE"), CTX
        )
    assert refused.value.reason is Reason.CUSTOMER_ALREADY_LINKED

    accord.partners.unlink_customer(
        c.UnlinkCustomer(partner_id=partner_id, customer_id=customer_id), CTX
    )
    assert accord.queries.partner(partner_id).linked_customers == {}


def test_linking_an_unknown_customer_is_not_found(accord: Accord) -> None:
    partner_id = accord.partners.register(register_partner(), CTX).aggregate_id
    with pytest.raises(NotFoundError):
        accord.partners.link_customer(
            c.LinkCustomer(partner_id=partner_id, customer_id=uuid4(), role="REFERRAL"), CTX
        )


def test_partner_external_references_are_unique(accord: Accord) -> None:
    accord.partners.register(register_partner(external_ref="P-1"), CTX)
    with pytest.raises(AlreadyExistsError):
        accord.partners.register(register_partner(external_ref="P-1"), CTX)


def test_partner_tier_changes_need_a_new_tier(accord: Accord) -> None:
    partner_id = accord.partners.register(register_partner(), CTX).aggregate_id
    accord.partners.change_tier(
        c.ChangePartnerTier(partner_id=partner_id, to_tier="STRATEGIC", reason="volume"), CTX
    )
    with pytest.raises(DomainError) as refused:
        accord.partners.change_tier(
            c.ChangePartnerTier(partner_id=partner_id, to_tier="STRATEGIC", reason="again"), CTX
        )
    assert refused.value.reason is Reason.TIER_UNCHANGED
