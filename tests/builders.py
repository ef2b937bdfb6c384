"""Valid commands with sensible defaults, so each test states only what it is about."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from application import commands as c
from application.context import CallContext
from application.service import Accord

CTX = CallContext(actor="crm-sync", correlation_id="corr-1")
SHA = "a" * 64


def register_customer(**overrides: Any) -> c.RegisterCustomer:
    fields: dict[str, Any] = {
        "external_ref": f"CRM-{uuid4().hex[:8]}",
        "display_name": "Hangzhou Lakeside Trading Co.",
        "kind": "ORGANISATION",
        "industry": "RETAIL",
        "region": "EAST",
        "size": "MEDIUM",
        "source": "TRADE_FAIR",
        "potential_value": "HIGH",
    }
    return c.RegisterCustomer(**{**fields, **overrides})


def register_partner(**overrides: Any) -> c.RegisterPartner:
    fields: dict[str, Any] = {
        "external_ref": f"PRT-{uuid4().hex[:8]}",
        "name": "Westlake Logistics",
        "kind": "JOINT_VENTURE",
        "regions": ["EAST"],
        "capabilities": ["DELIVERY"],
    }
    return c.RegisterPartner(**{**fields, **overrides})


def purchase(
    customer_id: UUID, amount: str, occurred_at: datetime, **overrides: Any
) -> c.RecordInteraction:
    fields: dict[str, Any] = {
        "customer_id": customer_id,
        "kind": "PURCHASE",
        "channel": "WEB",
        "direction": "INBOUND",
        "occurred_at": occurred_at,
        "amount": Decimal(amount),
        "currency": "CNY",
    }
    return c.RecordInteraction(**{**fields, **overrides})


def new_customer(app: Accord, **overrides: Any) -> UUID:
    return app.customers.register(register_customer(**overrides), CTX).aggregate_id


def active_partner(
    app: Accord,
    now: datetime,
    *,
    purposes: Sequence[str] = ("JOINT_SERVICE",),
    categories: Sequence[str] = ("IDENTITY", "CONTACT"),
) -> UUID:
    """A partner that may receive data: evaluated, under a confidential agreement, active."""
    partner_id = app.partners.register(register_partner(), CTX).aggregate_id
    app.partners.evaluate(
        c.EvaluatePartner(
            partner_id=partner_id, strength=80, reputation=75, business_fit=70, data_protection=90
        ),
        CTX,
    )
    app.partners.sign_agreement(
        c.SignAgreement(
            partner_id=partner_id,
            kind="COOPERATION",
            effective_from=now - timedelta(days=1),
            confidentiality=True,
            permitted_purposes=list(purposes),
            permitted_data_categories=list(categories),
            document_sha256=SHA,
        ),
        CTX,
    )
    app.partners.activate(c.ActivatePartner(partner_id=partner_id, reason="approved"), CTX)
    return partner_id


def log_position(app: Accord) -> int:
    """The log's last position (0 when empty): a failed command must not move it."""
    return app.log.recorder.max_notification_id() or 0


CAPTURE = {
    "method": "WEB_FORM",
    "source": "customer-portal",
    "evidence_ref": "evidence/2026/0001",
    "notice_version": "privacy-2026-01",
}


def grant(
    customer_id: UUID, partner_id: UUID, effective_from: datetime, **overrides: Any
) -> c.GrantConsent:
    fields: dict[str, Any] = {
        "customer_id": customer_id,
        "partner_id": partner_id,
        "purpose": "JOINT_SERVICE",
        "data_categories": ["IDENTITY", "CONTACT"],
        "effective_from": effective_from,
        "capture": CAPTURE,
    }
    return c.GrantConsent(**{**fields, **overrides})


def share(customer_id: UUID, partner_id: UUID, **overrides: Any) -> c.ShareData:
    fields: dict[str, Any] = {
        "customer_id": customer_id,
        "partner_id": partner_id,
        "purpose": "JOINT_SERVICE",
        "data_categories": ["IDENTITY", "CONTACT"],
    }
    return c.ShareData(**{**fields, **overrides})


def bulk_purchases(app: Accord, customers: int, per_customer: int, now: datetime) -> list[UUID]:
    """A long history quickly: each customer's purchases decided in memory, saved in one go."""
    from domain.aggregate import EventMeta
    from domain.customer import Customer
    from domain.values import Channel, Direction, InteractionKind

    ids = []
    meta = EventMeta(actor="loader", request_id="bulk", correlation_id="bulk", recorded_at=now)
    for _ in range(customers):
        customer_id = new_customer(app)
        customer = app.executor.load(Customer, customer_id)
        for day in range(per_customer):
            customer.record_interaction(
                uuid4(),
                kind=InteractionKind.PURCHASE,
                channel=Channel.WEB,
                direction=Direction.INBOUND,
                occurred_at=now - timedelta(days=day * 3),
                summary="",
                amount=Decimal(day + 1),
                currency="CNY",
                satisfaction=None,
                partner_id=None,
                contact_ids=(),
                meta=meta,
            )
        app.log.save(customer)
        ids.append(customer_id)
    return ids
