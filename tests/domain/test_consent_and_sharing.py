"""Consent, sharing and erasure, as a specification of DESIGN §3 and §4.

A share is recorded only when, at the moment it is recorded, every requested
category is covered by a consent in effect for that partner and purpose, the
partner is ACTIVE, and one confidential agreement in effect permits the
purpose and every category; otherwise the refusal is recorded with every
reason that applies (deny overrides). Erasure wipes personal data and stops
any command from adding more, while non-personal history stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain.aggregate import EventMeta
from domain.customer import (
    CLOCK_TOLERANCE,
    ConsentGranted,
    ConsentWithdrawn,
    Customer,
    CustomerEvent,
    CustomerRegistered,
    DataShared,
    DataShareRefused,
    PersonalDataErased,
)
from domain.errors import DomainError, Reason
from domain.partner import (
    AgreementSigned,
    AgreementTerminated,
    Partner,
    PartnerActivated,
    PartnerEvent,
    PartnerRegistered,
    PartnerSuspended,
    PartnerTerminated,
)
from domain.personal import ERASED
from domain.sharing import ConsentCapture, ShareDecision, ShareReason, decide_share
from domain.values import (
    AgreementKind,
    Channel,
    CompanySize,
    ContactFunction,
    ContactLayer,
    CustomerKind,
    DataCategory,
    Direction,
    InteractionKind,
    PartnerKind,
    PartnerStatus,
    PotentialValue,
    Purpose,
    Tier,
)

# ------------------------------------------------------------------ the calendar

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MICROSECOND = timedelta(microseconds=1)

ONBOARDED = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
"""The partner is registered, evaluated, signed and activated."""
GRANTED = ONBOARDED + DAY
"""The customer is registered and gives their consents."""
NOW = ONBOARDED + 30 * DAY
"""The share is attempted."""

SHA = "ab" * 32
OTHER_PARTNER_ID = UUID("0b5e3b4e-2f6a-4b8e-9d61-5c1d2e3f4a50")
CAPTURE = ConsentCapture(
    method="WEB_FORM", source="customer-portal", evidence_ref="form-7731", notice_version="v3"
)

IDENTITY = DataCategory.IDENTITY
CONTACT = DataCategory.CONTACT
PROFILE = DataCategory.PROFILE
PURCHASES = DataCategory.PURCHASE_HISTORY
SATISFACTION = DataCategory.SATISFACTION
MARKETING = Purpose.MARKETING
ANALYTICS = Purpose.ANALYTICS
SUPPORT = Purpose.SUPPORT

MAIN_PURPOSES = (MARKETING, ANALYTICS)
MAIN_CATEGORIES = (IDENTITY, CONTACT, PROFILE, PURCHASES)
"""What the partner's main (confidential) agreement permits: not SUPPORT, not SATISFACTION."""

ALL = frozenset(ShareReason)
NO_CONSENT = ShareReason.NO_CONSENT
EXPIRED = ShareReason.CONSENT_EXPIRED
WITHDRAWN = ShareReason.CONSENT_WITHDRAWN
NOT_ACTIVE = ShareReason.PARTNER_NOT_ACTIVE
NOT_PERMITTED = ShareReason.AGREEMENT_DOES_NOT_PERMIT
ERASED_REASON = ShareReason.CUSTOMER_ERASED


def meta(at: datetime, *, request_id: str = "req-1") -> EventMeta:
    return EventMeta(
        actor="compliance-desk", request_id=request_id, correlation_id="corr-1", recorded_at=at
    )


def refused(command: Callable[[], object]) -> Reason:
    """Run a command expected to be refused, and return the reason code."""
    with pytest.raises(DomainError) as refusal:
        command()
    return refusal.value.reason


# ------------------------------------------------------------------ builders


def registered_customer(at: datetime = GRANTED) -> Customer:
    customer = Customer.register(
        uuid4(),
        external_ref="CRM-0100",
        display_name="Chen Jing",
        kind=CustomerKind.PERSON,
        industry="RETAIL",
        region="EAST",
        size=None,
        source="WEB",
        acquired_via_partner_id=None,
        potential_value=PotentialValue.HIGH,
        meta=meta(at),
    )
    customer.collect_events()
    return customer


def sign(
    partner: Partner,
    agreement_id: UUID,
    *,
    purposes: tuple[Purpose, ...] = MAIN_PURPOSES,
    categories: tuple[DataCategory, ...] = MAIN_CATEGORIES,
    confidentiality: bool = True,
    effective_from: datetime = ONBOARDED,
    effective_to: datetime | None = None,
    at: datetime = ONBOARDED,
) -> None:
    partner.sign_agreement(
        agreement_id,
        kind=AgreementKind.DATA_SHARING,
        effective_from=effective_from,
        effective_to=effective_to,
        confidentiality=confidentiality,
        permitted_purposes=purposes,
        permitted_data_categories=categories,
        document_sha256=SHA,
        meta=meta(at),
    )


def onboarded_partner(
    partner_id: UUID,
    agreement_id: UUID,
    *,
    activate: bool = True,
    with_agreement: bool = True,
    purposes: tuple[Purpose, ...] = MAIN_PURPOSES,
    categories: tuple[DataCategory, ...] = MAIN_CATEGORIES,
    effective_to: datetime | None = None,
) -> Partner:
    """Registered, evaluated, under a confidential agreement from ONBOARDED, and activated."""
    partner = Partner.register(
        partner_id,
        external_ref="PRM-0200",
        name="Silk Road Analytics",
        kind=PartnerKind.TECHNOLOGY,
        regions=("EAST",),
        capabilities=("ANALYTICS",),
        meta=meta(ONBOARDED - DAY),
    )
    partner.evaluate(
        strength=80,
        reputation=85,
        business_fit=75,
        data_protection=90,
        notes="ISO 27001 certified",
        meta=meta(ONBOARDED),
    )
    if with_agreement:
        sign(
            partner,
            agreement_id,
            purposes=purposes,
            categories=categories,
            effective_to=effective_to,
        )
    if activate:
        partner.activate(reason="onboarding complete", meta=meta(ONBOARDED))
    partner.collect_events()
    return partner


def grant(
    customer: Customer,
    partner_id: UUID,
    *,
    categories: tuple[DataCategory, ...] = (CONTACT,),
    purpose: Purpose = MARKETING,
    effective_from: datetime = GRANTED,
    expires_at: datetime | None = None,
    at: datetime = GRANTED,
) -> UUID:
    consent_id = uuid4()
    customer.grant_consent(
        consent_id,
        partner_id=partner_id,
        purpose=purpose,
        data_categories=categories,
        effective_from=effective_from,
        expires_at=expires_at,
        capture=CAPTURE,
        meta=meta(at),
    )
    return consent_id


def withdraw(
    customer: Customer, consent_id: UUID, *, expressed_at: datetime, at: datetime | None = None
) -> None:
    customer.withdraw_consent(
        consent_id,
        expressed_at=expressed_at,
        channel="LETTER",
        meta=meta(expressed_at if at is None else at),
    )


def share(
    customer: Customer,
    partner: Partner | None,
    *,
    partner_id: UUID | None = None,
    categories: tuple[DataCategory, ...] = (CONTACT,),
    purpose: Purpose = MARKETING,
    at: datetime = NOW,
) -> tuple[ShareDecision, CustomerEvent]:
    """Attempt a share and return the decision with the one event it recorded."""
    if partner_id is None:
        assert partner is not None
        partner_id = partner.id
    customer.collect_events()
    before = customer.version
    decision = customer.share_data(
        uuid4(),
        partner_id=partner_id,
        partner=partner,
        purpose=purpose,
        data_categories=categories,
        meta=meta(at, request_id="share-1"),
    )
    events = customer.collect_events()
    assert len(events) == 1, "a share attempt records exactly one event"
    (event,) = events
    assert isinstance(event, CustomerEvent)
    assert event.originator_version == before + 1
    assert event.timestamp == at
    return decision, event


# ========================================================= 1. the decision table


@dataclass
class World:
    """One customer and one partner, arranged by a table row's steps."""

    customer: Customer
    partner: Partner | None
    partner_id: UUID
    agreement_ids: dict[str, UUID]
    consent_ids: dict[str, UUID] = field(default_factory=dict)


Step = Callable[[World], None]


def consent(
    label: str,
    *,
    categories: tuple[DataCategory, ...] = (CONTACT,),
    purpose: Purpose = MARKETING,
    other_partner: bool = False,
    effective_from: datetime = GRANTED,
    expires_at: datetime | None = None,
) -> Step:
    def step(world: World) -> None:
        world.consent_ids[label] = grant(
            world.customer,
            OTHER_PARTNER_ID if other_partner else world.partner_id,
            categories=categories,
            purpose=purpose,
            effective_from=effective_from,
            expires_at=expires_at,
        )

    return step


def withdrawn(label: str, at: datetime = NOW - DAY) -> Step:
    def step(world: World) -> None:
        withdraw(world.customer, world.consent_ids[label], expressed_at=at)

    return step


def erased(world: World) -> None:
    world.customer.erase(reason="right to erasure (request 42)", meta=meta(NOW - HOUR))


def suspended(world: World) -> None:
    assert world.partner is not None
    world.partner.suspend(reason="audit finding", meta=meta(NOW - DAY))


def partner_terminated(world: World) -> None:
    assert world.partner is not None
    world.partner.terminate(reason="contract ended", meta=meta(NOW - DAY))


def agreement_terminated(world: World) -> None:
    assert world.partner is not None
    world.partner.terminate_agreement(
        world.agreement_ids["main"], reason="breach of clause 7", meta=meta(NOW - 2 * DAY)
    )


def no_partner(world: World) -> None:
    world.partner = None


def rebuilt_partner(**options: Any) -> Step:
    """Replace the partner by one onboarded differently (same id, same main agreement id)."""

    def step(world: World) -> None:
        world.partner = onboarded_partner(world.partner_id, world.agreement_ids["main"], **options)

    return step


def extra_agreement(
    label: str,
    *,
    purposes: tuple[Purpose, ...],
    categories: tuple[DataCategory, ...],
    confidentiality: bool,
) -> Step:
    def step(world: World) -> None:
        assert world.partner is not None
        world.agreement_ids[label] = uuid4()
        sign(
            world.partner,
            world.agreement_ids[label],
            purposes=purposes,
            categories=categories,
            confidentiality=confidentiality,
            at=ONBOARDED + DAY,
        )

    return step


@dataclass(frozen=True)
class Row:
    steps: tuple[Step, ...]
    reasons: frozenset[ShareReason]
    per_category: tuple[tuple[DataCategory, tuple[ShareReason, ...]], ...]
    """Each requested category in order, with its consent reasons (empty = covered)."""
    purpose: Purpose = MARKETING
    relied_on: tuple[str, ...] = ()
    agreement: str = "main"

    @property
    def categories(self) -> tuple[DataCategory, ...]:
        return tuple(category for category, _ in self.per_category)


def row(
    name: str,
    *steps: Step,
    reasons: set[ShareReason],
    per_category: dict[DataCategory, tuple[ShareReason, ...]],
    purpose: Purpose = MARKETING,
    relied_on: tuple[str, ...] = (),
    agreement: str = "main",
) -> Any:
    return pytest.param(
        Row(
            steps=steps,
            reasons=frozenset(reasons),
            per_category=tuple(per_category.items()),
            purpose=purpose,
            relied_on=relied_on,
            agreement=agreement,
        ),
        id=name,
    )


OK: tuple[ShareReason, ...] = ()

TABLE = [
    # ------------------------------------------------------------- allowed
    row(
        "allowed: one category, consent in effect, active partner, permitting agreement",
        consent("c1"),
        reasons=set(),
        per_category={CONTACT: OK},
        relied_on=("c1",),
    ),
    row(
        "allowed: three categories over two consents, each relied on once",
        consent("c1", categories=(CONTACT, IDENTITY)),
        consent("c2", categories=(PURCHASES,)),
        reasons=set(),
        per_category={IDENTITY: OK, PURCHASES: OK, CONTACT: OK},
        relied_on=("c1", "c2"),
    ),
    row(
        "allowed: under a second confidential agreement permitting what the first does not",
        extra_agreement(
            "support", purposes=(SUPPORT,), categories=(SATISFACTION,), confidentiality=True
        ),
        consent("c1", categories=(SATISFACTION,), purpose=SUPPORT),
        reasons=set(),
        per_category={SATISFACTION: OK},
        purpose=SUPPORT,
        relied_on=("c1",),
        agreement="support",
    ),
    row(
        "allowed: consent withdrawn for another partner does not matter",
        consent("c1"),
        consent("other", other_partner=True),
        withdrawn("other"),
        reasons=set(),
        per_category={CONTACT: OK},
        relied_on=("c1",),
    ),
    # ------------------------------------------------------------- NO_CONSENT
    row(
        "NO_CONSENT: no consent at all",
        reasons={NO_CONSENT},
        per_category={CONTACT: (NO_CONSENT,)},
    ),
    row(
        "NO_CONSENT: consent names another partner",
        consent("c1", other_partner=True),
        reasons={NO_CONSENT},
        per_category={CONTACT: (NO_CONSENT,)},
    ),
    row(
        "NO_CONSENT: consent is for another purpose",
        consent("c1", purpose=ANALYTICS),
        reasons={NO_CONSENT},
        per_category={CONTACT: (NO_CONSENT,)},
    ),
    row(
        "NO_CONSENT: consent does not cover the category",
        consent("c1", categories=(IDENTITY, PROFILE)),
        reasons={NO_CONSENT},
        per_category={CONTACT: (NO_CONSENT,)},
    ),
    row(
        "NO_CONSENT: consent not yet effective",
        consent("c1", effective_from=NOW + HOUR),
        reasons={NO_CONSENT},
        per_category={CONTACT: (NO_CONSENT,)},
    ),
    # ------------------------------------------------------------- consent state
    row(
        "CONSENT_EXPIRED: consent expired yesterday",
        consent("c1", expires_at=NOW - DAY),
        reasons={EXPIRED},
        per_category={CONTACT: (EXPIRED,)},
    ),
    row(
        "CONSENT_WITHDRAWN: consent withdrawn yesterday",
        consent("c1"),
        withdrawn("c1"),
        reasons={WITHDRAWN},
        per_category={CONTACT: (WITHDRAWN,)},
    ),
    row(
        "CONSENT_WITHDRAWN: withdrawn outranks expired for the same category",
        consent("c1", expires_at=NOW - 2 * DAY),
        consent("c2"),
        withdrawn("c2"),
        reasons={WITHDRAWN},
        per_category={CONTACT: (WITHDRAWN,)},
    ),
    # ------------------------------------------------------------- partner
    row(
        "PARTNER_NOT_ACTIVE: registered, evaluated and signed but never activated",
        consent("c1"),
        rebuilt_partner(activate=False),
        reasons={NOT_ACTIVE},
        per_category={CONTACT: OK},
    ),
    row(
        "PARTNER_NOT_ACTIVE + AGREEMENT_DOES_NOT_PERMIT: registered only, no agreement",
        consent("c1"),
        rebuilt_partner(activate=False, with_agreement=False),
        reasons={NOT_ACTIVE, NOT_PERMITTED},
        per_category={CONTACT: OK},
    ),
    row(
        "PARTNER_NOT_ACTIVE: suspended",
        consent("c1"),
        suspended,
        reasons={NOT_ACTIVE},
        per_category={CONTACT: OK},
    ),
    row(
        "PARTNER_NOT_ACTIVE: terminated",
        consent("c1"),
        partner_terminated,
        reasons={NOT_ACTIVE},
        per_category={CONTACT: OK},
    ),
    row(
        "PARTNER_NOT_ACTIVE: unknown partner (None)",
        consent("c1"),
        no_partner,
        reasons={NOT_ACTIVE},
        per_category={CONTACT: OK},
    ),
    # ------------------------------------------------------------- agreement
    row(
        "AGREEMENT_DOES_NOT_PERMIT: purpose not permitted",
        consent("c1", purpose=SUPPORT),
        reasons={NOT_PERMITTED},
        per_category={CONTACT: OK},
        purpose=SUPPORT,
    ),
    row(
        "AGREEMENT_DOES_NOT_PERMIT: one of two categories not permitted",
        consent("c1", categories=(CONTACT, SATISFACTION)),
        reasons={NOT_PERMITTED},
        per_category={CONTACT: OK, SATISFACTION: OK},
    ),
    row(
        "AGREEMENT_DOES_NOT_PERMIT: agreement terminated",
        consent("c1"),
        agreement_terminated,
        reasons={NOT_PERMITTED},
        per_category={CONTACT: OK},
    ),
    row(
        "AGREEMENT_DOES_NOT_PERMIT: agreement expired",
        consent("c1"),
        rebuilt_partner(effective_to=NOW - DAY),
        reasons={NOT_PERMITTED},
        per_category={CONTACT: OK},
    ),
    row(
        "AGREEMENT_DOES_NOT_PERMIT: the permitting agreement has no confidentiality clause",
        extra_agreement("open", purposes=(SUPPORT,), categories=(CONTACT,), confidentiality=False),
        consent("c1", purpose=SUPPORT),
        reasons={NOT_PERMITTED},
        per_category={CONTACT: OK},
        purpose=SUPPORT,
    ),
    row(
        "AGREEMENT_DOES_NOT_PERMIT: purpose and category permitted only by different agreements",
        extra_agreement(
            "support", purposes=(SUPPORT,), categories=(SATISFACTION,), confidentiality=True
        ),
        consent("c1", purpose=SUPPORT),
        reasons={NOT_PERMITTED},
        per_category={CONTACT: OK},
        purpose=SUPPORT,
    ),
    # ------------------------------------------------------------- erasure
    row(
        "CUSTOMER_ERASED: everything else in order",
        consent("c1"),
        erased,
        reasons={ERASED_REASON},
        per_category={CONTACT: OK},
    ),
    # ------------------------------------------------------------- deny overrides
    row(
        "combined: consent withdrawn AND partner suspended",
        consent("c1"),
        withdrawn("c1"),
        suspended,
        reasons={WITHDRAWN, NOT_ACTIVE},
        per_category={CONTACT: (WITHDRAWN,)},
    ),
    row(
        "combined: one category consented, the other not -> whole share refused",
        consent("c1", categories=(CONTACT,)),
        reasons={NO_CONSENT},
        per_category={CONTACT: OK, IDENTITY: (NO_CONSENT,)},
    ),
    row(
        "combined: each category refused for its own consent reason",
        consent("c1", categories=(CONTACT,), expires_at=NOW - DAY),
        consent("c2", categories=(IDENTITY,)),
        withdrawn("c2"),
        reasons={EXPIRED, WITHDRAWN, NO_CONSENT},
        per_category={CONTACT: (EXPIRED,), IDENTITY: (WITHDRAWN,), PROFILE: (NO_CONSENT,)},
    ),
    row(
        "combined: erased, no consent, partner terminated, agreement terminated",
        agreement_terminated,
        partner_terminated,
        erased,
        reasons={ERASED_REASON, NO_CONSENT, NOT_ACTIVE, NOT_PERMITTED},
        per_category={CONTACT: (NO_CONSENT,)},
    ),
    row(
        "combined: all six reasons at once",
        consent("c1", categories=(CONTACT,), expires_at=NOW - DAY),
        consent("c2", categories=(IDENTITY,)),
        withdrawn("c2"),
        agreement_terminated,
        suspended,
        erased,
        reasons=set(ALL),
        per_category={CONTACT: (EXPIRED,), IDENTITY: (WITHDRAWN,), PROFILE: (NO_CONSENT,)},
    ),
]


@pytest.mark.parametrize("case", TABLE)
def test_share_data_records_the_decision_of_the_policy(case: Row) -> None:
    partner_id = uuid4()
    agreement_ids = {"main": uuid4()}
    world = World(
        customer=registered_customer(),
        partner=onboarded_partner(partner_id, agreement_ids["main"]),
        partner_id=partner_id,
        agreement_ids=agreement_ids,
    )
    for step in case.steps:
        step(world)
    customer = world.customer

    decision, event = share(
        customer,
        world.partner,
        partner_id=world.partner_id,
        categories=case.categories,
        purpose=case.purpose,
    )

    # every reason that applies, each once; allowed only when there is none
    assert set(decision.reasons) == case.reasons
    assert len(decision.reasons) == len(set(decision.reasons))
    assert decision.allowed is (not case.reasons)
    assert [(d.category, d.reasons) for d in decision.categories] == list(case.per_category)
    assert [d.allowed for d in decision.categories] == [not r for _, r in case.per_category]
    assert decision.partner_version == (world.partner.version if world.partner else None)
    assert (decision.agreement_id is None) is (
        world.partner is None or NOT_PERMITTED in case.reasons
    )

    assert isinstance(event, DataShared | DataShareRefused)
    assert event.partner_id == world.partner_id
    assert event.purpose is case.purpose
    assert event.data_categories == case.categories
    if not case.reasons:
        assert world.partner is not None
        assert isinstance(event, DataShared)
        assert event.relied_on_consent_ids == tuple(world.consent_ids[c] for c in case.relied_on)
        assert event.agreement_id == world.agreement_ids[case.agreement]
        assert event.partner_version == world.partner.version
        assert (customer.shares, customer.refused_shares) == (1, 0)
    else:
        assert isinstance(event, DataShareRefused)
        assert event.reasons == decision.reasons
        assert set(event.reasons) == case.reasons
        assert event.partner_version == decision.partner_version
        assert (customer.shares, customer.refused_shares) == (0, 1)


def test_a_refused_category_lists_the_consents_considered_and_an_allowed_one_those_in_effect() -> (
    None
):
    partner_id, agreement_id = uuid4(), uuid4()
    partner = onboarded_partner(partner_id, agreement_id)
    customer = registered_customer()
    expired = grant(customer, partner_id, categories=(IDENTITY,), expires_at=NOW - DAY)
    other_purpose = grant(customer, partner_id, categories=(IDENTITY,), purpose=ANALYTICS)
    living = grant(customer, partner_id, categories=(CONTACT,))

    decision, _ = share(customer, partner, categories=(CONTACT, IDENTITY))

    contact, identity = decision.categories
    assert (contact.allowed, contact.consent_ids) == (True, (living,))
    assert (identity.allowed, identity.reasons, identity.consent_ids) == (
        False,
        (EXPIRED,),
        (expired,),
    )
    assert other_purpose not in identity.consent_ids
    assert decision.relied_on == (living,)


def test_with_several_consents_in_effect_the_share_relies_on_the_earliest_granted() -> None:
    partner_id = uuid4()
    partner = onboarded_partner(partner_id, uuid4())
    customer = registered_customer()
    first = grant(customer, partner_id, categories=(CONTACT,))
    second = grant(
        customer,
        partner_id,
        categories=(CONTACT, IDENTITY),
        effective_from=GRANTED + HOUR,
        at=GRANTED + HOUR,
    )

    decision, event = share(customer, partner, categories=(CONTACT, IDENTITY))

    assert [d.consent_ids for d in decision.categories] == [(first, second), (second,)]
    assert isinstance(event, DataShared)
    assert event.relied_on_consent_ids == (first, second)


def test_with_several_permitting_agreements_the_share_relies_on_the_earliest_signed() -> None:
    partner_id, main_id, later_id = uuid4(), uuid4(), uuid4()
    partner = onboarded_partner(partner_id, main_id)
    sign(partner, later_id, at=ONBOARDED + 2 * DAY)
    customer = registered_customer()
    grant(customer, partner_id)

    _, event = share(customer, partner)

    assert isinstance(event, DataShared)
    assert event.agreement_id == main_id

    partner.terminate_agreement(main_id, reason="superseded", meta=meta(NOW))
    _, event = share(customer, partner, at=NOW + HOUR)

    assert isinstance(event, DataShared)
    assert event.agreement_id == later_id
    assert event.partner_version == partner.version


# ================================================================ 2. boundaries


@dataclass(frozen=True)
class Boundary:
    consent_effective_from: datetime = GRANTED
    consent_expires_at: datetime | None = None
    window_from: datetime = ONBOARDED
    window_to: datetime | None = None
    window_terminated_at: datetime | None = None


def boundary_world(b: Boundary) -> tuple[Customer, Partner, UUID, UUID]:
    """A partner activated under a SUPPORT-only agreement, sharing under a 'window' agreement."""
    partner_id, base_id, window_id = uuid4(), uuid4(), uuid4()
    partner = onboarded_partner(partner_id, base_id, purposes=(SUPPORT,))
    sign(
        partner,
        window_id,
        effective_from=b.window_from,
        effective_to=b.window_to,
        at=ONBOARDED + DAY,
    )
    if b.window_terminated_at is not None:
        partner.terminate_agreement(
            window_id, reason="ended early", meta=meta(b.window_terminated_at)
        )
    partner.collect_events()
    customer = registered_customer()
    consent_id = grant(
        customer,
        partner_id,
        effective_from=b.consent_effective_from,
        expires_at=b.consent_expires_at,
    )
    customer.collect_events()
    return customer, partner, consent_id, window_id


EDGE = NOW
"""The instant at which each boundary below lies."""

BOUNDARIES = [
    pytest.param(Boundary(consent_expires_at=EDGE), EDGE, {EXPIRED}, id="consent at expires_at"),
    pytest.param(
        Boundary(consent_expires_at=EDGE), EDGE - MICROSECOND, set(), id="consent 1us before expiry"
    ),
    pytest.param(
        Boundary(consent_effective_from=EDGE), EDGE, set(), id="consent at effective_from"
    ),
    pytest.param(
        Boundary(consent_effective_from=EDGE),
        EDGE - MICROSECOND,
        {NO_CONSENT},
        id="consent 1us before effective_from",
    ),
    pytest.param(Boundary(window_from=EDGE), EDGE, set(), id="agreement at effective_from"),
    pytest.param(
        Boundary(window_from=EDGE),
        EDGE - MICROSECOND,
        {NOT_PERMITTED},
        id="agreement 1us before effective_from",
    ),
    pytest.param(Boundary(window_to=EDGE), EDGE, {NOT_PERMITTED}, id="agreement at effective_to"),
    pytest.param(
        Boundary(window_to=EDGE), EDGE - MICROSECOND, set(), id="agreement 1us before effective_to"
    ),
    pytest.param(
        Boundary(window_terminated_at=EDGE),
        EDGE,
        {NOT_PERMITTED},
        id="agreement at its termination",
    ),
    pytest.param(
        Boundary(window_terminated_at=EDGE),
        EDGE - MICROSECOND,
        set(),
        id="agreement 1us before its termination",
    ),
]


@pytest.mark.parametrize(("boundary", "at", "reasons"), BOUNDARIES)
def test_share_data_at_a_boundary(
    boundary: Boundary, at: datetime, reasons: set[ShareReason]
) -> None:
    customer, partner, consent_id, window_id = boundary_world(boundary)

    decision, event = share(customer, partner, at=at)

    assert set(decision.reasons) == reasons
    if reasons:
        assert isinstance(event, DataShareRefused)
        assert set(event.reasons) == reasons
    else:
        assert isinstance(event, DataShared)
        assert event.relied_on_consent_ids == (consent_id,)
        assert event.agreement_id == window_id
        assert event.partner_version == partner.version


@pytest.mark.parametrize(("boundary", "at", "reasons"), BOUNDARIES)
def test_decide_share_at_a_boundary(
    boundary: Boundary, at: datetime, reasons: set[ShareReason]
) -> None:
    customer, partner, consent_id, window_id = boundary_world(boundary)

    decision = decide_share(
        consents=customer.consents,
        erased=False,
        partner=partner,
        partner_id=partner.id,
        purpose=MARKETING,
        categories=(CONTACT,),
        at=at,
    )

    assert decision.at == at
    assert set(decision.reasons) == reasons
    assert decision.allowed is (not reasons)
    assert decision.relied_on == (
        () if NO_CONSENT in reasons or EXPIRED in reasons else (consent_id,)
    )
    assert decision.agreement_id == (None if NOT_PERMITTED in reasons else window_id)


@pytest.mark.parametrize(
    ("at", "status"),
    [
        pytest.param(GRANTED + HOUR - MICROSECOND, NO_CONSENT, id="before effective_from"),
        pytest.param(GRANTED + HOUR, None, id="at effective_from"),
        pytest.param(GRANTED + 2 * HOUR - MICROSECOND, None, id="just before expires_at"),
        pytest.param(GRANTED + 2 * HOUR, EXPIRED, id="at expires_at"),
    ],
)
def test_consent_status_is_a_half_open_interval(at: datetime, status: ShareReason | None) -> None:
    customer = registered_customer()
    consent_id = grant(
        customer, uuid4(), effective_from=GRANTED + HOUR, expires_at=GRANTED + 2 * HOUR
    )

    assert customer.consents[consent_id].status(at) is status


# ======================================================= 3. withdrawal precedence


def test_a_withdrawal_takes_effect_at_the_instant_it_was_expressed() -> None:
    partner_id, agreement_id = uuid4(), uuid4()
    partner = onboarded_partner(partner_id, agreement_id)
    customer = registered_customer()
    consent_id = grant(customer, partner_id)
    expressed = NOW - HOUR
    withdraw(customer, consent_id, expressed_at=expressed, at=NOW)  # a letter, recorded late

    def decide(at: datetime) -> ShareDecision:
        return decide_share(
            consents=customer.consents,
            erased=customer.erased,
            partner=partner,
            partner_id=partner_id,
            purpose=MARKETING,
            categories=(CONTACT,),
            at=at,
        )

    assert decide(expressed).reasons == (WITHDRAWN,)
    before = decide(expressed - MICROSECOND)
    assert before.allowed
    assert before.relied_on == (consent_id,)
    assert before.agreement_id == agreement_id


def test_a_share_recorded_at_the_withdrawal_instant_is_refused_and_one_just_before_is_not() -> None:
    partner_id = uuid4()
    partner = onboarded_partner(partner_id, uuid4())
    customer = registered_customer()
    consent_id = grant(customer, partner_id)

    _, first = share(customer, partner, at=NOW - MICROSECOND)
    withdraw(customer, consent_id, expressed_at=NOW)
    _, second = share(customer, partner, at=NOW)

    assert isinstance(first, DataShared)
    assert first.relied_on_consent_ids == (consent_id,)
    assert isinstance(second, DataShareRefused)
    assert second.reasons == (WITHDRAWN,)


@pytest.mark.parametrize("withdrawn_index", [0, 1], ids=["first withdrawn", "second withdrawn"])
def test_another_consent_still_covers_a_category_when_one_is_withdrawn(
    withdrawn_index: int,
) -> None:
    partner_id = uuid4()
    partner = onboarded_partner(partner_id, uuid4())
    customer = registered_customer()
    consents = [
        grant(customer, partner_id, categories=(CONTACT, IDENTITY)),
        grant(
            customer,
            partner_id,
            categories=(CONTACT,),
            effective_from=GRANTED + HOUR,
            at=GRANTED + HOUR,
        ),
    ]
    withdraw(customer, consents[withdrawn_index], expressed_at=NOW - DAY)
    remaining = consents[1 - withdrawn_index]

    decision, event = share(customer, partner, categories=(CONTACT,))

    assert isinstance(event, DataShared)
    assert event.relied_on_consent_ids == (remaining,)
    assert decision.categories[0].consent_ids == (remaining,)


def test_a_recorded_withdrawal_stops_shares_even_if_expressed_slightly_ahead_of_the_clock() -> None:
    """Clock tolerance lets a withdrawal carry an expressed time a little ahead of the
    recorded time (the customer's clock runs fast), but once the withdrawal is in the log
    the consent is withdrawn: a share recorded after it must not rely on that consent
    (DESIGN §3: in effect means "not withdrawn" at the moment the share is recorded).
    """
    partner_id = uuid4()
    partner = onboarded_partner(partner_id, uuid4())
    customer = registered_customer()
    consent_id = grant(customer, partner_id)
    withdraw(customer, consent_id, expressed_at=NOW + CLOCK_TOLERANCE, at=NOW)

    _, event = share(customer, partner, at=NOW + MICROSECOND)

    assert isinstance(event, DataShareRefused), (
        "a share was recorded after the consent's withdrawal was recorded"
    )
    assert event.reasons == (WITHDRAWN,)


# =============================================================== 4. consent rules


def test_a_granted_consent_is_recorded_with_its_capture_and_grant_version() -> None:
    customer = registered_customer()
    partner_id = uuid4()
    consent_id = grant(
        customer,
        partner_id,
        categories=(CONTACT, PROFILE),
        effective_from=GRANTED + DAY,
        expires_at=GRANTED + 10 * DAY,
    )

    (event,) = customer.collect_events()
    assert isinstance(event, ConsentGranted)
    assert (event.consent_id, event.partner_id, event.purpose) == (
        consent_id,
        partner_id,
        MARKETING,
    )
    assert event.data_categories == (CONTACT, PROFILE)
    assert (event.effective_from, event.expires_at) == (GRANTED + DAY, GRANTED + 10 * DAY)
    assert event.capture == CAPTURE
    held = customer.consents[consent_id]
    assert (held.granted_at, held.granted_version) == (GRANTED, event.originator_version)
    assert held.withdrawn_at is None
    assert not held.withdrawn_late


def test_consent_back_dated_beyond_the_clock_tolerance_is_refused() -> None:
    customer = registered_customer()

    reason = refused(
        lambda: grant(customer, uuid4(), effective_from=NOW - CLOCK_TOLERANCE - MICROSECOND, at=NOW)
    )

    assert reason is Reason.CONSENT_BACKDATED
    assert customer.pending_events == ()
    assert customer.consents == {}


def test_consent_back_dated_within_the_clock_tolerance_is_accepted() -> None:
    customer = registered_customer()

    consent_id = grant(customer, uuid4(), effective_from=NOW - CLOCK_TOLERANCE, at=NOW)

    assert customer.consents[consent_id].effective_from == NOW - CLOCK_TOLERANCE


@pytest.mark.parametrize(
    "expires_at",
    [NOW, NOW - MICROSECOND],
    ids=["expires at effective_from", "expires before effective_from"],
)
def test_consent_must_expire_after_it_takes_effect(expires_at: datetime) -> None:
    customer = registered_customer()

    with pytest.raises(ValueError, match="expires_at"):
        grant(customer, uuid4(), effective_from=NOW, expires_at=expires_at, at=NOW)

    assert customer.pending_events == ()


def test_a_consent_id_is_granted_once() -> None:
    customer = registered_customer()
    consent_id = grant(customer, uuid4())
    customer.collect_events()

    reason = refused(
        lambda: customer.grant_consent(
            consent_id,
            partner_id=uuid4(),
            purpose=ANALYTICS,
            data_categories=(PROFILE,),
            effective_from=NOW,
            expires_at=None,
            capture=CAPTURE,
            meta=meta(NOW),
        )
    )

    assert reason is Reason.CONSENT_ALREADY_EXISTS
    assert customer.pending_events == ()
    assert customer.consents[consent_id].purpose is MARKETING


def test_withdrawing_an_unknown_consent_is_refused() -> None:
    customer = registered_customer()

    assert refused(lambda: withdraw(customer, uuid4(), expressed_at=NOW)) is (
        Reason.CONSENT_NOT_FOUND
    )


def test_withdrawing_a_consent_twice_is_refused() -> None:
    customer = registered_customer()
    consent_id = grant(customer, uuid4())
    withdraw(customer, consent_id, expressed_at=NOW - DAY)
    customer.collect_events()

    reason = refused(lambda: withdraw(customer, consent_id, expressed_at=NOW))

    assert reason is Reason.CONSENT_ALREADY_WITHDRAWN
    assert customer.pending_events == ()
    assert customer.consents[consent_id].withdrawn_at == NOW - DAY


def test_a_withdrawal_cannot_precede_the_grant() -> None:
    customer = registered_customer()
    consent_id = grant(customer, uuid4(), at=GRANTED)

    reason = refused(
        lambda: withdraw(customer, consent_id, expressed_at=GRANTED - MICROSECOND, at=NOW)
    )

    assert reason is Reason.WITHDRAWAL_BEFORE_GRANT
    assert customer.consents[consent_id].withdrawn_at is None


def test_a_withdrawal_expressed_at_the_grant_instant_is_accepted() -> None:
    customer = registered_customer()
    consent_id = grant(customer, uuid4(), at=GRANTED)

    withdraw(customer, consent_id, expressed_at=GRANTED, at=NOW)

    assert customer.consents[consent_id].withdrawn_at == GRANTED


def test_a_withdrawal_expressed_beyond_the_clock_tolerance_in_the_future_is_refused() -> None:
    customer = registered_customer()
    consent_id = grant(customer, uuid4())

    reason = refused(
        lambda: withdraw(
            customer, consent_id, expressed_at=NOW + CLOCK_TOLERANCE + MICROSECOND, at=NOW
        )
    )

    assert reason is Reason.WITHDRAWAL_IN_FUTURE
    assert customer.consents[consent_id].withdrawn_at is None


def test_a_withdrawal_expressed_within_the_clock_tolerance_in_the_future_is_accepted() -> None:
    customer = registered_customer()
    consent_id = grant(customer, uuid4())

    withdraw(customer, consent_id, expressed_at=NOW + CLOCK_TOLERANCE, at=NOW)

    assert customer.consents[consent_id].withdrawn_at == NOW + CLOCK_TOLERANCE


def test_a_late_withdrawal_is_accepted_and_marked_late() -> None:
    customer = registered_customer()
    consent_id = grant(customer, uuid4())
    customer.collect_events()
    expressed = NOW - 3 * DAY  # the customer's letter, opened today

    withdraw(customer, consent_id, expressed_at=expressed, at=NOW)

    (event,) = customer.collect_events()
    assert isinstance(event, ConsentWithdrawn)
    assert (event.consent_id, event.expressed_at, event.channel) == (
        consent_id,
        expressed,
        "LETTER",
    )
    assert event.timestamp == NOW
    held = customer.consents[consent_id]
    assert held.withdrawn_at == expressed
    assert held.withdrawal_recorded_at == NOW
    assert held.withdrawal_version == event.originator_version == customer.version
    assert held.withdrawal_channel == "LETTER"
    assert held.withdrawn_late


def test_a_withdrawal_expressed_when_recorded_is_not_late() -> None:
    customer = registered_customer()
    consent_id = grant(customer, uuid4())

    withdraw(customer, consent_id, expressed_at=NOW, at=NOW)

    assert not customer.consents[consent_id].withdrawn_late


# ==================================================================== 5. erasure


def customer_with_history() -> tuple[Customer, UUID, UUID]:
    """A customer with two contacts (one without email/phone), a purchase and a tier."""
    customer = registered_customer()
    full, bare = uuid4(), uuid4()
    customer.add_contact(
        full,
        name="Chen Jing",
        email="chen.jing@example.com",
        phone="+86 21 5555 0100",
        title="Owner",
        layer=ContactLayer.DECISION,
        function=ContactFunction.FINANCE,
        influence=5,
        meta=meta(GRANTED),
    )
    customer.add_contact(
        bare,
        name="Wang Fang",
        email=None,
        phone=None,
        title=None,
        layer=ContactLayer.OPERATIONAL,
        function=ContactFunction.USER,
        influence=2,
        meta=meta(GRANTED),
    )
    purchase(customer, Decimal("1200.00"), at=GRANTED + DAY)
    customer.change_tier(
        Tier.KEY, reason="high potential", effective_from=GRANTED + DAY, meta=meta(GRANTED + DAY)
    )
    customer.collect_events()
    return customer, full, bare


def purchase(customer: Customer, amount: Decimal, *, at: datetime = NOW, summary: str = "") -> None:
    customer.record_interaction(
        uuid4(),
        kind=InteractionKind.PURCHASE,
        channel=Channel.WEB,
        direction=Direction.INBOUND,
        occurred_at=at,
        summary=summary,
        amount=amount,
        currency="CNY",
        satisfaction=None,
        partner_id=None,
        contact_ids=(),
        meta=meta(at),
    )


def erased_customer() -> tuple[Customer, UUID, UUID]:
    customer, full, bare = customer_with_history()
    customer.erase(reason="right to erasure (request 42)", meta=meta(NOW))
    customer.collect_events()
    return customer, full, bare


def test_erasure_records_personal_data_erased_and_wipes_every_personal_field() -> None:
    customer, full, bare = customer_with_history()
    before = customer.version

    customer.erase(reason="right to erasure (request 42)", meta=meta(NOW))

    (event,) = customer.collect_events()
    assert isinstance(event, PersonalDataErased)
    assert event.reason == "right to erasure (request 42)"
    assert event.originator_version == before + 1
    assert customer.erased is True
    assert customer.erased_at == NOW
    assert customer.display_name == ERASED
    contact, bare_contact = customer.contacts[full], customer.contacts[bare]
    assert (contact.name, contact.email, contact.phone) == (ERASED, ERASED, ERASED)
    assert (bare_contact.name, bare_contact.email, bare_contact.phone) == (ERASED, None, None)
    # what is not personal stays
    assert (contact.title, contact.layer, contact.function, contact.influence) == (
        "Owner",
        ContactLayer.DECISION,
        ContactFunction.FINANCE,
        5,
    )


def test_erasure_keeps_the_non_personal_history() -> None:
    customer, _, _ = customer_with_history()
    kept = {
        "tier": customer.tier,
        "purchase_count": customer.purchase_count,
        "purchased_total": customer.purchased_total,
        "first_purchase_at": customer.first_purchase_at,
        "last_purchase_at": customer.last_purchase_at,
        "interaction_count": customer.interaction_count,
        "industry": customer.industry,
        "region": customer.region,
        "external_ref": customer.external_ref,
    }

    customer.erase(reason="right to erasure", meta=meta(NOW))

    assert {name: getattr(customer, name) for name in kept} == kept
    assert customer.tier is Tier.KEY
    assert customer.purchased_total == Decimal("1200.00")


def test_erasure_replays_to_the_same_state() -> None:
    customer = Customer.register(
        uuid4(),
        external_ref="CRM-0101",
        display_name="Chen Jing",
        kind=CustomerKind.PERSON,
        industry="RETAIL",
        region="EAST",
        size=CompanySize.MICRO,
        source="WEB",
        acquired_via_partner_id=None,
        potential_value=PotentialValue.HIGH,
        meta=meta(GRANTED),
    )
    customer.add_contact(
        uuid4(),
        name="Chen Jing",
        email="chen.jing@example.com",
        phone=None,
        title=None,
        layer=ContactLayer.DECISION,
        function=ContactFunction.USER,
        influence=3,
        meta=meta(GRANTED),
    )
    customer.erase(reason="right to erasure", meta=meta(NOW))
    first, *rest = customer.collect_events()

    replayed = Customer.created(first)
    for event in rest:
        replayed.apply(event)

    assert replayed.state() == customer.state()
    assert replayed.display_name == ERASED
    assert replayed.erased


def test_erasing_twice_is_refused() -> None:
    customer, _, _ = erased_customer()

    reason = refused(lambda: customer.erase(reason="again", meta=meta(NOW + DAY)))

    assert reason is Reason.CUSTOMER_ERASED
    assert customer.pending_events == ()
    assert customer.erased_at == NOW


def test_after_erasure_a_new_display_name_is_refused() -> None:
    customer, _, _ = erased_customer()

    reason = refused(
        lambda: customer.update_profile(
            {"display_name": "Chen Jing", "industry": "WHOLESALE"}, meta(NOW + DAY)
        )
    )

    assert reason is Reason.CUSTOMER_ERASED
    assert customer.pending_events == ()
    assert (customer.display_name, customer.industry) == (ERASED, "RETAIL")


def test_after_erasure_a_non_personal_profile_change_is_accepted() -> None:
    customer, _, _ = erased_customer()

    customer.update_profile({"industry": "WHOLESALE"}, meta(NOW + DAY))

    assert customer.industry == "WHOLESALE"
    assert customer.display_name == ERASED


def test_after_erasure_a_contact_cannot_be_added() -> None:
    customer, _, _ = erased_customer()
    contacts = dict(customer.contacts)

    reason = refused(
        lambda: customer.add_contact(
            uuid4(),
            name="Zhao Lei",
            email=None,
            phone=None,
            title=None,
            layer=ContactLayer.MANAGEMENT,
            function=ContactFunction.OTHER,
            influence=3,
            meta=meta(NOW + DAY),
        )
    )

    assert reason is Reason.CUSTOMER_ERASED
    assert customer.contacts == contacts


def test_after_erasure_an_interaction_with_a_summary_is_refused() -> None:
    customer, _, _ = erased_customer()

    reason = refused(
        lambda: purchase(customer, Decimal("10.00"), at=NOW + DAY, summary="asked for invoice")
    )

    assert reason is Reason.CUSTOMER_ERASED
    assert customer.purchase_count == 1
    assert customer.pending_events == ()


def test_after_erasure_a_purchase_without_a_summary_is_accepted() -> None:
    customer, _, _ = erased_customer()

    purchase(customer, Decimal("300.00"), at=NOW + DAY)

    assert customer.purchase_count == 2
    assert customer.purchased_total == Decimal("1500.00")
    assert customer.last_purchase_at == NOW + DAY


def test_after_erasure_no_consent_can_be_granted() -> None:
    customer, _, _ = erased_customer()

    reason = refused(lambda: grant(customer, uuid4(), effective_from=NOW + DAY, at=NOW + DAY))

    assert reason is Reason.CUSTOMER_ERASED
    assert customer.consents == {}


def test_after_erasure_a_consent_can_still_be_withdrawn() -> None:
    """Withdrawing adds no personal data, and refusing it would keep the consent alive."""
    partner_id = uuid4()
    partner = onboarded_partner(partner_id, uuid4())
    customer = registered_customer()
    consent_id = grant(customer, partner_id)
    customer.erase(reason="right to erasure", meta=meta(NOW - DAY))

    withdraw(customer, consent_id, expressed_at=NOW - HOUR)

    _, event = share(customer, partner)
    assert isinstance(event, DataShareRefused)
    assert set(event.reasons) == {ERASED_REASON, WITHDRAWN}


def test_after_erasure_a_share_is_refused_with_customer_erased() -> None:
    partner_id, agreement_id = uuid4(), uuid4()
    partner = onboarded_partner(partner_id, agreement_id)
    customer = registered_customer()
    grant(customer, partner_id, categories=(CONTACT, IDENTITY))
    customer.erase(reason="right to erasure", meta=meta(NOW - DAY))

    decision, event = share(customer, partner, categories=(CONTACT, IDENTITY))

    assert isinstance(event, DataShareRefused)
    assert event.reasons == (ERASED_REASON,)
    assert event.partner_version == partner.version
    assert all(d.allowed for d in decision.categories)
    assert (customer.shares, customer.refused_shares) == (0, 1)


# ========================================================= 6. property vs reference

P_PURPOSES = (MARKETING, ANALYTICS)
P_CATEGORIES = (IDENTITY, CONTACT, PROFILE)
BASE = NOW


def hours(n: int) -> datetime:
    return BASE + n * HOUR


@dataclass(frozen=True)
class AgreementSpec:
    confidential: bool
    purposes: frozenset[Purpose]
    categories: frozenset[DataCategory]
    starts: int
    ends: int | None
    terminated: int | None


@dataclass(frozen=True)
class ConsentSpec:
    for_partner: bool
    purpose: Purpose
    categories: frozenset[DataCategory]
    starts: int
    expires: int | None
    withdrawn: int | None


@dataclass(frozen=True)
class Scenario:
    status: PartnerStatus | None
    """None: the partner is unknown."""
    agreements: tuple[AgreementSpec, ...]
    consents: tuple[ConsentSpec, ...]
    erased: bool
    purpose: Purpose
    categories: tuple[DataCategory, ...]
    at: int


HOURS = st.integers(min_value=-3, max_value=3)
EARLY = st.integers(min_value=-3, max_value=0)


def maybe(values: st.SearchStrategy[int], *, rarely: bool) -> st.SearchStrategy[int | None]:
    """An optional instant: absent half the time, or three times in four when ``rarely``."""
    nones = st.none() | st.none() | st.none() if rarely else st.none()
    return nones | values


@st.composite
def agreement_specs(
    draw: st.DrawFn,
    purpose: Purpose | None = None,
    categories: frozenset[DataCategory] = frozenset(),
) -> AgreementSpec:
    """An agreement; given a purpose and categories, one that at least permits those."""
    seeded = purpose is not None
    starts = draw(EARLY if seeded else HOURS)
    purposes = draw(st.frozensets(st.sampled_from(P_PURPOSES), min_size=1))
    permitted = draw(st.frozensets(st.sampled_from(P_CATEGORIES), min_size=1))
    return AgreementSpec(
        confidential=draw(st.sampled_from([True, True, True, False])),
        purposes=purposes if purpose is None else purposes | {purpose},
        categories=permitted | categories,
        starts=starts,
        ends=draw(maybe(st.integers(min_value=starts + 1, max_value=4), rarely=seeded)),
        terminated=draw(maybe(HOURS, rarely=seeded)),
    )


@st.composite
def consent_specs(
    draw: st.DrawFn, purpose: Purpose | None = None, category: DataCategory | None = None
) -> ConsentSpec:
    """A consent; given a purpose and a category, one for this partner that covers them."""
    starts = draw(HOURS)
    categories = draw(st.frozensets(st.sampled_from(P_CATEGORIES), min_size=1))
    return ConsentSpec(
        for_partner=purpose is not None or draw(st.sampled_from([True, True, True, False])),
        purpose=draw(st.sampled_from(P_PURPOSES)) if purpose is None else purpose,
        categories=categories if category is None else categories | {category},
        starts=starts,
        expires=draw(maybe(st.integers(min_value=starts + 1, max_value=4), rarely=False)),
        withdrawn=draw(maybe(HOURS, rarely=True)),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Random standing, agreements, consents and instant.

    Half the scenarios are seeded with an agreement permitting the request and a
    covering consent per category (each with random times and state), so that
    allowed shares and near misses are as common as plain refusals.
    """
    purpose = draw(st.sampled_from(P_PURPOSES))
    categories = tuple(
        draw(st.lists(st.sampled_from(P_CATEGORIES), min_size=1, max_size=3, unique=True))
    )
    agreements = draw(st.lists(agreement_specs(), max_size=3))
    consents = draw(st.lists(consent_specs(), max_size=4))
    if draw(st.booleans()):
        agreements.insert(0, draw(agreement_specs(purpose, frozenset(categories))))
        consents.extend(draw(consent_specs(purpose, category)) for category in categories)
    return Scenario(
        status=draw(
            st.sampled_from(
                [
                    *[PartnerStatus.ACTIVE] * 5,
                    PartnerStatus.REGISTERED,
                    PartnerStatus.SUSPENDED,
                    PartnerStatus.TERMINATED,
                    None,
                ]
            )
        ),
        agreements=tuple(agreements),
        consents=tuple(draw(st.permutations(consents))),
        erased=draw(st.sampled_from([False, False, False, False, True])),
        purpose=purpose,
        categories=categories,
        at=draw(HOURS),
    )


class _Recorder:
    """Builds an aggregate by applying events directly (the replay path, no invariants)."""

    def __init__(self, aggregate_id: UUID) -> None:
        self.aggregate_id = aggregate_id
        self.version = 0

    def event(self, event_type: type[Any], at: datetime, **fields: Any) -> Any:
        self.version += 1
        return event_type(
            originator_id=self.aggregate_id,
            originator_version=self.version,
            timestamp=at,
            actor="history",
            request_id=f"req-{self.version}",
            correlation_id="corr",
            **fields,
        )


def partner_from(scenario: Scenario, partner_id: UUID) -> Partner | None:
    if scenario.status is None:
        return None
    rec = _Recorder(partner_id)
    first: PartnerEvent = rec.event(
        PartnerRegistered,
        hours(-100),
        external_ref="PRM-P",
        name="Generated",
        kind=PartnerKind.SERVICE,
        regions=(),
        capabilities=(),
    )
    partner = Partner.created(first)
    terminations: list[tuple[UUID, int]] = []
    for i, spec in enumerate(scenario.agreements):
        agreement_id = UUID(int=i + 1)
        partner.apply(
            rec.event(
                AgreementSigned,
                hours(-50 + i),
                agreement_id=agreement_id,
                kind=AgreementKind.DATA_SHARING,
                effective_from=hours(spec.starts),
                effective_to=None if spec.ends is None else hours(spec.ends),
                confidentiality=spec.confidential,
                permitted_purposes=tuple(sorted(spec.purposes)),
                permitted_data_categories=tuple(sorted(spec.categories)),
                document_sha256=SHA,
            )
        )
        if spec.terminated is not None:
            terminations.append((agreement_id, spec.terminated))
    for agreement_id, when in terminations:
        partner.apply(
            rec.event(AgreementTerminated, hours(when), agreement_id=agreement_id, reason="x")
        )
    if scenario.status is not PartnerStatus.REGISTERED:
        partner.apply(rec.event(PartnerActivated, hours(-40), reason="go"))
    if scenario.status is PartnerStatus.SUSPENDED:
        partner.apply(rec.event(PartnerSuspended, hours(-30), reason="audit"))
    if scenario.status is PartnerStatus.TERMINATED:
        partner.apply(rec.event(PartnerTerminated, hours(-30), reason="ended"))
    return partner


def customer_from(scenario: Scenario, partner_id: UUID) -> tuple[Customer, list[UUID]]:
    rec = _Recorder(uuid4())
    customer = Customer.created(
        rec.event(
            CustomerRegistered,
            hours(-100),
            external_ref="CRM-P",
            display_name="Generated",
            kind=CustomerKind.PERSON,
            industry="X",
            region="Y",
            source="Z",
            potential_value=PotentialValue.LOW,
        )
    )
    ids: list[UUID] = []
    for i, spec in enumerate(scenario.consents):
        consent_id = UUID(int=1000 + i)
        ids.append(consent_id)
        customer.apply(
            rec.event(
                ConsentGranted,
                hours(-20 + i),
                consent_id=consent_id,
                partner_id=partner_id if spec.for_partner else OTHER_PARTNER_ID,
                purpose=spec.purpose,
                data_categories=tuple(sorted(spec.categories)),
                effective_from=hours(spec.starts),
                expires_at=None if spec.expires is None else hours(spec.expires),
                capture=CAPTURE,
            )
        )
    for consent_id, spec in zip(ids, scenario.consents, strict=True):
        if spec.withdrawn is not None:
            customer.apply(
                rec.event(
                    ConsentWithdrawn,
                    hours(10),
                    consent_id=consent_id,
                    expressed_at=hours(spec.withdrawn),
                    channel="PHONE",
                )
            )
    if scenario.erased:
        customer.apply(rec.event(PersonalDataErased, hours(-10), reason="erasure"))
    return customer, ids


# --- the reference: DESIGN §3 read literally, on the generated specs alone


def ref_agreement_permits(s: Scenario) -> bool:
    at = s.at
    return any(
        a.confidential
        and a.starts <= at
        and (a.ends is None or at < a.ends)
        and (a.terminated is None or at < a.terminated)
        and s.purpose in a.purposes
        and set(s.categories) <= a.categories
        for a in s.agreements
    )


def ref_consent_state(c: ConsentSpec, at: int) -> ShareReason | None:
    """None when the consent is in effect at ``at``, else why not."""
    if c.withdrawn is not None and c.withdrawn <= at:
        return WITHDRAWN
    if c.expires is not None and c.expires <= at:
        return EXPIRED
    if at < c.starts:
        return NO_CONSENT
    return None


def ref_category(s: Scenario, category: DataCategory) -> tuple[ShareReason, ...]:
    covering = [
        c
        for c in s.consents
        if c.for_partner and c.purpose is s.purpose and category in c.categories
    ]
    states = {ref_consent_state(c, s.at) for c in covering}
    if None in states:
        return ()
    for reason in (WITHDRAWN, EXPIRED):
        if reason in states:
            return (reason,)
    return (NO_CONSENT,)


def ref_allowed(s: Scenario) -> bool:
    return (
        s.status is PartnerStatus.ACTIVE
        and ref_agreement_permits(s)
        and not s.erased
        and all(ref_category(s, category) == () for category in s.categories)
    )


ALL_GOOD = Scenario(
    status=PartnerStatus.ACTIVE,
    agreements=(
        AgreementSpec(
            confidential=True,
            purposes=frozenset({MARKETING}),
            categories=frozenset({CONTACT, IDENTITY}),
            starts=0,
            ends=1,
            terminated=None,
        ),
    ),
    consents=(
        ConsentSpec(
            for_partner=True,
            purpose=MARKETING,
            categories=frozenset({CONTACT}),
            starts=0,
            expires=1,
            withdrawn=1,
        ),
        ConsentSpec(
            for_partner=True,
            purpose=MARKETING,
            categories=frozenset({IDENTITY}),
            starts=-1,
            expires=None,
            withdrawn=None,
        ),
    ),
    erased=False,
    purpose=MARKETING,
    categories=(CONTACT, IDENTITY),
    at=0,
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenario=scenarios())
@example(scenario=ALL_GOOD)
@example(scenario=replace(ALL_GOOD, at=1))
def test_decide_share_agrees_with_a_straightforward_reference(scenario: Scenario) -> None:
    partner_id = uuid4()
    partner = partner_from(scenario, partner_id)
    customer, consent_ids = customer_from(scenario, partner_id)
    at = hours(scenario.at)

    decision = decide_share(
        consents=customer.consents,
        erased=customer.erased,
        partner=partner,
        partner_id=partner_id,
        purpose=scenario.purpose,
        categories=scenario.categories,
        at=at,
    )

    expected_allowed = ref_allowed(scenario)
    assert decision.allowed is expected_allowed
    reasons = set(decision.reasons)
    assert (ERASED_REASON in reasons) is scenario.erased
    assert (NOT_ACTIVE in reasons) is (scenario.status is not PartnerStatus.ACTIVE)
    assert (NOT_PERMITTED in reasons) is (
        scenario.status is not None and not ref_agreement_permits(scenario)
    )
    assert [(d.category, d.reasons) for d in decision.categories] == [
        (category, ref_category(scenario, category)) for category in scenario.categories
    ]
    consent_reasons = {r for c in scenario.categories for r in ref_category(scenario, c)}
    assert reasons - {ERASED_REASON, NOT_ACTIVE, NOT_PERMITTED} == consent_reasons
    by_id = dict(zip(consent_ids, scenario.consents, strict=True))
    for consent_id in decision.relied_on:
        spec = by_id[consent_id]
        assert spec.for_partner
        assert spec.purpose is scenario.purpose
        assert ref_consent_state(spec, scenario.at) is None
    if expected_allowed:
        assert partner is not None
        assert decision.agreement_id is not None
        assert decision.partner_version == partner.version
        covered = {
            category
            for consent_id in decision.relied_on
            for category in by_id[consent_id].categories
        }
        assert set(scenario.categories) <= covered

    # the command decides the same way, and records it
    customer_decision, event = share(
        customer,
        partner,
        partner_id=partner_id,
        categories=scenario.categories,
        purpose=scenario.purpose,
        at=at,
    )
    assert customer_decision == decision
    assert isinstance(event, DataShared if expected_allowed else DataShareRefused)
