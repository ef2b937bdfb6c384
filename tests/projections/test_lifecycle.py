"""The lifecycle read model: golden cases of the stage rules, the funnel and the stage history.

Every expectation is worked out by hand from DESIGN §5 (the arithmetic is in
the comments); the rules are evaluated on UTC calendar dates with
``days = (D - purchase date).days``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest

from domain.aggregate import EventMeta
from domain.customer import Customer, CustomerRegistered
from domain.values import Channel, CustomerKind, Direction, InteractionKind, PotentialValue
from projections import lifecycle
from projections.lifecycle import LOYAL_PURCHASES, Lifecycle, Stage, stage_at, stage_history
from tests.projections.memory import FoldedLog

D = date(2025, 6, 30)
"""The date most cases are evaluated at ("as of D")."""


def ago(days: int) -> date:
    return D - timedelta(days=days)


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def meta(at: datetime) -> EventMeta:
    return EventMeta(actor="test", request_id="req", correlation_id="corr", recorded_at=at)


class Feed(FoldedLog):
    """Customers built through the domain, their events folded into one projection."""

    def fold(self, customer: Customer) -> None:
        self.feed(customer)

    def customer(self, n: int, *, registered: date = date(2020, 1, 1)) -> Customer:
        customer = Customer.register(
            UUID(int=n),
            external_ref=f"CRM-{n}",
            display_name=f"Customer {n}",
            kind=CustomerKind.ORGANISATION,
            industry="RETAIL",
            region="EAST",
            size=None,
            source="WEB",
            acquired_via_partner_id=None,
            potential_value=PotentialValue.MEDIUM,
            meta=meta(noon(registered)),
        )
        self.fold(customer)
        return customer


def interact(
    customer: Customer,
    on: date | datetime,
    amount: str | None = "100",
    kind: InteractionKind = InteractionKind.PURCHASE,
) -> None:
    occurred = on if isinstance(on, datetime) else noon(on)
    customer.record_interaction(
        UUID(int=customer.version + 1_000_000),
        kind=kind,
        channel=Channel.WEB,
        direction=Direction.INBOUND,
        occurred_at=occurred,
        summary="",
        amount=Decimal(amount) if amount is not None else None,
        currency="CNY" if amount is not None else None,
        satisfaction=None,
        partner_id=None,
        contact_ids=(),
        meta=meta(occurred),
    )


def with_purchases(feed: Feed, n: int, *days_ago: int) -> str:
    """Register customer ``n`` and record a purchase on each of ``days_ago`` before D."""
    customer = feed.customer(n)
    for days in days_ago:
        interact(customer, ago(days))
    feed.fold(customer)
    return str(customer.id)


# ------------------------------------------------------------ stage rules


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (0, Stage.NEW),  # bought on D: 0 days ago; first purchase 0 <= 90 -> NEW
        (89, Stage.NEW),  # 89 <= 90 -> NEW
        (90, Stage.NEW),  # 90 <= 90 -> NEW (the boundary is inclusive)
        (91, Stage.ACTIVE),  # 91 > 90: not NEW; 1 purchase in window < 4 -> ACTIVE
        (179, Stage.ACTIVE),  # 179 <= 180: not AT_RISK -> ACTIVE
        (180, Stage.ACTIVE),  # 180 is not > 180 -> still ACTIVE
        (181, Stage.AT_RISK),  # 181 > 180 -> AT_RISK
        (364, Stage.AT_RISK),  # 364 <= 365: not CHURNED; > 180 -> AT_RISK
        (365, Stage.AT_RISK),  # 365 is not > 365 -> still AT_RISK
        (366, Stage.CHURNED),  # 366 > 365 -> CHURNED
    ],
)
def test_a_single_purchase_ages_through_the_stages_at_the_boundaries(
    days: int, expected: Stage
) -> None:
    assert stage_at([ago(days)], D) is expected


def test_no_purchase_is_a_prospect() -> None:
    assert stage_at([], D) is Stage.PROSPECT


def test_a_purchase_after_d_does_not_exist_as_of_d() -> None:
    # Bought on D + 1: nothing on or before D -> PROSPECT; as of D + 1 it is 0 days ago -> NEW.
    assert stage_at([D + timedelta(days=1)], D) is Stage.PROSPECT
    assert stage_at([D + timedelta(days=1)], D + timedelta(days=1)) is Stage.NEW


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        # Gap 376 - 10 = 366 > 365, last purchase 10 <= 90 days ago -> REACTIVATED.
        ((376, 10), Stage.REACTIVATED),
        # Gap 375 - 10 = 365 is not > 365; first purchase 375 > 90; 1 in window -> ACTIVE.
        ((375, 10), Stage.ACTIVE),
        # Gap 456 - 90 = 366 > 365 and last purchase 90 <= 90 days ago -> REACTIVATED.
        ((456, 90), Stage.REACTIVATED),
        # Gap 457 - 91 = 366, but the last purchase is 91 > 90 days ago -> ACTIVE.
        ((457, 91), Stage.ACTIVE),
        # Only the most recent purchase counts: gap 120 - 10 = 110 (the gap 500 - 120
        # came before it); first 500 > 90; 2 in window -> ACTIVE.
        ((500, 120, 10), Stage.ACTIVE),
        # A second purchase on the reactivation day: the gap to it is 0 -> ACTIVE.
        ((400, 10, 10), Stage.ACTIVE),
    ],
)
def test_reactivation_needs_a_gap_of_more_than_365_days(
    days: tuple[int, ...], expected: Stage
) -> None:
    assert stage_at([ago(n) for n in days], D) is expected


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        # 4 purchases in the window, but the first is 90 <= 90 days ago: NEW comes first.
        ((90, 60, 40, 20), Stage.NEW),
        # First purchase 91 > 90 days ago: not NEW; 4 purchases with days < 365 -> LOYAL.
        ((91, 60, 40, 20), Stage.LOYAL),
    ],
)
def test_new_takes_precedence_over_loyal(days: tuple[int, ...], expected: Stage) -> None:
    assert stage_at([ago(n) for n in days], D) is expected


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        # 364 < 365: all 4 purchases are in the window (D - 365, D] -> LOYAL.
        ((364, 200, 100, 10), Stage.LOYAL),
        # 365 is not < 365: only 3 in the window -> ACTIVE.
        ((365, 200, 100, 10), Stage.ACTIVE),
        # 3 purchases in the window -> ACTIVE.
        ((200, 100, 10), Stage.ACTIVE),
        # Two purchases on one day are two purchases: 4 in the window -> LOYAL.
        ((200, 100, 10, 10), Stage.LOYAL),
    ],
)
def test_loyal_counts_four_purchases_with_days_below_365(
    days: tuple[int, ...], expected: Stage
) -> None:
    assert stage_at([ago(n) for n in days], D) is expected


def test_the_rules_apply_in_order_at_risk_before_loyal() -> None:
    # 4 purchases in the window, but the last is 181 > 180 days ago -> AT_RISK.
    assert stage_at([ago(n) for n in (300, 250, 200, 181)], D) is Stage.AT_RISK


# ----------------------------------------------------------- the fold and queries


def test_a_refund_is_not_a_purchase() -> None:
    feed = Feed(Lifecycle())
    loyal_if_counted = feed.customer(1)
    for days in (300, 200, 100):
        interact(loyal_if_counted, ago(days))
    interact(loyal_if_counted, ago(10), "50", InteractionKind.REFUND)
    at_risk = feed.customer(2)
    interact(at_risk, ago(200))
    interact(at_risk, ago(10), "50", InteractionKind.REFUND)
    feed.fold(loyal_if_counted)
    feed.fold(at_risk)

    # 3 purchases in the window (the refund is not a 4th) -> ACTIVE, not LOYAL.
    assert lifecycle.stage(feed.docs, str(loyal_if_counted.id), D) is Stage.ACTIVE
    # The last purchase is 200 > 180 days ago; the refund 10 days ago does not refresh it.
    assert lifecycle.stage(feed.docs, str(at_risk.id), D) is Stage.AT_RISK


def test_other_interactions_are_not_purchases() -> None:
    feed = Feed(Lifecycle())
    customer = feed.customer(1)
    interact(customer, ago(5), None, InteractionKind.CALL)
    feed.fold(customer)

    assert lifecycle.stage(feed.docs, str(customer.id), D) is Stage.PROSPECT
    assert feed.docs.get("customer", str(customer.id)) == {
        "customer_id": str(customer.id),
        "registered_on": "2020-01-01",
        "purchases": [],
    }


def test_the_view_keeps_a_count_and_totals_per_day_and_no_personal_data() -> None:
    feed = Feed(Lifecycle())
    customer = feed.customer(7, registered=date(2024, 5, 6))
    interact(customer, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "120.50")
    interact(customer, datetime(2025, 1, 3, 0, 0, tzinfo=UTC), "20.50", InteractionKind.REFUND)
    feed.fold(customer)

    assert feed.docs.get("customer", str(customer.id)) == {
        "customer_id": str(customer.id),
        "registered_on": "2024-05-06",
        "purchases": [
            ["2025-01-02", 1, "120.50", "0"],  # [UTC day, purchases, purchased, refunded]
            ["2025-01-03", 0, "0", "20.50"],  # refunds only: not a purchase date
        ],
    }
    assert "Customer 7" not in repr(feed.docs.docs)


def test_a_day_keeps_one_entry_however_many_interactions_it_has() -> None:
    feed = Feed(Lifecycle())
    customer = feed.customer(1)
    for hour in range(24):
        interact(customer, datetime.combine(ago(100), time(hour), tzinfo=UTC), "10.25")
    interact(customer, noon(ago(100)), "0.50", InteractionKind.REFUND)
    interact(customer, ago(30))
    interact(customer, ago(100), "5")  # recorded late, into a day that is not the last
    interact(customer, ago(200), "7")  # recorded late, a day before all others
    feed.fold(customer)

    doc = feed.docs.get("customer", str(customer.id))
    assert doc is not None
    assert doc["purchases"] == [
        [ago(200).isoformat(), 1, "7", "0"],
        [ago(100).isoformat(), 25, "251.00", "0.50"],  # 24 x 10.25 + 5
        [ago(30).isoformat(), 1, "100", "0"],
    ]


def test_a_version_1_history_reads_as_the_same_days() -> None:
    # One entry per interaction, refunds negated: what queries meet until the rebuild
    # at version 2 switches over.
    old = [
        ["2025-01-02T03:04:05.000000+00:00", "120.50"],
        ["2025-01-02T23:00:00.000000+00:00", "-0"],
        ["2025-01-03T00:00:00.000000+00:00", "-20.50"],
    ]

    assert lifecycle.parse_entries(old) == [
        lifecycle.Day(date(2025, 1, 2), 1, Decimal("120.50"), Decimal(0)),
        lifecycle.Day(date(2025, 1, 2), 0, Decimal(0), Decimal("0")),
        lifecycle.Day(date(2025, 1, 3), 0, Decimal(0), Decimal("20.50")),
    ]


def test_purchases_on_one_day_count_one_by_one() -> None:
    feed = Feed(Lifecycle())
    customer = feed.customer(1)
    for _ in range(LOYAL_PURCHASES):
        interact(customer, ago(100))
    feed.fold(customer)

    # Four purchases 100 days ago, in one entry: four in the window, so LOYAL (not ACTIVE),
    # and no gap between them (not REACTIVATED).
    assert lifecycle.stage(feed.docs, str(customer.id), D) is Stage.LOYAL


def test_days_are_counted_on_utc_calendar_dates() -> None:
    feed = Feed(Lifecycle())
    customer = feed.customer(1)
    # 23:30 on 30 June in UTC-5 is 04:30 on 1 July in UTC: the purchase is dated 1 July.
    interact(customer, datetime(2025, 6, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5))))
    feed.fold(customer)

    assert lifecycle.stage(feed.docs, str(customer.id), date(2025, 6, 30)) is Stage.PROSPECT
    assert lifecycle.stage(feed.docs, str(customer.id), date(2025, 7, 1)) is Stage.NEW
    # A datetime is taken as its UTC date: 2025-07-01T01:00+02:00 is 2025-06-30 in UTC.
    moment = datetime(2025, 7, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert lifecycle.stage(feed.docs, str(customer.id), moment) is Stage.PROSPECT


def test_late_recorded_purchases_take_their_place_in_business_time() -> None:
    feed = Feed(Lifecycle())
    customer = feed.customer(1)
    interact(customer, ago(10))
    interact(customer, ago(400))  # recorded after, happened before
    feed.fold(customer)

    doc = feed.docs.get("customer", str(customer.id))
    assert doc is not None
    assert [entry[0] for entry in doc["purchases"]] == [
        ago(400).isoformat(),
        ago(10).isoformat(),
    ]
    # Gap 400 - 10 = 390 > 365, last purchase 10 <= 90 days ago -> REACTIVATED.
    assert lifecycle.stage(feed.docs, str(customer.id), D) is Stage.REACTIVATED


def test_events_for_a_customer_without_a_document_are_ignored() -> None:
    feed = Feed(Lifecycle())
    customer = Customer.register(
        UUID(int=9),
        external_ref="CRM-9",
        display_name="Unseen",
        kind=CustomerKind.PERSON,
        industry="RETAIL",
        region="EAST",
        size=None,
        source="WEB",
        acquired_via_partner_id=None,
        potential_value=PotentialValue.LOW,
        meta=meta(noon(ago(30))),
    )
    customer.collect_events()  # the registration never reaches the view
    interact(customer, ago(10))
    feed.fold(customer)

    assert feed.docs.docs == {}
    assert lifecycle.stage(feed.docs, str(customer.id), D) is None
    assert lifecycle.history(feed.docs, str(customer.id), D) == []


def test_a_customer_is_not_counted_before_it_is_known() -> None:
    feed = Feed(Lifecycle())
    later = feed.customer(1, registered=D + timedelta(days=1))
    imported = feed.customer(2, registered=D + timedelta(days=1))
    interact(imported, ago(10))  # history from before the registration was recorded
    feed.fold(imported)

    assert lifecycle.stage(feed.docs, str(later.id), D) is None
    assert lifecycle.stage(feed.docs, str(later.id), D + timedelta(days=1)) is Stage.PROSPECT
    # Known from its first purchase (10 days before D) -> NEW at D.
    assert lifecycle.stage(feed.docs, str(imported.id), D) is Stage.NEW
    assert lifecycle.stage(feed.docs, "no-such-customer", D) is None


def test_the_funnel_counts_every_stage_including_empty_ones() -> None:
    feed = Feed(Lifecycle())
    feed.customer(1)  # no purchase -> PROSPECT
    with_purchases(feed, 2, 10)  # first purchase 10 <= 90 -> NEW
    with_purchases(feed, 3, 100)  # 100: not NEW, not AT_RISK, 1 in window -> ACTIVE
    with_purchases(feed, 4, 300, 200, 150, 100)  # last 100, first 300 > 90, 4 in window -> LOYAL
    with_purchases(feed, 5, 500, 20)  # gap 480 > 365, last 20 <= 90 -> REACTIVATED
    with_purchases(feed, 6, 400)  # 400 > 365 -> CHURNED
    with_purchases(feed, 7, 700, 690)  # last 690 > 365 -> CHURNED
    feed.customer(8, registered=D + timedelta(days=1))  # not yet a customer at D

    assert lifecycle.funnel(feed.docs, D) == {
        "PROSPECT": 1,
        "NEW": 1,
        "ACTIVE": 1,
        "LOYAL": 1,
        "REACTIVATED": 1,
        "AT_RISK": 0,
        "CHURNED": 2,
    }
    # A day later customer 8 exists (PROSPECT); the others are one day older:
    # 11 NEW, 101 ACTIVE, LOYAL (last 101, 4 in window: 301 < 365), 21 REACTIVATED, CHURNED.
    assert lifecycle.funnel(feed.docs, D + timedelta(days=1)) == {
        "PROSPECT": 2,
        "NEW": 1,
        "ACTIVE": 1,
        "LOYAL": 1,
        "REACTIVATED": 1,
        "AT_RISK": 0,
        "CHURNED": 2,
    }
    # 31 Dec 2019: before every registration (1 Jan 2020) and purchase -> all zero.
    assert lifecycle.funnel(feed.docs, date(2019, 12, 31)) == {s.value: 0 for s in Stage}


# ---------------------------------------------------------------- history


def test_history_follows_a_customer_from_prospect_to_churn_and_back() -> None:
    feed = Feed(Lifecycle())
    customer = feed.customer(1, registered=date(2024, 1, 1))
    interact(customer, date(2024, 2, 1))
    interact(customer, date(2025, 3, 1))
    feed.fold(customer)

    assert lifecycle.history(feed.docs, str(customer.id), date(2025, 6, 30)) == [
        (date(2024, 1, 1), Stage.PROSPECT),  # registered, nothing bought
        (date(2024, 2, 1), Stage.NEW),  # first purchase
        # 1 Feb + 91 days: Feb (29, leap year) + Mar 31 + Apr 30 = 90 -> 1 May is +90, 2 May +91.
        (date(2024, 5, 2), Stage.ACTIVE),
        # 1 Feb + 181: 1 Jul is +151 (29+31+30+31+30), so +181 is 31 Jul -> AT_RISK.
        (date(2024, 7, 31), Stage.AT_RISK),
        # 1 Feb 2024 + 366 (a leap year lies between) = 1 Feb 2025 -> CHURNED.
        (date(2025, 2, 1), Stage.CHURNED),
        # 1 Mar 2025: gap from 1 Feb 2024 is 394 > 365 -> REACTIVATED.
        (date(2025, 3, 1), Stage.REACTIVATED),
        # 1 Mar 2025 + 91: Mar 31 + Apr 30 = 61 -> 1 May; + 30 -> 31 May -> ACTIVE.
        (date(2025, 5, 31), Stage.ACTIVE),
    ]
    # Evaluated as of an earlier date, the history stops there.
    assert lifecycle.history(feed.docs, str(customer.id), date(2024, 7, 30)) == [
        (date(2024, 1, 1), Stage.PROSPECT),
        (date(2024, 2, 1), Stage.NEW),
        (date(2024, 5, 2), Stage.ACTIVE),
    ]


def test_history_reports_leaving_loyal_on_the_day_a_purchase_leaves_the_window() -> None:
    registered = date(2024, 1, 1)
    purchases = [date(2024, 1, 10), date(2024, 10, 1), date(2024, 11, 1), date(2024, 12, 1)]

    assert stage_history(purchases, registered, date(2025, 2, 1)) == [
        (date(2024, 1, 1), Stage.PROSPECT),
        (date(2024, 1, 10), Stage.NEW),
        # 10 Jan + 91: 21 (to 31 Jan) + 29 + 31 = 81 -> 31 Mar; + 10 -> 10 Apr.
        (date(2024, 4, 10), Stage.ACTIVE),
        # 10 Apr + 90 (Apr 20 + May 31 + Jun 30 = 81 -> 30 Jun; + 9) = 9 Jul: +181 -> AT_RISK.
        (date(2024, 7, 9), Stage.AT_RISK),
        # A purchase: last 0 days ago, gap 265 <= 365, first > 90, 2 in window -> ACTIVE.
        (date(2024, 10, 1), Stage.ACTIVE),
        # 4th purchase in the window -> LOYAL.
        (date(2024, 12, 1), Stage.LOYAL),
        # 10 Jan 2024 + 365 = 9 Jan 2025 (366 days in the leap year): days = 365 is not < 365,
        # so only 3 purchases remain in the window -> ACTIVE that day, not a day later.
        (date(2025, 1, 9), Stage.ACTIVE),
    ]


@pytest.mark.parametrize(
    "purchases",
    [
        [date(2023, 3, 1)],
        [date(2023, 3, 1), date(2023, 3, 1), date(2023, 5, 1), date(2023, 6, 30), date(2024, 2, 1)],
        [
            date(2022, 12, 31),
            date(2024, 1, 2),
            date(2024, 1, 3),
            date(2024, 4, 2),
            date(2024, 7, 1),
        ],
        [date(2023, 1, 1) + timedelta(days=37 * k) for k in range(12)],
    ],
)
def test_history_finds_every_change_a_day_by_day_walk_finds(purchases: list[date]) -> None:
    registered, until = date(2022, 12, 1), date(2025, 12, 31)
    walked: list[tuple[date, Stage]] = []
    day = registered
    while day <= until:
        current = stage_at(purchases, day)
        if not walked or walked[-1][1] is not current:
            walked.append((day, current))
        day += timedelta(days=1)

    assert stage_history(purchases, registered, until) == walked


def test_the_projection_reads_only_registrations_and_interactions() -> None:
    assert Lifecycle.name == "lifecycle"
    assert Lifecycle.version == 2
    assert Lifecycle.topics == frozenset(
        {CustomerRegistered.topic, "customer.interaction_recorded"}
    )
