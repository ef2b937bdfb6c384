"""ComplianceService over the wire: consent checks with evidence, and the registry's lists.

CheckConsent answers from the aggregates, so its evidence must point at the
very log positions the writes returned. The List* RPCs answer from the
consent registry read model; every read here passes the last write's
position as ``min_position``, which is what makes asserting on it right
away (without polling) legitimate.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import grpc
import pytest

from adapters.grpc.generated.accord.v1 import common_pb2, compliance_pb2, customer_pb2
from tests.e2e.harness import Client, Served, field_violations, pages, rpc_error
from tests.e2e.wire import (
    ALL_CATEGORIES,
    TIMEOUT,
    active_partner,
    grant,
    register_customer,
    share,
    ts,
)

# googleapis-common-protos is untyped for mypy (see adapters.grpc.errors).
error_details_pb2: Any = importlib.import_module("google.rpc.error_details_pb2")

MARKETING = common_pb2.PURPOSE_MARKETING
ANALYTICS = common_pb2.PURPOSE_ANALYTICS
IDENTITY = common_pb2.DATA_CATEGORY_IDENTITY
CONTACT = common_pb2.DATA_CATEGORY_CONTACT


@pytest.fixture(scope="module")
def writer(served: Served) -> Client:
    return served.client("writer")


@pytest.fixture(scope="module")
def compliance(served: Served) -> Client:
    return served.client("compliance")


@pytest.fixture(scope="module")
def partner(writer: Client) -> str:
    """An active partner whose agreement permits MARKETING and ANALYTICS of ALL_CATEGORIES."""
    return active_partner(writer)[0]


def withdraw(
    client: Client, customer_id: str, consent_id: str, expressed_at: datetime | None = None
) -> customer_pb2.WithdrawConsentResponse:
    return client.customers.WithdrawConsent(
        customer_pb2.WithdrawConsentRequest(
            customer_id=customer_id,
            consent_id=consent_id,
            channel="LETTER",
            expressed_at=ts(expressed_at) if expressed_at is not None else None,
        ),
        timeout=TIMEOUT,
    )


def check(client: Client, **fields: Any) -> compliance_pb2.CheckConsentResponse:
    values: dict[str, Any] = {"purpose": MARKETING, "data_categories": [IDENTITY], **fields}
    return client.compliance.CheckConsent(
        compliance_pb2.CheckConsentRequest(**values), timeout=TIMEOUT
    )


# ------------------------------------------------------------ CheckConsent


def test_a_granted_consent_allows_the_share_with_the_grant_as_evidence(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    granted = grant(writer, customer_id, partner)

    answer = check(
        compliance,
        customer_id=customer_id,
        partner_id=partner,
        data_categories=[IDENTITY, CONTACT, IDENTITY],
        min_position=granted.position,
    )

    assert answer.allowed
    assert list(answer.reasons) == []
    assert [d.category for d in answer.category_decisions] == [IDENTITY, CONTACT]
    assert all(
        d.allowed and list(d.consent_ids) == [granted.consent_id] for d in answer.category_decisions
    )
    [evidence] = answer.evidence
    assert evidence.consent_id == granted.consent_id
    assert evidence.granted_position == granted.position
    assert not evidence.HasField("withdrawn_position")
    assert evidence.status == common_pb2.CONSENT_STATUS_IN_EFFECT
    assert answer.agreement_id
    assert answer.HasField("partner_version")
    assert answer.position >= granted.position
    assert not answer.as_known_now


def test_a_withdrawn_consent_refuses_with_the_reason_and_the_withdrawal_position(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    granted = grant(writer, customer_id, partner)
    withdrawn = withdraw(writer, customer_id, granted.consent_id)

    answer = check(compliance, customer_id=customer_id, partner_id=partner)

    assert not answer.allowed
    assert list(answer.reasons) == [common_pb2.SHARE_REASON_CONSENT_WITHDRAWN]
    [decision] = answer.category_decisions
    assert not decision.allowed
    assert list(decision.reasons) == [common_pb2.SHARE_REASON_CONSENT_WITHDRAWN]
    assert list(decision.consent_ids) == [granted.consent_id]
    [evidence] = answer.evidence
    assert evidence.granted_position == granted.position
    assert evidence.withdrawn_position == withdrawn.position
    assert evidence.status == common_pb2.CONSENT_STATUS_WITHDRAWN


def test_no_consent_for_the_purpose_is_refused_with_no_consent_and_no_evidence(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    grant(writer, customer_id, partner, purpose=MARKETING)

    answer = check(compliance, customer_id=customer_id, partner_id=partner, purpose=ANALYTICS)

    assert not answer.allowed
    assert list(answer.reasons) == [common_pb2.SHARE_REASON_NO_CONSENT]
    assert list(answer.evidence) == []


def test_a_late_withdrawal_splits_as_recorded_from_as_known_now_and_puts_the_share_under_review(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    granted = grant(writer, customer_id, partner)
    expressed = datetime.now(UTC)  # the customer's letter is dated before the share
    shared = share(writer, customer_id, partner)
    assert shared.shared
    after_share = datetime.now(UTC)
    withdrawn = withdraw(writer, customer_id, granted.consent_id, expressed_at=expressed)

    as_recorded = check(
        compliance,
        customer_id=customer_id,
        partner_id=partner,
        at=ts(after_share),
        min_position=withdrawn.position,
    )
    as_known_now = check(
        compliance,
        customer_id=customer_id,
        partner_id=partner,
        at=ts(after_share),
        as_known_now=True,
    )

    assert as_recorded.allowed, "what Accord knew, and enforced, when it shared"
    assert not as_recorded.evidence[0].HasField("withdrawn_position")
    assert not as_known_now.allowed
    assert as_known_now.as_known_now
    assert list(as_known_now.reasons) == [common_pb2.SHARE_REASON_CONSENT_WITHDRAWN]
    assert as_known_now.evidence[0].withdrawn_position == withdrawn.position
    assert as_recorded.at == as_known_now.at == ts(after_share)

    review = compliance.compliance.ListLateWithdrawalShares(
        compliance_pb2.ListLateWithdrawalSharesRequest(
            customer_id=customer_id, min_position=withdrawn.position
        ),
        timeout=TIMEOUT,
    )
    [late] = review.late_shares
    assert late.share.share_id == shared.share_id
    assert late.share.position == shared.position
    assert list(late.share.relied_on_consent_ids) == [granted.consent_id]
    assert late.consent_id == granted.consent_id
    assert late.withdrawal_position == withdrawn.position
    assert late.expressed_at == ts(expressed)
    assert late.withdrawal_recorded_at.ToDatetime(tzinfo=UTC) >= after_share
    assert review.position >= withdrawn.position
    assert review.next_page_token == ""


def test_a_withdrawal_recorded_on_time_leaves_nothing_to_review(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    granted = grant(writer, customer_id, partner)
    share(writer, customer_id, partner)
    withdrawn = withdraw(writer, customer_id, granted.consent_id)

    review = compliance.compliance.ListLateWithdrawalShares(
        compliance_pb2.ListLateWithdrawalSharesRequest(
            customer_id=customer_id, min_position=withdrawn.position
        ),
        timeout=TIMEOUT,
    )

    assert list(review.late_shares) == []


def test_late_withdrawal_shares_page_across_customers(
    writer: Client, compliance: Client, partner: str
) -> None:
    shares: list[str] = []
    last = 0
    for _ in range(3):
        customer_id = register_customer(writer).customer_id
        granted = grant(writer, customer_id, partner)
        expressed = datetime.now(UTC)
        shares.append(share(writer, customer_id, partner).share_id)
        last = withdraw(writer, customer_id, granted.consent_id, expressed_at=expressed).position

    listed = [
        late.share.share_id
        for page in pages(
            lambda token: compliance.compliance.ListLateWithdrawalShares(
                compliance_pb2.ListLateWithdrawalSharesRequest(
                    page_size=1, page_token=token, min_position=last
                ),
                timeout=TIMEOUT,
            )
        )
        for late in page.late_shares
    ]

    mine = [s for s in listed if s in shares]
    assert mine == shares, "each once, in log order of the shares"


def test_check_consent_names_the_bad_field(compliance: Client, partner: str) -> None:
    customer_id = str(uuid4())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"partner_id": partner}, "customer_id"),
        ({"customer_id": "not-a-uuid", "partner_id": partner}, "customer_id"),
        ({"customer_id": customer_id}, "partner_id"),
        ({"customer_id": customer_id, "partner_id": partner, "purpose": 0}, "purpose"),
        ({"customer_id": customer_id, "partner_id": partner, "purpose": 99}, "purpose"),
        (
            {"customer_id": customer_id, "partner_id": partner, "data_categories": []},
            "data_categories",
        ),
        (
            {"customer_id": customer_id, "partner_id": partner, "data_categories": [IDENTITY, 0]},
            "data_categories",
        ),
        (
            {"customer_id": customer_id, "partner_id": partner, "min_position": -1},
            "min_position",
        ),
    ]
    for fields, field in cases:
        error = rpc_error(lambda fields=fields: check(compliance, **fields))  # type: ignore[misc]
        assert field in field_violations(error), (fields, error.details())


def test_check_consent_for_an_unknown_customer_or_partner_is_not_found(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id

    unknown_customer = rpc_error(
        lambda: check(compliance, customer_id=str(uuid4()), partner_id=partner)
    )
    unknown_partner = rpc_error(
        lambda: check(compliance, customer_id=customer_id, partner_id=str(uuid4()))
    )

    assert unknown_customer.code() == grpc.StatusCode.NOT_FOUND
    assert unknown_partner.code() == grpc.StatusCode.NOT_FOUND


def test_only_compliance_callers_may_ask(served: Served, partner: str) -> None:
    reader = served.client("reader")

    error = rpc_error(lambda: check(reader, customer_id=str(uuid4()), partner_id=partner))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


# ------------------------------------------------------------ ListConsents


def list_consents(client: Client, **fields: Any) -> compliance_pb2.ListConsentsResponse:
    return client.compliance.ListConsents(
        compliance_pb2.ListConsentsRequest(**fields), timeout=TIMEOUT
    )


def test_list_consents_by_customer_by_partner_and_both_with_status(
    writer: Client, compliance: Client, partner: str
) -> None:
    other_partner = active_partner(writer)[0]
    customer_id = register_customer(writer).customer_id
    kept = grant(writer, customer_id, partner)
    dropped = grant(writer, customer_id, other_partner, purpose=ANALYTICS)
    withdrawn = withdraw(writer, customer_id, dropped.consent_id)
    last = withdrawn.position

    by_customer = list_consents(compliance, customer_id=customer_id, min_position=last)
    by_partner = list_consents(compliance, partner_id=other_partner, min_position=last)
    both = list_consents(compliance, customer_id=customer_id, partner_id=partner, min_position=last)
    in_effect = list_consents(
        compliance,
        customer_id=customer_id,
        status=common_pb2.CONSENT_STATUS_IN_EFFECT,
        min_position=last,
    )

    assert [c.consent_id for c in by_customer.consents] == [kept.consent_id, dropped.consent_id]
    first, second = by_customer.consents
    assert first.status == common_pb2.CONSENT_STATUS_IN_EFFECT
    assert first.granted_position == kept.position
    assert first.customer_id == customer_id
    assert first.partner_id == partner
    assert first.purpose == MARKETING
    # "Distinct, sorted" does not say by name or by number: the set is what is checked here.
    assert set(first.data_categories) == set(ALL_CATEGORIES)
    assert len(first.data_categories) == len(ALL_CATEGORIES)
    assert first.capture.evidence_ref == "doc-1"
    assert not first.HasField("withdrawal_position")
    assert second.status == common_pb2.CONSENT_STATUS_WITHDRAWN
    assert second.withdrawal_position == withdrawn.position
    assert second.withdrawal_channel == "LETTER"
    assert by_customer.position >= last
    assert [c.consent_id for c in by_partner.consents] == [dropped.consent_id]
    assert [c.consent_id for c in both.consents] == [kept.consent_id]
    assert [c.consent_id for c in in_effect.consents] == [kept.consent_id]


def test_list_consents_judges_statuses_at_the_moment_asked(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    before = datetime.now(UTC) - timedelta(hours=1)
    granted = grant(writer, customer_id, partner)

    then = list_consents(
        compliance, customer_id=customer_id, at=ts(before), min_position=granted.position
    )

    [consent] = then.consents
    assert consent.status == common_pb2.CONSENT_STATUS_NOT_YET_IN_EFFECT


def test_list_consents_expiring_within_days_soonest_first(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    now = datetime.now(UTC)

    def expiring(days: float) -> str:
        return writer.customers.GrantConsent(
            customer_pb2.GrantConsentRequest(
                customer_id=customer_id,
                partner_id=partner,
                purpose=MARKETING,
                data_categories=[IDENTITY],
                expires_at=ts(now + timedelta(days=days)),
                capture=common_pb2.ConsentCapture(
                    method="WEB_FORM", source="portal", evidence_ref="doc-2", notice_version="v3"
                ),
            ),
            timeout=TIMEOUT,
        ).consent_id

    later = expiring(20)
    sooner = expiring(5)
    beyond = expiring(90)
    last = grant(writer, customer_id, partner).position  # never expires

    soon = list_consents(
        compliance, customer_id=customer_id, expiring_within_days=30, min_position=last
    )
    across_customers = [
        c.consent_id
        for page in pages(
            lambda token: list_consents(
                compliance, expiring_within_days=30, page_token=token, min_position=last
            )
        )
        for c in page.consents
    ]

    assert [c.consent_id for c in soon.consents] == [sooner, later]
    assert [c for c in across_customers if c in (sooner, later, beyond)] == [sooner, later]


def test_list_consents_pages_in_grant_order_and_pins_the_other_parameters(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    granted = [
        grant(writer, customer_id, partner, purpose=purpose)
        for purpose in (
            common_pb2.PURPOSE_MARKETING,
            common_pb2.PURPOSE_JOINT_SERVICE,
            common_pb2.PURPOSE_SALES_COOPERATION,
            common_pb2.PURPOSE_ANALYTICS,
            common_pb2.PURPOSE_SUPPORT,
        )
    ]
    last = granted[-1].position

    responses = list(
        pages(
            lambda token: list_consents(
                compliance,
                customer_id=customer_id,
                page_size=2,
                page_token=token,
                min_position=last,
            )
        )
    )

    assert [len(r.consents) for r in responses] == [2, 2, 1]
    assert [c.consent_id for r in responses for c in r.consents] == [g.consent_id for g in granted]
    token = responses[0].next_page_token
    changed = rpc_error(
        lambda: list_consents(compliance, partner_id=partner, page_size=2, page_token=token)
    )
    assert "page_token" in field_violations(changed)
    resized = list_consents(compliance, customer_id=customer_id, page_size=3, page_token=token)
    assert [c.consent_id for c in resized.consents] == [g.consent_id for g in granted[2:]]


def test_list_consents_names_the_bad_field(compliance: Client) -> None:
    customer_id = str(uuid4())
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "customer_id"),
        ({"customer_id": "nope"}, "customer_id"),
        ({"partner_id": "nope"}, "partner_id"),
        ({"customer_id": customer_id, "page_size": -1}, "page_size"),
        ({"customer_id": customer_id, "page_token": "garbage"}, "page_token"),
        ({"customer_id": customer_id, "status": 42}, "status"),
        ({"expiring_within_days": -1}, "expiring_within_days"),
        ({"expiring_within_days": 2**31 - 1}, "expiring_within_days"),
        ({"customer_id": customer_id, "min_position": -5}, "min_position"),
    ]
    for fields, field in cases:
        error = rpc_error(lambda fields=fields: list_consents(compliance, **fields))  # type: ignore[misc]
        assert field in field_violations(error), (fields, error.details())
    not_a_time = compliance_pb2.ListConsentsRequest(customer_id=customer_id)
    not_a_time.at.nanos = -1  # outside Timestamp's range: bad input, not an internal error
    error = rpc_error(lambda: compliance.compliance.ListConsents(not_a_time, timeout=TIMEOUT))
    assert "at" in field_violations(error)


# ---------------------------------------------------------- ListDataShares


def list_shares(client: Client, **fields: Any) -> compliance_pb2.ListDataSharesResponse:
    return client.compliance.ListDataShares(
        compliance_pb2.ListDataSharesRequest(**fields), timeout=TIMEOUT
    )


def test_list_data_shares_holds_shares_and_refusals_in_log_order_and_pages(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    granted = grant(writer, customer_id, partner)
    outcomes = [
        share(writer, customer_id, partner),
        share(writer, customer_id, partner, purpose=ANALYTICS),  # no consent: refused
        share(writer, customer_id, partner),
        share(writer, customer_id, partner, purpose=ANALYTICS),
        share(writer, customer_id, partner),
    ]
    assert [o.shared for o in outcomes] == [True, False, True, False, True]
    last = outcomes[-1].position

    everything = list(
        pages(
            lambda token: list_shares(
                compliance,
                customer_id=customer_id,
                page_size=2,
                page_token=token,
                min_position=last,
            )
        )
    )
    shared_only = list_shares(
        compliance, customer_id=customer_id, shared_only=True, min_position=last
    )
    to_partner = [
        s.share_id
        for page in pages(
            lambda token: list_shares(
                compliance, partner_id=partner, page_size=50, page_token=token, min_position=last
            )
        )
        for s in page.shares
    ]

    assert [len(p.shares) for p in everything] == [2, 2, 1]
    listed = [s for p in everything for s in p.shares]
    assert [s.share_id for s in listed] == [o.share_id for o in outcomes]
    assert [s.position for s in listed] == [o.position for o in outcomes]
    done, refused = listed[0], listed[1]
    assert done.shared
    assert list(done.relied_on_consent_ids) == [granted.consent_id]
    assert done.agreement_id == outcomes[0].agreement_id
    assert done.partner_version == outcomes[0].partner_version
    assert done.customer_id == customer_id
    assert done.partner_id == partner
    assert set(done.data_categories) == set(ALL_CATEGORIES)
    assert list(done.reasons) == []
    assert not refused.shared
    assert list(refused.reasons) == [common_pb2.SHARE_REASON_NO_CONSENT]
    assert list(refused.relied_on_consent_ids) == []
    assert refused.agreement_id == ""
    assert refused.purpose == ANALYTICS
    assert [s.share_id for s in shared_only.shares] == [o.share_id for o in outcomes if o.shared]
    assert [s for s in to_partner if s in {o.share_id for o in outcomes}] == [
        o.share_id for o in outcomes
    ]
    token = everything[0].next_page_token
    changed = rpc_error(
        lambda: list_shares(
            compliance, customer_id=customer_id, shared_only=True, page_size=2, page_token=token
        )
    )
    assert "page_token" in field_violations(changed)


def test_list_data_shares_of_a_customer_and_partner_together(
    writer: Client, compliance: Client, partner: str
) -> None:
    other_partner = active_partner(writer)[0]
    customer_id = register_customer(writer).customer_id
    grant(writer, customer_id, partner)
    grant(writer, customer_id, other_partner)
    mine = share(writer, customer_id, partner)
    last = share(writer, customer_id, other_partner).position

    both = list_shares(compliance, customer_id=customer_id, partner_id=partner, min_position=last)

    assert [s.share_id for s in both.shares] == [mine.share_id]


def test_a_read_waits_for_its_min_position_and_gives_up_past_the_deadline(
    writer: Client, compliance: Client, partner: str
) -> None:
    customer_id = register_customer(writer).customer_id
    grant(writer, customer_id, partner)
    written = share(writer, customer_id, partner)

    seen = list_shares(compliance, customer_id=customer_id, min_position=written.position)
    never = rpc_error(
        lambda: compliance.compliance.ListDataShares(
            compliance_pb2.ListDataSharesRequest(
                customer_id=customer_id, min_position=written.position + 10**9
            ),
            timeout=1,
        )
    )

    assert [s.share_id for s in seen.shares] == [written.share_id]
    assert seen.position >= written.position
    assert never.code() == grpc.StatusCode.UNAVAILABLE


def test_list_data_shares_and_late_withdrawals_name_the_bad_field(compliance: Client) -> None:
    shares_cases: list[tuple[dict[str, Any], str]] = [
        ({}, "customer_id"),
        ({"partner_id": "x"}, "partner_id"),
        ({"customer_id": str(uuid4()), "page_size": -2}, "page_size"),
        ({"customer_id": str(uuid4()), "page_token": "!!"}, "page_token"),
    ]
    for fields, field in shares_cases:
        error = rpc_error(lambda fields=fields: list_shares(compliance, **fields))  # type: ignore[misc]
        assert field in field_violations(error), (fields, error.details())
    for late_fields, field in [
        ({"customer_id": "x"}, "customer_id"),
        ({"page_size": -1}, "page_size"),
    ]:
        error = rpc_error(
            lambda f=late_fields: compliance.compliance.ListLateWithdrawalShares(  # type: ignore[misc]
                compliance_pb2.ListLateWithdrawalSharesRequest(**f), timeout=TIMEOUT
            )
        )
        assert field in field_violations(error), (late_fields, error.details())
