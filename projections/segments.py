"""Segments (DESIGN §5): purchase stats, RFM scores and segment, value quadrant, tier advice, CLV.

RFM scores rank a customer against everyone else who bought in the same
window, so they cannot be kept up to date per customer: every purchase moves
the others' ranks, and every passing day moves the window. The view therefore
keeps facts per customer (registration date, potential value, assigned tier
and the compact purchase history of ``projections.lifecycle``) and the query
functions compute the analysis as of the date they are given, over the whole
population. The computations are pure functions, tested apart from any store.

Definitions, as of a date D (calendar dates in UTC, ``days = (D - date).days``;
only interactions dated on or before D count):

- Window: the 365 days to D, dates in (D - 365, D], i.e. days < 365.
- Population: customers with at least one PURCHASE in the window.
- Recency: days since the last purchase. Frequency: PURCHASEs in the window.
  Monetary: net amount in the window (PURCHASE amounts minus REFUND amounts
  dated in the window, whatever purchase a refund is for).
- Score = ceil(5 * cume_dist) over the population, where for F and M
  cume_dist(x) = #{v <= x} / N and for R, ranked by descending recency days,
  cume_dist(r) = #{days >= r} / N: fewer days ago scores higher. Ties share
  a score (the highest of their group, as cume_dist counts every tie).
- Segment from (R, F): see ``SEGMENT_RULES``. A customer whose purchases all
  precede the window is "Lost"; one with no purchase at all has no segment.
- Value quadrant: current value is high when M >= 4 (customers outside the
  population are low), potential is high when ``potential_value`` is HIGH:
  STAR (high, high), CASH_COW (high, low), GROWTH (low, high), MAINTAIN
  (low, low). Recommended tier: STAR -> STRATEGIC; CASH_COW, GROWTH -> KEY;
  MAINTAIN -> STANDARD.
- CLV = average order value x purchases per year x expected lifespan years, where
  average order value = lifetime net amount / lifetime PURCHASE count (both as
  of D), purchases per year = PURCHASEs in the window, and the lifespan is
  ``DEFAULT_LIFESPAN_YEARS`` unless the caller names another. It is computed
  as net x per-year x lifespan / count (one division, no intermediate
  rounding), rounded half-up to cents; 0.00 for a customer with no purchase.

Potential value and assigned tier are the customer's current ones (the view
keeps no history of them): a tier mismatch compares today's decision with the
advice the purchases as of D give. Customers first seen after D (registered
later, no earlier history) are left out of every answer as of D.

No personal data is kept, so erasure needs nothing from this view.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, ClassVar, Final, TypedDict

from eventsourcing.persistence import Notification

from domain.customer import (
    CustomerProfileUpdated,
    CustomerRegistered,
    InteractionRecorded,
    TierChanged,
)
from domain.events import DomainEvent
from domain.values import PotentialValue, Tier
from projections.lifecycle import (
    Day,
    add_entry,
    as_day,
    fold_purchase_body,
    history_entry,
    known_at,
    parse_entries,
    utc_instant,
)
from projections.projection import aggregate_key
from projections.store import Doc, DocReader, Docs

NAME: Final = "segments"
KIND: Final = "customer"

WINDOW_DAYS: Final = 365
"""The RFM window: purchases with days < WINDOW_DAYS."""
SCORES: Final = 5
"""RFM scores run from 1 to SCORES."""
HIGH_VALUE_SCORE: Final = 4
"""An M score at least this high makes a customer's current value high."""
DEFAULT_LIFESPAN_YEARS: Final = 3
"""The expected customer lifespan in CLV, when the caller does not name one."""
CENT: Final = Decimal("0.01")


class Segment(StrEnum):
    NEW = "New"
    PROMISING = "Promising"
    POTENTIAL_LOYALIST = "Potential Loyalist"
    CHAMPIONS = "Champions"
    LOYAL = "Loyal"
    NEED_ATTENTION = "Need Attention"
    ABOUT_TO_SLEEP = "About To Sleep"
    HIBERNATING = "Hibernating"
    AT_RISK = "At Risk"
    CANNOT_LOSE_THEM = "Cannot Lose Them"
    LOST = "Lost"


class Quadrant(StrEnum):
    STAR = "STAR"
    CASH_COW = "CASH_COW"
    GROWTH = "GROWTH"
    MAINTAIN = "MAINTAIN"


SEGMENT_RULES: Final[tuple[tuple[range, range, Segment], ...]] = (
    (range(5, 6), range(1, 2), Segment.NEW),
    (range(4, 5), range(1, 2), Segment.PROMISING),
    (range(4, 6), range(2, 4), Segment.POTENTIAL_LOYALIST),
    (range(5, 6), range(4, 6), Segment.CHAMPIONS),
    (range(3, 5), range(4, 6), Segment.LOYAL),
    (range(3, 4), range(3, 4), Segment.NEED_ATTENTION),
    (range(3, 4), range(1, 3), Segment.ABOUT_TO_SLEEP),
    (range(1, 3), range(1, 3), Segment.HIBERNATING),
    (range(1, 3), range(3, 5), Segment.AT_RISK),
    (range(1, 3), range(5, 6), Segment.CANNOT_LOSE_THEM),
)
"""(R scores, F scores, segment), as DESIGN §5 writes the map."""


def _segment_map() -> dict[tuple[int, int], Segment]:
    """The (R, F) grid, checked to be covered exactly once, so no score pair goes unnamed."""
    grid: dict[tuple[int, int], Segment] = {}
    for rs, fs, name in SEGMENT_RULES:
        for cell in ((r, f) for r in rs for f in fs):
            if cell in grid:
                raise ValueError(f"R{cell[0]}F{cell[1]} is both {grid[cell]} and {name}")
            grid[cell] = name
    missing = {(r, f) for r in range(1, SCORES + 1) for f in range(1, SCORES + 1)} - set(grid)
    if missing:
        raise ValueError(f"no segment for {sorted(missing)}")
    return grid


SEGMENT_MAP: Final = _segment_map()

RECOMMENDED_TIER: Final[Mapping[Quadrant, Tier]] = {
    Quadrant.STAR: Tier.STRATEGIC,
    Quadrant.CASH_COW: Tier.KEY,
    Quadrant.GROWTH: Tier.KEY,
    Quadrant.MAINTAIN: Tier.STANDARD,
}


# ------------------------------------------------------------ computation


@dataclass(frozen=True)
class PurchaseStats:
    """A customer's purchase facts as of D: the inputs of RFM and CLV."""

    purchases: int
    """PURCHASEs ever (dated on or before D)."""
    net: Decimal
    """Net amount ever: PURCHASE minus REFUND amounts dated on or before D."""
    recency_days: int | None
    """Days since the last PURCHASE (None: never bought)."""
    frequency: int
    """PURCHASEs in the window."""
    monetary: Decimal
    """Net amount in the window."""


@dataclass(frozen=True)
class Rfm:
    r: int
    f: int
    m: int


def purchase_stats(days: Iterable[Day], d: date) -> PurchaseStats:
    """Fold one customer's history (its days) into the facts RFM and CLV need, as of ``d``."""
    d = as_day(d)
    window_start = d - timedelta(days=WINDOW_DAYS)  # excluded: days < 365
    purchases, frequency = 0, 0
    net, monetary = Decimal(0), Decimal(0)
    last: date | None = None
    for day in days:
        if day.on > d:
            continue
        amount = day.purchased - day.refunded
        net += amount
        in_window = day.on > window_start
        if in_window:
            monetary += amount
        if day.purchases:
            purchases += day.purchases
            frequency += day.purchases if in_window else 0
            last = day.on if last is None else max(last, day.on)
    recency = (d - last).days if last is not None else None
    return PurchaseStats(purchases, net, recency, frequency, monetary)


def cume_scores(values: Sequence[Decimal | int]) -> list[int]:
    """ceil(SCORES * cume_dist(x)) for each value, cume_dist(x) = #{v <= x} / N.

    Integer arithmetic (no floats), so a boundary like 5 * 3/5 = 3 is exact.
    """
    ordered = sorted(values)
    n = len(ordered)
    return [-(-SCORES * bisect_right(ordered, v) // n) for v in values]


def rfm_scores(stats: Mapping[str, PurchaseStats]) -> dict[str, Rfm]:
    """RFM scores of the population (customers with a purchase in the window).

    R ranks the negated recency days, so cume_dist(r) = #{days >= r} / N.
    """
    keys: list[str] = []
    recency: list[int] = []
    for key, s in stats.items():
        if s.frequency > 0 and s.recency_days is not None:
            keys.append(key)
            recency.append(-s.recency_days)
    r = cume_scores(recency)
    f = cume_scores([stats[key].frequency for key in keys])
    m = cume_scores([stats[key].monetary for key in keys])
    return {key: Rfm(r[i], f[i], m[i]) for i, key in enumerate(keys)}


def segment(r: int, f: int) -> Segment:
    """The segment of an (R, F) score pair."""
    try:
        return SEGMENT_MAP[(r, f)]
    except KeyError:
        raise ValueError(f"R and F scores run from 1 to {SCORES}, not R{r}F{f}") from None


def customer_segment(stats: PurchaseStats, scores: Rfm | None) -> Segment | None:
    """The segment from the scores; Lost when every purchase precedes the window; None if none."""
    if scores is not None:
        return segment(scores.r, scores.f)
    return Segment.LOST if stats.purchases else None


def value_quadrant(m_score: int | None, potential: str) -> Quadrant:
    """Current value (M score; None: outside the population, low) against potential value."""
    high_now = m_score is not None and m_score >= HIGH_VALUE_SCORE
    high_potential = potential == PotentialValue.HIGH
    if high_now:
        return Quadrant.STAR if high_potential else Quadrant.CASH_COW
    return Quadrant.GROWTH if high_potential else Quadrant.MAINTAIN


def recommended_tier(quadrant: Quadrant) -> Tier:
    return RECOMMENDED_TIER[quadrant]


def clv(
    lifetime_net: Decimal,
    lifetime_purchases: int,
    purchases_per_year: int,
    lifespan_years: int | Decimal = DEFAULT_LIFESPAN_YEARS,
) -> Decimal:
    """Average order value x purchases per year x lifespan years, half-up to cents."""
    if lifespan_years < 0:
        raise ValueError("the expected lifespan cannot be negative")
    if lifetime_purchases <= 0:
        return Decimal("0.00")
    value = lifetime_net * purchases_per_year * Decimal(lifespan_years) / lifetime_purchases
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# ------------------------------------------------------------------ fold


class Segments:
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 2
    """2: the purchase history holds one entry per day (1: one per interaction)."""
    topics: ClassVar[frozenset[str] | None] = frozenset(
        e.topic
        for e in (CustomerRegistered, CustomerProfileUpdated, InteractionRecorded, TierChanged)
    )

    body_topics: ClassVar[frozenset[str]] = frozenset({InteractionRecorded.topic})

    def apply_body(
        self, body: dict[str, Any], key: str, notification: Notification, docs: Docs
    ) -> None:
        """``apply`` for an ``InteractionRecorded`` as stored (vouched for by the runner)."""
        fold_purchase_body(body, key, docs, KIND)

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        if isinstance(event, InteractionRecorded):
            # Most events: only purchases and refunds change the view, so look no further.
            entry = history_entry(event)
            if entry is None:
                return
            found = docs.get(KIND, aggregate_key(event))
            if found is None:
                return
            add_entry(found["purchases"], entry)
            docs.put(KIND, aggregate_key(event), found)
            return
        key = aggregate_key(event)
        if isinstance(event, CustomerRegistered):
            docs.put(
                KIND,
                key,
                {
                    "customer_id": key,
                    "registered_on": utc_instant(event.timestamp).date().isoformat(),
                    "potential_value": event.potential_value.value,
                    "tier": Tier.STANDARD.value,
                    "purchases": [],
                },
            )
            return
        doc = docs.get(KIND, key)
        if doc is None:
            return
        if isinstance(event, CustomerProfileUpdated):
            if event.potential_value is None:
                return
            doc["potential_value"] = event.potential_value.value
        elif isinstance(event, TierChanged):
            doc["tier"] = event.to_tier.value
        else:
            return
        docs.put(KIND, key, doc)


# ------------------------------------------------------------------- queries


class Insight(TypedDict):
    r: int | None
    f: int | None
    m: int | None
    recency_days: int | None
    frequency: int
    monetary: str
    segment: str | None
    value_quadrant: str
    recommended_tier: str
    assigned_tier: str
    clv: str


class TierMismatch(TypedDict):
    customer_id: str
    assigned_tier: str
    recommended_tier: str


@dataclass(frozen=True)
class _Analysis:
    docs: dict[str, Doc]
    stats: dict[str, PurchaseStats]
    scores: dict[str, Rfm]


def _analyse(reader: DocReader, d: date) -> _Analysis:
    """Every customer known at ``d``, their stats, and the population's scores."""
    docs = {key: doc for key, doc in reader.scan(KIND) if known_at(doc, d)}
    stats = {key: purchase_stats(parse_entries(doc["purchases"]), d) for key, doc in docs.items()}
    return _Analysis(docs, stats, rfm_scores(stats))


def _insight(analysis: _Analysis, key: str, lifespan_years: int | Decimal) -> Insight:
    doc, stats, scores = analysis.docs[key], analysis.stats[key], analysis.scores.get(key)
    named = customer_segment(stats, scores)
    quadrant = value_quadrant(scores.m if scores else None, doc["potential_value"])
    return {
        "r": scores.r if scores else None,
        "f": scores.f if scores else None,
        "m": scores.m if scores else None,
        "recency_days": stats.recency_days,
        "frequency": stats.frequency,
        "monetary": str(stats.monetary),
        "segment": named.value if named else None,
        "value_quadrant": quadrant.value,
        "recommended_tier": recommended_tier(quadrant).value,
        "assigned_tier": doc["tier"],
        "clv": str(clv(stats.net, stats.purchases, stats.frequency, lifespan_years)),
    }


def insight(
    reader: DocReader,
    customer_id: str,
    d: date,
    *,
    lifespan_years: int | Decimal = DEFAULT_LIFESPAN_YEARS,
) -> Insight | None:
    """One customer's analysis as of ``d``; None if unknown or not yet known at ``d``."""
    d = as_day(d)
    analysis = _analyse(reader, d)
    if customer_id not in analysis.docs:
        return None
    return _insight(analysis, customer_id, lifespan_years)


def summary(reader: DocReader, d: date) -> dict[str, int]:
    """Customers per segment as of ``d`` (every segment present, Lost included)."""
    d = as_day(d)
    analysis = _analyse(reader, d)
    counts = {s.value: 0 for s in Segment}
    for key, stats in analysis.stats.items():
        named = customer_segment(stats, analysis.scores.get(key))
        if named is not None:
            counts[named.value] += 1
    return counts


def tier_mismatches(reader: DocReader, d: date) -> list[TierMismatch]:
    """Customers whose assigned tier differs from the one their quadrant at ``d`` recommends."""
    d = as_day(d)
    analysis = _analyse(reader, d)
    mismatches: list[TierMismatch] = []
    for key in sorted(analysis.docs):
        doc, scores = analysis.docs[key], analysis.scores.get(key)
        quadrant = value_quadrant(scores.m if scores else None, doc["potential_value"])
        advised = recommended_tier(quadrant).value
        if doc["tier"] != advised:
            mismatches.append(
                {"customer_id": key, "assigned_tier": doc["tier"], "recommended_tier": advised}
            )
    return mismatches


def customers_in_segment(reader: DocReader, d: date, segment: str) -> list[str]:
    """Ids of the customers in one segment as of ``d``, sorted.

    An unknown segment name is a ValueError rather than an empty list, so a
    typo is not mistaken for an empty segment.
    """
    wanted = Segment(segment)
    d = as_day(d)
    analysis = _analyse(reader, d)
    return sorted(
        key
        for key, stats in analysis.stats.items()
        if customer_segment(stats, analysis.scores.get(key)) is wanted
    )
