"""The Customer aggregate (DESIGN §3): profile, stakeholders, interactions, tier.

A customer with years of history is loaded often, so its state keeps running
totals of interactions and purchases rather than the interactions themselves:
the log holds the detail, the read models answer questions about it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.aggregate import Aggregate, EventMeta, applies
from domain.errors import DomainError, Reason
from domain.events import DomainEvent
from domain.partner import Partner
from domain.personal import ERASED, Personal
from domain.sharing import Consent, ConsentCapture, ShareDecision, ShareReason, decide_share
from domain.values import (
    Channel,
    CompanySize,
    ContactFunction,
    ContactLayer,
    CustomerKind,
    DataCategory,
    Direction,
    InteractionKind,
    PotentialValue,
    Purpose,
    Tier,
)

CLOCK_TOLERANCE = timedelta(minutes=5)
"""How far ahead of the recorded time a business time may lie (clock skew)."""

PROFILE_FIELDS = ("display_name", "industry", "region", "size", "source", "potential_value")


class CustomerEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "customer"


class CustomerRegistered(CustomerEvent):
    topic: ClassVar[str] = "customer.registered"

    external_ref: str
    display_name: Personal
    kind: CustomerKind
    industry: str
    region: str
    size: CompanySize | None = None
    source: str
    acquired_via_partner_id: UUID | None = None
    potential_value: PotentialValue


class CustomerProfileUpdated(CustomerEvent):
    """Only the fields that changed are present (the others are ``None``)."""

    topic: ClassVar[str] = "customer.profile_updated"

    display_name: Personal | None = None
    industry: str | None = None
    region: str | None = None
    size: CompanySize | None = None
    source: str | None = None
    potential_value: PotentialValue | None = None


class ContactAdded(CustomerEvent):
    topic: ClassVar[str] = "customer.contact_added"

    contact_id: UUID
    name: Personal
    email: Personal | None = None
    phone: Personal | None = None
    title: str | None = None
    layer: ContactLayer
    function: ContactFunction
    influence: int = Field(ge=1, le=5)


class ContactRemoved(CustomerEvent):
    topic: ClassVar[str] = "customer.contact_removed"

    contact_id: UUID


class InteractionRecorded(CustomerEvent):
    topic: ClassVar[str] = "customer.interaction_recorded"

    interaction_id: UUID
    kind: InteractionKind
    channel: Channel
    direction: Direction
    occurred_at: datetime
    summary: Personal = ""
    amount: Decimal | None = None
    currency: str | None = None
    satisfaction: int | None = Field(default=None, ge=0, le=10)
    partner_id: UUID | None = None
    contact_ids: tuple[UUID, ...] = ()


class TierChanged(CustomerEvent):
    topic: ClassVar[str] = "customer.tier_changed"

    from_tier: Tier
    to_tier: Tier
    reason: str = Field(min_length=1)
    effective_from: datetime


class ConsentGranted(CustomerEvent):
    topic: ClassVar[str] = "customer.consent_granted"

    consent_id: UUID
    partner_id: UUID
    purpose: Purpose
    data_categories: tuple[DataCategory, ...]
    effective_from: datetime
    expires_at: datetime | None = None
    capture: ConsentCapture


class ConsentWithdrawn(CustomerEvent):
    topic: ClassVar[str] = "customer.consent_withdrawn"

    consent_id: UUID
    expressed_at: datetime
    channel: str


class DataShared(CustomerEvent):
    """Customer data went to a partner, relying on these consents and this agreement."""

    topic: ClassVar[str] = "customer.data_shared"

    share_id: UUID
    partner_id: UUID
    purpose: Purpose
    data_categories: tuple[DataCategory, ...]
    relied_on_consent_ids: tuple[UUID, ...]
    agreement_id: UUID
    partner_version: int


class DataShareRefused(CustomerEvent):
    """Evidence that enforcement worked: a share was asked for and refused."""

    topic: ClassVar[str] = "customer.data_share_refused"

    share_id: UUID
    partner_id: UUID
    purpose: Purpose
    data_categories: tuple[DataCategory, ...]
    reasons: tuple[ShareReason, ...]
    partner_version: int | None = None


class PersonalDataErased(CustomerEvent):
    """The customer's data key is destroyed with this event: personal fields read as erased."""

    topic: ClassVar[str] = "customer.personal_data_erased"

    reason: str = Field(min_length=1)


class Contact(BaseModel):
    model_config = ConfigDict(frozen=True)

    contact_id: UUID
    name: Personal
    email: Personal | None = None
    phone: Personal | None = None
    title: str | None = None
    layer: ContactLayer
    function: ContactFunction
    influence: int
    added_on: datetime


class Customer(Aggregate):
    type_name: ClassVar[str] = "customer"

    external_ref: str = ""
    display_name: Personal = ""
    kind: CustomerKind = CustomerKind.ORGANISATION
    industry: str = ""
    region: str = ""
    size: CompanySize | None = None
    source: str = ""
    acquired_via_partner_id: UUID | None = None
    potential_value: PotentialValue = PotentialValue.MEDIUM
    tier: Tier = Tier.STANDARD
    tier_effective_from: datetime | None = None
    contacts: dict[UUID, Contact] = Field(default_factory=dict)
    interaction_count: int = 0
    purchase_count: int = 0
    refund_count: int = 0
    purchased_total: Decimal = Decimal(0)
    refunded_total: Decimal = Decimal(0)
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    last_interaction_at: datetime | None = None
    consents: dict[UUID, Consent] = Field(default_factory=dict)
    shares: int = 0
    refused_shares: int = 0
    erased: bool = False
    erased_at: datetime | None = None

    # ----------------------------------------------------------------- decisions

    @classmethod
    def register(
        cls,
        customer_id: UUID,
        *,
        external_ref: str,
        display_name: str,
        kind: CustomerKind,
        industry: str,
        region: str,
        size: CompanySize | None,
        source: str,
        acquired_via_partner_id: UUID | None,
        potential_value: PotentialValue,
        meta: EventMeta,
    ) -> Customer:
        return cls._create(
            CustomerRegistered,
            customer_id,
            meta,
            external_ref=external_ref,
            display_name=display_name,
            kind=kind,
            industry=industry,
            region=region,
            size=size,
            source=source,
            acquired_via_partner_id=acquired_via_partner_id,
            potential_value=potential_value,
        )

    def update_profile(self, changes: dict[str, Any], meta: EventMeta) -> None:
        """Record the fields that really differ; refuse an update that changes nothing."""
        unknown = set(changes) - set(PROFILE_FIELDS)
        if unknown:
            raise ValueError(f"not profile fields: {sorted(unknown)}")
        changed = {k: v for k, v in changes.items() if v is not None and getattr(self, k) != v}
        if "display_name" in changed:
            self._require_not_erased()
        if not changed:
            raise DomainError(Reason.NO_CHANGE, "the update changes no field of the profile")
        self._trigger(CustomerProfileUpdated, meta, **changed)

    def add_contact(
        self,
        contact_id: UUID,
        *,
        name: str,
        email: str | None,
        phone: str | None,
        title: str | None,
        layer: ContactLayer,
        function: ContactFunction,
        influence: int,
        meta: EventMeta,
    ) -> None:
        self._require_not_erased()
        if contact_id in self.contacts:
            raise DomainError(Reason.CONTACT_ALREADY_EXISTS, f"contact {contact_id} exists")
        self._trigger(
            ContactAdded,
            meta,
            contact_id=contact_id,
            name=name,
            email=email,
            phone=phone,
            title=title,
            layer=layer,
            function=function,
            influence=influence,
        )

    def remove_contact(self, contact_id: UUID, meta: EventMeta) -> None:
        self._require_contact(contact_id)
        self._trigger(ContactRemoved, meta, contact_id=contact_id)

    def record_interaction(
        self,
        interaction_id: UUID,
        *,
        kind: InteractionKind,
        channel: Channel,
        direction: Direction,
        occurred_at: datetime,
        summary: str,
        amount: Decimal | None,
        currency: str | None,
        satisfaction: int | None,
        partner_id: UUID | None,
        contact_ids: tuple[UUID, ...],
        meta: EventMeta,
    ) -> None:
        """Purchases are never edited: a REFUND adjusts, and never beyond what was bought."""
        if summary:
            self._require_not_erased()
        if occurred_at > meta.recorded_at + CLOCK_TOLERANCE:
            raise DomainError(
                Reason.OCCURRED_IN_FUTURE, "an interaction cannot occur after it is recorded"
            )
        for contact_id in contact_ids:
            self._require_contact(contact_id)
        if kind is InteractionKind.REFUND and amount is not None:
            net = self.purchased_total - self.refunded_total
            if amount > net:
                raise DomainError(
                    Reason.REFUND_EXCEEDS_PURCHASES,
                    f"a refund of {amount} exceeds the net purchases of {net}",
                )
        self._trigger(
            InteractionRecorded,
            meta,
            interaction_id=interaction_id,
            kind=kind,
            channel=channel,
            direction=direction,
            occurred_at=occurred_at,
            summary=summary,
            amount=amount,
            currency=currency,
            satisfaction=satisfaction,
            partner_id=partner_id,
            contact_ids=contact_ids,
        )

    def change_tier(
        self, to_tier: Tier, *, reason: str, effective_from: datetime, meta: EventMeta
    ) -> None:
        if not reason.strip():
            raise DomainError(Reason.REASON_REQUIRED, "a tier change must name its reason")
        if to_tier is self.tier:
            raise DomainError(Reason.TIER_UNCHANGED, f"the customer is already {to_tier.value}")
        self._trigger(
            TierChanged,
            meta,
            from_tier=self.tier,
            to_tier=to_tier,
            reason=reason,
            effective_from=effective_from,
        )

    def grant_consent(
        self,
        consent_id: UUID,
        *,
        partner_id: UUID,
        purpose: Purpose,
        data_categories: tuple[DataCategory, ...],
        effective_from: datetime,
        expires_at: datetime | None,
        capture: ConsentCapture,
        meta: EventMeta,
    ) -> None:
        """Consent is never back-dated: it takes effect now (within clock tolerance) or later."""
        self._require_not_erased()
        if consent_id in self.consents:
            raise DomainError(Reason.CONSENT_ALREADY_EXISTS, f"consent {consent_id} exists")
        if effective_from < meta.recorded_at - CLOCK_TOLERANCE:
            raise DomainError(
                Reason.CONSENT_BACKDATED,
                "a consent cannot take effect before it is recorded",
            )
        if expires_at is not None and expires_at <= effective_from:
            raise ValueError("expires_at must be after effective_from")
        self._trigger(
            ConsentGranted,
            meta,
            consent_id=consent_id,
            partner_id=partner_id,
            purpose=purpose,
            data_categories=data_categories,
            effective_from=effective_from,
            expires_at=expires_at,
            capture=capture,
        )

    def withdraw_consent(
        self, consent_id: UUID, *, expressed_at: datetime, channel: str, meta: EventMeta
    ) -> None:
        """A withdrawal may be recorded late (a letter, a call), never before its grant."""
        consent = self.consents.get(consent_id)
        if consent is None:
            raise DomainError(Reason.CONSENT_NOT_FOUND, f"no consent {consent_id}")
        if consent.withdrawn_at is not None:
            raise DomainError(
                Reason.CONSENT_ALREADY_WITHDRAWN, f"consent {consent_id} is already withdrawn"
            )
        if expressed_at < consent.granted_at:
            raise DomainError(
                Reason.WITHDRAWAL_BEFORE_GRANT, "a withdrawal cannot precede the grant"
            )
        if expressed_at > meta.recorded_at + CLOCK_TOLERANCE:
            raise DomainError(
                Reason.WITHDRAWAL_IN_FUTURE, "a withdrawal cannot be expressed in the future"
            )
        self._trigger(
            ConsentWithdrawn,
            meta,
            consent_id=consent_id,
            expressed_at=expressed_at,
            channel=channel,
        )

    def share_data(
        self,
        share_id: UUID,
        *,
        partner_id: UUID,
        partner: Partner | None,
        purpose: Purpose,
        data_categories: tuple[DataCategory, ...],
        meta: EventMeta,
    ) -> ShareDecision:
        """Record the share if the policy allows it now, else record the refusal.

        Either way an event is recorded: a refusal is evidence that the
        policy was enforced, which auditors ask for as much as the shares.
        """
        decision = decide_share(
            consents=self.consents,
            erased=self.erased,
            partner=partner,
            partner_id=partner_id,
            purpose=purpose,
            categories=data_categories,
            at=meta.recorded_at,
        )
        if decision.allowed:
            assert decision.agreement_id is not None
            assert decision.partner_version is not None
            self._trigger(
                DataShared,
                meta,
                share_id=share_id,
                partner_id=partner_id,
                purpose=purpose,
                data_categories=data_categories,
                relied_on_consent_ids=decision.relied_on,
                agreement_id=decision.agreement_id,
                partner_version=decision.partner_version,
            )
        else:
            self._trigger(
                DataShareRefused,
                meta,
                share_id=share_id,
                partner_id=partner_id,
                purpose=purpose,
                data_categories=data_categories,
                reasons=decision.reasons,
                partner_version=decision.partner_version,
            )
        return decision

    def erase(self, *, reason: str, meta: EventMeta) -> None:
        self._require_not_erased()
        self._trigger(PersonalDataErased, meta, reason=reason)

    def _require_not_erased(self) -> None:
        if self.erased:
            raise DomainError(
                Reason.CUSTOMER_ERASED, "the customer's personal data has been erased"
            )

    def _require_contact(self, contact_id: UUID) -> Contact:
        try:
            return self.contacts[contact_id]
        except KeyError:
            raise DomainError(
                Reason.CONTACT_NOT_FOUND, f"contact {contact_id} is not a current contact"
            ) from None

    # ------------------------------------------------------------ state changes

    @applies(CustomerRegistered)
    def _registered(self, e: CustomerRegistered) -> None:
        self.external_ref = e.external_ref
        self.display_name = e.display_name
        self.kind = e.kind
        self.industry = e.industry
        self.region = e.region
        self.size = e.size
        self.source = e.source
        self.acquired_via_partner_id = e.acquired_via_partner_id
        self.potential_value = e.potential_value
        self.tier_effective_from = e.timestamp

    @applies(CustomerProfileUpdated)
    def _profile_updated(self, e: CustomerProfileUpdated) -> None:
        for name in PROFILE_FIELDS:
            value = getattr(e, name)
            if value is not None:
                setattr(self, name, value)

    @applies(ContactAdded)
    def _contact_added(self, e: ContactAdded) -> None:
        self.contacts = {
            **self.contacts,
            e.contact_id: Contact(
                contact_id=e.contact_id,
                name=e.name,
                email=e.email,
                phone=e.phone,
                title=e.title,
                layer=e.layer,
                function=e.function,
                influence=e.influence,
                added_on=e.timestamp,
            ),
        }

    @applies(ContactRemoved)
    def _contact_removed(self, e: ContactRemoved) -> None:
        self.contacts = {k: v for k, v in self.contacts.items() if k != e.contact_id}

    @applies(InteractionRecorded)
    def _interaction_recorded(self, e: InteractionRecorded) -> None:
        self.interaction_count += 1
        if self.last_interaction_at is None or e.occurred_at > self.last_interaction_at:
            self.last_interaction_at = e.occurred_at
        if e.kind is InteractionKind.PURCHASE and e.amount is not None:
            self.purchase_count += 1
            self.purchased_total += e.amount
            if self.first_purchase_at is None or e.occurred_at < self.first_purchase_at:
                self.first_purchase_at = e.occurred_at
            if self.last_purchase_at is None or e.occurred_at > self.last_purchase_at:
                self.last_purchase_at = e.occurred_at
        elif e.kind is InteractionKind.REFUND and e.amount is not None:
            self.refund_count += 1
            self.refunded_total += e.amount

    @applies(TierChanged)
    def _tier_changed(self, e: TierChanged) -> None:
        self.tier = e.to_tier
        self.tier_effective_from = e.effective_from

    @applies(ConsentGranted)
    def _consent_granted(self, e: ConsentGranted) -> None:
        self.consents = {
            **self.consents,
            e.consent_id: Consent(
                consent_id=e.consent_id,
                partner_id=e.partner_id,
                purpose=e.purpose,
                data_categories=e.data_categories,
                effective_from=e.effective_from,
                expires_at=e.expires_at,
                capture=e.capture,
                granted_at=e.timestamp,
                granted_version=e.originator_version,
            ),
        }

    @applies(ConsentWithdrawn)
    def _consent_withdrawn(self, e: ConsentWithdrawn) -> None:
        consent = self.consents[e.consent_id]
        self.consents = {
            **self.consents,
            e.consent_id: consent.model_copy(
                update={
                    "withdrawn_at": e.expressed_at,
                    "withdrawal_recorded_at": e.timestamp,
                    "withdrawal_version": e.originator_version,
                    "withdrawal_channel": e.channel,
                }
            ),
        }

    @applies(DataShared)
    def _data_shared(self, e: DataShared) -> None:
        self.shares += 1

    @applies(DataShareRefused)
    def _data_share_refused(self, e: DataShareRefused) -> None:
        self.refused_shares += 1

    @applies(PersonalDataErased)
    def _personal_data_erased(self, e: PersonalDataErased) -> None:
        self.erased = True
        self.erased_at = e.timestamp
        self.display_name = ERASED
        self.contacts = {
            contact_id: contact.model_copy(
                update={
                    "name": ERASED,
                    "email": ERASED if contact.email is not None else None,
                    "phone": ERASED if contact.phone is not None else None,
                }
            )
            for contact_id, contact in self.contacts.items()
        }

    @property
    def net_purchases(self) -> Decimal:
        return self.purchased_total - self.refunded_total
