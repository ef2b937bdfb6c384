"""Builders over the wire: the shortest valid requests for the states tests start from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from google.protobuf.timestamp_pb2 import Timestamp

from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2, partner_pb2
from tests.e2e.harness import Client

ALL_CATEGORIES = (
    common_pb2.DATA_CATEGORY_IDENTITY,
    common_pb2.DATA_CATEGORY_CONTACT,
    common_pb2.DATA_CATEGORY_PURCHASE_HISTORY,
)
TIMEOUT = 15


def ts(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment.astimezone(UTC))
    return out


def ago(**delta: float) -> Timestamp:
    return ts(datetime.now(UTC) - timedelta(**delta))


def register_partner(
    client: Client, name: str = "Partner Co"
) -> partner_pb2.RegisterPartnerResponse:
    return client.partners.RegisterPartner(
        partner_pb2.RegisterPartnerRequest(
            external_ref=f"P-{uuid4().hex[:12]}",
            name=name,
            kind=common_pb2.PARTNER_KIND_RESELLER,
            regions=["CN-east"],
            capabilities=["crm"],
        ),
        timeout=TIMEOUT,
    )


def active_partner(client: Client) -> tuple[str, str]:
    """A partner that may receive data: evaluated, confidential agreement, active.

    Returns (partner_id, agreement_id).
    """
    partner_id = register_partner(client).partner_id
    client.partners.EvaluatePartner(
        partner_pb2.EvaluatePartnerRequest(
            partner_id=partner_id, strength=80, reputation=70, business_fit=90, data_protection=85
        ),
        timeout=TIMEOUT,
    )
    agreement = client.partners.SignAgreement(
        partner_pb2.SignAgreementRequest(
            partner_id=partner_id,
            kind=common_pb2.AGREEMENT_KIND_DATA_SHARING,
            effective_from=ago(days=1),
            confidentiality=True,
            permitted_purposes=[common_pb2.PURPOSE_MARKETING, common_pb2.PURPOSE_ANALYTICS],
            permitted_data_categories=ALL_CATEGORIES,
            document_sha256="ab" * 32,
        ),
        timeout=TIMEOUT,
    )
    client.partners.ActivatePartner(
        partner_pb2.ActivatePartnerRequest(partner_id=partner_id), timeout=TIMEOUT
    )
    return partner_id, agreement.agreement_id


def register_customer(
    client: Client, display_name: str = "Wang Fang", **fields: object
) -> customer_pb2.RegisterCustomerResponse:
    values: dict[str, object] = {
        "external_ref": f"C-{uuid4().hex[:12]}",
        "display_name": display_name,
        "kind": common_pb2.CUSTOMER_KIND_ORGANISATION,
        "industry": "manufacturing",
        "region": "CN-east",
        "source": "trade-fair",
        **fields,
    }
    return client.customers.RegisterCustomer(
        customer_pb2.RegisterCustomerRequest(**values),  # type: ignore[arg-type]
        timeout=TIMEOUT,
    )


def purchase(
    client: Client, customer_id: str, amount: str = "1200.00", *, days_ago: float = 1
) -> customer_pb2.RecordInteractionResponse:
    return client.customers.RecordInteraction(
        customer_pb2.RecordInteractionRequest(
            customer_id=customer_id,
            kind=common_pb2.INTERACTION_KIND_PURCHASE,
            channel=common_pb2.CHANNEL_WEB,
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=ago(days=days_ago),
            amount=common_pb2.Money(amount=amount, currency="CNY"),
        ),
        timeout=TIMEOUT,
    )


def grant(
    client: Client,
    customer_id: str,
    partner_id: str,
    purpose: int = common_pb2.PURPOSE_MARKETING,
    categories: tuple[int, ...] = ALL_CATEGORIES,
) -> customer_pb2.GrantConsentResponse:
    return client.customers.GrantConsent(
        customer_pb2.GrantConsentRequest(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose=purpose,  # type: ignore[arg-type]
            data_categories=categories,  # type: ignore[arg-type]
            capture=common_pb2.ConsentCapture(
                method="WEB_FORM", source="portal", evidence_ref="doc-1", notice_version="v3"
            ),
        ),
        timeout=TIMEOUT,
    )


def share(
    client: Client,
    customer_id: str,
    partner_id: str,
    purpose: int = common_pb2.PURPOSE_MARKETING,
    categories: tuple[int, ...] = ALL_CATEGORIES,
) -> customer_pb2.ShareDataResponse:
    return client.customers.ShareData(
        customer_pb2.ShareDataRequest(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose=purpose,  # type: ignore[arg-type]
            data_categories=categories,  # type: ignore[arg-type]
        ),
        timeout=TIMEOUT,
    )
