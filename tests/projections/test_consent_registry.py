"""The consent registry read model (DESIGN §5), as a specification.

Events are decided by the real aggregates at fixed times and folded into an
in-memory view at consecutive log positions, as the runner would (events of
other topics still take a position, as in the log). Status is the domain's
rule (``Consent.status``) applied to what the view holds, so the boundary
instants below are the policy's boundary instants.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from domain.aggregate import EventMeta
from domain.customer import (
    ConsentGranted,
    ConsentWithdrawn,
    Customer,
    DataShared,
    DataShareRefused,
)
from domain.events import DomainEvent
from domain.partner import Partner
from domain.personal import personal_fields
from domain.sharing import ConsentCapture, ShareReason
from domain.values import (
    AgreementKind,
    Channel,
    ContactFunction,
    ContactLayer,
    CustomerKind,
    DataCategory,
    Direction,
    InteractionKind,
    PartnerKind,
    PotentialValue,
    Purpose,
)
from projections import consent_registry as registry
from projections.consent_registry import ConsentRegistry
from projections.store import Doc
from tests.projections.memory import FoldedLog, MemoryDocs

# ------------------------------------------------------------------ the calendar

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
MICROSECOND = timedelta(microseconds=1)

ONBOARDED = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
"""Partners are registered, evaluated, signed and (some) activated."""
GRANTED = ONBOARDED + DAY
"""Customers are registered and give their consents."""
EFFECTIVE = GRANTED + DAY
"""The consents take effect."""
EXPIRES = EFFECTIVE + 90 * DAY
"""... and lapse."""

SHA = "cd" * 32
CAPTURE = ConsentCapture(
    method="WEB_FORM", source="customer-portal", evidence_ref="form-7731", notice_version="v3"
)
JOINT = Purpose.JOINT_SERVICE
IDENTITY = DataCategory.IDENTITY
CONTACT = DataCategory.CONTACT
PROFILE = DataCategory.PROFILE

# Consent ids whose key order is the reverse of their grant order, so a listing
# that merely followed document keys would come out backwards.
LATE_KEY = UUID("ffffffff-0000-4000-8000-000000000001")
EARLY_KEY = UUID("00000000-0000-4000-8000-000000000002")


def meta(at: datetime) -> EventMeta:
    return EventMeta(
        actor="compliance-desk",
        request_id=f"req-{uuid4()}",
        correlation_id="corr-1",
        recorded_at=at,
    )


class Log(FoldedLog):
    def __init__(self) -> None:
        super().__init__(ConsentRegistry())


# ------------------------------------------------------------------ builders


def active_partner(name: str = "Silk Road Analytics") -> Partner:
    """Evaluated, under a confidential agreement permitting JOINT_SERVICE, and ACTIVE."""
    partner = Partner.register(
        uuid4(),
        external_ref=f"PRM-{name[:4]}",
        name=name,
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
    partner.sign_agreement(
        uuid4(),
        kind=AgreementKind.DATA_SHARING,
        effective_from=ONBOARDED,
        effective_to=None,
        confidentiality=True,
        permitted_purposes=(JOINT,),
        permitted_data_categories=(IDENTITY, CONTACT, PROFILE),
        document_sha256=SHA,
        meta=meta(ONBOARDED),
    )
    partner.activate(reason="approved", meta=meta(ONBOARDED))
    return partner


def registered_partner() -> Partner:
    """Registered only: it may not receive data."""
    return Partner.register(
        uuid4(),
        external_ref="PRM-NEW",
        name="Grand Canal Resale",
        kind=PartnerKind.RESELLER,
        regions=("NORTH",),
        capabilities=("RESALE",),
        meta=meta(ONBOARDED),
    )


def customer(name: str = "Chen Jing") -> Customer:
    return Customer.register(
        uuid4(),
        external_ref="CRM-0100",
        display_name=name,
        kind=CustomerKind.PERSON,
        industry="RETAIL",
        region="EAST",
        size=None,
        source="WEB",
        acquired_via_partner_id=None,
        potential_value=PotentialValue.HIGH,
        meta=meta(GRANTED),
    )


def grant(
    who: Customer,
    partner_id: UUID,
    *,
    consent_id: UUID | None = None,
    at: datetime = GRANTED,
    effective_from: datetime = EFFECTIVE,
    expires_at: datetime | None = EXPIRES,
    categories: tuple[DataCategory, ...] = (IDENTITY, CONTACT),
) -> str:
    consent_id = consent_id or uuid4()
    who.grant_consent(
        consent_id,
        partner_id=partner_id,
        purpose=JOINT,
        data_categories=categories,
        effective_from=effective_from,
        expires_at=expires_at,
        capture=CAPTURE,
        meta=meta(at),
    )
    return str(consent_id)


def share(
    who: Customer,
    partner: Partner | None,
    at: datetime,
    *,
    partner_id: UUID | None = None,
    categories: tuple[DataCategory, ...] = (IDENTITY, CONTACT),
) -> str:
    share_id = uuid4()
    who.share_data(
        share_id,
        partner_id=partner_id or (partner.id if partner else uuid4()),
        partner=partner,
        purpose=JOINT,
        data_categories=categories,
        meta=meta(at),
    )
    return str(share_id)


def withdraw(
    who: Customer, consent_id: str, *, expressed_at: datetime, recorded_at: datetime
) -> None:
    who.withdraw_consent(
        UUID(consent_id), expressed_at=expressed_at, channel="LETTER", meta=meta(recorded_at)
    )


def statuses(consents: list[Doc]) -> list[tuple[str, str]]:
    return [(c["consent_id"], c["status"]) for c in consents]


def review_ids(entries: list[Doc]) -> list[tuple[str, str]]:
    """(share, consent) pairs of a late-withdrawal review list, in its order."""
    return [(e["share"]["share_id"], e["consent_id"]) for e in entries]


def dump(docs: MemoryDocs) -> str:
    """Everything the view stores, as text (to search it for personal data)."""
    return json.dumps(sorted(docs.docs.items()), sort_keys=True)


# ------------------------------------------------------------------ grants and status


def test_a_grant_is_kept_with_its_evidence_and_log_position() -> None:
    log = Log()
    partner = active_partner()
    who = customer()
    log.feed(partner, who)
    consent_id = grant(who, partner.id)
    position = log.feed(who)

    doc = registry.get_consent(log.docs, consent_id, EFFECTIVE)

    assert doc == {
        "consent_id": consent_id,
        "customer_id": str(who.id),
        "partner_id": str(partner.id),
        "purpose": "JOINT_SERVICE",
        "data_categories": ["IDENTITY", "CONTACT"],
        "effective_from": EFFECTIVE.isoformat(),
        "expires_at": EXPIRES.isoformat(),
        "capture": {
            "method": "WEB_FORM",
            "source": "customer-portal",
            "evidence_ref": "form-7731",
            "notice_version": "v3",
        },
        "granted_at": GRANTED.isoformat(),
        "granted_version": 2,
        "granted_position": position,
        "withdrawn_at": None,
        "withdrawal_recorded_at": None,
        "withdrawal_version": None,
        "withdrawal_position": None,
        "withdrawal_channel": None,
        "status": "IN_EFFECT",
    }


@pytest.mark.parametrize(
    ("at", "status"),
    [
        (GRANTED, "NOT_YET_IN_EFFECT"),
        (EFFECTIVE - MICROSECOND, "NOT_YET_IN_EFFECT"),
        (EFFECTIVE, "IN_EFFECT"),
        (EXPIRES - MICROSECOND, "IN_EFFECT"),
        (EXPIRES, "EXPIRED"),
        (EXPIRES + 365 * DAY, "EXPIRED"),
    ],
)
def test_status_at_the_edges_of_the_consent_period(at: datetime, status: str) -> None:
    """In effect on [effective_from, expires_at): the start counts, the end does not."""
    log = Log()
    partner = active_partner()
    who = customer()
    consent_id = grant(who, partner.id)
    log.feed(partner, who)

    assert statuses(registry.consents_for_customer(log.docs, str(who.id), at)) == [
        (consent_id, status)
    ]


WITHDRAWN_AT = EFFECTIVE + 10 * DAY
"""When the customer wrote their letter of withdrawal ..."""
WITHDRAWAL_RECORDED = WITHDRAWN_AT + 3 * DAY
"""... and when it reached us and was recorded."""


@pytest.mark.parametrize(
    ("at", "status"),
    [
        (WITHDRAWN_AT - MICROSECOND, "IN_EFFECT"),
        (WITHDRAWN_AT, "WITHDRAWN"),
        (WITHDRAWAL_RECORDED, "WITHDRAWN"),
        (EXPIRES, "WITHDRAWN"),  # withdrawn outranks expired, as in the policy
    ],
)
def test_a_late_withdrawal_counts_from_when_it_was_expressed(at: datetime, status: str) -> None:
    log = Log()
    partner = active_partner()
    who = customer()
    consent_id = grant(who, partner.id)
    withdraw(who, consent_id, expressed_at=WITHDRAWN_AT, recorded_at=WITHDRAWAL_RECORDED)
    position = log.feed(partner, who)

    [doc] = registry.consents_for_customer(log.docs, str(who.id), at)

    assert doc["status"] == status
    assert doc["withdrawn_at"] == WITHDRAWN_AT.isoformat()
    assert doc["withdrawal_recorded_at"] == WITHDRAWAL_RECORDED.isoformat()
    assert doc["withdrawal_position"] == position
    assert doc["withdrawal_version"] == 3
    assert doc["withdrawal_channel"] == "LETTER"


def test_a_recorded_withdrawal_binds_even_if_its_expressed_time_lies_a_little_ahead() -> None:
    """Clock skew: expressed two minutes after it is recorded; it binds from the recording."""
    recorded = EFFECTIVE + 10 * DAY
    log = Log()
    partner = active_partner()
    who = customer()
    consent_id = grant(who, partner.id)
    withdraw(who, consent_id, expressed_at=recorded + 2 * MINUTE, recorded_at=recorded)
    log.feed(partner, who)

    def status(at: datetime) -> object:
        return registry.consents_for_customer(log.docs, str(who.id), at)[0]["status"]

    assert status(recorded - MICROSECOND) == "IN_EFFECT"
    assert status(recorded) == "WITHDRAWN"
    assert status(recorded + MINUTE) == "WITHDRAWN"
    # Expressed after it was recorded: not a late withdrawal, nothing to review.
    assert registry.late_withdrawal_shares(log.docs) == []


def test_a_naive_time_is_refused_rather_than_compared_by_accident() -> None:
    log = Log()
    who = customer()
    grant(who, uuid4())
    log.feed(who)

    with pytest.raises(ValueError, match="timezone-aware"):
        registry.consents_for_customer(log.docs, str(who.id), datetime(2025, 3, 1))


# ------------------------------------------------------------------ listing


def test_consents_are_listed_by_customer_and_by_partner_in_grant_order() -> None:
    log = Log()
    analytics, logistics = active_partner("Silk Road Analytics"), active_partner("Westlake")
    chen, lin = customer("Chen Jing"), customer("Lin Hua")
    log.feed(analytics, logistics, chen, lin)
    # Granted in this order; the keys sort the other way round.
    chen_analytics = grant(chen, analytics.id, consent_id=LATE_KEY)
    log.feed(chen)
    lin_analytics = grant(lin, analytics.id, expires_at=EFFECTIVE + DAY)
    log.feed(lin)
    chen_logistics = grant(
        chen, logistics.id, consent_id=EARLY_KEY, effective_from=EXPIRES, expires_at=None
    )
    log.feed(chen)
    at = EFFECTIVE + 2 * DAY

    by_chen = registry.consents_for_customer(log.docs, str(chen.id), at)
    by_lin = registry.consents_for_customer(log.docs, str(lin.id), at)
    for_analytics = registry.consents_for_partner(log.docs, str(analytics.id), at)
    for_logistics = registry.consents_for_partner(log.docs, str(logistics.id), at)

    assert statuses(by_chen) == [
        (chen_analytics, "IN_EFFECT"),
        (chen_logistics, "NOT_YET_IN_EFFECT"),
    ]
    assert statuses(by_lin) == [(lin_analytics, "EXPIRED")]
    assert statuses(for_analytics) == [
        (chen_analytics, "IN_EFFECT"),
        (lin_analytics, "EXPIRED"),
    ]
    assert [c["customer_id"] for c in for_analytics] == [str(chen.id), str(lin.id)]
    assert statuses(for_logistics) == [(chen_logistics, "NOT_YET_IN_EFFECT")]
    assert registry.consents_for_partner(log.docs, str(uuid4()), at) == []
    assert registry.consents_for_customer(log.docs, str(uuid4()), at) == []


def test_shares_and_refusals_are_listed_by_customer_and_by_partner() -> None:
    log = Log()
    partner, newcomer = active_partner(), registered_partner()
    chen, lin = customer("Chen Jing"), customer("Lin Hua")
    grant(chen, partner.id)
    consent_id = grant(lin, partner.id)
    log.feed(partner, newcomer, chen, lin)
    at = EFFECTIVE + DAY

    shared = share(chen, partner, at)
    shared_at = log.feed(chen)
    refused = share(chen, newcomer, at + HOUR)  # not active, no consent, no agreement
    refused_at = log.feed(chen)
    lins = share(lin, partner, at + 2 * HOUR)
    lins_at = log.feed(lin)

    by_chen = registry.shares_for_customer(log.docs, str(chen.id))
    assert [(s["share_id"], s["shared"], s["position"]) for s in by_chen] == [
        (shared, True, shared_at),
        (refused, False, refused_at),
    ]
    assert by_chen[1]["reasons"] == [
        ShareReason.NO_CONSENT,
        ShareReason.PARTNER_NOT_ACTIVE,
        ShareReason.AGREEMENT_DOES_NOT_PERMIT,
    ]
    assert by_chen[1]["relied_on_consent_ids"] == []
    assert by_chen[1]["agreement_id"] is None
    assert [
        s["share_id"]
        for s in registry.shares_for_customer(log.docs, str(chen.id), shared_only=True)
    ] == [shared]

    for_partner = registry.shares_for_partner(log.docs, str(partner.id))
    assert [(s["share_id"], s["customer_id"]) for s in for_partner] == [
        (shared, str(chen.id)),
        (lins, str(lin.id)),
    ]
    [agreement_id] = partner.agreements
    assert for_partner[1] == {
        "share_id": lins,
        "customer_id": str(lin.id),
        "partner_id": str(partner.id),
        "purpose": "JOINT_SERVICE",
        "data_categories": ["IDENTITY", "CONTACT"],
        "shared": True,
        "reasons": [],
        "relied_on_consent_ids": [consent_id],
        "agreement_id": str(agreement_id),
        "partner_version": partner.version,
        "recorded_at": (at + 2 * HOUR).isoformat(),
        "position": lins_at,
    }
    assert [s["share_id"] for s in registry.shares_for_partner(log.docs, str(newcomer.id))] == [
        refused
    ]
    assert registry.shares_for_partner(log.docs, str(newcomer.id), shared_only=True) == []


# ------------------------------------------------------------------ late withdrawals


def test_shares_inside_a_late_withdrawals_gap_are_listed_for_review() -> None:
    """Listed: shares recorded in [expressed_at, recorded) relying on the withdrawn consent.

    Chen's letter is dated WITHDRAWN_AT and recorded three days later. The
    share an hour before the letter is fine; the one at the very instant of the
    letter and the one a day into the gap are listed; after the recording,
    data goes out only under Chen's new consent, and is not listed. Lin's late
    withdrawal shows the list spans customers and follows the log.
    """
    log = Log()
    partner = active_partner()
    chen, lin = customer("Chen Jing"), customer("Lin Hua")
    old = grant(chen, partner.id)
    lins = grant(lin, partner.id)
    log.feed(partner, chen, lin)

    share(chen, partner, WITHDRAWN_AT - HOUR)  # before the letter: fine
    log.feed(chen)
    at_letter = share(chen, partner, WITHDRAWN_AT)  # the letter's instant: in the gap
    log.feed(chen)
    lin_gap = share(lin, partner, WITHDRAWN_AT + HOUR)
    log.feed(lin)
    in_gap = share(chen, partner, WITHDRAWN_AT + DAY)
    log.feed(chen)
    withdraw(chen, old, expressed_at=WITHDRAWN_AT, recorded_at=WITHDRAWAL_RECORDED)
    chen_withdrawal = log.feed(chen)
    withdraw(lin, lins, expressed_at=WITHDRAWN_AT, recorded_at=WITHDRAWAL_RECORDED + HOUR)
    lin_withdrawal = log.feed(lin)
    grant(
        chen, partner.id, at=WITHDRAWAL_RECORDED + HOUR, effective_from=WITHDRAWAL_RECORDED + HOUR
    )
    share(chen, partner, WITHDRAWAL_RECORDED + 2 * HOUR)  # under the new consent: fine
    log.feed(chen)

    everyone = registry.late_withdrawal_shares(log.docs)
    only_chen = registry.late_withdrawal_shares(log.docs, str(chen.id))

    assert review_ids(everyone) == [(at_letter, old), (lin_gap, lins), (in_gap, old)]
    assert review_ids(only_chen) == [(at_letter, old), (in_gap, old)]
    assert registry.late_withdrawal_shares(log.docs, str(uuid4())) == []
    first = everyone[0]
    assert first["expressed_at"] == WITHDRAWN_AT.isoformat()
    assert first["withdrawal_recorded_at"] == WITHDRAWAL_RECORDED.isoformat()
    assert first["withdrawal_position"] == chen_withdrawal
    assert everyone[1]["withdrawal_position"] == lin_withdrawal
    assert first["share"]["recorded_at"] == WITHDRAWN_AT.isoformat()


def test_the_gap_ends_where_the_withdrawal_is_recorded() -> None:
    """[expressed_at, recorded): a share stamped at the recording instant is not listed.

    The aggregate cannot produce such a share (the recorded withdrawal binds
    at once), so the events are written by hand: the view applies the window
    itself rather than trusting that it never sees one.
    """
    log = Log()
    partner = active_partner()
    who = customer()
    consent_id = grant(who, partner.id)
    withdraw(who, consent_id, expressed_at=WITHDRAWN_AT, recorded_at=WITHDRAWAL_RECORDED)
    log.feed(partner, who)
    [agreement_id] = partner.agreements

    def recorded_share(at: datetime, version: int) -> str:
        share_id = uuid4()
        log.append(
            DataShared(
                originator_id=who.id,
                originator_version=version,
                timestamp=at,
                actor="compliance-desk",
                request_id=f"req-{share_id}",
                correlation_id="corr-1",
                share_id=share_id,
                partner_id=partner.id,
                purpose=JOINT,
                data_categories=(IDENTITY,),
                relied_on_consent_ids=(UUID(consent_id),),
                agreement_id=agreement_id,
                partner_version=partner.version,
            )
        )
        return str(share_id)

    last_inside = recorded_share(WITHDRAWAL_RECORDED - MICROSECOND, who.version + 1)
    recorded_share(WITHDRAWAL_RECORDED, who.version + 2)

    assert review_ids(registry.late_withdrawal_shares(log.docs)) == [(last_inside, consent_id)]


def test_a_refused_share_in_the_gap_is_not_for_review() -> None:
    """Nothing went out: a refusal in the gap is evidence, not an incident."""
    log = Log()
    partner = active_partner()
    who = customer()
    consent_id = grant(who, partner.id, categories=(IDENTITY,))
    share(who, partner, WITHDRAWN_AT + HOUR, categories=(IDENTITY, PROFILE))  # PROFILE: refused
    withdraw(who, consent_id, expressed_at=WITHDRAWN_AT, recorded_at=WITHDRAWAL_RECORDED)
    log.feed(partner, who)

    assert registry.shares_for_customer(log.docs, str(who.id))[0]["shared"] is False
    assert registry.late_withdrawal_shares(log.docs) == []


# ------------------------------------------------------------------ expiring soon

AT = EFFECTIVE + 30 * DAY
SHANGHAI = timezone(timedelta(hours=8))


@pytest.mark.parametrize("page", [registry.PAGE, 1, 2])
def test_expiring_within_lists_consents_in_effect_that_lapse_in_the_window(
    page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(at, at + days], in effect at ``at``, soonest first, across customers, any page size."""
    monkeypatch.setattr(registry, "PAGE", page)
    log = Log()
    partner = active_partner()
    chen, lin = customer("Chen Jing"), customer("Lin Hua")
    log.feed(partner)

    def consent(
        who: Customer, expires_at: datetime | None, effective_from: datetime = EFFECTIVE
    ) -> str:
        consent_id = grant(who, partner.id, expires_at=expires_at, effective_from=effective_from)
        log.feed(who)
        return consent_id

    consent(chen, AT)  # expired at the very instant asked about
    just_after = consent(chen, AT + MICROSECOND)
    horizon = consent(lin, AT + 30 * DAY)  # the horizon itself is inside
    consent(chen, AT + 30 * DAY + MICROSECOND)  # just beyond it
    consent(lin, None)  # never expires
    withdrawn = consent(chen, AT + 5 * DAY)
    withdraw(chen, withdrawn, expressed_at=AT - DAY, recorded_at=AT - DAY)
    log.feed(chen)
    consent(lin, AT + 6 * DAY, effective_from=AT + DAY)  # not yet in effect at AT
    # Two hours before ``later``, yet written in Shanghai time it reads as later (15:00 > 09:00).
    shanghai = consent(lin, (AT + 2 * DAY - 2 * HOUR).astimezone(SHANGHAI))
    later = consent(chen, AT + 2 * DAY)

    found = registry.expiring_within(log.docs, AT, 30)

    assert [c["consent_id"] for c in found] == [just_after, shanghai, later, horizon]
    assert {c["status"] for c in found} == {"IN_EFFECT"}
    assert registry.expiring_within(log.docs, AT, 0) == []
    assert [c["consent_id"] for c in registry.expiring_within(log.docs, AT, 2)] == [
        just_after,
        shanghai,
        later,
    ]


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        registry.expiring_within(MemoryDocs(), AT, -1)


# ------------------------------------------------------------------ robustness and privacy


def test_a_withdrawal_whose_grant_the_view_never_saw_changes_nothing() -> None:
    log = Log()
    partner = active_partner()
    who = customer()
    consent_id = grant(who, partner.id)
    log.feed(partner, who)
    withdraw(who, consent_id, expressed_at=WITHDRAWN_AT, recorded_at=WITHDRAWAL_RECORDED)
    [withdrawal] = who.collect_events()
    fresh = Log()  # a view that starts after the grant

    fresh.append(withdrawal)

    assert fresh.docs.docs == {}


def test_the_events_it_copies_have_no_personal_fields() -> None:
    """A guard: if one of these ever gains a Personal field, this view must learn to wipe it."""
    for topic in ConsentRegistry.topics or ():
        event_type = DomainEvent.for_topic(topic)
        assert personal_fields(event_type) == frozenset(), topic
    assert personal_fields(ConsentCapture) == frozenset()
    assert {ConsentGranted, ConsentWithdrawn, DataShared, DataShareRefused} == {
        DomainEvent.for_topic(t) for t in ConsentRegistry.topics or ()
    }


def test_no_personal_data_reaches_the_view_and_erasure_leaves_the_evidence() -> None:
    log = Log()
    partner = active_partner()
    who = customer("Zhang Wei")
    who.add_contact(
        uuid4(),
        name="Zhang Wei",
        email="zhang.wei@example.cn",
        phone="+86 138 0000 0000",
        title="Owner",
        layer=ContactLayer.DECISION,
        function=ContactFunction.FINANCE,
        influence=5,
        meta=meta(GRANTED),
    )
    who.record_interaction(
        uuid4(),
        kind=InteractionKind.CALL,
        channel=Channel.PHONE,
        direction=Direction.INBOUND,
        occurred_at=GRANTED,
        summary="Zhang Wei asked about sharing",
        amount=None,
        currency=None,
        satisfaction=None,
        partner_id=None,
        contact_ids=(),
        meta=meta(GRANTED),
    )
    consent_id = grant(who, partner.id)
    share(who, partner, WITHDRAWN_AT + HOUR)
    withdraw(who, consent_id, expressed_at=WITHDRAWN_AT, recorded_at=WITHDRAWAL_RECORDED)
    log.feed(partner, who)
    before = dump(log.docs)

    who.erase(reason="customer request", meta=meta(WITHDRAWAL_RECORDED + DAY))
    log.feed(who)

    stored = dump(log.docs)
    for personal in ("Zhang", "zhang.wei@example.cn", "138 0000", "asked about sharing"):
        assert personal not in stored
    assert stored == before
    assert len(registry.late_withdrawal_shares(log.docs, str(who.id))) == 1
