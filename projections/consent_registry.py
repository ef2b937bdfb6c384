"""Consent registry (DESIGN §5): consents by customer and by partner, shares, late withdrawals.

``application.compliance`` answers for one customer by replaying its history.
Compliance teams also ask across customers: which consents does partner P hold
today, which of them lapse next month, which shares must be reviewed because a
withdrawal reached us after data had already gone out. Replaying every customer
for each of those does not scale, so this view keeps the facts indexed so that
every question is one group scan or one bounded range scan.

Documents (keys are unique per kind; the group is what a question scans by):

- ``consent``          key consent_id, group customer_id: the grant, its capture
  evidence, the withdrawal if any, and the log positions that prove them.
- ``partner_consent``  key ``{partner_id}:{consent_id}``, group partner_id: index.
- ``share``            key share_id, group customer_id: a recorded share or refusal.
- ``partner_share``    key ``{partner_id}:{share_id}``, group partner_id: index.
- ``consent_share``    key ``{consent_id}:{share_id}``, group consent_id: the shares
  that relied on a consent (what a late withdrawal puts under review).
- ``late_withdrawal``  key consent_id, group customer_id: withdrawals expressed
  before they were recorded (a letter, a call), the only ones that can leave
  shares to review.
- ``expiry``           key ``{expires_at, fixed-width UTC}:{consent_id}``, no group:
  consents in expiry order, so "what lapses soon" is a range scan.

Status is not stored: it depends on the moment asked about. It is computed at
query time by ``domain.sharing.Consent.status``, the very rule the sharing
policy enforces, so this view can never disagree with a share decision. The
view holds every withdrawal recorded up to its position, so a status at a past
``at`` counts a withdrawal expressed before ``at`` even if it was recorded
later (what DESIGN §7 calls "as known now"); a consent recorded after ``at``
is listed too, with the status its dates give it at ``at``.

Personal data: none, by construction. The events folded here carry ids,
vocabularies, dates and capture metadata (method, source, evidence reference,
notice version: how consent was obtained, not who gave it); a test checks that
none of their fields is marked ``Personal``. So ``PersonalDataErased`` changes
nothing here, and must not: the record of what a customer consented to and what
was shared is the evidence an auditor needs after an erasure too, and it names
the customer only by id.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import ClassVar

from eventsourcing.persistence import Notification

from domain.customer import ConsentGranted, ConsentWithdrawn, DataShared, DataShareRefused
from domain.events import DomainEvent
from domain.sharing import Consent, ShareReason
from projections.store import Doc, DocReader, Docs

NAME = "consent_registry"

CONSENT = "consent"
PARTNER_CONSENT = "partner_consent"
SHARE = "share"
PARTNER_SHARE = "partner_share"
CONSENT_SHARE = "consent_share"
LATE_WITHDRAWAL = "late_withdrawal"
EXPIRY = "expiry"

PAGE = 500
"""How many index entries a range scan reads at a time."""


class ConsentStatus(StrEnum):
    IN_EFFECT = "IN_EFFECT"
    NOT_YET_IN_EFFECT = "NOT_YET_IN_EFFECT"
    EXPIRED = "EXPIRED"
    WITHDRAWN = "WITHDRAWN"


_STATUS: dict[ShareReason | None, ConsentStatus] = {
    None: ConsentStatus.IN_EFFECT,
    ShareReason.NO_CONSENT: ConsentStatus.NOT_YET_IN_EFFECT,
    ShareReason.CONSENT_EXPIRED: ConsentStatus.EXPIRED,
    ShareReason.CONSENT_WITHDRAWN: ConsentStatus.WITHDRAWN,
}


def expiry_key(expires_at: datetime, consent_id: str) -> str:
    """A key that sorts in time order whatever offset the timestamp was given in.

    Normalised to UTC and written at fixed width with no punctuation, so byte
    order and locale collation agree on it.
    """
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return f"{expires_at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z:{consent_id}"


class ConsentRegistry:
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    topics: ClassVar[frozenset[str] | None] = frozenset(
        e.topic for e in (ConsentGranted, ConsentWithdrawn, DataShared, DataShareRefused)
    )

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        if isinstance(event, ConsentGranted):
            self._granted(event, notification.id, docs)
        elif isinstance(event, ConsentWithdrawn):
            self._withdrawn(event, notification.id, docs)
        elif isinstance(event, DataShared | DataShareRefused):
            self._shared(event, notification.id, docs)

    @staticmethod
    def _granted(event: ConsentGranted, position: int, docs: Docs) -> None:
        consent_id = str(event.consent_id)
        customer_id = str(event.originator_id)
        partner_id = str(event.partner_id)
        doc: Doc = {
            "consent_id": consent_id,
            "customer_id": customer_id,
            "partner_id": partner_id,
            "purpose": event.purpose.value,
            "data_categories": [c.value for c in event.data_categories],
            "effective_from": event.effective_from.isoformat(),
            "expires_at": event.expires_at.isoformat() if event.expires_at else None,
            "capture": event.capture.model_dump(mode="json"),
            "granted_at": event.timestamp.isoformat(),
            "granted_version": event.originator_version,
            "granted_position": position,
            "withdrawn_at": None,
            "withdrawal_recorded_at": None,
            "withdrawal_version": None,
            "withdrawal_position": None,
            "withdrawal_channel": None,
        }
        docs.put(CONSENT, consent_id, doc, group=customer_id)
        pointer = {"consent_id": consent_id, "customer_id": customer_id}
        docs.put(PARTNER_CONSENT, f"{partner_id}:{consent_id}", pointer, group=partner_id)
        if event.expires_at is not None:
            docs.put(EXPIRY, expiry_key(event.expires_at, consent_id), pointer)

    @staticmethod
    def _withdrawn(event: ConsentWithdrawn, position: int, docs: Docs) -> None:
        consent_id = str(event.consent_id)
        doc = docs.get(CONSENT, consent_id)
        if doc is None:
            return  # its grant was never applied here (a view started mid-log): nothing to update
        doc["withdrawn_at"] = event.expressed_at.isoformat()
        doc["withdrawal_recorded_at"] = event.timestamp.isoformat()
        doc["withdrawal_version"] = event.originator_version
        doc["withdrawal_position"] = position
        doc["withdrawal_channel"] = event.channel
        docs.put(CONSENT, consent_id, doc, group=doc["customer_id"])
        if event.expressed_at < event.timestamp:
            late: Doc = {
                "consent_id": consent_id,
                "customer_id": doc["customer_id"],
                "partner_id": doc["partner_id"],
                "expressed_at": doc["withdrawn_at"],
                "withdrawal_recorded_at": doc["withdrawal_recorded_at"],
                "withdrawal_position": position,
            }
            docs.put(LATE_WITHDRAWAL, consent_id, late, group=doc["customer_id"])

    @staticmethod
    def _shared(event: DataShared | DataShareRefused, position: int, docs: Docs) -> None:
        share_id = str(event.share_id)
        customer_id = str(event.originator_id)
        partner_id = str(event.partner_id)
        if isinstance(event, DataShared):
            shared, reasons, agreement_id = True, [], str(event.agreement_id)
            relied_on = [str(c) for c in event.relied_on_consent_ids]
        else:
            shared, reasons, agreement_id = False, [r.value for r in event.reasons], None
            relied_on = []
        doc: Doc = {
            "share_id": share_id,
            "customer_id": customer_id,
            "partner_id": partner_id,
            "purpose": event.purpose.value,
            "data_categories": [c.value for c in event.data_categories],
            "shared": shared,
            "reasons": reasons,
            "relied_on_consent_ids": relied_on,
            "agreement_id": agreement_id,
            "partner_version": event.partner_version,
            "recorded_at": event.timestamp.isoformat(),
            "position": position,
        }
        docs.put(SHARE, share_id, doc, group=customer_id)
        pointer = {"share_id": share_id, "customer_id": customer_id}
        docs.put(PARTNER_SHARE, f"{partner_id}:{share_id}", pointer, group=partner_id)
        for consent_id in relied_on:
            docs.put(CONSENT_SHARE, f"{consent_id}:{share_id}", pointer, group=consent_id)


# ------------------------------------------------------------------- queries


def _require_aware(at: datetime) -> None:
    """Stored times are timezone-aware; a naive ``at`` would compare by accident or not at all."""
    if at.tzinfo is None:
        raise ValueError("'at' must be timezone-aware")


def consent_status(doc: Doc, at: datetime) -> ConsentStatus:
    """The status of a stored consent at ``at``, by the domain's own rule."""
    _require_aware(at)
    return _STATUS[Consent.model_validate(doc).status(at)]


def _with_status(doc: Doc, at: datetime) -> Doc:
    return {**doc, "status": consent_status(doc, at).value}


def _pointed(
    reader: DocReader, kind: str, index: Iterator[tuple[str, Doc]], id_field: str
) -> list[Doc]:
    found = (reader.get(kind, pointer[id_field]) for _, pointer in index)
    return [doc for doc in found if doc is not None]


def get_consent(reader: DocReader, consent_id: str, at: datetime) -> Doc | None:
    doc = reader.get(CONSENT, consent_id)
    return _with_status(doc, at) if doc is not None else None


def consents_for_customer(reader: DocReader, customer_id: str, at: datetime) -> list[Doc]:
    """The customer's consents in the order they were granted, each with its status at ``at``."""
    _require_aware(at)
    docs = [doc for _, doc in reader.scan(CONSENT, group=customer_id)]
    return [_with_status(d, at) for d in sorted(docs, key=lambda d: d["granted_position"])]


def consents_for_partner(reader: DocReader, partner_id: str, at: datetime) -> list[Doc]:
    """Consents naming the partner as recipient (all customers), in grant order, with status."""
    _require_aware(at)
    docs = _pointed(reader, CONSENT, reader.scan(PARTNER_CONSENT, group=partner_id), "consent_id")
    return [_with_status(d, at) for d in sorted(docs, key=lambda d: d["granted_position"])]


def _shares(docs: list[Doc], shared_only: bool) -> list[Doc]:
    return sorted((d for d in docs if d["shared"] or not shared_only), key=lambda d: d["position"])


def shares_for_customer(
    reader: DocReader, customer_id: str, *, shared_only: bool = False
) -> list[Doc]:
    """Shares and refusals of the customer's data in log order (refusals are evidence too)."""
    return _shares([doc for _, doc in reader.scan(SHARE, group=customer_id)], shared_only)


def shares_for_partner(
    reader: DocReader, partner_id: str, *, shared_only: bool = False
) -> list[Doc]:
    """Shares to (and refusals for) the partner across customers, in log order."""
    index = reader.scan(PARTNER_SHARE, group=partner_id)
    return _shares(_pointed(reader, SHARE, index, "share_id"), shared_only)


def late_withdrawal_shares(reader: DocReader, customer_id: str | None = None) -> list[Doc]:
    """Shares made in [expressed_at, recorded) of a withdrawal of a consent they relied on.

    The data went out lawfully as far as Accord knew, but the customer had
    already withdrawn: each such share is for a human to review. Across all
    customers when ``customer_id`` is None; in log order of the shares.
    """
    found: list[Doc] = []
    for _, late in reader.scan(LATE_WITHDRAWAL, group=customer_id):
        expressed = datetime.fromisoformat(late["expressed_at"])
        recorded = datetime.fromisoformat(late["withdrawal_recorded_at"])
        index = reader.scan(CONSENT_SHARE, group=late["consent_id"])
        for share in _pointed(reader, SHARE, index, "share_id"):
            if (
                share["shared"]
                and expressed <= datetime.fromisoformat(share["recorded_at"]) < recorded
            ):
                found.append(
                    {
                        "share": share,
                        "consent_id": late["consent_id"],
                        "expressed_at": late["expressed_at"],
                        "withdrawal_recorded_at": late["withdrawal_recorded_at"],
                        "withdrawal_position": late["withdrawal_position"],
                    }
                )
    return sorted(found, key=lambda f: (f["share"]["position"], f["withdrawal_position"]))


def expiring_within(reader: DocReader, at: datetime, days: int) -> list[Doc]:
    """Consents in effect at ``at`` that expire in (at, at + days], soonest first.

    What a relationship manager renews before it lapses. A range scan over
    the expiry index, read a page at a time, stopping past the horizon.
    """
    _require_aware(at)
    if days < 0:
        raise ValueError("days must not be negative")
    horizon = at + timedelta(days=days)
    found: list[Doc] = []
    cursor: str | None = expiry_key(at, "")
    while cursor is not None:
        page = list(reader.scan(EXPIRY, after_key=cursor, limit=PAGE))
        cursor = page[-1][0] if len(page) == PAGE else None
        for _, pointer in page:
            doc = reader.get(CONSENT, pointer["consent_id"])
            if doc is None:
                continue
            expires_at = datetime.fromisoformat(doc["expires_at"])
            if expires_at > horizon:
                return found
            if consent_status(doc, at) is ConsentStatus.IN_EFFECT:
                found.append(_with_status(doc, at))
    return found
