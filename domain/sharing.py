"""The sharing policy (DESIGN §3): may this partner receive these categories now?

A pure function of the customer's consents, the partner's standing and the
moment. It is used three ways with the same code: to decide a share when it
is recorded, to answer "as recorded at T" (state replayed up to T) and "as
known now" (today's state, judged at T, so late withdrawals count). Deny
overrides: any reason refuses the whole share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from domain.partner import Agreement, Partner
from domain.values import DataCategory, PartnerStatus, Purpose


class ShareReason(StrEnum):
    NO_CONSENT = "NO_CONSENT"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"
    CONSENT_WITHDRAWN = "CONSENT_WITHDRAWN"
    PARTNER_NOT_ACTIVE = "PARTNER_NOT_ACTIVE"
    AGREEMENT_DOES_NOT_PERMIT = "AGREEMENT_DOES_NOT_PERMIT"
    CUSTOMER_ERASED = "CUSTOMER_ERASED"


class ConsentCapture(BaseModel):
    """How the consent was obtained: the evidence an auditor asks for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    source: str
    evidence_ref: str
    notice_version: str


class Consent(BaseModel):
    model_config = ConfigDict(frozen=True)

    consent_id: UUID
    partner_id: UUID
    purpose: Purpose
    data_categories: tuple[DataCategory, ...]
    effective_from: datetime
    expires_at: datetime | None
    capture: ConsentCapture
    granted_at: datetime
    granted_version: int
    withdrawn_at: datetime | None = None
    """When the customer expressed the withdrawal (may precede its recording)."""
    withdrawal_recorded_at: datetime | None = None
    withdrawal_version: int | None = None
    withdrawal_channel: str | None = None

    @property
    def withdrawn_late(self) -> bool:
        """Withdrawn with an expressed time before it was recorded (a letter, a call)."""
        return (
            self.withdrawn_at is not None
            and self.withdrawal_recorded_at is not None
            and self.withdrawn_at < self.withdrawal_recorded_at
        )

    def status(self, at: datetime) -> ShareReason | None:
        """None when in effect at ``at``, else why not."""
        if self.withdrawn_at is not None and self.withdrawn_at <= at:
            return ShareReason.CONSENT_WITHDRAWN
        # Once recorded, a withdrawal binds even if its expressed time lies a little
        # ahead (clock skew): deny overrides.
        if self.withdrawal_recorded_at is not None and self.withdrawal_recorded_at <= at:
            return ShareReason.CONSENT_WITHDRAWN
        if self.expires_at is not None and at >= self.expires_at:
            return ShareReason.CONSENT_EXPIRED
        if at < self.effective_from:
            return ShareReason.NO_CONSENT
        return None

    def covers(self, partner_id: UUID, purpose: Purpose, category: DataCategory) -> bool:
        return (
            self.partner_id == partner_id
            and self.purpose is purpose
            and category in self.data_categories
        )


class CategoryDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    category: DataCategory
    allowed: bool
    reasons: tuple[ShareReason, ...]
    consent_ids: tuple[UUID, ...]
    """The consents in effect for this category (allowed) or considered (refused)."""


class ShareDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    partner_id: UUID
    purpose: Purpose
    categories: tuple[CategoryDecision, ...]
    reasons: tuple[ShareReason, ...]
    agreement_id: UUID | None
    partner_version: int | None

    @property
    def allowed(self) -> bool:
        return not self.reasons

    @property
    def relied_on(self) -> tuple[UUID, ...]:
        """The consents the share relies on (one in effect per category, deduplicated)."""
        seen: dict[UUID, None] = {}
        for decision in self.categories:
            if decision.allowed:
                seen.setdefault(decision.consent_ids[0], None)
        return tuple(seen)


_SEVERITY = (ShareReason.CONSENT_WITHDRAWN, ShareReason.CONSENT_EXPIRED, ShareReason.NO_CONSENT)


def _category_decision(
    consents: Iterable[Consent],
    partner_id: UUID,
    purpose: Purpose,
    category: DataCategory,
    at: datetime,
) -> CategoryDecision:
    relevant = sorted(
        (c for c in consents if c.covers(partner_id, purpose, category)),
        key=lambda c: (c.granted_version, str(c.consent_id)),
    )
    in_effect = [c.consent_id for c in relevant if c.status(at) is None]
    if in_effect:
        return CategoryDecision(
            category=category, allowed=True, reasons=(), consent_ids=tuple(in_effect)
        )
    found = {c.status(at) for c in relevant}
    reason = next((r for r in _SEVERITY if r in found), ShareReason.NO_CONSENT)
    return CategoryDecision(
        category=category,
        allowed=False,
        reasons=(reason,),
        consent_ids=tuple(c.consent_id for c in relevant),
    )


def _permitting_agreement(
    partner: Partner, purpose: Purpose, categories: tuple[DataCategory, ...], at: datetime
) -> Agreement | None:
    """An agreement in effect, with confidentiality, permitting the purpose and every category."""
    candidates = [
        a
        for a in partner.agreements_in_effect(at)
        if a.confidentiality and a.permits(purpose, categories)
    ]
    return min(candidates, key=lambda a: (a.signed_at, str(a.agreement_id)), default=None)


def decide_share(
    *,
    consents: Mapping[UUID, Consent],
    erased: bool,
    partner: Partner | None,
    partner_id: UUID,
    purpose: Purpose,
    categories: tuple[DataCategory, ...],
    at: datetime,
) -> ShareDecision:
    """Every reason that applies, per category and overall; allowed only if there are none."""
    if not categories:
        raise ValueError("a share names at least one data category")
    if partner is not None and partner.id != partner_id:
        raise ValueError("the partner given is not the partner asked about")
    decisions = tuple(
        _category_decision(consents.values(), partner_id, purpose, category, at)
        for category in categories
    )
    reasons: list[ShareReason] = []
    if erased:
        reasons.append(ShareReason.CUSTOMER_ERASED)
    for decision in decisions:
        reasons.extend(r for r in decision.reasons if r not in reasons)
    agreement = None
    if partner is None or partner.status is not PartnerStatus.ACTIVE:
        reasons.append(ShareReason.PARTNER_NOT_ACTIVE)
    if partner is not None:
        agreement = _permitting_agreement(partner, purpose, categories, at)
        if agreement is None:
            reasons.append(ShareReason.AGREEMENT_DOES_NOT_PERMIT)
    return ShareDecision(
        at=at,
        partner_id=partner_id,
        purpose=purpose,
        categories=decisions,
        reasons=tuple(reasons),
        agreement_id=agreement.agreement_id if agreement else None,
        partner_version=partner.version if partner else None,
    )
