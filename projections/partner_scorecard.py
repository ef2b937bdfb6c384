"""Partner scorecard (DESIGN §5): standing, agreements, evaluation, performance, linked
customers, data received, and one weighted score to rank partners by.

One document per partner (kind ``partner``, key partner_id, group = status, so
"all suspended partners" is one group scan). Partner names are business names,
not personal data; customers appear only by id, so nothing here needs wiping
on erasure.

Shares are counted from the customer events ``DataShared`` and
``DataShareRefused``, which name the partner: how much data a partner actually
receives, and how often it was refused (with the reasons), belongs on its
scorecard. A share naming a partner this view has no document for is ignored.

Weighted score (``weighted_score``)::

    score = 0.25 * strength + 0.20 * reputation + 0.20 * business_fit
          + 0.15 * data_protection + 0.20 * performance

- strength, reputation, business_fit, data_protection (0..100 each): the
  latest evaluation. The selection criteria of the practice (strength,
  reputation, fit) weigh most; data protection is weighed because partners
  receive customer data.
- performance (0..100), from the latest performance review:
  ``satisfaction * 10 - 5 * complaints``, clamped to [0, 100]; 50 (neutral)
  while there is no review yet, so a new partner is neither rewarded nor
  punished for having no track record.
- None until the partner has been evaluated: an unassessed partner has no
  score rather than a misleading one (and ranks last).
- The weights sum to 1, so the score is on the same 0..100 scale. It is a
  ``Decimal`` rounded half-up to one decimal place (76.65 -> 76.7).

"Latest review" follows the periods, not the order reviews were recorded (a
late-filed Q1 review does not displace December's). Periods of different
lengths are ordered by their end, then by their start: 2025-12 comes after
2025-Q4, which comes after 2025 (all end on 31 December; the narrowest, most
recent window wins), and 2025-12 comes after 2025-Q1, which a plain string sort
would get backwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import ClassVar

from eventsourcing.persistence import Notification

from domain.customer import DataShared, DataShareRefused
from domain.events import DomainEvent
from domain.partner import (
    Agreement,
    AgreementSigned,
    AgreementTerminated,
    CustomerLinked,
    CustomerUnlinked,
    PartnerActivated,
    PartnerEvaluated,
    PartnerPerformanceReviewed,
    PartnerRegistered,
    PartnerReinstated,
    PartnerSuspended,
    PartnerTerminated,
    PartnerTierChanged,
)
from projections.store import Doc, DocReader, Docs

NAME = "partner_scorecard"
KIND = "partner"

WEIGHTS: dict[str, Decimal] = {
    "strength": Decimal("0.25"),
    "reputation": Decimal("0.20"),
    "business_fit": Decimal("0.20"),
    "data_protection": Decimal("0.15"),
    "performance": Decimal("0.20"),
}
NEUTRAL_PERFORMANCE = Decimal(50)
POINTS_PER_SATISFACTION = Decimal(10)
POINTS_PER_COMPLAINT = Decimal(5)
ONE_DECIMAL = Decimal("0.1")

_STATUS_EVENTS = (PartnerActivated, PartnerSuspended, PartnerReinstated, PartnerTerminated)
_STATUS_OF: dict[type[DomainEvent], str] = {
    PartnerActivated: "ACTIVE",
    PartnerSuspended: "SUSPENDED",
    PartnerReinstated: "ACTIVE",
    PartnerTerminated: "TERMINATED",
}


class PartnerScorecard:
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    topics: ClassVar[frozenset[str] | None] = frozenset(
        e.topic
        for e in (
            PartnerRegistered,
            PartnerEvaluated,
            AgreementSigned,
            AgreementTerminated,
            *_STATUS_EVENTS,
            PartnerPerformanceReviewed,
            PartnerTierChanged,
            CustomerLinked,
            CustomerUnlinked,
            DataShared,
            DataShareRefused,
        )
    )

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        if isinstance(event, PartnerRegistered):
            doc = self._registered(event)
        else:
            partner_id = (
                event.partner_id
                if isinstance(event, DataShared | DataShareRefused)
                else event.originator_id
            )
            found = docs.get(KIND, str(partner_id))
            if found is None:
                return  # a partner this view never saw registered: nothing to fold into
            doc = found
            self._fold(doc, event)
        if not isinstance(event, DataShared | DataShareRefused):
            doc["version"] = event.originator_version
        doc["position"] = notification.id
        docs.put(KIND, doc["partner_id"], doc, group=doc["status"])

    @staticmethod
    def _registered(event: PartnerRegistered) -> Doc:
        return {
            "partner_id": str(event.originator_id),
            "external_ref": event.external_ref,
            "name": event.name,
            "kind": event.kind.value,
            "regions": list(event.regions),
            "capabilities": list(event.capabilities),
            "status": "REGISTERED",
            "status_reason": "",
            "status_changed_at": event.timestamp.isoformat(),
            "tier": "STANDARD",
            "registered_at": event.timestamp.isoformat(),
            "evaluation": None,
            "agreements": {},
            "reviews": {},
            "linked_customers": {},
            "counts": {
                "evaluations": 0,
                "customers_linked": 0,
                "customers_unlinked": 0,
                "shares": 0,
                "refused_shares": 0,
            },
            "refusal_reasons": {},
        }

    @staticmethod
    def _fold(doc: Doc, event: DomainEvent) -> None:
        counts = doc["counts"]
        if isinstance(event, PartnerEvaluated):
            doc["evaluation"] = {
                "strength": event.strength,
                "reputation": event.reputation,
                "business_fit": event.business_fit,
                "data_protection": event.data_protection,
                "notes": event.notes,
                "evaluated_at": event.timestamp.isoformat(),
            }
            counts["evaluations"] += 1
        elif isinstance(event, AgreementSigned):
            doc["agreements"][str(event.agreement_id)] = {
                "agreement_id": str(event.agreement_id),
                "kind": event.kind.value,
                "effective_from": event.effective_from.isoformat(),
                "effective_to": event.effective_to.isoformat() if event.effective_to else None,
                "confidentiality": event.confidentiality,
                "permitted_purposes": [p.value for p in event.permitted_purposes],
                "permitted_data_categories": [c.value for c in event.permitted_data_categories],
                "document_sha256": event.document_sha256,
                "signed_at": event.timestamp.isoformat(),
                "signed_version": event.originator_version,
                "terminated_at": None,
                "termination_reason": None,
            }
        elif isinstance(event, AgreementTerminated):
            agreement = doc["agreements"].get(str(event.agreement_id))
            if agreement is not None:
                agreement["terminated_at"] = event.timestamp.isoformat()
                agreement["termination_reason"] = event.reason
        elif isinstance(event, _STATUS_EVENTS):
            doc["status"] = _STATUS_OF[type(event)]
            doc["status_reason"] = event.reason
            doc["status_changed_at"] = event.timestamp.isoformat()
        elif isinstance(event, PartnerPerformanceReviewed):
            doc["reviews"][event.period] = {
                "period": event.period,
                "revenue": str(event.revenue),
                "new_customers": event.new_customers,
                "satisfaction": str(event.satisfaction),
                "complaints": event.complaints,
                "reviewed_at": event.timestamp.isoformat(),
            }
        elif isinstance(event, PartnerTierChanged):
            doc["tier"] = event.to_tier.value
        elif isinstance(event, CustomerLinked):
            doc["linked_customers"][str(event.customer_id)] = event.role.value
            counts["customers_linked"] += 1
        elif isinstance(event, CustomerUnlinked):
            doc["linked_customers"].pop(str(event.customer_id), None)
            counts["customers_unlinked"] += 1
        elif isinstance(event, DataShared):
            counts["shares"] += 1
        elif isinstance(event, DataShareRefused):
            counts["refused_shares"] += 1
            reasons = doc["refusal_reasons"]
            for reason in event.reasons:
                reasons[reason.value] = reasons.get(reason.value, 0) + 1


# ------------------------------------------------------------------- scoring


def period_bounds(period: str) -> tuple[date, date]:
    """First day and first day after a review period: ``2025``, ``2025-Q1`` or ``2025-03``."""
    year, _, part = period.partition("-")
    y = int(year)
    if not part:
        return date(y, 1, 1), date(y + 1, 1, 1)
    if part.startswith("Q"):
        first, months = 3 * (int(part[1:]) - 1) + 1, 3
    else:
        first, months = int(part), 1
    after = first + months
    end = date(y + 1, 1, 1) if after > 12 else date(y, after, 1)
    return date(y, first, 1), end


def period_order(period: str) -> tuple[date, date]:
    """Sort key of periods: by end, then by start (see the module docstring)."""
    start, end = period_bounds(period)
    return end, start


def latest_review(doc: Doc) -> Doc | None:
    reviews: dict[str, Doc] = doc["reviews"]
    if not reviews:
        return None
    return reviews[max(reviews, key=period_order)]


def performance(doc: Doc) -> Decimal:
    """0..100 from the latest review; neutral 50 before any review."""
    review = latest_review(doc)
    if review is None:
        return NEUTRAL_PERFORMANCE
    complaints: int = review["complaints"]
    points = (
        Decimal(review["satisfaction"]) * POINTS_PER_SATISFACTION
        - POINTS_PER_COMPLAINT * complaints
    )
    return min(max(points, Decimal(0)), Decimal(100))


def weighted_score(doc: Doc) -> Decimal | None:
    """The weighted score of a partner document (formula in the module docstring)."""
    evaluation = doc["evaluation"]
    if evaluation is None:
        return None
    parts = {name: Decimal(evaluation[name]) for name in WEIGHTS if name != "performance"}
    parts["performance"] = performance(doc)
    score = sum((WEIGHTS[name] * value for name, value in parts.items()), Decimal(0))
    return score.quantize(ONE_DECIMAL, rounding=ROUND_HALF_UP)


def active_agreements(doc: Doc, at: datetime) -> list[str]:
    """Ids of the agreements in effect at ``at``, by the domain's own rule, in signing order.

    Signing order is the partner's version at signing: several agreements may
    share a timestamp, and a stored document does not keep its keys' order.
    """
    if at.tzinfo is None:
        raise ValueError("'at' must be timezone-aware")
    signed = sorted(doc["agreements"].values(), key=lambda a: a["signed_version"])
    return [a["agreement_id"] for a in signed if Agreement.model_validate(a).in_effect(at)]


# ------------------------------------------------------------------- queries


def _scored(doc: Doc) -> Doc:
    return {**doc, "weighted_score": weighted_score(doc)}


def scorecard(reader: DocReader, partner_id: str, at: datetime) -> Doc | None:
    """Everything the view knows of the partner, scored, with its agreements judged at ``at``."""
    doc = reader.get(KIND, partner_id)
    if doc is None:
        return None
    review = latest_review(doc)
    return {
        **_scored(doc),
        "performance": performance(doc),
        "latest_review_period": review["period"] if review is not None else None,
        "active_agreements": active_agreements(doc, at),
        "linked_customer_count": len(doc["linked_customers"]),
    }


def partners(
    reader: DocReader,
    status: str | None = None,
    *,
    after: str | None = None,
    limit: int | None = None,
) -> Iterator[Doc]:
    """Partners (optionally of one status) in partner id order, each with its score."""
    for _, doc in reader.scan(KIND, group=status, after_key=after, limit=limit):
        yield _scored(doc)


def ranking(reader: DocReader, status: str | None = None) -> list[Doc]:
    """Partners by weighted score, best first; unevaluated last; ties by name, then id."""

    def order(doc: Doc) -> tuple[bool, Decimal, str, str]:
        score: Decimal | None = doc["weighted_score"]
        return (score is None, -(score or Decimal(0)), doc["name"], doc["partner_id"])

    return sorted(partners(reader, status), key=order)
