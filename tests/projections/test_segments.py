"""The segments read model: golden cases of RFM scoring, the segment map, quadrants, tiers and CLV.

Every expectation is worked out by hand from DESIGN §5 (the arithmetic is in
the comments). As of D, the window holds dates in (D - 365, D] (days < 365);
scores are ceil(5 * cume_dist), with cume_dist(x) = #{v <= x} / N for F and M
and cume_dist(r) = #{days >= r} / N for R.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from domain.aggregate import EventMeta
from domain.customer import Customer
from domain.values import Channel, CustomerKind, Direction, InteractionKind, PotentialValue, Tier
from projections import segments
from projections.lifecycle import Day
from projections.projection import Projection
from projections.segments import (
    DEFAULT_LIFESPAN_YEARS,
    PurchaseStats,
    Quadrant,
    Rfm,
    Segment,
    Segments,
    clv,
    cume_scores,
    purchase_stats,
    recommended_tier,
    rfm_scores,
    segment,
    value_quadrant,
)
from tests.projections.memory import FoldedLog

D = date(2025, 6, 30)
"""The date most cases are evaluated at ("as of D")."""

HIGH, MEDIUM, LOW = PotentialValue.HIGH, PotentialValue.MEDIUM, PotentialValue.LOW


def ago(days: int) -> date:
    return D - timedelta(days=days)


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def meta(at: datetime) -> EventMeta:
    return EventMeta(actor="test", request_id="req", correlation_id="corr", recorded_at=at)


def cid(n: int) -> str:
    return str(UUID(int=n))


class Feed(FoldedLog):
    """Customers built through the domain, their events folded into one projection."""

    def __init__(self, projection: Projection) -> None:
        super().__init__(projection)
        self.customers: dict[int, Customer] = {}

    def fold(self, customer: Customer) -> None:
        self.feed(customer)

    def customer(
        self,
        n: int,
        potential: PotentialValue = MEDIUM,
        *,
        registered: date = date(2020, 1, 1),
        buys: tuple[tuple[int, str], ...] = (),
        refunds: tuple[tuple[int, str], ...] = (),
    ) -> Customer:
        """Customer ``n`` with purchases and then refunds of (days before D, amount)."""
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
            potential_value=potential,
            meta=meta(noon(registered)),
        )
        for days, amount in buys:
            interact(customer, ago(days), amount)
        for days, amount in refunds:
            interact(customer, ago(days), amount, InteractionKind.REFUND)
        self.fold(customer)
        self.customers[n] = customer
        return customer


def interact(
    customer: Customer,
    on: date,
    amount: str,
    kind: InteractionKind = InteractionKind.PURCHASE,
) -> None:
    customer.record_interaction(
        UUID(int=customer.version + 1_000_000),
        kind=kind,
        channel=Channel.WEB,
        direction=Direction.INBOUND,
        occurred_at=noon(on),
        summary="",
        amount=Decimal(amount),
        currency="CNY",
        satisfaction=None,
        partner_id=None,
        contact_ids=(),
        meta=meta(noon(on) + timedelta(hours=1)),
    )


def entries(*purchases: tuple[int, str]) -> list[Day]:
    """Days of one purchase each, of (days before D, amount)."""
    return [Day(ago(days), 1, Decimal(amount), Decimal(0)) for days, amount in purchases]


def refund(on: date, amount: str) -> Day:
    return Day(on, 0, Decimal(0), Decimal(amount))


def population_of_five() -> Feed:
    """Five customers in the window, two of them tied on F and M, plus Lost and None.

    | customer | purchases (days ago x amount) | recency | F | M   |
    |----------|-------------------------------|---------|---|-----|
    | 1 HIGH   | 40 x 50                       | 40      | 1 | 50  |
    | 2 MEDIUM | 40 x 50                       | 40      | 1 | 50  |
    | 3 MEDIUM | 6 x 40, 5 x 40                | 5       | 2 | 80  |
    | 4 LOW    | 202, 201, 200 x 40            | 200     | 3 | 120 |
    | 5 HIGH   | 364 x 200, 200, 100           | 364     | 3 | 500 |
    | 6 HIGH   | 365 x 1000 (outside)          | -       | - | -   |  -> Lost
    | 7 LOW    | none                          | -       | - | -   |  -> no segment
    """
    feed = Feed(Segments())
    feed.customer(1, HIGH, buys=((40, "50"),))
    feed.customer(2, MEDIUM, buys=((40, "50"),))
    feed.customer(3, MEDIUM, buys=((6, "40"), (5, "40")))
    feed.customer(4, LOW, buys=((202, "40"), (201, "40"), (200, "40")))
    feed.customer(5, HIGH, buys=((364, "200"), (364, "200"), (364, "100")))
    feed.customer(6, HIGH, buys=((365, "1000"),))
    feed.customer(7, LOW)
    return feed


# --------------------------------------------------------------- scoring


def test_distinct_values_score_one_to_five() -> None:
    # N = 5: cume_dist = 1/5 .. 5/5, so 5 * cume_dist = 1 .. 5 exactly.
    assert cume_scores([30, 10, 50, 20, 40]) == [3, 1, 5, 2, 4]


def test_ties_share_the_score_of_their_whole_group() -> None:
    # [1, 1, 2, 3, 3]: #{v <= 1} = 2 -> 5 * 2/5 = 2; #{v <= 2} = 3 -> 3; #{v <= 3} = 5 -> 5.
    assert cume_scores([1, 1, 2, 3, 3]) == [2, 2, 3, 5, 5]
    # All equal: cume_dist = 1 for everyone -> 5.
    assert cume_scores([7, 7, 7]) == [5, 5, 5]
    # One customer alone is the whole population -> 5.
    assert cume_scores([Decimal("12.50")]) == [5]


def test_a_population_of_five_with_ties() -> None:
    feed = population_of_five()
    found = {n: segments.insight(feed.docs, cid(n), D) for n in range(1, 8)}

    # R: days [40, 40, 5, 200, 364]; cume_dist(r) = #{days >= r} / 5:
    #   40 -> {40, 40, 200, 364} = 4 -> 4;  5 -> 5 -> 5;  200 -> 2 -> 2;  364 -> 1 -> 1.
    # F: [1, 1, 2, 3, 3] -> 2, 2, 3, 5, 5 (ties share the score of their group).
    # M: [50, 50, 80, 120, 500] -> #{<=50} = 2 -> 2, 2; 80 -> 3; 120 -> 4; 500 -> 5.
    scores = {n: (i["r"], i["f"], i["m"]) for n, i in found.items() if i is not None}
    assert scores == {
        1: (4, 2, 2),
        2: (4, 2, 2),
        3: (5, 3, 3),
        4: (2, 5, 4),
        5: (1, 5, 5),
        6: (None, None, None),
        7: (None, None, None),
    }
    # R4F2, R5F3 -> Potential Loyalist; R2F5, R1F5 -> Cannot Lose Them;
    # 6 bought only 365 days ago (not < 365) -> Lost; 7 never bought -> no segment.
    assert {n: i["segment"] for n, i in found.items() if i is not None} == {
        1: "Potential Loyalist",
        2: "Potential Loyalist",
        3: "Potential Loyalist",
        4: "Cannot Lose Them",
        5: "Cannot Lose Them",
        6: "Lost",
        7: None,
    }


def test_a_population_of_seven_with_two_tied_on_f_and_m() -> None:
    histories = {
        # a: 1 purchase, 300 days ago, 600.
        "a": entries((300, "600")),
        # b: 2 purchases of 250, last 200 days ago.
        "b": entries((201, "250"), (200, "250")),
        # c and d: 3 purchases of 100 each (F 3, M 300), last 100 and 50 days ago.
        "c": entries((102, "100"), (101, "100"), (100, "100")),
        "d": entries((52, "100"), (51, "100"), (50, "100")),
        # e: 4 x 50, last 30 days ago.
        "e": entries((33, "50"), (32, "50"), (31, "50"), (30, "50")),
        # f: 5 x 20, last 20 days ago.
        "f": entries((24, "20"), (23, "20"), (22, "20"), (21, "20"), (20, "20")),
        # g: 6 purchases summing to 50, last 10 days ago.
        "g": entries((15, "10"), (14, "10"), (13, "10"), (12, "10"), (11, "5"), (10, "5")),
    }
    scores = rfm_scores({key: purchase_stats(h, D) for key, h in histories.items()})

    # R: days [300, 200, 100, 50, 30, 20, 10], cume_dist = #{days >= r} / 7:
    #   300 -> 1/7: ceil(5/7) = 1;  200 -> 2/7: ceil(10/7) = 2;  100 -> 3/7: ceil(15/7) = 3;
    #   50 -> 4/7: ceil(20/7) = 3;  30 -> 5/7: ceil(25/7) = 4;   20 -> 6/7: ceil(30/7) = 5;
    #   10 -> 7/7 = 5.
    # F: [1, 2, 3, 3, 4, 5, 6]: 1 -> 1/7: 1;  2 -> 2/7: 2;  3 (c, d) -> #{<=3} = 4: ceil(20/7) = 3;
    #   4 -> 5/7: 4;  5 -> 6/7: ceil(30/7) = 5;  6 -> 7/7: 5.
    # M: [600, 500, 300, 300, 200, 100, 50], sorted [50, 100, 200, 300, 300, 500, 600]:
    #   50 -> 1/7: 1;  100 -> 2/7: 2;  200 -> 3/7: 3;  300 (c, d) -> #{<=300} = 5: ceil(25/7) = 4;
    #   500 -> 6/7: 5;  600 -> 7/7: 5.
    assert scores == {
        "a": Rfm(1, 1, 5),
        "b": Rfm(2, 2, 5),
        "c": Rfm(3, 3, 4),
        "d": Rfm(3, 3, 4),
        "e": Rfm(4, 4, 3),
        "f": Rfm(5, 5, 2),
        "g": Rfm(5, 5, 1),
    }
    # R1F1, R2F2 Hibernating; R3F3 Need Attention; R4F4 Loyal; R5F5 Champions.
    assert {key: segment(s.r, s.f) for key, s in scores.items()} == {
        "a": Segment.HIBERNATING,
        "b": Segment.HIBERNATING,
        "c": Segment.NEED_ATTENTION,
        "d": Segment.NEED_ATTENTION,
        "e": Segment.LOYAL,
        "f": Segment.CHAMPIONS,
        "g": Segment.CHAMPIONS,
    }


def test_fewer_days_since_the_last_purchase_score_a_higher_recency() -> None:
    stats = {
        "today": purchase_stats(entries((0, "10")), D),
        "yesterday": purchase_stats(entries((1, "10")), D),
        "two days ago": purchase_stats(entries((2, "10")), D),
    }

    # days [0, 1, 2]: 0 -> #{>=0} = 3 -> 5;  1 -> 2/3: ceil(10/3) = 4;  2 -> 1/3: ceil(5/3) = 2.
    assert {key: s.r for key, s in rfm_scores(stats).items()} == {
        "today": 5,
        "yesterday": 4,
        "two days ago": 2,
    }


def test_purchase_stats_as_of_d() -> None:
    history = [
        *entries((500, "300")),  # before the window: lifetime only
        refund(ago(380), "100"),  # a refund before the window
        *entries((364, "40"), (0, "60")),  # in the window (364 < 365; 0 is D itself)
        refund(ago(3), "10"),  # a refund in the window
        Day(D + timedelta(days=1), 1, Decimal("999"), Decimal(0)),  # after D: not yet
    ]

    assert purchase_stats(history, D) == PurchaseStats(
        purchases=3,  # 500, 364, 0 days ago; refunds are not purchases
        net=Decimal("290"),  # 300 - 100 + 40 + 60 - 10
        recency_days=0,  # bought on D
        frequency=2,  # 364 and 0 days ago
        monetary=Decimal("90"),  # 40 + 60 - 10
    )
    assert purchase_stats([], D) == PurchaseStats(0, Decimal(0), None, 0, Decimal(0))


def test_a_day_with_many_purchases_counts_each_of_them() -> None:
    one_by_one = entries((400, "10"), (5, "10"), (5, "20"), (5, "30"))
    by_day = [
        Day(ago(400), 1, Decimal("10"), Decimal(0)),
        Day(ago(5), 3, Decimal("60"), Decimal("5")),  # three purchases and a refund
    ]

    assert purchase_stats(by_day, D) == PurchaseStats(
        purchases=4, net=Decimal("65"), recency_days=5, frequency=3, monetary=Decimal("55")
    )
    assert purchase_stats([*one_by_one, refund(ago(5), "5")], D) == purchase_stats(by_day, D)


def test_monetary_nets_the_refunds_dated_in_the_window() -> None:
    feed = Feed(Segments())
    # x: 500 bought 400 days ago (outside), 100 bought 10 days ago, 200 refunded 5 days ago:
    #    M = 100 - 200 = -100 (the refund is in the window, whatever it refunds).
    feed.customer(1, buys=((400, "500"), (10, "100")), refunds=((5, "200"),))
    # y: 300 bought 400 days ago, 100 refunded 380 days ago (outside), 50 bought 10 days ago:
    #    M = 50.
    feed.customer(2, buys=((400, "300"), (10, "50")), refunds=((380, "100"),))
    x = segments.insight(feed.docs, cid(1), D)
    y = segments.insight(feed.docs, cid(2), D)
    assert x is not None
    assert y is not None

    assert (x["frequency"], x["monetary"], x["recency_days"]) == (1, "-100", 10)
    assert (y["frequency"], y["monetary"], y["recency_days"]) == (1, "50", 10)
    # M [-100, 50]: -100 -> 1/2: ceil(2.5) = 3; 50 -> 2/2 = 5. R, F tie -> 5, 5.
    assert (x["r"], x["f"], x["m"]) == (5, 5, 3)
    assert (y["r"], y["f"], y["m"]) == (5, 5, 5)
    # CLV x: lifetime net 500 + 100 - 200 = 400 over 2 purchases = 200 per order,
    #        x 1 purchase this year x 3 years = 600.00.
    # CLV y: (300 - 100 + 50) / 2 = 125 per order x 1 x 3 = 375.00.
    assert (x["clv"], y["clv"]) == ("600.00", "375.00")


# --------------------------------------------------------------- segments


@pytest.mark.parametrize(
    ("r", "f", "expected"),
    [
        (5, 1, "New"),
        (4, 1, "Promising"),
        (4, 2, "Potential Loyalist"),
        (4, 3, "Potential Loyalist"),
        (5, 2, "Potential Loyalist"),
        (5, 3, "Potential Loyalist"),
        (5, 4, "Champions"),
        (5, 5, "Champions"),
        (3, 4, "Loyal"),
        (3, 5, "Loyal"),
        (4, 4, "Loyal"),
        (4, 5, "Loyal"),
        (3, 3, "Need Attention"),
        (3, 1, "About To Sleep"),
        (3, 2, "About To Sleep"),
        (1, 1, "Hibernating"),
        (1, 2, "Hibernating"),
        (2, 1, "Hibernating"),
        (2, 2, "Hibernating"),
        (1, 3, "At Risk"),
        (1, 4, "At Risk"),
        (2, 3, "At Risk"),
        (2, 4, "At Risk"),
        (1, 5, "Cannot Lose Them"),
        (2, 5, "Cannot Lose Them"),
    ],
)
def test_every_cell_of_the_segment_map(r: int, f: int, expected: str) -> None:
    assert segment(r, f) == expected


@pytest.mark.parametrize(("r", "f"), [(0, 3), (6, 3), (3, 0), (3, 6)])
def test_a_score_outside_one_to_five_has_no_segment(r: int, f: int) -> None:
    with pytest.raises(ValueError, match="1 to 5"):
        segment(r, f)


def test_lost_is_bought_only_before_the_window_and_none_never_bought() -> None:
    feed = Feed(Segments())
    feed.customer(1, buys=((364, "10"),))  # 364 < 365: in the window
    feed.customer(2, buys=((365, "10"),))  # 365 is not < 365: before the window -> Lost
    feed.customer(3, buys=((800, "10"),), refunds=((10, "5"),))  # a refund is not a purchase
    feed.customer(4)  # never bought -> no segment
    feed.customer(5, buys=((-1, "10"),), registered=ago(2))  # bought after D: not as of D

    found = {n: segments.insight(feed.docs, cid(n), D) for n in range(1, 6)}
    # Population is customer 1 alone: R5 F5 -> Champions.
    assert {n: i["segment"] for n, i in found.items() if i is not None} == {
        1: "Champions",
        2: "Lost",
        3: "Lost",
        4: None,
        5: None,
    }
    lost = found[2]
    assert lost is not None
    assert (lost["r"], lost["f"], lost["m"], lost["recency_days"]) == (None, None, None, 365)
    assert (lost["frequency"], lost["monetary"]) == (0, "0")


def test_summary_counts_every_segment_and_lists_its_members() -> None:
    feed = population_of_five()

    assert segments.summary(feed.docs, D) == {
        "New": 0,
        "Promising": 0,
        "Potential Loyalist": 3,  # 1, 2, 3
        "Champions": 0,
        "Loyal": 0,
        "Need Attention": 0,
        "About To Sleep": 0,
        "Hibernating": 0,
        "At Risk": 0,
        "Cannot Lose Them": 2,  # 4, 5
        "Lost": 1,  # 6 (customer 7, who never bought, is in no segment)
    }
    assert segments.customers_in_segment(feed.docs, D, "Potential Loyalist") == [
        cid(1),
        cid(2),
        cid(3),
    ]
    assert segments.customers_in_segment(feed.docs, D, "Lost") == [cid(6)]
    assert segments.customers_in_segment(feed.docs, D, "Champions") == []
    with pytest.raises(ValueError, match="Potential Loyalists"):
        segments.customers_in_segment(feed.docs, D, "Potential Loyalists")


def test_the_analysis_moves_with_the_date() -> None:
    feed = population_of_five()

    # As of D - 366 nothing had been bought yet (the earliest purchase is 365 days before D).
    assert sum(segments.summary(feed.docs, ago(366)).values()) == 0
    # As of D - 1 every purchase is a day more recent, and 6's (364 days ago) is in the window:
    # | customer | recency | F | M    | R: #{days >= r}/6 | F: #{<= f}/6 | M: #{<= m}/6 |
    # | 1, 2     | 39      | 1 | 50   | 5/6 -> 5          | 3/6 -> 3     | 2/6 -> 2     |
    # | 3        | 4       | 2 | 80   | 6/6 -> 5          | 4/6 -> 4     | 3/6 -> 3     |
    # | 4        | 199     | 3 | 120  | 3/6 -> 3          | 6/6 -> 5     | 4/6 -> 4     |
    # | 5        | 363     | 3 | 500  | 2/6 -> 2          | 6/6 -> 5     | 5/6 -> 5     |
    # | 6        | 364     | 1 | 1000 | 1/6 -> 1          | 3/6 -> 3     | 6/6 -> 5     |
    # (ceil(5 * k/6) for k = 1..6 is 1, 2, 3, 4, 5, 5.)
    # Segments: R5F3 Potential Loyalist (1, 2), R5F4 Champions (3), R3F5 Loyal (4),
    # R2F5 Cannot Lose Them (5), R1F3 At Risk (6).
    assert segments.summary(feed.docs, ago(1)) == {
        "New": 0,
        "Promising": 0,
        "Potential Loyalist": 2,
        "Champions": 1,
        "Loyal": 1,
        "Need Attention": 0,
        "About To Sleep": 0,
        "Hibernating": 0,
        "At Risk": 1,
        "Cannot Lose Them": 1,
        "Lost": 0,
    }
    earlier = segments.insight(feed.docs, cid(6), ago(1))
    assert earlier is not None
    assert (earlier["r"], earlier["f"], earlier["m"]) == (1, 3, 5)


# ------------------------------------------------------- quadrants and tiers


@pytest.mark.parametrize(
    ("m", "potential", "quadrant", "tier"),
    [
        (5, HIGH, Quadrant.STAR, Tier.STRATEGIC),  # M 5 >= 4 high, HIGH potential
        (4, HIGH, Quadrant.STAR, Tier.STRATEGIC),  # M 4 >= 4 is still high
        (3, HIGH, Quadrant.GROWTH, Tier.KEY),  # M 3 < 4 low, HIGH potential
        (None, HIGH, Quadrant.GROWTH, Tier.KEY),  # outside the population counts as low
        (4, MEDIUM, Quadrant.CASH_COW, Tier.KEY),  # high now, MEDIUM is not high potential
        (5, LOW, Quadrant.CASH_COW, Tier.KEY),
        (3, MEDIUM, Quadrant.MAINTAIN, Tier.STANDARD),
        (1, LOW, Quadrant.MAINTAIN, Tier.STANDARD),
        (None, MEDIUM, Quadrant.MAINTAIN, Tier.STANDARD),
    ],
)
def test_every_value_quadrant_and_its_recommended_tier(
    m: int | None, potential: PotentialValue, quadrant: Quadrant, tier: Tier
) -> None:
    assert value_quadrant(m, potential) is quadrant
    assert value_quadrant(m, potential.value) is quadrant  # as the documents store it
    assert recommended_tier(quadrant) is tier


def test_the_insight_of_one_customer() -> None:
    feed = population_of_five()

    # Customer 5: R1 F5 M5 (see the population of five); HIGH potential and M 5 >= 4 -> STAR,
    # recommended STRATEGIC while still STANDARD. CLV: net 500 / 3 purchases x 3 this year
    # x 3 years = 1500.00.
    assert segments.insight(feed.docs, cid(5), D) == {
        "r": 1,
        "f": 5,
        "m": 5,
        "recency_days": 364,
        "frequency": 3,
        "monetary": "500",
        "segment": "Cannot Lose Them",
        "value_quadrant": "STAR",
        "recommended_tier": "STRATEGIC",
        "assigned_tier": "STANDARD",
        "clv": "1500.00",
    }
    # Customer 7 never bought: no scores, LOW potential -> MAINTAIN -> STANDARD, CLV 0.00.
    assert segments.insight(feed.docs, cid(7), D) == {
        "r": None,
        "f": None,
        "m": None,
        "recency_days": None,
        "frequency": 0,
        "monetary": "0",
        "segment": None,
        "value_quadrant": "MAINTAIN",
        "recommended_tier": "STANDARD",
        "assigned_tier": "STANDARD",
        "clv": "0.00",
    }
    assert segments.insight(feed.docs, cid(99), D) is None


def test_tier_mismatches_compare_the_assigned_tier_with_the_advice() -> None:
    feed = population_of_five()
    c = feed.customers
    review = meta(noon(ago(1)))
    c[5].change_tier(Tier.STRATEGIC, reason="review", effective_from=noon(ago(1)), meta=review)
    c[4].change_tier(Tier.KEY, reason="review", effective_from=noon(ago(1)), meta=review)
    c[2].change_tier(Tier.KEY, reason="review", effective_from=noon(ago(1)), meta=review)
    c[3].update_profile({"potential_value": HIGH}, review)
    for n in (5, 4, 2, 3):
        feed.fold(c[n])

    # 1: M 2, HIGH -> GROWTH -> KEY, still STANDARD: mismatch.
    # 2: M 2, MEDIUM -> MAINTAIN -> STANDARD, assigned KEY: mismatch (too high).
    # 3: M 3, now HIGH potential -> GROWTH -> KEY, still STANDARD: mismatch.
    # 4: M 4, LOW -> CASH_COW -> KEY, assigned KEY: matches.
    # 5: M 5, HIGH -> STAR -> STRATEGIC, assigned STRATEGIC: matches.
    # 6: Lost (low), HIGH -> GROWTH -> KEY, still STANDARD: mismatch.
    # 7: never bought (low), LOW -> MAINTAIN -> STANDARD: matches.
    assert segments.tier_mismatches(feed.docs, D) == [
        {"customer_id": cid(1), "assigned_tier": "STANDARD", "recommended_tier": "KEY"},
        {"customer_id": cid(2), "assigned_tier": "KEY", "recommended_tier": "STANDARD"},
        {"customer_id": cid(3), "assigned_tier": "STANDARD", "recommended_tier": "KEY"},
        {"customer_id": cid(6), "assigned_tier": "STANDARD", "recommended_tier": "KEY"},
    ]


# --------------------------------------------------------------------- CLV


@pytest.mark.parametrize(
    ("net", "count", "per_year", "lifespan", "expected"),
    [
        # 540 / 3 = 180 per order x 2 a year x 3 years = 1080.00.
        ("540", 3, 2, DEFAULT_LIFESPAN_YEARS, "1080.00"),
        # 100 / 3 per order x 1 x 2 years = 200 / 3 = 66.666... -> 66.67.
        ("100", 3, 1, 2, "66.67"),
        # 0.01 / 2 x 1 x 1 = 0.005 -> half up -> 0.01 (half-even would give 0.00).
        ("0.01", 2, 1, 1, "0.01"),
        # 0.03 / 2 x 1 x 1 = 0.015 -> 0.02; a fractional lifespan: 10 / 1 x 1 x 1.5 = 15.00.
        ("0.03", 2, 1, 1, "0.02"),
        ("10", 1, 1, Decimal("1.5"), "15.00"),
        # Bought before, not in the last year: 1000 / 1 x 0 x 3 = 0.00.
        ("1000", 1, 0, 3, "0.00"),
        # Never bought: no average order value -> 0.00.
        ("0", 0, 0, 3, "0.00"),
    ],
)
def test_clv_arithmetic(
    net: str, count: int, per_year: int, lifespan: int | Decimal, expected: str
) -> None:
    assert str(clv(Decimal(net), count, per_year, lifespan)) == expected


def test_clv_defaults_to_three_years_and_refuses_a_negative_lifespan() -> None:
    assert DEFAULT_LIFESPAN_YEARS == 3
    # 300 / 3 per order x 3 a year x 3 years = 900.00.
    assert clv(Decimal("300"), 3, 3) == Decimal("900.00")
    with pytest.raises(ValueError, match="negative"):
        clv(Decimal("300"), 3, 3, -1)


def test_insight_takes_another_lifespan() -> None:
    feed = population_of_five()

    # Customer 3: net 80 / 2 purchases = 40 per order x 2 this year x 5 years = 400.00.
    found = segments.insight(feed.docs, cid(3), D, lifespan_years=5)
    assert found is not None
    assert found["clv"] == "400.00"


# ------------------------------------------------------------------ the fold


def test_the_view_keeps_no_personal_data() -> None:
    feed = Feed(Segments())
    feed.customer(1, HIGH, buys=((3, "12.30"),), refunds=((2, "2.30"),))

    assert feed.docs.get("customer", cid(1)) == {
        "customer_id": cid(1),
        "registered_on": "2020-01-01",
        "potential_value": "HIGH",
        "tier": "STANDARD",
        "purchases": [
            [ago(3).isoformat(), 1, "12.30", "0"],
            [ago(2).isoformat(), 0, "0", "2.30"],
        ],
    }
    assert "Customer 1" not in repr(feed.docs.docs)


def test_events_for_a_customer_without_a_document_are_ignored() -> None:
    feed = Feed(Segments())
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
    interact(customer, ago(10), "100")
    customer.change_tier(Tier.KEY, reason="review", effective_from=noon(D), meta=meta(noon(D)))
    customer.update_profile({"potential_value": HIGH}, meta(noon(D)))
    feed.fold(customer)

    assert feed.docs.docs == {}
    assert segments.insight(feed.docs, cid(9), D) is None
    assert segments.tier_mismatches(feed.docs, D) == []


def test_customers_first_seen_after_d_are_left_out() -> None:
    feed = Feed(Segments())
    feed.customer(1, HIGH, registered=D + timedelta(days=1))  # GROWTH -> KEY, if it counted

    assert segments.insight(feed.docs, cid(1), D) is None
    assert segments.tier_mismatches(feed.docs, D) == []
    assert segments.tier_mismatches(feed.docs, D + timedelta(days=1)) == [
        {"customer_id": cid(1), "assigned_tier": "STANDARD", "recommended_tier": "KEY"}
    ]


def test_the_projection_reads_only_what_the_definitions_need() -> None:
    assert Segments.name == "segments"
    assert Segments.version == 2
    assert Segments.topics == frozenset(
        {
            "customer.registered",
            "customer.profile_updated",
            "customer.interaction_recorded",
            "customer.tier_changed",
        }
    )
