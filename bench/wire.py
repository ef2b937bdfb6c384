"""Set-up over the wire, and the serialised requests the load generators replay."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.grpc.generated.accord.v1 import (
    common_pb2,
    compliance_pb2,
    compliance_pb2_grpc,
    customer_pb2,
    customer_pb2_grpc,
    partner_pb2,
    partner_pb2_grpc,
)

TIMEOUT = 30
RECORD_INTERACTION = "/accord.v1.CustomerService/RecordInteraction"
INGEST_INTERACTIONS = "/accord.v1.CustomerService/IngestInteractions"
CHECK_CONSENT = "/accord.v1.ComplianceService/CheckConsent"
CATEGORIES = (common_pb2.DATA_CATEGORY_IDENTITY, common_pb2.DATA_CATEGORY_CONTACT)


def ts(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment.astimezone(UTC))
    return out


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.customers = customer_pb2_grpc.CustomerServiceStub(channel)
        self.partners = partner_pb2_grpc.PartnerServiceStub(channel)
        self.compliance = compliance_pb2_grpc.ComplianceServiceStub(channel)


@contextmanager
def stubs(address: str) -> Iterator[Stubs]:
    channel = grpc.insecure_channel(address)
    try:
        yield Stubs(channel)
    finally:
        channel.close()


def register_customer(s: Stubs) -> str:
    response = s.customers.RegisterCustomer(
        customer_pb2.RegisterCustomerRequest(
            external_ref=f"BENCH-{uuid4().hex[:12]}",
            display_name="Hangzhou Lakeside Trading Co.",
            kind=common_pb2.CUSTOMER_KIND_ORGANISATION,
            industry="RETAIL",
            region="EAST",
            source="TRADE_FAIR",
        ),
        timeout=TIMEOUT,
    )
    return response.customer_id


def record_interaction(customer_id: str) -> customer_pb2.RecordInteractionRequest:
    """A purchase, the same as target 1 records in-process (ids chosen by the server)."""
    return customer_pb2.RecordInteractionRequest(
        customer_id=customer_id,
        kind=common_pb2.INTERACTION_KIND_PURCHASE,
        channel=common_pb2.CHANNEL_WEB,
        direction=common_pb2.DIRECTION_INBOUND,
        occurred_at=ts(datetime.now(UTC) - timedelta(hours=1)),
        summary="bought the annual plan after a demo call",
        amount=common_pb2.Money(amount="120.00", currency="CNY"),
    )


def active_partner(s: Stubs) -> str:
    partner_id = s.partners.RegisterPartner(
        partner_pb2.RegisterPartnerRequest(
            external_ref=f"BENCH-P-{uuid4().hex[:12]}",
            name="Westlake Logistics",
            kind=common_pb2.PARTNER_KIND_JOINT_VENTURE,
            regions=["EAST"],
            capabilities=["DELIVERY"],
        ),
        timeout=TIMEOUT,
    ).partner_id
    s.partners.EvaluatePartner(
        partner_pb2.EvaluatePartnerRequest(
            partner_id=partner_id, strength=80, reputation=70, business_fit=90, data_protection=85
        ),
        timeout=TIMEOUT,
    )
    s.partners.SignAgreement(
        partner_pb2.SignAgreementRequest(
            partner_id=partner_id,
            kind=common_pb2.AGREEMENT_KIND_DATA_SHARING,
            effective_from=ts(datetime.now(UTC) - timedelta(days=1)),
            confidentiality=True,
            permitted_purposes=[common_pb2.PURPOSE_MARKETING],
            permitted_data_categories=CATEGORIES,
            document_sha256="ab" * 32,
        ),
        timeout=TIMEOUT,
    )
    s.partners.ActivatePartner(
        partner_pb2.ActivatePartnerRequest(partner_id=partner_id, reason="approved"),
        timeout=TIMEOUT,
    )
    return partner_id


def grant_consent(s: Stubs, customer_id: str, partner_id: str) -> None:
    s.customers.GrantConsent(
        customer_pb2.GrantConsentRequest(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose=common_pb2.PURPOSE_MARKETING,
            data_categories=CATEGORIES,
            capture=common_pb2.ConsentCapture(
                method="WEB_FORM", source="portal", evidence_ref="doc-1", notice_version="v3"
            ),
        ),
        timeout=TIMEOUT,
    )


def check_consent(customer_id: str, partner_id: str) -> compliance_pb2.CheckConsentRequest:
    return compliance_pb2.CheckConsentRequest(
        customer_id=customer_id,
        partner_id=partner_id,
        purpose=common_pb2.PURPOSE_MARKETING,
        data_categories=CATEGORIES,
    )
