"""The Partner aggregate (DESIGN §3): selection, agreements, lifecycle, performance.

A partner only receives customer data while it is ACTIVE under a confidential
agreement in effect, so the lifecycle rules here are what the sharing
invariant later leans on.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.aggregate import Aggregate, EventMeta, applies
from domain.errors import DomainError, Reason
from domain.events import DomainEvent
from domain.values import (
    AgreementKind,
    DataCategory,
    LinkRole,
    PartnerKind,
    PartnerStatus,
    Purpose,
    Tier,
)

PERIOD_PATTERN = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$")
"""A review period: a year (2025), a quarter (2025-Q1) or a month (2025-03)."""


class PartnerEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "partner"


class PartnerRegistered(PartnerEvent):
    topic: ClassVar[str] = "partner.registered"

    external_ref: str
    name: str
    kind: PartnerKind
    regions: tuple[str, ...]
    capabilities: tuple[str, ...]


class PartnerEvaluated(PartnerEvent):
    topic: ClassVar[str] = "partner.evaluated"

    strength: int = Field(ge=0, le=100)
    reputation: int = Field(ge=0, le=100)
    business_fit: int = Field(ge=0, le=100)
    data_protection: int = Field(ge=0, le=100)
    notes: str = ""


class AgreementSigned(PartnerEvent):
    topic: ClassVar[str] = "partner.agreement_signed"

    agreement_id: UUID
    kind: AgreementKind
    effective_from: datetime
    effective_to: datetime | None = None
    confidentiality: bool
    permitted_purposes: tuple[Purpose, ...]
    permitted_data_categories: tuple[DataCategory, ...]
    document_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class AgreementTerminated(PartnerEvent):
    topic: ClassVar[str] = "partner.agreement_terminated"

    agreement_id: UUID
    reason: str = Field(min_length=1)


class PartnerActivated(PartnerEvent):
    topic: ClassVar[str] = "partner.activated"

    reason: str


class PartnerSuspended(PartnerEvent):
    topic: ClassVar[str] = "partner.suspended"

    reason: str = Field(min_length=1)


class PartnerReinstated(PartnerEvent):
    topic: ClassVar[str] = "partner.reinstated"

    reason: str = Field(min_length=1)


class PartnerTerminated(PartnerEvent):
    topic: ClassVar[str] = "partner.terminated"

    reason: str = Field(min_length=1)


class PartnerPerformanceReviewed(PartnerEvent):
    topic: ClassVar[str] = "partner.performance_reviewed"

    period: str = Field(pattern=PERIOD_PATTERN.pattern)
    revenue: Decimal = Field(ge=0)
    new_customers: int = Field(ge=0)
    satisfaction: Decimal = Field(ge=0, le=10)
    complaints: int = Field(ge=0)


class PartnerTierChanged(PartnerEvent):
    topic: ClassVar[str] = "partner.tier_changed"

    from_tier: Tier
    to_tier: Tier
    reason: str = Field(min_length=1)


class CustomerLinked(PartnerEvent):
    topic: ClassVar[str] = "partner.customer_linked"

    customer_id: UUID
    role: LinkRole


class CustomerUnlinked(PartnerEvent):
    topic: ClassVar[str] = "partner.customer_unlinked"

    customer_id: UUID


class Evaluation(BaseModel):
    model_config = ConfigDict(frozen=True)

    strength: int
    reputation: int
    business_fit: int
    data_protection: int
    notes: str
    evaluated_at: datetime


class Agreement(BaseModel):
    model_config = ConfigDict(frozen=True)

    agreement_id: UUID
    kind: AgreementKind
    effective_from: datetime
    effective_to: datetime | None
    confidentiality: bool
    permitted_purposes: tuple[Purpose, ...]
    permitted_data_categories: tuple[DataCategory, ...]
    document_sha256: str
    signed_at: datetime
    terminated_at: datetime | None = None
    termination_reason: str | None = None

    def in_effect(self, at: datetime) -> bool:
        """Signed, started, not yet ended and not terminated at ``at``."""
        if self.terminated_at is not None and self.terminated_at <= at:
            return False
        if at < self.effective_from:
            return False
        return self.effective_to is None or at < self.effective_to

    def permits(self, purpose: Purpose, categories: tuple[DataCategory, ...]) -> bool:
        return purpose in self.permitted_purposes and all(
            c in self.permitted_data_categories for c in categories
        )


class PerformanceReview(BaseModel):
    model_config = ConfigDict(frozen=True)

    period: str
    revenue: Decimal
    new_customers: int
    satisfaction: Decimal
    complaints: int
    reviewed_at: datetime


class Partner(Aggregate):
    type_name: ClassVar[str] = "partner"

    external_ref: str = ""
    name: str = ""
    kind: PartnerKind = PartnerKind.SERVICE
    regions: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    status: PartnerStatus = PartnerStatus.REGISTERED
    status_reason: str = ""
    tier: Tier = Tier.STANDARD
    evaluation: Evaluation | None = None
    agreements: dict[UUID, Agreement] = Field(default_factory=dict)
    reviews: dict[str, PerformanceReview] = Field(default_factory=dict)
    linked_customers: dict[UUID, LinkRole] = Field(default_factory=dict)

    # ----------------------------------------------------------------- decisions

    @classmethod
    def register(
        cls,
        partner_id: UUID,
        *,
        external_ref: str,
        name: str,
        kind: PartnerKind,
        regions: tuple[str, ...],
        capabilities: tuple[str, ...],
        meta: EventMeta,
    ) -> Partner:
        return cls._create(
            PartnerRegistered,
            partner_id,
            meta,
            external_ref=external_ref,
            name=name,
            kind=kind,
            regions=regions,
            capabilities=capabilities,
        )

    def evaluate(
        self,
        *,
        strength: int,
        reputation: int,
        business_fit: int,
        data_protection: int,
        notes: str,
        meta: EventMeta,
    ) -> None:
        self._require_not_terminated()
        self._trigger(
            PartnerEvaluated,
            meta,
            strength=strength,
            reputation=reputation,
            business_fit=business_fit,
            data_protection=data_protection,
            notes=notes,
        )

    def sign_agreement(
        self,
        agreement_id: UUID,
        *,
        kind: AgreementKind,
        effective_from: datetime,
        effective_to: datetime | None,
        confidentiality: bool,
        permitted_purposes: tuple[Purpose, ...],
        permitted_data_categories: tuple[DataCategory, ...],
        document_sha256: str,
        meta: EventMeta,
    ) -> None:
        self._require_not_terminated()
        if agreement_id in self.agreements:
            raise DomainError(Reason.AGREEMENT_ALREADY_EXISTS, f"agreement {agreement_id} exists")
        if effective_to is not None and effective_to <= effective_from:
            raise ValueError("effective_to must be after effective_from")
        self._trigger(
            AgreementSigned,
            meta,
            agreement_id=agreement_id,
            kind=kind,
            effective_from=effective_from,
            effective_to=effective_to,
            confidentiality=confidentiality,
            permitted_purposes=permitted_purposes,
            permitted_data_categories=permitted_data_categories,
            document_sha256=document_sha256,
        )

    def terminate_agreement(self, agreement_id: UUID, *, reason: str, meta: EventMeta) -> None:
        agreement = self.agreements.get(agreement_id)
        if agreement is None:
            raise DomainError(Reason.AGREEMENT_NOT_FOUND, f"no agreement {agreement_id}")
        if agreement.terminated_at is not None:
            raise DomainError(
                Reason.AGREEMENT_ALREADY_TERMINATED, f"agreement {agreement_id} is terminated"
            )
        self._trigger(AgreementTerminated, meta, agreement_id=agreement_id, reason=reason)

    def activate(self, *, reason: str, meta: EventMeta) -> None:
        self._require_not_terminated()
        if self.status is not PartnerStatus.REGISTERED:
            raise DomainError(
                Reason.PARTNER_NOT_REGISTERED,
                f"only a newly registered partner is activated (it is {self.status.value});"
                " a suspended partner is reinstated",
            )
        self._require_fit_to_receive_data(meta.recorded_at)
        self._trigger(PartnerActivated, meta, reason=reason)

    def suspend(self, *, reason: str, meta: EventMeta) -> None:
        self._require_not_terminated()
        if self.status is not PartnerStatus.ACTIVE:
            raise DomainError(Reason.PARTNER_NOT_ACTIVE, "only an active partner is suspended")
        self._trigger(PartnerSuspended, meta, reason=reason)

    def reinstate(self, *, reason: str, meta: EventMeta) -> None:
        self._require_not_terminated()
        if self.status is not PartnerStatus.SUSPENDED:
            raise DomainError(
                Reason.PARTNER_NOT_SUSPENDED, "only a suspended partner is reinstated"
            )
        self._require_fit_to_receive_data(meta.recorded_at)
        self._trigger(PartnerReinstated, meta, reason=reason)

    def terminate(self, *, reason: str, meta: EventMeta) -> None:
        self._require_not_terminated()
        self._trigger(PartnerTerminated, meta, reason=reason)

    def review_performance(
        self,
        *,
        period: str,
        revenue: Decimal,
        new_customers: int,
        satisfaction: Decimal,
        complaints: int,
        meta: EventMeta,
    ) -> None:
        """Allowed even after termination: the last period still gets its review."""
        if period in self.reviews:
            raise DomainError(
                Reason.PERIOD_ALREADY_REVIEWED, f"period {period} has already been reviewed"
            )
        self._trigger(
            PartnerPerformanceReviewed,
            meta,
            period=period,
            revenue=revenue,
            new_customers=new_customers,
            satisfaction=satisfaction,
            complaints=complaints,
        )

    def change_tier(self, to_tier: Tier, *, reason: str, meta: EventMeta) -> None:
        self._require_not_terminated()
        if not reason.strip():
            raise DomainError(Reason.REASON_REQUIRED, "a tier change must name its reason")
        if to_tier is self.tier:
            raise DomainError(Reason.TIER_UNCHANGED, f"the partner is already {to_tier.value}")
        self._trigger(PartnerTierChanged, meta, from_tier=self.tier, to_tier=to_tier, reason=reason)

    def link_customer(self, customer_id: UUID, *, role: LinkRole, meta: EventMeta) -> None:
        self._require_not_terminated()
        if customer_id in self.linked_customers:
            raise DomainError(
                Reason.CUSTOMER_ALREADY_LINKED, f"customer {customer_id} is already linked"
            )
        self._trigger(CustomerLinked, meta, customer_id=customer_id, role=role)

    def unlink_customer(self, customer_id: UUID, *, meta: EventMeta) -> None:
        if customer_id not in self.linked_customers:
            raise DomainError(Reason.CUSTOMER_NOT_LINKED, f"customer {customer_id} is not linked")
        self._trigger(CustomerUnlinked, meta, customer_id=customer_id)

    # ------------------------------------------------------------------ queries

    def agreements_in_effect(self, at: datetime) -> list[Agreement]:
        return [a for a in self.agreements.values() if a.in_effect(at)]

    def _require_not_terminated(self) -> None:
        if self.status is PartnerStatus.TERMINATED:
            raise DomainError(Reason.PARTNER_TERMINATED, "the partner is terminated")

    def _require_fit_to_receive_data(self, at: datetime) -> None:
        if self.evaluation is None:
            raise DomainError(Reason.EVALUATION_REQUIRED, "the partner has not been evaluated")
        if not any(a.confidentiality for a in self.agreements_in_effect(at)):
            raise DomainError(
                Reason.CONFIDENTIAL_AGREEMENT_REQUIRED,
                "the partner has no agreement in effect with a confidentiality clause",
            )

    # ------------------------------------------------------------ state changes

    @applies(PartnerRegistered)
    def _registered(self, e: PartnerRegistered) -> None:
        self.external_ref = e.external_ref
        self.name = e.name
        self.kind = e.kind
        self.regions = e.regions
        self.capabilities = e.capabilities

    @applies(PartnerEvaluated)
    def _evaluated(self, e: PartnerEvaluated) -> None:
        self.evaluation = Evaluation(
            strength=e.strength,
            reputation=e.reputation,
            business_fit=e.business_fit,
            data_protection=e.data_protection,
            notes=e.notes,
            evaluated_at=e.timestamp,
        )

    @applies(AgreementSigned)
    def _agreement_signed(self, e: AgreementSigned) -> None:
        self.agreements = {
            **self.agreements,
            e.agreement_id: Agreement(
                agreement_id=e.agreement_id,
                kind=e.kind,
                effective_from=e.effective_from,
                effective_to=e.effective_to,
                confidentiality=e.confidentiality,
                permitted_purposes=e.permitted_purposes,
                permitted_data_categories=e.permitted_data_categories,
                document_sha256=e.document_sha256,
                signed_at=e.timestamp,
            ),
        }

    @applies(AgreementTerminated)
    def _agreement_terminated(self, e: AgreementTerminated) -> None:
        agreement = self.agreements[e.agreement_id]
        self.agreements = {
            **self.agreements,
            e.agreement_id: agreement.model_copy(
                update={"terminated_at": e.timestamp, "termination_reason": e.reason}
            ),
        }

    @applies(PartnerActivated)
    def _activated(self, e: PartnerActivated) -> None:
        self.status = PartnerStatus.ACTIVE
        self.status_reason = e.reason

    @applies(PartnerSuspended)
    def _suspended(self, e: PartnerSuspended) -> None:
        self.status = PartnerStatus.SUSPENDED
        self.status_reason = e.reason

    @applies(PartnerReinstated)
    def _reinstated(self, e: PartnerReinstated) -> None:
        self.status = PartnerStatus.ACTIVE
        self.status_reason = e.reason

    @applies(PartnerTerminated)
    def _terminated(self, e: PartnerTerminated) -> None:
        self.status = PartnerStatus.TERMINATED
        self.status_reason = e.reason

    @applies(PartnerPerformanceReviewed)
    def _reviewed(self, e: PartnerPerformanceReviewed) -> None:
        self.reviews = {
            **self.reviews,
            e.period: PerformanceReview(
                period=e.period,
                revenue=e.revenue,
                new_customers=e.new_customers,
                satisfaction=e.satisfaction,
                complaints=e.complaints,
                reviewed_at=e.timestamp,
            ),
        }

    @applies(PartnerTierChanged)
    def _tier_changed(self, e: PartnerTierChanged) -> None:
        self.tier = e.to_tier

    @applies(CustomerLinked)
    def _customer_linked(self, e: CustomerLinked) -> None:
        self.linked_customers = {**self.linked_customers, e.customer_id: e.role}

    @applies(CustomerUnlinked)
    def _customer_unlinked(self, e: CustomerUnlinked) -> None:
        self.linked_customers = {
            k: v for k, v in self.linked_customers.items() if k != e.customer_id
        }
