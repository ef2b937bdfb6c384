"""Commands: frozen, validated requests to change one aggregate.

Validation here is about the shape of the input (lengths, ranges, which fields
go together); invariants that depend on state live in the domain. A command
that fails validation never reaches the store, so it records nothing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.partner import PERIOD_PATTERN
from domain.values import (
    MONETARY_KINDS,
    AgreementKind,
    Channel,
    CompanySize,
    ContactFunction,
    ContactLayer,
    CustomerKind,
    DataCategory,
    Direction,
    InteractionKind,
    LinkRole,
    PartnerKind,
    PotentialValue,
    Purpose,
    Tier,
)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a time zone (UTC offset)")
    return value


def _distinct_sorted(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(sorted(set(values)))


def _without_nul(value: Any) -> Any:
    """PostgreSQL stores no NUL in text (nor ``\\u0000`` in jsonb): refused on every store alike."""
    if isinstance(value, str):  # the common case, checked without a generator (every field)
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value
    if isinstance(value, tuple | list) and any(
        isinstance(item, str) and "\x00" in item for item in value
    ):
        raise ValueError("must not contain NUL characters")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Code = Annotated[str, Field(min_length=1, max_length=100)]
Text = Annotated[str, Field(max_length=4000)]
Reason = Annotated[str, Field(min_length=1, max_length=1000)]
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Phone = Annotated[str, Field(min_length=3, max_length=40, pattern=r"^\+?[0-9 ()./-]{3,40}$")]
Money = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=4)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Score = Annotated[int, Field(ge=0, le=100)]
Labels = Annotated[tuple[Code, ...], Field(max_length=50), AfterValidator(_distinct_sorted)]


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    request_id: str | None = Field(default=None, min_length=1, max_length=128)
    """Idempotency key: a retry with the same key returns the first result."""

    _no_nul = field_validator("*", mode="before")(_without_nul)


class AggregateCommand(Command):
    expected_version: int | None = Field(default=None, ge=1)
    """If set, the command is refused unless the aggregate is at this version."""


# ---------------------------------------------------------------- customers


class RegisterCustomer(Command):
    customer_id: UUID | None = None
    external_ref: Code
    display_name: Name
    kind: CustomerKind
    industry: Code
    region: Code
    size: CompanySize | None = None
    source: Code
    acquired_via_partner_id: UUID | None = None
    potential_value: PotentialValue = PotentialValue.MEDIUM


class UpdateCustomerProfile(AggregateCommand):
    customer_id: UUID
    display_name: Name | None = None
    industry: Code | None = None
    region: Code | None = None
    size: CompanySize | None = None
    source: Code | None = None
    potential_value: PotentialValue | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.changes():
            raise ValueError("name at least one profile field to change")
        return self

    def changes(self) -> dict[str, Any]:
        fields = ("display_name", "industry", "region", "size", "source", "potential_value")
        return {f: getattr(self, f) for f in fields if getattr(self, f) is not None}


class AddContact(AggregateCommand):
    customer_id: UUID
    contact_id: UUID | None = None
    name: Name
    email: Email | None = None
    phone: Phone | None = None
    title: Annotated[str, Field(max_length=200)] | None = None
    layer: ContactLayer
    function: ContactFunction
    influence: Annotated[int, Field(ge=1, le=5)] = 3


class RemoveContact(AggregateCommand):
    customer_id: UUID
    contact_id: UUID


class RecordInteraction(AggregateCommand):
    customer_id: UUID
    interaction_id: UUID | None = None
    kind: InteractionKind
    channel: Channel
    direction: Direction
    occurred_at: AwareDatetime
    summary: Text = ""
    amount: Money | None = None
    currency: Currency | None = None
    satisfaction: Annotated[int, Field(ge=0, le=10)] | None = None
    partner_id: UUID | None = None
    contact_ids: Annotated[tuple[UUID, ...], Field(max_length=100)] = ()

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> Self:
        if self.kind in MONETARY_KINDS:
            if self.amount is None:
                raise ValueError(f"amount is required for a {self.kind.value}")
            if self.currency is None:
                raise ValueError(f"currency is required for a {self.kind.value}")
        elif self.amount is not None or self.currency is not None:
            raise ValueError("amount and currency are only for PURCHASE and REFUND")
        if self.kind is InteractionKind.SURVEY and self.satisfaction is None:
            raise ValueError("satisfaction (0..10) is required for a SURVEY")
        if self.kind is not InteractionKind.SURVEY and self.satisfaction is not None:
            raise ValueError("satisfaction is only for a SURVEY")
        if len(set(self.contact_ids)) != len(self.contact_ids):
            raise ValueError("contact_ids must not repeat")
        return self


class ChangeTier(AggregateCommand):
    customer_id: UUID
    to_tier: Tier
    reason: Reason
    effective_from: AwareDatetime | None = None


class ConsentCaptureFields(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    _no_nul = field_validator("*", mode="before")(_without_nul)

    method: Code
    """How it was captured, e.g. WEB_FORM, PAPER, PHONE_RECORDING."""
    source: Code
    """Where: the system, page or office."""
    evidence_ref: Annotated[str, Field(min_length=1, max_length=500)]
    """Where the evidence is kept (document id, recording id)."""
    notice_version: Code
    """The privacy notice the customer saw."""


Categories = Annotated[
    tuple[DataCategory, ...], Field(min_length=1), AfterValidator(_distinct_sorted)
]


class GrantConsent(AggregateCommand):
    customer_id: UUID
    consent_id: UUID | None = None
    partner_id: UUID
    purpose: Purpose
    data_categories: Categories
    effective_from: AwareDatetime | None = None
    """Defaults to now; never earlier (consent is not back-dated)."""
    expires_at: AwareDatetime | None = None
    capture: ConsentCaptureFields

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Self:
        if (
            self.expires_at is not None
            and self.effective_from is not None
            and self.expires_at <= self.effective_from
        ):
            raise ValueError("expires_at must be after effective_from")
        return self


class WithdrawConsent(AggregateCommand):
    customer_id: UUID
    consent_id: UUID
    expressed_at: AwareDatetime | None = None
    """When the customer withdrew; defaults to now, may be earlier (never before the grant)."""
    channel: Code


class ShareData(AggregateCommand):
    customer_id: UUID
    share_id: UUID | None = None
    partner_id: UUID
    purpose: Purpose
    data_categories: Categories


class EraseCustomerData(AggregateCommand):
    customer_id: UUID
    reason: Reason


# ----------------------------------------------------------------- partners


class RegisterPartner(Command):
    partner_id: UUID | None = None
    external_ref: Code
    name: Name
    kind: PartnerKind
    regions: Labels = ()
    capabilities: Labels = ()


class EvaluatePartner(AggregateCommand):
    partner_id: UUID
    strength: Score
    reputation: Score
    business_fit: Score
    data_protection: Score
    notes: Text = ""


class SignAgreement(AggregateCommand):
    partner_id: UUID
    agreement_id: UUID | None = None
    kind: AgreementKind
    effective_from: AwareDatetime
    effective_to: AwareDatetime | None = None
    confidentiality: bool
    permitted_purposes: Annotated[
        tuple[Purpose, ...], Field(min_length=1), AfterValidator(_distinct_sorted)
    ]
    permitted_data_categories: Categories
    document_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Self:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        return self


class TerminateAgreement(AggregateCommand):
    partner_id: UUID
    agreement_id: UUID
    reason: Reason


class ActivatePartner(AggregateCommand):
    partner_id: UUID
    reason: Annotated[str, Field(max_length=1000)] = ""


class SuspendPartner(AggregateCommand):
    partner_id: UUID
    reason: Reason


class ReinstatePartner(AggregateCommand):
    partner_id: UUID
    reason: Reason


class TerminatePartner(AggregateCommand):
    partner_id: UUID
    reason: Reason


class ReviewPartnerPerformance(AggregateCommand):
    partner_id: UUID
    period: Annotated[str, Field(pattern=PERIOD_PATTERN.pattern)]
    revenue: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]
    currency: Currency
    new_customers: Annotated[int, Field(ge=0)]
    satisfaction: Annotated[Decimal, Field(ge=0, le=10, max_digits=4, decimal_places=2)]
    complaints: Annotated[int, Field(ge=0)]


class ChangePartnerTier(AggregateCommand):
    partner_id: UUID
    to_tier: Tier
    reason: Reason


class LinkCustomer(AggregateCommand):
    partner_id: UUID
    customer_id: UUID
    role: LinkRole


class UnlinkCustomer(AggregateCommand):
    partner_id: UUID
    customer_id: UUID
