"""The partner scorecard read model (DESIGN §5), as a specification.

Events are decided by the real Partner and Customer aggregates at fixed times
and folded into an in-memory view at consecutive log positions, as the runner
would. Scores are hand-computed in the comments next to them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from domain.aggregate import EventMeta
from domain.customer import Customer
from domain.events import DomainEvent
from domain.partner import Partner
from domain.personal import personal_fields
from domain.sharing import ConsentCapture, ShareReason
from domain.values import (
    AgreementKind,
    CustomerKind,
    DataCategory,
    LinkRole,
    PartnerKind,
    PotentialValue,
    Purpose,
    Tier,
)
from projections import partner_scorecard as scorecards
from projections.partner_scorecard import PartnerScorecard
from projections.store import Doc
from tests.projections.memory import FoldedLog

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MICROSECOND = timedelta(microseconds=1)

REGISTERED = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
EVALUATED = REGISTERED + DAY
SIGNED = EVALUATED + DAY
STARTS = SIGNED + DAY
"""Both agreements of the lifecycle take effect."""
PILOT_ENDS = STARTS + 60 * DAY
"""The pilot agreement runs out."""
ACTIVATED = STARTS
NOW = STARTS + 30 * DAY

SHA = "ef" * 32
JOINT = Purpose.JOINT_SERVICE
IDENTITY = DataCategory.IDENTITY
CONTACT = DataCategory.CONTACT


def meta(at: datetime) -> EventMeta:
    return EventMeta(
        actor="partner-desk", request_id=f"req-{uuid4()}", correlation_id="corr-1", recorded_at=at
    )


class Log(FoldedLog):
    def __init__(self) -> None:
        super().__init__(PartnerScorecard())

    def card(self, partner: Partner, at: datetime = NOW) -> Doc:
        found = scorecards.scorecard(self.docs, str(partner.id), at)
        assert found is not None
        return found


# ------------------------------------------------------------------ builders


def registered(name: str = "Westlake Logistics") -> Partner:
    return Partner.register(
        uuid4(),
        external_ref=f"PRM-{name[:4].upper()}",
        name=name,
        kind=PartnerKind.JOINT_VENTURE,
        regions=("EAST", "SOUTH"),
        capabilities=("DELIVERY", "WAREHOUSING"),
        meta=meta(REGISTERED),
    )


def evaluate(
    partner: Partner,
    *,
    strength: int = 80,
    reputation: int = 75,
    business_fit: int = 70,
    data_protection: int = 90,
    at: datetime = EVALUATED,
) -> None:
    partner.evaluate(
        strength=strength,
        reputation=reputation,
        business_fit=business_fit,
        data_protection=data_protection,
        notes="ISO 27001 certified",
        meta=meta(at),
    )


def sign(
    partner: Partner,
    *,
    effective_to: datetime | None = None,
    kind: AgreementKind = AgreementKind.JOINT_VENTURE,
    at: datetime = SIGNED,
) -> UUID:
    agreement_id = uuid4()
    partner.sign_agreement(
        agreement_id,
        kind=kind,
        effective_from=STARTS,
        effective_to=effective_to,
        confidentiality=True,
        permitted_purposes=(JOINT,),
        permitted_data_categories=(IDENTITY, CONTACT),
        document_sha256=SHA,
        meta=meta(at),
    )
    return agreement_id


def review(
    partner: Partner, period: str, satisfaction: str, complaints: int, *, at: datetime = NOW
) -> None:
    partner.review_performance(
        period=period,
        revenue=Decimal("125000.50"),
        new_customers=4,
        satisfaction=Decimal(satisfaction),
        complaints=complaints,
        meta=meta(at),
    )


def active(name: str = "Westlake Logistics") -> Partner:
    partner = registered(name)
    evaluate(partner)
    sign(partner)
    partner.activate(reason="approved by the partner board", meta=meta(ACTIVATED))
    return partner


def customer() -> Customer:
    return Customer.register(
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
        meta=meta(STARTS),
    )


def consent(who: Customer, partner_id: UUID, categories: tuple[DataCategory, ...]) -> None:
    who.grant_consent(
        uuid4(),
        partner_id=partner_id,
        purpose=JOINT,
        data_categories=categories,
        effective_from=STARTS,
        expires_at=None,
        capture=ConsentCapture(
            method="WEB_FORM", source="portal", evidence_ref="form-1", notice_version="v3"
        ),
        meta=meta(STARTS),
    )


# ------------------------------------------------------------------ the lifecycle


def test_a_registered_partner_has_a_scorecard_but_no_score() -> None:
    log = Log()
    partner = registered()
    position = log.feed(partner)

    card = log.card(partner)

    assert card == {
        "partner_id": str(partner.id),
        "external_ref": "PRM-WEST",
        "name": "Westlake Logistics",
        "kind": "JOINT_VENTURE",
        "regions": ["EAST", "SOUTH"],
        "capabilities": ["DELIVERY", "WAREHOUSING"],
        "status": "REGISTERED",
        "status_reason": "",
        "status_changed_at": REGISTERED.isoformat(),
        "tier": "STANDARD",
        "registered_at": REGISTERED.isoformat(),
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
        "version": 1,
        "position": position,
        "weighted_score": None,
        "performance": Decimal(50),
        "latest_review_period": None,
        "active_agreements": [],
        "linked_customer_count": 0,
    }
    assert [p["partner_id"] for p in scorecards.partners(log.docs, "REGISTERED")] == [
        str(partner.id)
    ]


def test_the_scorecard_follows_a_partner_through_its_whole_lifecycle() -> None:
    log = Log()
    partner = registered()
    log.feed(partner)
    chen, lin = uuid4(), uuid4()

    evaluate(partner)
    main = sign(partner)
    pilot = sign(partner, effective_to=PILOT_ENDS, kind=AgreementKind.DATA_SHARING)
    partner.activate(reason="approved by the partner board", meta=meta(ACTIVATED))
    log.feed(partner)

    card = log.card(partner)
    assert card["status"] == "ACTIVE"
    assert card["status_reason"] == "approved by the partner board"
    assert card["status_changed_at"] == ACTIVATED.isoformat()
    assert card["evaluation"] == {
        "strength": 80,
        "reputation": 75,
        "business_fit": 70,
        "data_protection": 90,
        "notes": "ISO 27001 certified",
        "evaluated_at": EVALUATED.isoformat(),
    }
    assert card["agreements"][str(pilot)] == {
        "agreement_id": str(pilot),
        "kind": "DATA_SHARING",
        "effective_from": STARTS.isoformat(),
        "effective_to": PILOT_ENDS.isoformat(),
        "confidentiality": True,
        "permitted_purposes": ["JOINT_SERVICE"],
        "permitted_data_categories": ["IDENTITY", "CONTACT"],
        "document_sha256": SHA,
        "signed_at": SIGNED.isoformat(),
        "signed_version": 4,
        "terminated_at": None,
        "termination_reason": None,
    }
    assert card["active_agreements"] == [str(main), str(pilot)]
    # The status is the document's group: the partner moved from one listing to the other.
    assert list(scorecards.partners(log.docs, "REGISTERED")) == []
    assert [p["partner_id"] for p in scorecards.partners(log.docs, "ACTIVE")] == [str(partner.id)]

    review(partner, "2025-Q1", "8.5", 3)
    partner.change_tier(Tier.KEY, reason="joint venture in the east", meta=meta(NOW))
    partner.link_customer(chen, role=LinkRole.JOINT_VENTURE, meta=meta(NOW))
    partner.link_customer(lin, role=LinkRole.REFERRAL, meta=meta(NOW))
    partner.unlink_customer(lin, meta=meta(NOW + HOUR))
    log.feed(partner)

    card = log.card(partner)
    assert card["tier"] == "KEY"
    assert card["reviews"] == {
        "2025-Q1": {
            "period": "2025-Q1",
            "revenue": "125000.50",
            "new_customers": 4,
            "satisfaction": "8.5",
            "complaints": 3,
            "reviewed_at": NOW.isoformat(),
        }
    }
    assert card["latest_review_period"] == "2025-Q1"
    assert card["performance"] == Decimal(70)  # 8.5 * 10 - 3 * 5
    assert card["linked_customers"] == {str(chen): "JOINT_VENTURE"}
    assert card["linked_customer_count"] == 1
    assert card["counts"]["customers_linked"] == 2
    assert card["counts"]["customers_unlinked"] == 1

    partner.suspend(reason="data incident under review", meta=meta(NOW + DAY))
    log.feed(partner)
    assert log.card(partner)["status"] == "SUSPENDED"
    assert log.card(partner)["status_reason"] == "data incident under review"
    assert [p["partner_id"] for p in scorecards.partners(log.docs, "SUSPENDED")] == [
        str(partner.id)
    ]

    partner.reinstate(reason="incident closed", meta=meta(NOW + 2 * DAY))
    partner.terminate_agreement(pilot, reason="pilot replaced", meta=meta(NOW + 3 * DAY))
    log.feed(partner)
    card = log.card(partner, NOW + 3 * DAY)
    assert (card["status"], card["status_reason"]) == ("ACTIVE", "incident closed")
    assert card["agreements"][str(pilot)]["terminated_at"] == (NOW + 3 * DAY).isoformat()
    assert card["agreements"][str(pilot)]["termination_reason"] == "pilot replaced"
    assert card["active_agreements"] == [str(main)]

    partner.terminate(reason="cooperation ended", meta=meta(NOW + 10 * DAY))
    position = log.feed(partner)
    card = log.card(partner, NOW + 10 * DAY)
    assert (card["status"], card["status_reason"]) == ("TERMINATED", "cooperation ended")
    assert card["status_changed_at"] == (NOW + 10 * DAY).isoformat()
    assert card["version"] == partner.version
    assert card["position"] == position
    # Weighted score: 0.25*80 + 0.20*75 + 0.20*70 + 0.15*90 + 0.20*70
    #               = 20 + 15 + 14 + 13.5 + 14 = 76.5
    assert card["weighted_score"] == Decimal("76.5")
    assert card["counts"]["evaluations"] == 1
    assert [p["partner_id"] for p in scorecards.partners(log.docs, "TERMINATED")] == [
        str(partner.id)
    ]
    assert list(scorecards.partners(log.docs, "ACTIVE")) == []


AGREEMENT_TERMINATED = STARTS + 20 * DAY


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (SIGNED, []),  # signed, not yet started
        (STARTS - MICROSECOND, []),
        (STARTS, ["main", "pilot"]),  # the start counts
        (AGREEMENT_TERMINATED - MICROSECOND, ["main", "pilot"]),
        (AGREEMENT_TERMINATED, ["pilot"]),  # terminated from the recorded instant
        (PILOT_ENDS - MICROSECOND, ["pilot"]),
        (PILOT_ENDS, []),  # the end does not count
    ],
)
def test_active_agreements_follow_the_domains_rule(at: datetime, expected: list[str]) -> None:
    log = Log()
    partner = registered()
    ids = {"main": sign(partner), "pilot": sign(partner, effective_to=PILOT_ENDS)}
    partner.terminate_agreement(ids["main"], reason="superseded", meta=meta(AGREEMENT_TERMINATED))
    log.feed(partner)

    active_ids = log.card(partner, at)["active_agreements"]

    assert active_ids == [str(ids[name]) for name in expected]
    assert active_ids == [str(a.agreement_id) for a in partner.agreements_in_effect(at)]


# ------------------------------------------------------------------ shares received


def test_shares_and_refusals_are_counted_per_partner() -> None:
    log = Log()
    partner, newcomer = active("Westlake Logistics"), registered("Grand Canal Resale")
    who = customer()
    consent(who, partner.id, (IDENTITY, CONTACT))
    log.feed(partner, newcomer, who)
    unknown = uuid4()

    def share(to: Partner | None, categories: tuple[DataCategory, ...]) -> tuple[ShareReason, ...]:
        decision = who.share_data(
            uuid4(),
            partner_id=to.id if to else unknown,
            partner=to,
            purpose=JOINT,
            data_categories=categories,
            meta=meta(NOW),
        )
        return decision.reasons

    assert share(partner, (IDENTITY,)) == ()
    assert share(partner, (IDENTITY, CONTACT)) == ()
    assert share(partner, (DataCategory.PROFILE,)) == (
        ShareReason.NO_CONSENT,
        ShareReason.AGREEMENT_DOES_NOT_PERMIT,
    )
    newcomers = share(newcomer, (IDENTITY,))
    assert ShareReason.PARTNER_NOT_ACTIVE in newcomers
    share(None, (IDENTITY,))  # a partner this view never saw: ignored
    position = log.feed(who)

    card = log.card(partner)
    assert (card["counts"]["shares"], card["counts"]["refused_shares"]) == (2, 1)
    assert card["refusal_reasons"] == {"NO_CONSENT": 1, "AGREEMENT_DOES_NOT_PERMIT": 1}
    assert card["position"] == position - 2  # its last event was the third share
    assert card["version"] == partner.version  # customer events do not move the partner's
    other = log.card(newcomer)
    assert (other["counts"]["shares"], other["counts"]["refused_shares"]) == (0, 1)
    assert other["refusal_reasons"] == {reason.value: 1 for reason in newcomers}
    assert scorecards.scorecard(log.docs, str(unknown), NOW) is None
    assert {key for (_, key) in log.docs.docs} == {str(partner.id), str(newcomer.id)}


# ------------------------------------------------------------------ the weighted score


@pytest.mark.parametrize(
    ("evaluation", "reviews", "score"),
    [
        # No review yet: performance is the neutral 50.
        # 0.25*80 + 0.20*75 + 0.20*70 + 0.15*90 + 0.20*50 = 20 + 15 + 14 + 13.5 + 10 = 72.5
        ((80, 75, 70, 90), [], "72.5"),
        # Performance 8.5*10 - 3*5 = 70: 20 + 15 + 14 + 13.5 + 14 = 76.5
        ((80, 75, 70, 90), [("2025-Q1", "8.5", 3)], "76.5"),
        # 0.15*91 = 13.65: 20 + 15 + 14 + 13.65 + 14 = 76.65, half up to 76.7 (not 76.6)
        ((80, 75, 70, 91), [("2025-Q1", "8.5", 3)], "76.7"),
        # 2*10 - 10*5 = -30, clamped to 0: 20 + 15 + 14 + 13.5 + 0 = 62.5
        ((80, 75, 70, 90), [("2025-Q1", "2", 10)], "62.5"),
        # A perfect review: 10*10 - 0 = 100: 20 + 15 + 14 + 13.5 + 20 = 82.5
        ((80, 75, 70, 90), [("2025-Q1", "10", 0)], "82.5"),
        # All zero but a perfect review: 0.20*100 = 20.0
        ((0, 0, 0, 0), [("2025-Q1", "10", 0)], "20.0"),
        # The latest period is December (9*10 = 90) although Q1 was filed after it:
        # 20 + 15 + 14 + 13.5 + 18 = 80.5
        ((80, 75, 70, 90), [("2025-12", "9", 0), ("2025-Q1", "2", 0), ("2025", "5", 0)], "80.5"),
    ],
)
def test_weighted_score_arithmetic(
    evaluation: tuple[int, int, int, int], reviews: list[tuple[str, str, int]], score: str
) -> None:
    log = Log()
    partner = registered()
    strength, reputation, business_fit, data_protection = evaluation
    evaluate(
        partner,
        strength=strength,
        reputation=reputation,
        business_fit=business_fit,
        data_protection=data_protection,
    )
    for period, satisfaction, complaints in reviews:
        review(partner, period, satisfaction, complaints)
    log.feed(partner)

    card = log.card(partner)

    assert card["weighted_score"] == Decimal(score)
    assert str(card["weighted_score"]) == score  # one decimal place, always
    assert scorecards.weighted_score(log.docs.get("partner", str(partner.id)) or {}) == Decimal(
        score
    )


def test_the_latest_evaluation_is_the_one_scored() -> None:
    log = Log()
    partner = registered()
    evaluate(partner, strength=40, at=EVALUATED)
    evaluate(partner, strength=100, at=NOW)
    log.feed(partner)

    card = log.card(partner)

    # 0.25*100 + 15 + 14 + 13.5 + 10 = 77.5
    assert card["weighted_score"] == Decimal("77.5")
    assert card["evaluation"]["evaluated_at"] == NOW.isoformat()
    assert card["counts"]["evaluations"] == 2


def test_review_periods_are_ordered_by_end_then_start() -> None:
    periods = ["2025-12", "2025-Q1", "2024", "2025", "2025-03", "2025-Q4", "2025-01"]

    assert sorted(periods, key=scorecards.period_order) == [
        "2024",
        "2025-01",
        "2025-Q1",  # ends with March, started in January
        "2025-03",
        "2025",  # ends with December, started in January
        "2025-Q4",
        "2025-12",
    ]


# ------------------------------------------------------------------ ranking


def test_ranking_is_by_score_then_name_with_the_unevaluated_last() -> None:
    log = Log()
    bravo, alpha, charlie, delta = (
        registered(n) for n in ("Bravo Trading", "Alpha Freight", "Charlie Data", "Delta Care")
    )
    evaluate(bravo)  # 72.5 (no review)
    evaluate(alpha)  # 72.5: a tie with Bravo, broken by name
    evaluate(charlie, strength=100)  # 25 + 15 + 14 + 13.5 + 10 = 77.5
    # Delta: never evaluated, no score. Echo scores nothing at all, and still ranks above Delta:
    # all zero, and a review with satisfaction 0: 0.0.
    echo = registered("Echo Zero")
    evaluate(echo, strength=0, reputation=0, business_fit=0, data_protection=0)
    review(echo, "2025-Q1", "0", 0)
    log.feed(delta, bravo, alpha, charlie, echo)

    ranked = scorecards.ranking(log.docs)

    assert [(p["name"], p["weighted_score"]) for p in ranked] == [
        ("Charlie Data", Decimal("77.5")),
        ("Alpha Freight", Decimal("72.5")),
        ("Bravo Trading", Decimal("72.5")),
        ("Echo Zero", Decimal("0.0")),
        ("Delta Care", None),
    ]
    assert scorecards.ranking(log.docs, "ACTIVE") == []


# ------------------------------------------------------------------ robustness and privacy


def test_events_for_a_partner_the_view_never_saw_are_ignored() -> None:
    log = Log()
    partner = registered()
    partner.collect_events()  # the registration happened before this view began
    evaluate(partner)
    sign(partner)

    log.feed(partner)

    assert log.docs.docs == {}


def test_terminating_an_agreement_the_view_never_saw_changes_nothing_else() -> None:
    log = Log()
    partner = registered()
    log.feed(partner)
    agreement_id = sign(partner)
    partner.collect_events()  # the signing was never applied here
    partner.terminate_agreement(agreement_id, reason="superseded", meta=meta(NOW))
    position = log.feed(partner)

    card = log.card(partner)

    assert card["agreements"] == {}
    assert card["position"] == position


def test_the_events_it_copies_have_no_personal_fields() -> None:
    """A guard: if one ever gains a Personal field, this view must learn to wipe it."""
    for topic in PartnerScorecard.topics or ():
        assert personal_fields(DomainEvent.for_topic(topic)) == frozenset(), topic
