"""The whole life of a relationship, over the wire, as each team would drive it.

Writers build a partner and a customer and share data; compliance asks what
was allowed and when; the customer withdraws and is erased; an auditor reads
the history and checks that the chain still verifies.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from adapters.grpc.generated.accord.v1 import (
    audit_pb2,
    common_pb2,
    compliance_pb2,
    customer_pb2,
    insight_pb2,
    partner_pb2,
)
from tests.e2e.harness import Served
from tests.e2e.wire import ALL_CATEGORIES, TIMEOUT, ago, ts

MARKETING = common_pb2.PURPOSE_MARKETING


def now() -> Timestamp:
    return ts(datetime.now(UTC))


def test_a_relationship_from_first_contact_to_erasure(served: Served) -> None:
    writer = served.client("writer")
    compliance = served.client("compliance")
    auditor = served.client("auditor")

    # ------------------------------------------------- a partner, made ready
    partner_id = writer.partners.RegisterPartner(
        partner_pb2.RegisterPartnerRequest(
            external_ref="P-EAST-01",
            name="East Reseller Ltd",
            kind=common_pb2.PARTNER_KIND_RESELLER,
            regions=["CN-east"],
        ),
        timeout=TIMEOUT,
    ).partner_id
    writer.partners.EvaluatePartner(
        partner_pb2.EvaluatePartnerRequest(
            partner_id=partner_id, strength=82, reputation=75, business_fit=90, data_protection=88
        ),
        timeout=TIMEOUT,
    )
    agreement_id = writer.partners.SignAgreement(
        partner_pb2.SignAgreementRequest(
            partner_id=partner_id,
            kind=common_pb2.AGREEMENT_KIND_DATA_SHARING,
            effective_from=ago(days=30),
            confidentiality=True,
            permitted_purposes=[MARKETING],
            permitted_data_categories=ALL_CATEGORIES,
            document_sha256="c0" * 32,
        ),
        timeout=TIMEOUT,
    ).agreement_id
    activated = writer.partners.ActivatePartner(
        partner_pb2.ActivatePartnerRequest(partner_id=partner_id, reason="due diligence done"),
        timeout=TIMEOUT,
    )
    assert activated.version == 4

    # ------------------------------------------- a customer and its history
    customer_id = writer.customers.RegisterCustomer(
        customer_pb2.RegisterCustomerRequest(
            external_ref="C-SH-0042",
            display_name="Shanghai Precision Tools",
            kind=common_pb2.CUSTOMER_KIND_ORGANISATION,
            industry="manufacturing",
            region="CN-east",
            size=common_pb2.COMPANY_SIZE_MEDIUM,
            source="trade-fair",
            acquired_via_partner_id=partner_id,
            potential_value=common_pb2.POTENTIAL_VALUE_HIGH,
        ),
        timeout=TIMEOUT,
    ).customer_id
    for name, layer, function in (
        ("Liu Wei", common_pb2.CONTACT_LAYER_DECISION, common_pb2.CONTACT_FUNCTION_FINANCE),
        ("Zhou Min", common_pb2.CONTACT_LAYER_OPERATIONAL, common_pb2.CONTACT_FUNCTION_USER),
    ):
        writer.customers.AddContact(
            customer_pb2.AddContactRequest(
                customer_id=customer_id,
                name=name,
                email=f"{name.split()[0].lower()}@spt.example",
                layer=layer,
                function=function,
                influence=5 if layer == common_pb2.CONTACT_LAYER_DECISION else 2,
            ),
            timeout=TIMEOUT,
        )
    for days, amount in ((200, "18000.00"), (90, "26500.50"), (10, "31000.00")):
        writer.customers.RecordInteraction(
            customer_pb2.RecordInteractionRequest(
                customer_id=customer_id,
                kind=common_pb2.INTERACTION_KIND_PURCHASE,
                channel=common_pb2.CHANNEL_IN_PERSON,
                direction=common_pb2.DIRECTION_INBOUND,
                occurred_at=ago(days=days),
                summary="Order of CNC tooling",
                amount=common_pb2.Money(amount=amount, currency="CNY"),
            ),
            timeout=TIMEOUT,
        )
    survey = writer.customers.RecordInteraction(
        customer_pb2.RecordInteractionRequest(
            customer_id=customer_id,
            kind=common_pb2.INTERACTION_KIND_SURVEY,
            channel=common_pb2.CHANNEL_EMAIL,
            direction=common_pb2.DIRECTION_OUTBOUND,
            occurred_at=ago(days=5),
            satisfaction=9,
        ),
        timeout=TIMEOUT,
    )
    insight = served.client("reader").insight.GetCustomerInsight(
        insight_pb2.GetCustomerInsightRequest(
            customer_id=customer_id, min_position=survey.position
        ),
        timeout=TIMEOUT,
    )
    assert insight.position >= survey.position
    assert insight.lifecycle_stage != insight_pb2.LIFECYCLE_STAGE_UNSPECIFIED

    # ------------------------------------------- consent, share, withdrawal
    consent = writer.customers.GrantConsent(
        customer_pb2.GrantConsentRequest(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose=MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_CONTACT, common_pb2.DATA_CATEGORY_IDENTITY],
            capture=common_pb2.ConsentCapture(
                method="WEB_FORM",
                source="customer-portal",
                evidence_ref="consents/2026/0042",
                notice_version="privacy-2026-01",
            ),
        ),
        timeout=TIMEOUT,
    )
    shared = writer.customers.ShareData(
        customer_pb2.ShareDataRequest(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose=MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
        ),
        timeout=TIMEOUT,
    )
    assert shared.shared
    assert list(shared.relied_on_consent_ids) == [consent.consent_id]
    assert shared.agreement_id == agreement_id
    while_shared = now()

    withdrawn = writer.customers.WithdrawConsent(
        customer_pb2.WithdrawConsentRequest(
            customer_id=customer_id, consent_id=consent.consent_id, channel="LETTER"
        ),
        timeout=TIMEOUT,
    )
    refused = writer.customers.ShareData(
        customer_pb2.ShareDataRequest(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose=MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
        ),
        timeout=TIMEOUT,
    )
    assert not refused.shared
    assert list(refused.reasons) == [common_pb2.SHARE_REASON_CONSENT_WITHDRAWN]

    # ---------------------------------- compliance: what held, and when
    def check(at: Timestamp | None) -> compliance_pb2.CheckConsentResponse:
        request = compliance_pb2.CheckConsentRequest(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose=MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
            min_position=refused.position,
        )
        if at is not None:
            request.at.CopyFrom(at)
        return compliance.compliance.CheckConsent(request, timeout=TIMEOUT)

    then = check(while_shared)
    assert then.allowed
    [evidence] = then.evidence
    assert evidence.consent_id == consent.consent_id
    assert evidence.granted_position == consent.position
    assert evidence.status == common_pb2.CONSENT_STATUS_IN_EFFECT

    today = check(None)
    assert not today.allowed
    assert common_pb2.SHARE_REASON_CONSENT_WITHDRAWN in today.reasons
    assert today.evidence[0].withdrawn_position == withdrawn.position

    shares = compliance.compliance.ListDataShares(
        compliance_pb2.ListDataSharesRequest(
            customer_id=customer_id, min_position=refused.position
        ),
        timeout=TIMEOUT,
    ).shares
    assert [s.shared for s in shares] == [True, False]

    # ------------------------------------------------------------- erasure
    erased = writer.customers.EraseCustomerData(
        customer_pb2.EraseCustomerDataRequest(
            customer_id=customer_id, reason="data subject request #4711"
        ),
        timeout=TIMEOUT,
    )
    state = (
        served.client("admin")
        .customers.GetCustomer(
            customer_pb2.GetCustomerRequest(customer_id=customer_id), timeout=TIMEOUT
        )
        .customer
    )
    assert state.erased
    assert state.display_name == "[erased]"
    assert {c.name for c in state.contacts} == {"[erased]"}
    assert state.purchase_count == 3  # business history survives erasure

    # ------------------------------------------- the auditor's reading
    batches = list(
        auditor.audit.GetAggregateHistory(
            audit_pb2.GetAggregateHistoryRequest(
                aggregate_id=customer_id, min_position=erased.position
            ),
            timeout=TIMEOUT,
        )
    )
    history = [event for batch in batches for event in batch.events]
    assert [e.version for e in history] == list(range(1, erased.version + 1))
    assert [e.type for e in history][:2] == ["customer.registered", "customer.contact_added"]
    assert history[-1].type == "customer.personal_data_erased"
    assert history[-1].position == erased.position
    assert all(e.actor == "test-writer" for e in history)
    registered = json.loads(history[0].payload)
    assert registered["display_name"] == "[erased]"
    assert registered["industry"] == "manufacturing"

    digest = auditor.audit.GetDigest(
        audit_pb2.GetDigestRequest(min_position=erased.position), timeout=TIMEOUT
    )
    assert digest.position >= erased.position
    verified = auditor.audit.VerifyLog(
        audit_pb2.VerifyLogRequest(position=digest.position, hash=digest.hash), timeout=TIMEOUT
    )
    assert verified.ok
    assert verified.hash == digest.hash

    # ------------------------------------------- and the logs kept no secrets
    personal = (
        "Shanghai Precision Tools",
        "Liu Wei",
        "Zhou Min",
        "liu@spt.example",
        "zhou@spt.example",
        "Order of CNC tooling",
    )
    lines = served.log_lines()
    assert any(r["event"] == "rpc" for r in served.log_records())
    leaks = [line for line in lines for secret in personal if secret in line]
    assert not leaks
    assert not any(token in line for line in lines for token in served.tokens.values())
