"""Customer summary (DESIGN §5): profile, tier, stakeholders by layer and function, counts.

Personal fields are kept as sealed references (see ``application.personal_data``)
and revealed only when a query answers; on ``PersonalDataErased`` the copies
are replaced by the erased marker, so the view holds no personal data of an
erased customer even in sealed form, and a rebuild arrives at the same place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from eventsourcing.persistence import Notification

from domain.customer import (
    ContactAdded,
    ContactRemoved,
    CustomerProfileUpdated,
    CustomerRegistered,
    DataShared,
    DataShareRefused,
    InteractionRecorded,
    PersonalDataErased,
    TierChanged,
)
from domain.events import DomainEvent
from domain.personal import ERASED
from projections.projection import aggregate_key
from projections.store import Doc, DocReader, Docs

NAME = "customer_summary"
KIND = "customer"
PROFILE = ("display_name", "industry", "region", "size", "source", "potential_value")

Reveal = Callable[[Any], Any]


class CustomerSummary:
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    topics: ClassVar[frozenset[str] | None] = frozenset(
        e.topic
        for e in (
            CustomerRegistered,
            CustomerProfileUpdated,
            ContactAdded,
            ContactRemoved,
            InteractionRecorded,
            TierChanged,
            DataShared,
            DataShareRefused,
            PersonalDataErased,
        )
    )

    body_topics: ClassVar[frozenset[str]] = frozenset({InteractionRecorded.topic})

    def apply_body(
        self, body: dict[str, Any], key: str, notification: Notification, docs: Docs
    ) -> None:
        """``apply`` for an ``InteractionRecorded`` as stored (vouched for by the runner)."""
        doc = docs.get(KIND, key)
        if doc is None:
            return
        amount, occurred = body["amount"], body["occurred_at"]
        if occurred[-1] == "Z":  # UTC as pydantic writes it: no need to parse it
            occurred = occurred[:-1] + "+00:00"
        else:
            occurred = datetime.fromisoformat(occurred).astimezone(UTC).isoformat()
        _interaction(doc, body["kind"], occurred, None if amount is None else Decimal(amount))
        doc["version"] = notification.originator_version
        doc["position"] = notification.id
        docs.put(KIND, key, doc, group=doc["tier"])

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        key = aggregate_key(event)
        if isinstance(event, CustomerRegistered):
            doc: Doc = {
                "customer_id": key,
                "external_ref": event.external_ref,
                "display_name": event.display_name,
                "kind": event.kind.value,
                "industry": event.industry,
                "region": event.region,
                "size": event.size.value if event.size else None,
                "source": event.source,
                "potential_value": event.potential_value.value,
                "acquired_via_partner_id": (
                    str(event.acquired_via_partner_id) if event.acquired_via_partner_id else None
                ),
                "tier": "STANDARD",
                "tier_effective_from": event.timestamp.isoformat(),
                "registered_at": event.timestamp.isoformat(),
                "contacts": {},
                "interactions": 0,
                "interactions_by_kind": {},
                "purchases": 0,
                "refunds": 0,
                "net_purchases": "0",
                "last_interaction_at": None,
                "shares": 0,
                "refused_shares": 0,
                "erased": False,
            }
        else:
            found = docs.get(KIND, key)
            if found is None:
                return
            doc = found
            self._fold(doc, event)
        doc["version"] = event.originator_version
        doc["position"] = notification.id
        docs.put(KIND, key, doc, group=doc["tier"])

    @staticmethod
    def _fold(doc: Doc, event: DomainEvent) -> None:
        if isinstance(event, InteractionRecorded):  # most events: first
            occurred = event.occurred_at.astimezone(UTC).isoformat()
            _interaction(doc, event.kind.value, occurred, event.amount)
        elif isinstance(event, CustomerProfileUpdated):
            for field in PROFILE:
                value = getattr(event, field)
                if value is not None:
                    doc[field] = getattr(value, "value", value)
        elif isinstance(event, ContactAdded):
            doc["contacts"][str(event.contact_id)] = {
                "contact_id": str(event.contact_id),
                "name": event.name,
                "email": event.email,
                "phone": event.phone,
                "title": event.title,
                "layer": event.layer.value,
                "function": event.function.value,
                "influence": event.influence,
            }
        elif isinstance(event, ContactRemoved):
            doc["contacts"].pop(str(event.contact_id), None)
        elif isinstance(event, TierChanged):
            doc["tier"] = event.to_tier.value
            doc["tier_effective_from"] = event.effective_from.isoformat()
        elif isinstance(event, DataShared):
            doc["shares"] += 1
        elif isinstance(event, DataShareRefused):
            doc["refused_shares"] += 1
        elif isinstance(event, PersonalDataErased):
            doc["erased"] = True
            doc["display_name"] = ERASED
            for contact in doc["contacts"].values():
                for field in ("name", "email", "phone"):
                    if contact[field] is not None:
                        contact[field] = ERASED


def _interaction(doc: Doc, kind: str, occurred: str, amount: Decimal | None) -> None:
    """Fold an interaction, decoded or as stored (the same values either way).

    ``occurred``: ``occurred_at`` in UTC, ``isoformat()``, so comparable as text.
    """
    doc["interactions"] += 1
    by_kind = doc["interactions_by_kind"]
    by_kind[kind] = by_kind.get(kind, 0) + 1
    if doc["last_interaction_at"] is None or occurred > doc["last_interaction_at"]:
        doc["last_interaction_at"] = occurred
    if amount is not None:
        net = Decimal(doc["net_purchases"])
        if kind == "PURCHASE":
            doc["purchases"] += 1
            doc["net_purchases"] = str(net + amount)
        else:
            doc["refunds"] += 1
            doc["net_purchases"] = str(net + -1 * amount)


# ------------------------------------------------------------------- queries


def _revealed(doc: Doc, reveal: Reveal) -> Doc:
    out = dict(doc)
    out["display_name"] = reveal(doc["display_name"])
    out["contacts"] = {
        cid: {**c, **{f: reveal(c[f]) for f in ("name", "email", "phone")}}
        for cid, c in doc["contacts"].items()
    }
    return out


def get(reader: DocReader, customer_id: str, reveal: Reveal) -> Doc | None:
    doc = reader.get(KIND, customer_id)
    return _revealed(doc, reveal) if doc else None


def stakeholder_map(doc: Doc) -> dict[str, dict[str, list[Doc]]]:
    """Contacts by decision layer, then by function (a B2B stakeholder map)."""
    layers: dict[str, dict[str, list[Doc]]] = {}
    for contact in sorted(
        doc["contacts"].values(), key=lambda c: (-c["influence"], c["contact_id"])
    ):
        layers.setdefault(contact["layer"], {}).setdefault(contact["function"], []).append(contact)
    return layers


def customers(
    reader: DocReader,
    reveal: Reveal,
    *,
    tier: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> Iterator[Doc]:
    for _, doc in reader.scan(KIND, group=tier, after_key=after, limit=limit):
        yield _revealed(doc, reveal)
