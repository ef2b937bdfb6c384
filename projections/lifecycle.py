"""Lifecycle (DESIGN §5): a customer's stage as of a date, the funnel, and the stage history.

A stage is a function of the purchase dates alone, so the view keeps, per
customer, the registration date and a compact purchase history and computes
stages when asked. The history holds one entry per UTC calendar day with a
PURCHASE or REFUND (by business time, ``occurred_at``): how many purchases,
their total and the refunds' total. Every rule below counts in whole days, so
a day's total answers each of them as the single interactions would, and a
customer who buys a thousand times a day keeps one entry for the day instead
of a thousand (the document is rewritten on every purchase, so its size is
what a purchase costs the view). Keeping facts rather than a current stage is what lets one view
answer "as of any date", including dates before events that were recorded
late, and it means the answer never depends on when the fold ran.

Days are counted on calendar dates in UTC: ``days = (D - purchase_date).days``,
so a purchase on D is 0 days ago, and only purchases dated on or before D
exist "as of D". The stage at D is the first rule that matches:

1. no purchase                                          -> PROSPECT
2. last purchase more than 365 days ago (days > 365)    -> CHURNED
3. last purchase more than 180 days ago (days > 180)    -> AT_RISK
4. last purchase at most 90 days ago, and more than 365
   days after the purchase before it                    -> REACTIVATED
5. first purchase at most 90 days ago                   -> NEW
6. at least 4 purchases in the 365 days to D            -> LOYAL
7. otherwise                                            -> ACTIVE

"The 365 days to D" is the window of dates in (D - 365, D], i.e. purchases
with days < 365: exactly 365 calendar days including D itself, the same
window the RFM analysis in ``projections.segments`` uses. Refunds adjust
amounts, they are not purchases: they never count, nor refresh recency.

The view holds no personal data (no names, no summaries), so erasure needs
nothing from it and it does not read ``PersonalDataErased``. The purchase
history helpers here are shared with ``projections.segments``, which keeps
the same history in its own documents.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Final, NamedTuple

from eventsourcing.persistence import Notification

from domain.customer import CustomerRegistered, InteractionRecorded
from domain.events import DomainEvent
from domain.values import InteractionKind
from projections.projection import aggregate_key
from projections.store import Doc, DocReader, Docs

NAME: Final = "lifecycle"
KIND: Final = "customer"

NEW_DAYS: Final = 90
"""A first purchase at most this many days ago makes a customer NEW."""
AT_RISK_DAYS: Final = 180
"""A last purchase more than this many days ago puts a customer AT_RISK."""
CHURN_DAYS: Final = 365
"""A last purchase more than this many days ago means the customer has CHURNED."""
REACTIVATION_GAP_DAYS: Final = 365
"""A purchase more than this many days after the previous one is a reactivation."""
REACTIVATED_DAYS: Final = 90
"""A reactivating purchase at most this many days ago makes a customer REACTIVATED."""
WINDOW_DAYS: Final = 365
"""The trailing window (days < WINDOW_DAYS) in which purchases are counted."""
LOYAL_PURCHASES: Final = 4
"""Purchases in the window that make a customer LOYAL."""


class Stage(StrEnum):
    PROSPECT = "PROSPECT"
    NEW = "NEW"
    ACTIVE = "ACTIVE"
    LOYAL = "LOYAL"
    REACTIVATED = "REACTIVATED"
    AT_RISK = "AT_RISK"
    CHURNED = "CHURNED"


# ------------------------------------------------------- purchase history


class Day(NamedTuple):
    """A UTC calendar day's PURCHASEs and REFUNDs: the count of purchases and both totals.

    A day with only refunds has no purchases: it is not a purchase date.
    """

    on: date
    purchases: int
    purchased: Decimal
    refunded: Decimal


def utc_instant(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def as_day(d: date) -> date:
    """The UTC calendar date of ``d``: queries accept a date or a datetime."""
    if isinstance(d, datetime):
        return utc_instant(d).date()
    return d


Stored = list[Any]
"""A day as stored: ``[day, purchases, purchased, refunded]`` (ISO date, int, two decimals)."""

_last_entry: tuple[object, Stored | None] = (None, None)
"""The last event ``history_entry`` saw, and its entry: two read models ask for each."""


def history_entry(event: InteractionRecorded) -> Stored | None:
    """The day entry of one PURCHASE or REFUND, else None (see ``add_entry``).

    The day is written as an ISO date, so the stored entries sort in time
    order without being parsed.
    """
    global _last_entry
    seen, entry = _last_entry
    if seen is event:  # the same event object (held here, so its id cannot be reused)
        return None if entry is None else list(entry)
    if event.amount is None:
        entry = None
    elif event.kind is InteractionKind.PURCHASE:
        entry = [utc_instant(event.occurred_at).date().isoformat(), 1, str(event.amount), "0"]
    elif event.kind is InteractionKind.REFUND:
        entry = [utc_instant(event.occurred_at).date().isoformat(), 0, "0", str(event.amount)]
    else:
        entry = None
    _last_entry = (event, entry)
    return None if entry is None else list(entry)


def body_entry(body: dict[str, Any]) -> Stored | None:
    """``history_entry`` of an ``InteractionRecorded`` as stored (a body vouched for).

    The same values as the decoded event's: the amount is the decimal's own
    text, the day that of the moment pydantic would read.
    """
    global _last_entry
    seen, entry = _last_entry
    if seen is body:  # the same body object (held here, so its id cannot be reused)
        return None if entry is None else list(entry)
    amount, kind = body["amount"], body["kind"]
    if amount is None or (kind != _PURCHASE and kind != _REFUND):
        entry = None
    else:
        # A body vouched for holds the decimal's own text: str(Decimal(amount)) == amount.
        on = _utc_day(body["occurred_at"])
        entry = [on, 1, amount, "0"] if kind == _PURCHASE else [on, 0, "0", amount]
    _last_entry = (body, entry)
    return None if entry is None else list(entry)


def _utc_day(stored: str) -> str:
    """The UTC calendar date (ISO) of a time as pydantic writes it.

    UTC (``Z``: the usual case) is read off the text, not parsed.
    """
    if stored[-1] == "Z":
        return stored[:10]
    return utc_instant(datetime.fromisoformat(stored)).date().isoformat()


_PURCHASE: Final = InteractionKind.PURCHASE.value
_REFUND: Final = InteractionKind.REFUND.value


def add_entry(history: list[Any], entry: Stored) -> None:
    """Count ``entry`` (one interaction's day entry) in its day, kept in date order.

    Late-recorded interactions arrive out of order, so a day may be inserted
    anywhere; adding up is exact and does not depend on the order, so a
    rebuild lays the history out exactly as the incremental fold did.
    """
    day = entry[0]
    if not history or history[-1][0] < day:
        history.append(entry)  # the usual case: a new day, the latest
    elif history[-1][0] == day:
        _merge(history[-1], entry)
    else:
        at = bisect_left(history, day, key=_day_of)  # a day before the last: at < len
        if history[at][0] == day:
            _merge(history[at], entry)
        else:
            history.insert(at, entry)


def _day_of(stored: Stored) -> str:
    return str(stored[0])


def _merge(into: Stored, entry: Stored) -> None:
    into[1] += entry[1]
    if entry[2] != "0":
        into[2] = str(Decimal(into[2]) + Decimal(entry[2]))
    if entry[3] != "0":
        into[3] = str(Decimal(into[3]) + Decimal(entry[3]))


def fold_purchase_body(body: dict[str, Any], key: str, docs: Docs, kind: str) -> None:
    """``apply_body`` of a view keeping a ``purchases`` history: add the body's entry, if any."""
    entry = body_entry(body)
    if entry is None:
        return
    doc = docs.get(kind, key)
    if doc is None:
        return
    add_entry(doc["purchases"], entry)
    docs.put(kind, key, doc)


def parse_entries(history: Iterable[Sequence[Any]]) -> list[Day]:
    """Stored day entries as ``Day`` values, in date order.

    A version 1 document (``[occurred_at, signed amount]`` per interaction) is
    read too: queries answer from it while its rebuild at version 2 runs.
    """
    days: list[Day] = []
    for stored in history:
        if len(stored) == 4:
            on, purchases, purchased, refunded = stored
            days.append(
                Day(date.fromisoformat(on), int(purchases), Decimal(purchased), Decimal(refunded))
            )
            continue
        occurred, signed = stored
        on = utc_instant(datetime.fromisoformat(occurred)).date()
        amount = Decimal(signed)
        if amount.is_signed():  # a refund, stored negated (even -0)
            days.append(Day(on, 0, Decimal(0), -amount))
        else:
            days.append(Day(on, 1, amount, Decimal(0)))
    return days


def purchase_dates(days: Iterable[Day]) -> list[date]:
    """The date of each PURCHASE, sorted, a day repeated per purchase (refunds are not)."""
    return sorted(day.on for day in days for _ in range(day.purchases))


def first_seen(doc: Doc) -> date:
    """The first date the customer existed for Accord.

    Usually the registration date; earlier when history was imported with
    business dates before the registration was recorded.
    """
    registered = date.fromisoformat(doc["registered_on"])
    entries = parse_entries(doc["purchases"][:1])
    return min(registered, entries[0].on) if entries else registered


def known_at(doc: Doc, d: date) -> bool:
    """Whether the customer existed as of ``d`` (later customers are not counted then)."""
    return first_seen(doc) <= d


# ------------------------------------------------------------ computation


def _stage_sorted(days: Sequence[date], d: date) -> Stage:
    """The stage at ``d`` given purchase dates sorted ascending (O(log n))."""
    n = bisect_right(days, d)
    if n == 0:
        return Stage.PROSPECT
    last = days[n - 1]
    since_last = (d - last).days
    if since_last > CHURN_DAYS:
        return Stage.CHURNED
    if since_last > AT_RISK_DAYS:
        return Stage.AT_RISK
    if (
        since_last <= REACTIVATED_DAYS
        and n >= 2
        and (last - days[n - 2]).days > REACTIVATION_GAP_DAYS
    ):
        return Stage.REACTIVATED
    if (d - days[0]).days <= NEW_DAYS:
        return Stage.NEW
    in_window = n - bisect_right(days, d - timedelta(days=WINDOW_DAYS))
    if in_window >= LOYAL_PURCHASES:
        return Stage.LOYAL
    return Stage.ACTIVE


def stage_at(purchases: Iterable[date], d: date) -> Stage:
    """The stage at ``d`` from the purchase dates (any order; those after ``d`` are ignored)."""
    return _stage_sorted(sorted(purchases), as_day(d))


TRANSITION_OFFSETS: Final = (
    0,
    NEW_DAYS + 1,
    AT_RISK_DAYS + 1,
    WINDOW_DAYS,
    CHURN_DAYS + 1,
)
"""Days after a purchase on which a stage can change.

0: the purchase itself; 91: the end of NEW and of REACTIVATED; 181: AT_RISK
begins; 365: the purchase leaves the LOYAL window (days < 365); 366: CHURNED
begins. Between two such dates every rule's outcome is constant, so
evaluating only these dates finds every transition on the day it happens.
(The +365 date is needed besides +366: without it a LOYAL -> ACTIVE change
would be reported a day late.)
"""


def stage_history(
    purchases: Iterable[date], registered_on: date | None, d: date
) -> list[tuple[date, Stage]]:
    """The stage transitions up to ``d``: (first date of a stage, stage), oldest first."""
    d = as_day(d)
    days = sorted(purchases)
    candidates = {registered_on} if registered_on is not None else set()
    for bought in days:
        candidates.update(bought + timedelta(days=offset) for offset in TRANSITION_OFFSETS)
    transitions: list[tuple[date, Stage]] = []
    for when in sorted(c for c in candidates if c <= d):
        current = _stage_sorted(days, when)
        if not transitions or transitions[-1][1] != current:
            transitions.append((when, current))
    return transitions


# ------------------------------------------------------------------ fold


class Lifecycle:
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 2
    """2: the history holds one entry per day (1: one per interaction)."""
    topics: ClassVar[frozenset[str] | None] = frozenset(
        e.topic for e in (CustomerRegistered, InteractionRecorded)
    )

    body_topics: ClassVar[frozenset[str]] = frozenset({InteractionRecorded.topic})

    def apply_body(
        self, body: dict[str, Any], key: str, notification: Notification, docs: Docs
    ) -> None:
        """``apply`` for an ``InteractionRecorded`` as stored (vouched for by the runner)."""
        fold_purchase_body(body, key, docs, KIND)

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        if isinstance(event, InteractionRecorded):
            entry = history_entry(event)
            if entry is None:
                return
            key = aggregate_key(event)
            found = docs.get(KIND, key)
            if found is None:
                return
            doc = found
            add_entry(doc["purchases"], entry)
        elif isinstance(event, CustomerRegistered):
            key = aggregate_key(event)
            doc = {
                "customer_id": key,
                "registered_on": utc_instant(event.timestamp).date().isoformat(),
                "purchases": [],
            }
        else:
            return
        docs.put(KIND, key, doc)


# ------------------------------------------------------------------- queries


def _dates(doc: Doc) -> list[date]:
    return purchase_dates(parse_entries(doc["purchases"]))


def stage(reader: DocReader, customer_id: str, d: date) -> Stage | None:
    """The customer's stage at ``d``; None for an unknown customer or one not yet known at ``d``."""
    d = as_day(d)
    doc = reader.get(KIND, customer_id)
    if doc is None or not known_at(doc, d):
        return None
    return _stage_sorted(_dates(doc), d)


def funnel(reader: DocReader, d: date) -> dict[str, int]:
    """Customers per stage at ``d`` (every stage present), counting those known at ``d``."""
    d = as_day(d)
    counts = {s.value: 0 for s in Stage}
    for _, doc in reader.scan(KIND):
        if known_at(doc, d):
            counts[_stage_sorted(_dates(doc), d).value] += 1
    return counts


def history(reader: DocReader, customer_id: str, d: date) -> list[tuple[date, Stage]]:
    """The customer's stage transitions up to ``d`` (empty for an unknown customer)."""
    doc = reader.get(KIND, customer_id)
    if doc is None:
        return []
    return stage_history(_dates(doc), date.fromisoformat(doc["registered_on"]), d)
