"""Aggregate state -> the Customer and Partner messages (GetCustomer, GetPartner, GetAggregateAt).

Personal fields arrive here already opened (or ``[erased]``); a caller whose
roles do not include personal data gets them as ``[redacted]`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2, partner_pb2
from adapters.grpc.translate import enum_out, money_out, timestamp_out
from domain.customer import Contact, Customer
from domain.partner import Partner
from domain.personal import ERASED
from domain.sharing import Consent, ShareReason

REDACTED = "[redacted]"

_CONSENT_STATUS = {
    None: common_pb2.CONSENT_STATUS_IN_EFFECT,
    ShareReason.NO_CONSENT: common_pb2.CONSENT_STATUS_NOT_YET_IN_EFFECT,
    ShareReason.CONSENT_EXPIRED: common_pb2.CONSENT_STATUS_EXPIRED,
    ShareReason.CONSENT_WITHDRAWN: common_pb2.CONSENT_STATUS_WITHDRAWN,
}


def _personal(value: str, show: bool) -> str:
    """Erased reads as erased for everyone; otherwise shown only to roles that see it."""
    return value if show or value == ERASED else REDACTED


def _layer_rank(contact: Contact) -> tuple[int, int, int, str]:
    return (
        enum_out(common_pb2.ContactLayer, contact.layer),
        enum_out(common_pb2.ContactFunction, contact.function),
        -contact.influence,
        str(contact.contact_id),
    )


def contact_message(contact: Contact, show: bool) -> customer_pb2.Contact:
    message = customer_pb2.Contact(
        contact_id=str(contact.contact_id),
        name=_personal(contact.name, show),
        layer=enum_out(common_pb2.ContactLayer, contact.layer),
        function=enum_out(common_pb2.ContactFunction, contact.function),
        influence=contact.influence,
        added_at=timestamp_out(contact.added_on),
    )
    if contact.email is not None:
        message.email = _personal(contact.email, show)
    if contact.phone is not None:
        message.phone = _personal(contact.phone, show)
    if contact.title is not None:
        message.title = contact.title
    return message


def consent_message(
    consent: Consent, customer_id: str, positions: Mapping[int, int], at: datetime
) -> common_pb2.Consent:
    message = common_pb2.Consent(
        consent_id=str(consent.consent_id),
        customer_id=customer_id,
        partner_id=str(consent.partner_id),
        purpose=enum_out(common_pb2.Purpose, consent.purpose),
        data_categories=[enum_out(common_pb2.DataCategory, c) for c in consent.data_categories],
        effective_from=timestamp_out(consent.effective_from),
        expires_at=timestamp_out(consent.expires_at),
        capture=common_pb2.ConsentCapture(**consent.capture.model_dump()),
        granted_at=timestamp_out(consent.granted_at),
        granted_position=positions.get(consent.granted_version, 0),
        withdrawn_at=timestamp_out(consent.withdrawn_at),
        withdrawal_recorded_at=timestamp_out(consent.withdrawal_recorded_at),
        withdrawal_channel=consent.withdrawal_channel or "",
        status=_CONSENT_STATUS[consent.status(at)],
    )
    if consent.withdrawal_version is not None and consent.withdrawal_version in positions:
        message.withdrawal_position = positions[consent.withdrawal_version]
    return message


def consent_status(consent: Consent, at: datetime) -> int:
    return _CONSENT_STATUS[consent.status(at)]


def customer_message(
    customer: Customer,
    *,
    positions: Mapping[int, int],
    at: datetime,
    base_currency: str,
    show_personal: bool,
) -> customer_pb2.Customer:
    """``at``: the moment consent statuses are judged (as_of_time, or now)."""
    cid = str(customer.id)
    return customer_pb2.Customer(
        customer_id=cid,
        version=customer.version,
        external_ref=customer.external_ref,
        display_name=_personal(customer.display_name, show_personal),
        kind=enum_out(common_pb2.CustomerKind, customer.kind),
        industry=customer.industry,
        region=customer.region,
        size=enum_out(common_pb2.CompanySize, customer.size),
        source=customer.source,
        acquired_via_partner_id=str(customer.acquired_via_partner_id or ""),
        potential_value=enum_out(common_pb2.PotentialValue, customer.potential_value),
        tier=enum_out(common_pb2.Tier, customer.tier),
        tier_effective_from=timestamp_out(customer.tier_effective_from or customer.created_on),
        contacts=[
            contact_message(c, show_personal)
            for c in sorted(customer.contacts.values(), key=_layer_rank)
        ],
        interaction_count=customer.interaction_count,
        purchase_count=customer.purchase_count,
        refund_count=customer.refund_count,
        purchased_total=money_out(customer.purchased_total, base_currency),
        refunded_total=money_out(customer.refunded_total, base_currency),
        first_purchase_at=timestamp_out(customer.first_purchase_at),
        last_purchase_at=timestamp_out(customer.last_purchase_at),
        last_interaction_at=timestamp_out(customer.last_interaction_at),
        consents=[
            consent_message(c, cid, positions, at)
            for c in sorted(customer.consents.values(), key=lambda c: c.granted_version)
        ],
        share_count=customer.shares,
        refused_share_count=customer.refused_shares,
        erased=customer.erased,
        erased_at=timestamp_out(customer.erased_at),
    )


def partner_message(partner: Partner, *, at: datetime, base_currency: str) -> partner_pb2.Partner:
    message = partner_pb2.Partner(
        partner_id=str(partner.id),
        version=partner.version,
        external_ref=partner.external_ref,
        name=partner.name,
        kind=enum_out(common_pb2.PartnerKind, partner.kind),
        regions=list(partner.regions),
        capabilities=list(partner.capabilities),
        status=enum_out(common_pb2.PartnerStatus, partner.status),
        status_reason=partner.status_reason,
        tier=enum_out(common_pb2.Tier, partner.tier),
        agreements=[
            partner_pb2.Agreement(
                agreement_id=str(a.agreement_id),
                kind=enum_out(common_pb2.AgreementKind, a.kind),
                effective_from=timestamp_out(a.effective_from),
                effective_to=timestamp_out(a.effective_to),
                confidentiality=a.confidentiality,
                permitted_purposes=[enum_out(common_pb2.Purpose, p) for p in a.permitted_purposes],
                permitted_data_categories=[
                    enum_out(common_pb2.DataCategory, c) for c in a.permitted_data_categories
                ],
                document_sha256=a.document_sha256,
                signed_at=timestamp_out(a.signed_at),
                terminated_at=timestamp_out(a.terminated_at),
                termination_reason=a.termination_reason or "",
                in_effect=a.in_effect(at),
            )
            for a in sorted(
                partner.agreements.values(), key=lambda a: (a.signed_at, a.agreement_id)
            )
        ],
        reviews=[
            partner_pb2.PerformanceReview(
                period=r.period,
                revenue=money_out(r.revenue, base_currency),
                new_customers=r.new_customers,
                satisfaction=format(r.satisfaction, "f"),
                complaints=r.complaints,
                reviewed_at=timestamp_out(r.reviewed_at),
            )
            for _, r in sorted(partner.reviews.items())
        ],
        linked_customers=[
            partner_pb2.LinkedCustomer(
                customer_id=str(cid), role=enum_out(common_pb2.LinkRole, role)
            )
            for cid, role in sorted(partner.linked_customers.items(), key=lambda i: str(i[0]))
        ],
    )
    if partner.evaluation is not None:
        e = partner.evaluation
        message.evaluation.CopyFrom(
            partner_pb2.PartnerEvaluation(
                strength=e.strength,
                reputation=e.reputation,
                business_fit=e.business_fit,
                data_protection=e.data_protection,
                notes=e.notes,
                evaluated_at=timestamp_out(e.evaluated_at),
            )
        )
    return message
