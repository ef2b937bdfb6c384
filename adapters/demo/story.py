"""The demo's story: who the customers and partners are, and what happens to them, in time order.

Everything is decided by seeded generators, so a seed and a scale always tell
the same story: the same ids, the same commands, in the same order. The story
is written as commands, never as events: the runner sends each one through
the application's use cases, so every invariant the domain keeps holds for
the demo data too (a refund never exceeds what was bought, consent is never
back-dated, a share is decided by the real policy and refusals are recorded).

Shape of the story (three years, ending at ``end``):

- Partners of every kind are registered, evaluated, sign agreements, are
  activated, reviewed every quarter and re-evaluated every year; some are
  promoted, one is suspended and reinstated, one is terminated, one never
  gets past evaluation.
- Customers follow a persona (champion, loyal, steady, new, promising, at
  risk, lapsed, reactivated, prospect), so segments and lifecycle stages are
  all populated and each customer's stage history has a plausible shape.
  Purchases follow a seasonal curve (Spring Festival dip, 618, Double 11,
  year end); surveys, complaints and refunds follow purchases.
- Consents are granted to active partners, shared under, sometimes expired,
  renewed or withdrawn (some withdrawals reach us late, after a share); a few
  customers exercise their right to erasure.

Customers are generated lazily, month by month, each from its own seeded
generator, and merged by time: memory stays proportional to the number of
customers, not to the number of events, whatever the scale.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import partial
from uuid import UUID, uuid5

from adapters.demo.names import INDUSTRY_WORDS, INTERNATIONAL_REGIONS, NameMaker
from application.commands import (
    ActivatePartner,
    AddContact,
    ChangePartnerTier,
    ChangeTier,
    Command,
    ConsentCaptureFields,
    EraseCustomerData,
    EvaluatePartner,
    GrantConsent,
    LinkCustomer,
    RecordInteraction,
    RegisterCustomer,
    RegisterPartner,
    ReinstatePartner,
    RemoveContact,
    ReviewPartnerPerformance,
    ShareData,
    SignAgreement,
    SuspendPartner,
    TerminateAgreement,
    TerminatePartner,
    UnlinkCustomer,
    UpdateCustomerProfile,
    WithdrawConsent,
)
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
    LinkRole,
    PartnerKind,
    PotentialValue,
    Purpose,
    Tier,
)

SPAN = timedelta(days=1096)
"""Three years of history, ending at the story's ``end``."""
CUSTOMERS_PER_SCALE = 60
PARTNERS_AT_SCALE_ONE = 8
ID_NAMESPACE = UUID("5b1c0d2e-6a7f-4e8b-9c3d-0e1f2a3b4c5d")
"""uuid5 namespace of every demo id: ids depend only on the seed and the story."""

# Actors: who would have sent each command in a real deployment.
PARTNER_MANAGER = "demo:partner-manager"
SALES = "demo:sales"
SHOP = "demo:shop"
SERVICE = "demo:customer-service"
PRIVACY = "demo:privacy-office"
INTEGRATION = "demo:partner-integration"

TWO_PLACES = Decimal("0.01")


@dataclass(frozen=True)
class Step:
    """One command, the simulated moment it is sent, and who sends it."""

    at: datetime
    command: Command
    actor: str


class Persona(StrEnum):
    CHAMPION = "CHAMPION"
    LOYAL = "LOYAL"
    STEADY = "STEADY"
    NEW = "NEW"
    PROMISING = "PROMISING"
    AT_RISK = "AT_RISK"
    LAPSED = "LAPSED"
    REACTIVATED = "REACTIVATED"
    PROSPECT = "PROSPECT"


PERSONA_WEIGHTS: dict[Persona, float] = {
    Persona.CHAMPION: 0.12,
    Persona.LOYAL: 0.13,
    Persona.STEADY: 0.17,
    Persona.NEW: 0.08,
    Persona.PROMISING: 0.08,
    Persona.AT_RISK: 0.10,
    Persona.LAPSED: 0.10,
    Persona.REACTIVATED: 0.05,
    Persona.PROSPECT: 0.17,
}

REGISTRATION_DAYS: dict[Persona, tuple[float, float]] = {
    Persona.CHAMPION: (1, 540),
    Persona.LOYAL: (1, 700),
    Persona.STEADY: (1, 850),
    Persona.NEW: (1016, 1076),
    Persona.PROMISING: (800, 1000),
    Persona.AT_RISK: (1, 400),
    Persona.LAPSED: (1, 300),
    Persona.REACTIVATED: (1, 150),
    Persona.PROSPECT: (1, 1090),
}
"""Registration window (days after the story's start) per persona."""

PURCHASES_PER_MONTH: dict[Persona, float] = {
    Persona.CHAMPION: 1.6,
    Persona.LOYAL: 0.7,
    Persona.STEADY: 0.3,
    Persona.NEW: 0.5,
    Persona.PROMISING: 0.4,
    Persona.AT_RISK: 0.8,
    Persona.LAPSED: 0.6,
    Persona.REACTIVATED: 0.7,
    Persona.PROSPECT: 0.0,
}

SEASON = {1: 0.8, 2: 0.5, 3: 1.1, 4: 1.0, 5: 1.0, 6: 1.25, 7: 0.9, 8: 0.8, 9: 1.1, 10: 0.9}
"""Purchase seasonality by month: Spring Festival dip, 618, Double 11 and year end."""
SEASON_PEAKS = {11: 1.5, 12: 1.4}

INDUSTRIES = tuple(INDUSTRY_WORDS)
REGIONS = ("EAST", "SOUTH", "NORTH", "WEST", "CENTRAL", "APAC", "EMEA", "AMERICAS")
REGION_WEIGHTS = (0.25, 0.2, 0.15, 0.08, 0.1, 0.1, 0.08, 0.04)
SIZES = tuple(CompanySize)
SIZE_WEIGHTS = (0.15, 0.3, 0.3, 0.17, 0.08)
ORDER_MEDIAN: dict[CompanySize | None, float] = {
    None: 900.0,
    CompanySize.MICRO: 3_000.0,
    CompanySize.SMALL: 12_000.0,
    CompanySize.MEDIUM: 45_000.0,
    CompanySize.LARGE: 150_000.0,
    CompanySize.ENTERPRISE: 480_000.0,
}
"""Median order value by company size (``None``: a private person), in the base currency."""
KEY_THRESHOLD = Decimal(250_000)
STRATEGIC_THRESHOLD = Decimal(1_500_000)
"""Trailing twelve months' net purchases that make an account KEY or STRATEGIC."""

ROLES: dict[ContactLayer, tuple[tuple[str, ContactFunction], ...]] = {
    ContactLayer.DECISION: (
        ("General Manager", ContactFunction.OTHER),
        ("Chief Financial Officer", ContactFunction.FINANCE),
        ("Chief Technology Officer", ContactFunction.TECHNICAL),
        ("Purchasing Director", ContactFunction.PROCUREMENT),
        ("Chief Operating Officer", ContactFunction.USER),
    ),
    ContactLayer.MANAGEMENT: (
        ("IT Manager", ContactFunction.TECHNICAL),
        ("Finance Manager", ContactFunction.FINANCE),
        ("Procurement Manager", ContactFunction.PROCUREMENT),
        ("Operations Manager", ContactFunction.USER),
        ("HR Manager", ContactFunction.OTHER),
    ),
    ContactLayer.OPERATIONAL: (
        ("Engineer", ContactFunction.TECHNICAL),
        ("Accountant", ContactFunction.FINANCE),
        ("Buyer", ContactFunction.PROCUREMENT),
        ("Business Analyst", ContactFunction.USER),
        ("Office Administrator", ContactFunction.OTHER),
    ),
}
INFLUENCE = {ContactLayer.DECISION: (4, 5), ContactLayer.MANAGEMENT: (3, 4)}

PARTNER_KINDS = tuple(PartnerKind)
PARTNER_WORDS = {
    PartnerKind.JOINT_VENTURE: "Joint Venture Co.",
    PartnerKind.RESELLER: "Trading",
    PartnerKind.DISTRIBUTOR: "Supply Chain",
    PartnerKind.REFERRAL: "Business Consulting",
    PartnerKind.TECHNOLOGY: "Cloud Technologies",
    PartnerKind.SERVICE: "Engineering Services",
}
CAPABILITIES = {
    PartnerKind.JOINT_VENTURE: ("JOINT_DELIVERY", "CO_MARKETING", "LOCAL_SALES"),
    PartnerKind.RESELLER: ("RESALE", "LOCAL_SUPPORT", "FINANCING"),
    PartnerKind.DISTRIBUTOR: ("WAREHOUSING", "DELIVERY", "DISTRIBUTION"),
    PartnerKind.REFERRAL: ("LEAD_GENERATION", "MARKET_RESEARCH"),
    PartnerKind.TECHNOLOGY: ("INTEGRATION", "ANALYTICS", "CLOUD_HOSTING"),
    PartnerKind.SERVICE: ("INSTALLATION", "TRAINING", "FIELD_SERVICE"),
}
AGREEMENT_KIND = {
    PartnerKind.JOINT_VENTURE: AgreementKind.JOINT_VENTURE,
    PartnerKind.RESELLER: AgreementKind.RESALE,
    PartnerKind.DISTRIBUTOR: AgreementKind.DISTRIBUTION,
    PartnerKind.REFERRAL: AgreementKind.REFERRAL,
    PartnerKind.TECHNOLOGY: AgreementKind.DATA_SHARING,
    PartnerKind.SERVICE: AgreementKind.SERVICE,
}
LINK_ROLE = {
    PartnerKind.JOINT_VENTURE: LinkRole.JOINT_VENTURE,
    PartnerKind.RESELLER: LinkRole.RESALE,
    PartnerKind.DISTRIBUTOR: LinkRole.RESALE,
    PartnerKind.REFERRAL: LinkRole.REFERRAL,
    PartnerKind.TECHNOLOGY: LinkRole.CO_SELL,
    PartnerKind.SERVICE: LinkRole.SERVICE,
}
_P = Purpose
_D = DataCategory
PERMITTED: dict[PartnerKind, tuple[tuple[Purpose, ...], tuple[DataCategory, ...]]] = {
    PartnerKind.JOINT_VENTURE: (
        (_P.JOINT_SERVICE, _P.SALES_COOPERATION),
        (_D.IDENTITY, _D.CONTACT, _D.PROFILE, _D.PURCHASE_HISTORY),
    ),
    PartnerKind.RESELLER: (
        (_P.SALES_COOPERATION, _P.SUPPORT),
        (_D.IDENTITY, _D.CONTACT, _D.PURCHASE_HISTORY),
    ),
    PartnerKind.DISTRIBUTOR: ((_P.SALES_COOPERATION,), (_D.IDENTITY, _D.CONTACT, _D.PROFILE)),
    PartnerKind.REFERRAL: ((_P.MARKETING,), (_D.IDENTITY, _D.CONTACT)),
    PartnerKind.TECHNOLOGY: (
        (_P.ANALYTICS, _P.SUPPORT),
        (_D.PROFILE, _D.INTERACTION_HISTORY, _D.SATISFACTION, _D.PURCHASE_HISTORY),
    ),
    PartnerKind.SERVICE: (
        (_P.SUPPORT, _P.JOINT_SERVICE),
        (_D.IDENTITY, _D.CONTACT, _D.INTERACTION_HISTORY),
    ),
}
"""What each kind of partner's main agreement lets it receive, and for which purposes."""

TOUCH_KINDS = (
    (InteractionKind.CALL, 0.25),
    (InteractionKind.EMAIL, 0.25),
    (InteractionKind.MEETING, 0.12),
    (InteractionKind.VISIT, 0.06),
    (InteractionKind.CHAT, 0.12),
    (InteractionKind.SOCIAL, 0.05),
    (InteractionKind.SUPPORT, 0.15),
)
CHANNELS: dict[InteractionKind, tuple[Channel, ...]] = {
    InteractionKind.CALL: (Channel.PHONE,),
    InteractionKind.EMAIL: (Channel.EMAIL,),
    InteractionKind.MEETING: (Channel.IN_PERSON, Channel.OTHER),
    InteractionKind.VISIT: (Channel.IN_PERSON,),
    InteractionKind.CHAT: (Channel.MESSAGING, Channel.WEB),
    InteractionKind.SOCIAL: (Channel.SOCIAL_MEDIA,),
    InteractionKind.EVENT: (Channel.IN_PERSON,),
    InteractionKind.SUPPORT: (Channel.PHONE, Channel.EMAIL, Channel.WEB),
    InteractionKind.PURCHASE: (Channel.WEB, Channel.IN_PERSON, Channel.MOBILE_APP, Channel.EMAIL),
    InteractionKind.REFUND: (Channel.WEB, Channel.PHONE),
    InteractionKind.COMPLAINT: (Channel.PHONE, Channel.EMAIL, Channel.WEB, Channel.SOCIAL_MEDIA),
    InteractionKind.SURVEY: (Channel.WEB, Channel.EMAIL, Channel.MOBILE_APP),
    InteractionKind.CARE: (Channel.MESSAGING, Channel.PHONE, Channel.EMAIL),
}
TOUCHES = tuple(kind for kind, _ in TOUCH_KINDS)
TOUCH_WEIGHTS = tuple(weight for _, weight in TOUCH_KINDS)
SUMMARIES: dict[InteractionKind, tuple[str, ...]] = {
    InteractionKind.CALL: ("Follow-up call on the open quote", "Renewal call", "Check-in call"),
    InteractionKind.EMAIL: ("Sent the updated price list", "Answered questions on delivery"),
    InteractionKind.MEETING: ("Quarterly business review", "Solution workshop", "Contract talks"),
    InteractionKind.VISIT: ("On-site visit to the plant", "Visit with the regional manager"),
    InteractionKind.CHAT: ("Questions on an invoice", "Asked about stock levels"),
    InteractionKind.SOCIAL: ("Commented on the product launch post",),
    InteractionKind.EVENT: ("Met at the trade fair booth", "Attended the customer day"),
    InteractionKind.SUPPORT: ("Installation question resolved", "Configuration issue fixed"),
    InteractionKind.PURCHASE: (
        "Order of spare parts",
        "Annual licence",
        "Framework order call-off",
    ),
    InteractionKind.REFUND: ("Partial refund for damaged goods", "Refund for a returned order"),
    InteractionKind.COMPLAINT: ("Late delivery", "Damaged packaging", "Invoice error"),
    InteractionKind.SURVEY: ("Post-purchase satisfaction survey",),
    InteractionKind.CARE: ("Festival greetings and gift", "Birthday greetings to the buyer"),
}
SATISFACTION: dict[Persona, tuple[int, int]] = {
    Persona.CHAMPION: (8, 10),
    Persona.LOYAL: (7, 10),
    Persona.AT_RISK: (2, 7),
    Persona.LAPSED: (1, 6),
}


SHOWCASE = 13
"""The customer the README shows (with the default seed: 596573c7-...): a Champion persona
who also buys in each of the story's last three weeks and consents to MARKETING with the
showcase partner three weeks before the end, so the README's commands answer the same
whatever day the demo is loaded, not only when the seasons and plans happen to fall right."""
SHOWCASE_PARTNER = 3
"""The partner of the README's consent check (7523cb24-...): active, MARKETING, CONTACT."""


def stable_id(seed: int, *parts: object) -> UUID:
    """The same id for the same seed and story element, on every run."""
    return uuid5(ID_NAMESPACE, ":".join(str(p) for p in (seed, *parts)))


def seeded(seed: int, *parts: object) -> random.Random:
    """An independent generator per story element: reproducible, and no element's draws
    shift another's (synthetic data, not secrets: a non-cryptographic generator is right)."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))  # noqa: S311


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means of a month's purchases."""
    if mean <= 0:
        return 0
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def month_starts(first: datetime, end: datetime) -> Iterator[datetime]:
    moment = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while moment < end:
        yield moment
        moment = (moment + timedelta(days=32)).replace(day=1)


def quarter_of(moment: datetime) -> str:
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


def money(value: float) -> Decimal:
    return Decimal(str(max(value, 1.0))).quantize(TWO_PLACES)


# ----------------------------------------------------------------- partners


@dataclass
class PartnerPlan:
    """A partner's lifecycle decided up front, so customer stories can consult it."""

    index: int
    partner_id: UUID
    kind: PartnerKind
    registered_at: datetime
    activated_at: datetime | None
    suspended: tuple[datetime, datetime] | None
    terminated_at: datetime | None
    purposes: tuple[Purpose, ...]
    categories: tuple[DataCategory, ...]
    steps: list[Step] = field(default_factory=list)

    def active_at(self, moment: datetime) -> bool:
        if self.activated_at is None or moment < self.activated_at:
            return False
        if self.terminated_at is not None and moment >= self.terminated_at:
            return False
        return not (self.suspended and self.suspended[0] <= moment < self.suspended[1])

    def linkable_at(self, moment: datetime) -> bool:
        """Registered and not terminated: customers can be linked to it."""
        return self.registered_at <= moment and (
            self.terminated_at is None or moment < self.terminated_at
        )


@dataclass(frozen=True)
class CustomerProfile:
    index: int
    customer_id: UUID
    persona: Persona
    registered_at: datetime
    kind: CustomerKind
    size: CompanySize | None
    industry: str
    region: str
    potential: PotentialValue
    via_partner: int | None
    imported: bool
    erase: bool
    late_withdrawal: bool


class World:
    """The cast and the calendar: partners' plans and customers' profiles."""

    def __init__(
        self, seed: int, scale: int, end: datetime, currency: str, customers: int | None = None
    ) -> None:
        if scale < 1:
            raise ValueError("the scale is at least 1")
        if customers is not None and customers < len(Persona):
            raise ValueError(f"a demo world has at least {len(Persona)} customers")
        self.seed = seed
        self.scale = scale
        self.end = end
        self.start = end - SPAN
        self.currency = currency
        rng = seeded(seed, "world")
        partners = max(PARTNERS_AT_SCALE_ONE, round(PARTNERS_AT_SCALE_ONE * math.sqrt(scale)))
        self.partners = [self._partner_plan(rng, i) for i in range(partners)]
        self.customers = self._profiles(rng, customers or CUSTOMERS_PER_SCALE * scale)
        for plan in self.partners:
            PartnerStory(self, plan).write()

    def day(self, offset: float) -> datetime:
        return self.start + timedelta(days=offset)

    def _partner_plan(self, rng: random.Random, i: int) -> PartnerPlan:
        kind = PARTNER_KINDS[i] if i < len(PARTNER_KINDS) else rng.choice(PARTNER_KINDS)
        pipeline = i % 8 == 7
        if i == 0:
            registered = self.start  # the first step of the story: the runner anchors on it
        elif pipeline:
            registered = self.day(rng.uniform(950, 1000))
        elif i < len(PARTNER_KINDS):
            registered = self.day(rng.uniform(0.5, 20))
        else:
            registered = self.day(rng.uniform(0, 800))
        activated = None if pipeline else registered + timedelta(days=rng.uniform(20, 35))
        suspended = None
        terminated = None
        if activated is not None and i % 7 == 4:
            begin = max(activated + timedelta(days=120), self.day(rng.uniform(450, 550)))
            suspended = (begin, begin + timedelta(days=rng.uniform(45, 75)))
        elif activated is not None and i % 7 == 2:
            terminated = max(activated + timedelta(days=200), self.day(rng.uniform(760, 840)))
        purposes, categories = PERMITTED[kind]
        return PartnerPlan(
            index=i,
            partner_id=stable_id(self.seed, "partner", i),
            kind=kind,
            registered_at=registered,
            activated_at=activated,
            suspended=suspended,
            terminated_at=terminated,
            purposes=purposes,
            categories=categories,
        )

    def _profiles(self, rng: random.Random, n: int) -> list[CustomerProfile]:
        personas: list[Persona] = []
        for persona, weight in PERSONA_WEIGHTS.items():
            personas += [persona] * max(1, math.floor(weight * n))
        while len(personas) < n:
            personas.append(rng.choices(list(PERSONA_WEIGHTS), list(PERSONA_WEIGHTS.values()))[0])
        personas = personas[:n]
        rng.shuffle(personas)
        erasable = [i for i, p in enumerate(personas) if p in (Persona.LAPSED, Persona.PROSPECT)]
        erase = set(rng.sample(erasable, max(1, round(0.03 * n))))
        buyers = [i for i, p in enumerate(personas) if p in (Persona.CHAMPION, Persona.LOYAL)]
        late = set(rng.sample(buyers, max(1, round(0.03 * n))))
        profiles = []
        for i, persona in enumerate(personas):
            low, high = REGISTRATION_DAYS[persona]
            imported = persona not in (Persona.NEW, Persona.PROMISING, Persona.PROSPECT) and (
                rng.random() < 0.4
            )
            registered = self.day(rng.uniform(1, 45) if imported else rng.uniform(low, high))
            person = rng.random() < 0.15
            size = None if person else rng.choices(SIZES, SIZE_WEIGHTS)[0]
            big = size in (CompanySize.LARGE, CompanySize.ENTERPRISE)
            potential = rng.choices(
                list(PotentialValue), (0.5, 0.4, 0.1) if big else (0.2, 0.5, 0.3)
            )[0]
            via = None
            if rng.random() < 0.3:
                candidates = [p.index for p in self.partners if p.active_at(registered)]
                via = rng.choice(candidates) if candidates else None
            profiles.append(
                CustomerProfile(
                    index=i,
                    customer_id=stable_id(self.seed, "customer", i),
                    persona=persona,
                    registered_at=registered,
                    kind=CustomerKind.PERSON if person else CustomerKind.ORGANISATION,
                    size=size,
                    industry=rng.choice(INDUSTRIES),
                    region=rng.choices(REGIONS, REGION_WEIGHTS)[0],
                    potential=potential,
                    via_partner=via,
                    imported=imported,
                    erase=i in erase,
                    late_withdrawal=i in late,
                )
            )
        return profiles


class PartnerStory:
    """Writes one partner's steps from its plan (a few dozen, kept in memory)."""

    def __init__(self, world: World, plan: PartnerPlan) -> None:
        self.world = world
        self.plan = plan
        self.rng = seeded(world.seed, "partner", plan.index)
        self.tiers: list[tuple[datetime, Tier, str]] = []

    def _add(self, at: datetime, command: Command) -> None:
        if at < self.world.end:
            self.plan.steps.append(Step(at, command, PARTNER_MANAGER))

    def _evaluate(self, at: datetime, notes: str, low: int = 55) -> None:
        r = self.rng
        self._add(
            at,
            EvaluatePartner(
                partner_id=self.plan.partner_id,
                strength=r.randint(low, 95),
                reputation=r.randint(low, 95),
                business_fit=r.randint(low, 95),
                data_protection=r.randint(low, 98),
                notes=notes,
            ),
        )

    def _agreement(
        self, n: int, at: datetime, kind: AgreementKind, until: datetime | None, confidential: bool
    ) -> UUID:
        agreement_id = stable_id(self.world.seed, "agreement", self.plan.index, n)
        purposes, categories = self.plan.purposes, self.plan.categories
        if not confidential:
            purposes, categories = (Purpose.MARKETING,), (DataCategory.IDENTITY,)
        digest = hashlib.sha256(f"{self.world.seed}:{agreement_id}".encode()).hexdigest()
        self._add(
            at,
            SignAgreement(
                partner_id=self.plan.partner_id,
                agreement_id=agreement_id,
                kind=kind,
                effective_from=at,
                effective_to=until,
                confidentiality=confidential,
                permitted_purposes=purposes,
                permitted_data_categories=categories,
                document_sha256=digest,
            ),
        )
        return agreement_id

    def _tier(self, at: datetime, to: Tier, reason: str) -> None:
        self.tiers.append((at, to, reason))

    def _tier_changes(self) -> None:
        """Tier decisions in time order, skipping any that would change nothing."""
        plan, tier = self.plan, Tier.STANDARD
        for at, to, reason in sorted(self.tiers, key=lambda t: t[0]):
            if to is tier or (plan.terminated_at and at >= plan.terminated_at):
                continue
            self._add(at, ChangePartnerTier(partner_id=plan.partner_id, to_tier=to, reason=reason))
            tier = to

    def write(self) -> None:
        plan, r, world = self.plan, self.rng, self.world
        regions = tuple(r.sample(REGIONS, r.randint(1, 3)))
        caps = tuple(r.sample(CAPABILITIES[plan.kind], r.randint(1, len(CAPABILITIES[plan.kind]))))
        self._add(
            plan.registered_at,
            RegisterPartner(
                partner_id=plan.partner_id,
                external_ref=f"DEMO-P{plan.index:05d}",
                name=NameMaker(r).partner(PARTNER_WORDS[plan.kind]),
                kind=plan.kind,
                regions=regions,
                capabilities=caps,
            ),
        )
        self._evaluate(
            plan.registered_at + timedelta(days=r.uniform(3, 8)), "Initial due diligence"
        )
        if plan.kind is PartnerKind.REFERRAL or plan.activated_at is None:
            memo = plan.registered_at + timedelta(days=r.uniform(9, 12))
            self._agreement(0, memo, AgreementKind.COOPERATION, None, confidential=False)
        if plan.activated_at is None:
            return
        signed = plan.activated_at - timedelta(days=r.uniform(1, 6))
        renews = plan.index % 2 == 1 and plan.terminated_at is None
        until = signed + timedelta(days=730) if renews else None
        agreements = [self._agreement(1, signed, AGREEMENT_KIND[plan.kind], until, True)]
        self._add(
            plan.activated_at,
            ActivatePartner(partner_id=plan.partner_id, reason="Due diligence passed"),
        )
        if until is not None:
            agreements.append(
                self._agreement(
                    2, until - timedelta(days=30), AGREEMENT_KIND[plan.kind], None, True
                )
            )
        stop = plan.terminated_at or world.end
        years = 1
        while plan.activated_at + timedelta(days=365 * years) < stop:
            at = plan.activated_at + timedelta(days=365 * years + r.uniform(0, 10))
            if at < stop:  # a terminated partner is not evaluated any more
                self._evaluate(at, f"Annual re-evaluation, year {years}", low=60)
            years += 1
        if r.random() < 0.6:
            self._tier(
                plan.activated_at + timedelta(days=r.uniform(200, 320)),
                Tier.KEY,
                "Strong first year: revenue and customer satisfaction above target",
            )
            if r.random() < 0.5:
                self._tier(
                    plan.activated_at + timedelta(days=r.uniform(600, 700)),
                    Tier.STRATEGIC,
                    "Joint roadmap agreed; a top partner by revenue",
                )
        if plan.suspended is not None:
            begin, finish = plan.suspended
            self._add(
                begin,
                SuspendPartner(
                    partner_id=plan.partner_id,
                    reason="Data protection audit found gaps in access logging",
                ),
            )
            self._tier(begin + timedelta(hours=2), Tier.STANDARD, "Suspended pending audit")
            self._evaluate(finish - timedelta(days=3), "Re-evaluated after remediation", low=70)
            self._add(
                finish,
                ReinstatePartner(
                    partner_id=plan.partner_id, reason="Audit findings remediated and verified"
                ),
            )
        if plan.terminated_at is not None:
            for n, agreement_id in enumerate(agreements):
                self._add(
                    plan.terminated_at - timedelta(hours=2 - n / 10),
                    TerminateAgreement(
                        partner_id=plan.partner_id,
                        agreement_id=agreement_id,
                        reason="Partnership ended: distribution brought in-house",
                    ),
                )
            self._add(
                plan.terminated_at,
                TerminatePartner(
                    partner_id=plan.partner_id, reason="Distribution brought in-house"
                ),
            )
        self._tier_changes()
        self._reviews()
        plan.steps.sort(key=lambda s: s.at)

    def _reviews(self) -> None:
        plan, r, world = self.plan, self.rng, self.world
        assert plan.activated_at is not None
        new_by_quarter: dict[str, int] = {}
        for c in world.customers:
            if c.via_partner == plan.index:
                key = quarter_of(c.registered_at)
                new_by_quarter[key] = new_by_quarter.get(key, 0) + 1
        quarter = plan.activated_at.replace(
            month=(plan.activated_at.month - 1) // 3 * 3 + 1,
            day=1,
            hour=0,
            minute=0,
            second=0,
            microsecond=0,
        )
        last = plan.terminated_at or world.end
        while quarter < last:
            following = (quarter + timedelta(days=95)).replace(day=1)
            period = quarter_of(quarter)
            new = new_by_quarter.get(period, 0)
            suspended = plan.suspended is not None and quarter <= plan.suspended[0] < following
            self._add(
                following + timedelta(days=r.uniform(7, 20)),
                ReviewPartnerPerformance(
                    partner_id=plan.partner_id,
                    period=period,
                    revenue=money(new * r.uniform(20_000, 200_000) + r.uniform(50_000, 600_000)),
                    currency=world.currency,
                    new_customers=new,
                    satisfaction=Decimal(str(round(r.uniform(6.0, 9.6), 2))),
                    complaints=r.randint(3, 9) if suspended else r.randint(0, 3),
                ),
            )
            quarter = following


# ---------------------------------------------------------------- customers


@dataclass(order=True)
class Intent:
    """Something that will happen at ``at``; decided against the state of that moment."""

    at: datetime
    seq: int
    act: Callable[[], Step | None] = field(compare=False)


@dataclass
class ConsentState:
    consent_id: UUID
    partner: PartnerPlan
    purpose: Purpose
    categories: tuple[DataCategory, ...]
    granted_at: datetime
    expires_at: datetime | None
    withdrawn: bool = False


class CustomerStory:
    """One customer's life, generated a month at a time and emitted in time order."""

    def __init__(self, world: World, profile: CustomerProfile) -> None:
        self.world = world
        self.p = profile
        self.rng = seeded(world.seed, "customer", profile.index)
        self.names = NameMaker(self.rng)
        self.heap: list[Intent] = []
        self.seq = 0
        self.counters: dict[str, int] = {}
        self.contacts: dict[UUID, tuple[str, ContactLayer, ContactFunction]] = {}
        self.purchases: list[tuple[datetime, Decimal]] = []
        self.net = Decimal(0)
        self.tier = Tier.STANDARD
        self.size = profile.size
        self.potential = profile.potential
        self.consents: dict[UUID, ConsentState] = {}
        self.erased = False
        self.erase_at: datetime | None = None
        self.domain = ""
        self.buying: list[tuple[datetime, datetime, float]] = []
        self.linked: set[int] = set()
        self.now = profile.registered_at
        """The moment of the intent being decided (set by the emitter)."""

    # ------------------------------------------------------------ plumbing

    def _id(self, what: str) -> UUID:
        n = self.counters.get(what, 0)
        self.counters[what] = n + 1
        return stable_id(self.world.seed, "customer", self.p.index, what, n)

    def _push(self, at: datetime, act: Callable[[], Step | None]) -> None:
        if at < self.world.end and (self.erase_at is None or at <= self.erase_at):
            self.seq += 1
            heapq.heappush(self.heap, Intent(at, self.seq, act))

    def _moment(self, day: datetime) -> datetime:
        """A business-hours moment on ``day``'s date (China or the customer's region)."""
        base = day.replace(hour=0, minute=0, second=0, microsecond=0)
        hours = (7, 17) if self.p.region in INTERNATIONAL_REGIONS else (1, 10)
        return base + timedelta(hours=self.rng.uniform(*hours))

    def steps(self) -> Iterator[Step]:
        self.now = last = self.p.registered_at
        yield self._register()
        for month in month_starts(self.p.registered_at, self.world.end):
            if not self.erased:
                self._plan_month(month)
            following = (month + timedelta(days=32)).replace(day=1)
            while self.heap and self.heap[0].at < following:
                intent = heapq.heappop(self.heap)
                self.now = intent.at
                step = intent.act()
                if step is not None:
                    last = max(last, step.at)
                    yield Step(last, step.command, step.actor) if step.at < last else step

    # --------------------------------------------------------- registration

    def _register(self) -> Step:
        p, r, at = self.p, self.rng, self.p.registered_at
        if p.kind is CustomerKind.PERSON:
            name, _ = self.names.person(p.region)
            self.domain = r.choice(("mail.example", "inbox.example", "post.example"))
        else:
            name, stem = self.names.company(p.industry, p.region)
            self.domain = f"{stem}.example"
        via = self.world.partners[p.via_partner] if p.via_partner is not None else None
        if p.imported:
            source = "CRM_IMPORT"
        elif via is not None:
            source = "PARTNER_REFERRAL"
        else:
            source = r.choice(("TRADE_FAIR", "WEBSITE", "COLD_CALL", "INBOUND_CALL", "WEBINAR"))
        self._plan_life()
        return Step(
            at,
            RegisterCustomer(
                customer_id=p.customer_id,
                external_ref=f"DEMO-C{p.index:07d}",
                display_name=name,
                kind=p.kind,
                industry=p.industry,
                region=p.region,
                size=p.size,
                source=source,
                acquired_via_partner_id=via.partner_id if via else None,
                potential_value=p.potential,
            ),
            SALES,
        )

    def _plan_life(self) -> None:
        """What is decided at registration: contacts, buying periods, reviews, consents."""
        p, r, world = self.p, self.rng, self.world
        reg, end = p.registered_at, world.end
        if p.erase:
            self.erase_at = max(end - timedelta(days=r.uniform(20, 200)), reg + (end - reg) * 0.8)
            self._push(
                max(self.erase_at - timedelta(days=1), reg + timedelta(minutes=1)),
                self._before_erasure,
            )
            self._push(self.erase_at, self._erase)
        if p.kind is CustomerKind.PERSON:
            role = ("Private customer", ContactLayer.DECISION, ContactFunction.USER)
            self._push(reg + timedelta(minutes=5), partial(self._add_contact, role))
        else:
            layers = [ContactLayer.DECISION, ContactLayer.OPERATIONAL]
            if p.size is not CompanySize.MICRO:
                layers += [ContactLayer.MANAGEMENT] + [ContactLayer.OPERATIONAL] * r.randint(0, 2)
            for layer in layers:
                title, function = r.choice(ROLES[layer])
                role = (title, layer, function)
                self._push(
                    self._moment(reg + timedelta(days=r.uniform(0, 14))),
                    partial(self._add_contact, role),
                )
        if p.via_partner is not None:
            partner = world.partners[p.via_partner]
            self._push(reg + timedelta(hours=r.uniform(1, 72)), partial(self._link, partner))
            if partner.terminated_at is not None:
                self._push(
                    partner.terminated_at + timedelta(days=r.uniform(1, 10)),
                    partial(self._unlink, partner),
                )
        rate = PURCHASES_PER_MONTH[p.persona]
        begin = reg + timedelta(
            days=r.uniform(1, 10) if p.persona is Persona.NEW else r.uniform(5, 45)
        )
        match p.persona:
            case Persona.AT_RISK:
                self.buying = [(begin, end - timedelta(days=r.uniform(190, 330)), rate)]
            case Persona.LAPSED:
                self.buying = [(begin, end - timedelta(days=r.uniform(400, 700)), rate)]
            case Persona.REACTIVATED:
                self.buying = [(begin, end - timedelta(days=r.uniform(500, 800)), rate)]
            case Persona.PROSPECT:
                self.buying = []
            case _:
                self.buying = [(begin, end, rate)]
        if p.persona is Persona.NEW:  # at least one purchase
            self._plan_purchase(begin + timedelta(days=r.uniform(0, 5)))
        elif p.persona is Persona.REACTIVATED:  # one purchase after more than a year's silence
            self._plan_purchase(end - timedelta(days=r.uniform(10, 80)))
        for quarter in month_starts(reg + timedelta(days=180), end):
            if quarter.month in (1, 4, 7, 10) and p.persona is not Persona.PROSPECT:
                self._push(
                    self._moment(quarter + timedelta(days=r.uniform(3, 10))), self._tier_review
                )
        if r.random() < 0.12:
            self._push(self._moment(reg + timedelta(days=r.uniform(90, 900))), self._update_profile)
        consents = 1 if p.late_withdrawal else (r.random() < 0.55) * r.randint(1, 2)
        for _ in range(consents):
            self._push(self._moment(reg + timedelta(days=r.uniform(1, 60))), self._grant)
        if r.random() < 0.04:  # marketing asks to share with no consent: refused
            self._push(self._moment(reg + timedelta(days=r.uniform(30, 400))), self._stray_share)

    # ------------------------------------------------------------- monthly

    def _plan_month(self, month: datetime) -> None:
        r, p = self.rng, self.p
        following = (month + timedelta(days=32)).replace(day=1)
        days = (following - month).days
        season = SEASON.get(month.month) or SEASON_PEAKS[month.month]
        for begin, until, rate in self.buying:
            for _ in range(poisson(r, rate * season)):
                day = month + timedelta(days=r.randrange(days))
                if begin <= day < until:
                    self._plan_purchase(day)
        touches = 0.4 if p.persona is Persona.PROSPECT else 0.7
        if self.buying and self.buying[-1][1] < month:
            touches = 0.25  # win-back calls to a customer who stopped buying
        for _ in range(poisson(r, touches)):
            day = month + timedelta(days=r.randrange(days))
            self._plan_touch(day, r.choices(TOUCHES, TOUCH_WEIGHTS)[0])
        if month.month in (4, 10) and r.random() < 0.2:  # Canton Fair season
            self._plan_touch(month + timedelta(days=r.uniform(10, 20)), InteractionKind.EVENT)
        if month.month in (1, 9) and r.random() < 0.3 and p.persona is not Persona.PROSPECT:
            self._plan_touch(month + timedelta(days=r.uniform(5, 25)), InteractionKind.CARE)
        if r.random() < 0.01 and self.contacts:  # a stakeholder moves on
            self._push(self._moment(month + timedelta(days=r.randrange(days))), self._turnover)
        if p.index == SHOWCASE and following >= self.world.end:
            # Planned after the month's own draws, so the rest of its story is unchanged.
            for days_before in (2, 9, 16):
                self._plan_purchase(self.world.end - timedelta(days=days_before))
            self._push(self._moment(self.world.end - timedelta(days=20)), self._showcase_grant)

    def _plan_touch(self, day: datetime, kind: InteractionKind) -> None:
        occurred = self._moment(day)
        if occurred <= self.p.registered_at:
            return
        lag = timedelta(hours=self.rng.uniform(0.1, 30))
        self._push(occurred + lag, partial(self._interaction, kind, occurred))

    def _plan_purchase(self, day: datetime) -> None:
        r = self.rng
        occurred = self._moment(day)
        if occurred <= self.p.registered_at:
            return
        amount = money(ORDER_MEDIAN[self.size] * r.lognormvariate(0, 0.6))
        self._push(
            occurred + timedelta(minutes=r.uniform(1, 90)),
            partial(self._interaction, InteractionKind.PURCHASE, occurred, amount),
        )
        if r.random() < 0.3:
            self._plan_follow_up(occurred, (3, 10), InteractionKind.SURVEY)
        roll = r.random()
        if roll < 0.07:
            complaint = self._plan_follow_up(occurred, (2, 20), InteractionKind.COMPLAINT)
            if r.random() < 0.5:
                share = Decimal(str(round(r.uniform(0.1, 1.0), 2)))
                self._plan_follow_up(complaint, (3, 15), InteractionKind.REFUND, amount * share)
        elif roll < 0.1:
            self._plan_follow_up(occurred, (5, 25), InteractionKind.REFUND, amount)

    def _plan_follow_up(
        self,
        after: datetime,
        days: tuple[float, float],
        kind: InteractionKind,
        amount: Decimal | None = None,
    ) -> datetime:
        occurred = self._moment(after + timedelta(days=self.rng.uniform(*days)))
        lag = timedelta(minutes=self.rng.uniform(5, 600))
        self._push(occurred + lag, partial(self._interaction, kind, occurred, amount))
        return occurred

    # ------------------------------------------------------------ decisions

    def _interaction(
        self, kind: InteractionKind, occurred: datetime, amount: Decimal | None = None
    ) -> Step | None:
        r, p = self.rng, self.p
        satisfaction = None
        direction = Direction.INBOUND
        if kind is InteractionKind.REFUND:
            amount = min(amount or Decimal(0), self.net).quantize(TWO_PLACES)
            if amount <= 0:
                return None
            self.net -= amount
            self.purchases.append((occurred, -amount))
        elif kind is InteractionKind.PURCHASE:
            assert amount is not None
            self.net += amount
            self.purchases.append((occurred, amount))
        elif kind is InteractionKind.SURVEY:
            satisfaction = r.randint(*SATISFACTION.get(p.persona, (5, 10)))
        elif kind in (InteractionKind.CARE, InteractionKind.VISIT) or (
            kind in (InteractionKind.CALL, InteractionKind.EMAIL) and r.random() < 0.6
        ):
            direction = Direction.OUTBOUND
        channel = r.choice(CHANNELS[kind])
        partner_id = None
        if p.via_partner is not None and kind is InteractionKind.PURCHASE and r.random() < 0.4:
            partner = self.world.partners[p.via_partner]
            if partner.active_at(occurred):
                channel, partner_id = Channel.PARTNER, partner.partner_id
        current = sorted(self.contacts, key=str)
        involved = tuple(r.sample(current, min(len(current), r.randint(0, 2))))
        if kind in (InteractionKind.PURCHASE, InteractionKind.REFUND):
            actor = SHOP
        elif kind in (InteractionKind.CALL, InteractionKind.MEETING, InteractionKind.VISIT):
            actor = SALES
        else:
            actor = SERVICE
        return Step(
            self.now,
            RecordInteraction(
                customer_id=p.customer_id,
                interaction_id=self._id("interaction"),
                kind=kind,
                channel=channel,
                direction=direction,
                occurred_at=occurred,
                summary=r.choice(SUMMARIES[kind]),
                amount=amount,
                currency=self.world.currency if amount is not None else None,
                satisfaction=satisfaction,
                partner_id=partner_id,
                contact_ids=involved,
            ),
            actor,
        )

    def _add_contact(self, role: tuple[str, ContactLayer, ContactFunction]) -> Step:
        r, p = self.rng, self.p
        title, layer, function = role
        contact_id = self._id("contact")
        self.contacts[contact_id] = role
        name, local = self.names.person(p.region)
        low, high = INFLUENCE.get(layer, (1, 3))
        return Step(
            self.now,
            AddContact(
                customer_id=p.customer_id,
                contact_id=contact_id,
                name=name,
                email=f"{local}@{self.domain}" if r.random() < 0.9 else None,
                phone=self.names.phone(p.region) if r.random() < 0.7 else None,
                title=title,
                layer=layer,
                function=function,
                influence=r.randint(low, high),
            ),
            SALES,
        )

    def _turnover(self) -> Step | None:
        """A stakeholder leaves; a successor in the same role is introduced weeks later."""
        if not self.contacts:
            return None
        contact_id = self.rng.choice(sorted(self.contacts, key=str))
        role = self.contacts.pop(contact_id)
        self._push(
            self._moment(self.now + timedelta(days=self.rng.uniform(5, 30))),
            partial(self._add_contact, role),
        )
        return Step(
            self.now, RemoveContact(customer_id=self.p.customer_id, contact_id=contact_id), SALES
        )

    def _link(self, partner: PartnerPlan) -> Step | None:
        if not partner.linkable_at(self.now):
            return None
        self.linked.add(partner.index)
        return Step(
            self.now,
            LinkCustomer(
                partner_id=partner.partner_id,
                customer_id=self.p.customer_id,
                role=LINK_ROLE[partner.kind],
            ),
            PARTNER_MANAGER,
        )

    def _unlink(self, partner: PartnerPlan) -> Step | None:
        if partner.index not in self.linked:
            return None
        self.linked.discard(partner.index)
        return Step(
            self.now,
            UnlinkCustomer(partner_id=partner.partner_id, customer_id=self.p.customer_id),
            PARTNER_MANAGER,
        )

    def _tier_review(self) -> Step | None:
        """The quarterly account review: the tier follows the last twelve months' net purchases."""
        year_ago = self.now - timedelta(days=365)
        trailing = sum((a for at, a in self.purchases if year_ago < at <= self.now), Decimal(0))
        if trailing >= STRATEGIC_THRESHOLD:
            target = Tier.STRATEGIC
        elif trailing >= KEY_THRESHOLD:
            target = Tier.KEY
        else:
            target = Tier.STANDARD
        if target is self.tier or self.rng.random() < 0.2:
            return None
        reason = (
            f"Quarterly account review: {trailing:,.0f} {self.world.currency} net purchases "
            f"in the last twelve months"
        )
        self.tier = target
        return Step(
            self.now,
            ChangeTier(customer_id=self.p.customer_id, to_tier=target, reason=reason),
            SALES,
        )

    def _update_profile(self) -> Step | None:
        r, p = self.rng, self.p
        if (
            p.kind is CustomerKind.ORGANISATION
            and self.size is not None
            and (self.size is not CompanySize.ENTERPRISE and r.random() < 0.6)
        ):
            self.size = SIZES[SIZES.index(self.size) + 1]
            change = UpdateCustomerProfile(customer_id=p.customer_id, size=self.size)
        else:
            options = [v for v in PotentialValue if v is not self.potential]
            self.potential = r.choice(options)
            change = UpdateCustomerProfile(
                customer_id=p.customer_id, potential_value=self.potential
            )
        return Step(self.now, change, SALES)

    # -------------------------------------------------------------- consent

    def _grant(self, renewing: ConsentState | None = None) -> Step | None:
        r, p, world = self.rng, self.p, self.world
        if renewing is not None:
            partner, purpose = renewing.partner, renewing.purpose
            categories = renewing.categories
            if not partner.active_at(self.now):
                return None
        else:
            active = [x for x in world.partners if x.active_at(self.now)]
            taken = {(c.partner.index, c.purpose) for c in self.consents.values()}
            via = world.partners[p.via_partner] if p.via_partner is not None else None
            if via is not None and via.active_at(self.now) and r.random() < 0.8:
                partner = via
            elif active:
                partner = r.choice(active)
            else:
                return None
            purpose = r.choice(partner.purposes)
            if (partner.index, purpose) in taken:
                return None
            chosen = set(r.sample(partner.categories, r.randint(1, len(partner.categories))))
            if r.random() < 0.1:
                chosen.add(r.choice(list(DataCategory)))  # consented more than any share needs
            categories = tuple(sorted(chosen))
        expires = None
        if r.random() < 0.3:
            expires = self.now + timedelta(days=r.choice((365, 730)))
        consent = ConsentState(self._id("consent"), partner, purpose, categories, self.now, expires)
        self.consents[consent.consent_id] = consent
        self._plan_consent(consent, late=p.late_withdrawal and len(self.consents) == 1)
        method = r.choice(("WEB_FORM", "PAPER", "PHONE_RECORDING", "EMAIL"))
        return Step(
            self.now,
            GrantConsent(
                customer_id=p.customer_id,
                consent_id=consent.consent_id,
                partner_id=partner.partner_id,
                purpose=purpose,
                data_categories=categories,
                expires_at=expires,
                capture=ConsentCaptureFields(
                    method=method,
                    source="customer-portal" if method == "WEB_FORM" else "sales-office",
                    evidence_ref=f"EVID-{self.now:%Y%m%d}-{consent.consent_id.hex[:10]}",
                    notice_version=f"PN-{self.now.year}.1",
                ),
            ),
            PRIVACY,
        )

    def _showcase_grant(self) -> Step | None:
        """The README's consent check: MARKETING to the showcase partner, in effect at the end."""
        partner = self.world.partners[SHOWCASE_PARTNER]
        held = any(
            c.partner is partner and c.purpose is Purpose.MARKETING for c in self.consents.values()
        )
        if held or not partner.active_at(self.now) or Purpose.MARKETING not in partner.purposes:
            return None
        consent = ConsentState(
            self._id("consent"), partner, Purpose.MARKETING, partner.categories, self.now, None
        )
        self.consents[consent.consent_id] = consent
        return Step(
            self.now,
            GrantConsent(
                customer_id=self.p.customer_id,
                consent_id=consent.consent_id,
                partner_id=partner.partner_id,
                purpose=Purpose.MARKETING,
                data_categories=partner.categories,
                capture=ConsentCaptureFields(
                    method="WEB_FORM",
                    source="customer-portal",
                    evidence_ref=f"EVID-{self.now:%Y%m%d}-{consent.consent_id.hex[:10]}",
                    notice_version=f"PN-{self.now.year}.1",
                ),
            ),
            PRIVACY,
        )

    def _plan_consent(self, consent: ConsentState, *, late: bool) -> None:
        """Shares under the consent, and how it ends: withdrawn (maybe late), expired, renewed."""
        r, end = self.rng, self.world.end
        stop = min(consent.expires_at or end, end)
        withdraw_at: datetime | None = None
        if late or r.random() < 0.1:
            low = 90 if late else 30
            withdraw_at = consent.granted_at + timedelta(days=r.uniform(low, 900))
            if self.erase_at is not None:
                withdraw_at = min(withdraw_at, self.erase_at - timedelta(days=2))
            if withdraw_at > stop - timedelta(days=1):
                withdraw_at = consent.granted_at + (stop - consent.granted_at) * 0.7
            if withdraw_at <= consent.granted_at + timedelta(hours=2):
                withdraw_at = None  # too close to the end of the story
        if withdraw_at is not None:
            expressed = None
            if late or r.random() < 0.25:
                gap = timedelta(days=r.uniform(5, 25))
                expressed = max(withdraw_at - gap, consent.granted_at + timedelta(hours=1))
                # A share between the expression and its recording: the late-withdrawal case.
                between = expressed + (withdraw_at - expressed) / 2
                self._push(between, partial(self._share, consent))
            self._push(withdraw_at, partial(self._withdraw, consent, expressed))
            stop = min(stop, withdraw_at)
            if r.random() < 0.15:  # someone tries again after the withdrawal: refused
                again = withdraw_at + timedelta(days=r.uniform(5, 60))
                self._push(again, partial(self._share, consent))
        at = consent.granted_at + timedelta(days=r.uniform(3, 20))
        after_termination = False
        while at < stop:
            terminated = consent.partner.terminated_at
            if terminated is not None and at >= terminated:
                if after_termination or r.random() < 0.5:
                    break
                after_termination = True
            self._push(at, partial(self._share, consent, extra=r.random() < 0.08))
            at += timedelta(days=r.uniform(45, 120))
        if consent.expires_at is not None and withdraw_at is None:
            if r.random() < 0.35:  # a share after the consent expired: refused
                lapsed = consent.expires_at + timedelta(days=r.uniform(5, 40))
                self._push(lapsed, partial(self._share, consent))
            if r.random() < 0.5:
                renewal = consent.expires_at + timedelta(days=r.uniform(-20, 60))
                self._push(renewal, partial(self._grant, consent))

    def _share(self, consent: ConsentState, *, extra: bool = False) -> Step:
        r = self.rng
        allowed = [c for c in consent.categories if c in consent.partner.categories]
        categories = set(r.sample(allowed, r.randint(1, len(allowed))))
        if extra:  # asks for more than the customer agreed to: refused
            missing = [c for c in consent.partner.categories if c not in consent.categories]
            categories.add(r.choice(missing or [c for c in DataCategory if c not in allowed]))
        return Step(
            self.now,
            ShareData(
                customer_id=self.p.customer_id,
                share_id=self._id("share"),
                partner_id=consent.partner.partner_id,
                purpose=consent.purpose,
                data_categories=tuple(sorted(categories)),
            ),
            INTEGRATION,
        )

    def _stray_share(self) -> Step | None:
        active = [x for x in self.world.partners if x.active_at(self.now)]
        if not active:
            return None
        partner = self.rng.choice(active)
        return Step(
            self.now,
            ShareData(
                customer_id=self.p.customer_id,
                share_id=self._id("share"),
                partner_id=partner.partner_id,
                purpose=partner.purposes[0],
                data_categories=(partner.categories[0],),
            ),
            INTEGRATION,
        )

    def _withdraw(self, consent: ConsentState, expressed: datetime | None) -> Step | None:
        if consent.withdrawn:
            return None
        consent.withdrawn = True
        channel = self.rng.choice(("LETTER", "PHONE") if expressed else ("WEB_PORTAL", "EMAIL"))
        return Step(
            self.now,
            WithdrawConsent(
                customer_id=self.p.customer_id,
                consent_id=consent.consent_id,
                expressed_at=expressed,
                channel=channel,
            ),
            PRIVACY,
        )

    # -------------------------------------------------------------- erasure

    def _before_erasure(self) -> None:
        """The privacy office withdraws every consent still in force, then erases."""
        for n, consent in enumerate(self.consents.values()):
            if not consent.withdrawn and (
                consent.expires_at is None or consent.expires_at > self.now
            ):
                self._push(
                    self.now + timedelta(minutes=10 * (n + 1)),
                    partial(self._withdraw_for_erasure, consent),
                )

    def _withdraw_for_erasure(self, consent: ConsentState) -> Step | None:
        if consent.withdrawn:
            return None
        consent.withdrawn = True
        return Step(
            self.now,
            WithdrawConsent(
                customer_id=self.p.customer_id,
                consent_id=consent.consent_id,
                channel="ERASURE_REQUEST",
            ),
            PRIVACY,
        )

    def _erase(self) -> Step:
        self.erased = True
        self.heap.clear()
        self.erase_at = None
        if self.consents:  # a stale integration job tries to share: refused, as evidence
            consent = next(iter(self.consents.values()))
            later = self.now + timedelta(days=self.rng.uniform(5, 30))
            self._push(later, partial(self._share, consent))
        self.erase_at = self.now
        return Step(
            self.now,
            EraseCustomerData(
                customer_id=self.p.customer_id,
                reason="Data subject request: erasure of personal data (PIPL art. 47)",
            ),
            PRIVACY,
        )


# ---------------------------------------------------------------- the story


class Story:
    """Every step of the demo, in the order the runner sends them."""

    def __init__(
        self, seed: int, scale: int, end: datetime, currency: str, customers: int | None = None
    ) -> None:
        self.args = (seed, scale, end, currency, customers)
        self.world = World(*self.args)

    @property
    def start(self) -> datetime:
        return self.world.start

    def steps(self) -> Iterator[Step]:
        streams: list[Iterator[Step]] = [iter(p.steps) for p in self.world.partners]
        streams += [CustomerStory(self.world, c).steps() for c in self.world.customers]
        return heapq.merge(*streams, key=lambda step: step.at)
