"""Consent, sharing and the compliance check, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from application import commands as c
from application.errors import DomainError, InvalidCommandError, NotFoundError, Reason
from application.service import Accord
from domain.customer import DataShared, DataShareRefused
from domain.sharing import ShareReason
from domain.values import DataCategory, Purpose
from tests.builders import CTX, active_partner, grant, log_position, new_customer, share
from tests.support import FakeClock

PURPOSE = Purpose.JOINT_SERVICE
CATEGORIES = (DataCategory.CONTACT, DataCategory.IDENTITY)


def test_a_share_under_consent_records_what_it_relied_on(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())
    customer_id = new_customer(accord)
    consent = accord.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    clock.advance(minutes=1)

    outcome = accord.customers.share_data(share(customer_id, partner_id), CTX)

    assert outcome.shared
    assert outcome.reasons == ()
    assert outcome.relied_on_consent_ids == (consent.entity_id,)
    partner = accord.queries.partner(partner_id)
    [agreement_id] = partner.agreements
    assert (outcome.agreement_id, outcome.partner_version) == (agreement_id, partner.version)
    event = accord.log.event_at(customer_id, outcome.result.version)
    assert isinstance(event, DataShared)
    assert event.share_id == outcome.share_id


def test_a_refused_share_is_recorded_with_its_reasons(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())
    customer_id = new_customer(accord)
    before = log_position(accord)

    outcome = accord.customers.share_data(share(customer_id, partner_id), CTX)

    assert not outcome.shared
    assert outcome.reasons == (ShareReason.NO_CONSENT,)
    assert log_position(accord) == before + 1
    assert isinstance(accord.log.event_at(customer_id, outcome.result.version), DataShareRefused)
    assert accord.queries.customer(customer_id).refused_shares == 1


def test_a_suspended_partner_gets_nothing_even_with_consent(
    accord: Accord, clock: FakeClock
) -> None:
    partner_id = active_partner(accord, clock.now())
    customer_id = new_customer(accord)
    accord.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    accord.partners.suspend(c.SuspendPartner(partner_id=partner_id, reason="audit"), CTX)

    outcome = accord.customers.share_data(share(customer_id, partner_id), CTX)

    assert outcome.reasons == (ShareReason.PARTNER_NOT_ACTIVE,)


def test_sharing_with_an_unknown_partner_is_not_found_and_records_nothing(accord: Accord) -> None:
    customer_id = new_customer(accord)
    before = log_position(accord)
    with pytest.raises(NotFoundError):
        accord.customers.share_data(share(customer_id, uuid4()), CTX)
    assert log_position(accord) == before


def test_a_retried_share_returns_the_recorded_outcome(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())
    customer_id = new_customer(accord)
    accord.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    command = share(customer_id, partner_id, request_id="share-1")
    first = accord.customers.share_data(command, CTX)
    position = log_position(accord)

    again = accord.customers.share_data(command, CTX)

    assert again.result.replayed
    assert (again.share_id, again.shared, again.relied_on_consent_ids) == (
        first.share_id,
        first.shared,
        first.relied_on_consent_ids,
    )
    assert log_position(accord) == position


def test_consent_is_never_back_dated(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())
    customer_id = new_customer(accord)
    with pytest.raises(DomainError) as refused:
        accord.customers.grant_consent(
            grant(customer_id, partner_id, clock.now() - timedelta(hours=1)), CTX
        )
    assert refused.value.reason is Reason.CONSENT_BACKDATED


def test_consent_for_an_unknown_partner_is_not_found(accord: Accord, clock: FakeClock) -> None:
    customer_id = new_customer(accord)
    with pytest.raises(NotFoundError):
        accord.customers.grant_consent(grant(customer_id, uuid4(), clock.now()), CTX)


def test_as_recorded_and_as_known_now_differ_after_a_late_withdrawal(
    accord: Accord, clock: FakeClock
) -> None:
    partner_id = active_partner(accord, clock.now())
    customer_id = new_customer(accord)
    granted = accord.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    assert granted.entity_id is not None
    clock.advance(days=1)
    letter_written = clock.now()  # the customer withdraws by letter
    clock.advance(days=1)
    shared = accord.customers.share_data(share(customer_id, partner_id), CTX)  # we did not know
    assert shared.shared
    share_time = clock.now()
    clock.advance(days=2)  # the letter arrives
    withdrawal = accord.customers.withdraw_consent(
        c.WithdrawConsent(
            customer_id=customer_id,
            consent_id=granted.entity_id,
            expressed_at=letter_written,
            channel="LETTER",
        ),
        CTX,
    )

    as_recorded = accord.compliance.check_consent(
        customer_id, partner_id, PURPOSE, CATEGORIES, at=share_time
    )
    as_known_now = accord.compliance.check_consent(
        customer_id, partner_id, PURPOSE, CATEGORIES, at=share_time, as_known_now=True
    )

    assert as_recorded.allowed
    assert not as_known_now.allowed
    assert as_known_now.decision.reasons == (ShareReason.CONSENT_WITHDRAWN,)
    [evidence_then] = as_recorded.evidence
    [evidence_now] = as_known_now.evidence
    assert evidence_then.consent.consent_id == evidence_now.consent.consent_id == granted.entity_id
    assert evidence_then.granted_position == granted.position
    assert evidence_then.withdrawn_position is None
    assert evidence_now.withdrawn_position == withdrawal.position
    assert evidence_now.status_at is ShareReason.CONSENT_WITHDRAWN

    [late] = accord.compliance.late_withdrawal_shares(customer_id)
    assert late.share.share_id == shared.share_id
    assert late.share.position == shared.result.position
    assert (late.consent_id, late.withdrawal_position) == (granted.entity_id, withdrawal.position)

    after_withdrawal = accord.customers.share_data(share(customer_id, partner_id), CTX)
    assert after_withdrawal.reasons == (ShareReason.CONSENT_WITHDRAWN,)


def test_the_check_before_the_grant_finds_no_consent(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())
    customer_id = new_customer(accord)
    before_grant = clock.now()
    clock.advance(hours=1)
    accord.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)

    then = accord.compliance.check_consent(
        customer_id, partner_id, PURPOSE, CATEGORIES, at=before_grant
    )
    now = accord.compliance.check_consent(customer_id, partner_id, PURPOSE, CATEGORIES)

    assert then.decision.reasons == (ShareReason.NO_CONSENT,)
    assert now.allowed
    assert [d.allowed for d in now.decision.categories] == [True, True]


def test_a_withdrawal_cannot_precede_its_grant(accord: Accord, clock: FakeClock) -> None:
    partner_id = active_partner(accord, clock.now())
    customer_id = new_customer(accord)
    granted = accord.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    assert granted.entity_id is not None
    with pytest.raises(DomainError) as refused:
        accord.customers.withdraw_consent(
            c.WithdrawConsent(
                customer_id=customer_id,
                consent_id=granted.entity_id,
                expressed_at=clock.now() - timedelta(days=1),
                channel="PHONE",
            ),
            CTX,
        )
    assert refused.value.reason is Reason.WITHDRAWAL_BEFORE_GRANT


def test_a_consent_expiring_before_now_without_effective_from_is_invalid(
    accord: Accord, clock: FakeClock
) -> None:
    """effective_from defaults to the time of recording, so an earlier expiry is bad input.

    The command checks the order only when both are given; this one reached the
    aggregate's guard (a ValueError: INTERNAL over gRPC).
    """
    partner_id = active_partner(accord, clock.now())
    customer_id = new_customer(accord)
    before = log_position(accord)

    with pytest.raises(InvalidCommandError) as refused:
        accord.customers.grant_consent(
            grant(customer_id, partner_id, clock.now()).model_copy(
                update={"effective_from": None, "expires_at": clock.now() - timedelta(days=1)}
            ),
            CTX,
        )

    assert [v.field for v in refused.value.violations] == ["expires_at"]
    assert log_position(accord) == before
