"""Lifecycle (DESIGN §5): a customer's stage as of a date, the funnel, and the stage history.

A stage is a function of the purchase dates alone, so the view keeps, per
customer, the registration date and a compact purchase history (PURCHASE and
REFUND amounts on their business time, ``occurred_at``) and computes stages
when asked. Keeping facts rather than a current stage is what lets one view
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

from bisect import bisect_right, insort
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


class Entry(NamedTuple):
    """One PURCHASE or REFUND on its UTC calendar date, with a signed amount.

    A refund is stored negated. The sign bit (``Decimal.is_signed``), not a
    comparison with zero, tells them apart, so even a zero amount keeps its kind.
    """

    on: date
    amount: Decimal

    @property
    def is_purchase(self) -> bool:
        return not self.amount.is_signed()


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


_last_entry: tuple[object, list[str] | None] = (None, None)
"""The last event ``history_entry`` saw, and its entry: two read models ask for each."""


def history_entry(event: InteractionRecorded) -> list[str] | None:
    """The compact ``[occurred_at, signed amount]`` of a PURCHASE or REFUND, else None.

    ``occurred_at`` is written in UTC with a fixed width (always microseconds),
    so the stored strings sort in time order without being parsed.
    """
    global _last_entry
    seen, entry = _last_entry
    if seen is event:  # the same event object (held here, so its id cannot be reused)
        return None if entry is None else list(entry)
    if event.amount is None:
        entry = None
    elif event.kind is InteractionKind.PURCHASE:
        entry = [
            utc_instant(event.occurred_at).isoformat(timespec="microseconds"),
            str(event.amount),
        ]
    elif event.kind is InteractionKind.REFUND:
        occurred = utc_instant(event.occurred_at).isoformat(timespec="microseconds")
        entry = [occurred, str(-event.amount)]
    else:
        entry = None
    _last_entry = (event, entry)
    return None if entry is None else list(entry)


def body_entry(body: dict[str, Any]) -> list[str] | None:
    """``history_entry`` of an ``InteractionRecorded`` as stored (a body vouched for).

    The same values as the decoded event's: the amount is the decimal's own
    text, ``occurred_at`` the moment pydantic would read from it.
    """
    global _last_entry
    seen, entry = _last_entry
    if seen is body:  # the same body object (held here, so its id cannot be reused)
        return None if entry is None else list(entry)
    amount, kind = body["amount"], body["kind"]
    if amount is None or (kind != _PURCHASE and kind != _REFUND):
        entry = None
    else:
        occurred = _utc_text(body["occurred_at"])
        # A body vouched for holds the decimal's own text: str(Decimal(amount)) == amount.
        entry = [occurred, amount if kind == _PURCHASE else str(-Decimal(amount))]
    _last_entry = (body, entry)
    return None if entry is None else list(entry)


def _utc_text(stored: str) -> str:
    """``utc_instant(moment).isoformat(timespec="microseconds")`` of a time as pydantic writes it.

    UTC (``Z``: the usual case) is rewritten, not parsed: pydantic writes six
    digits of microseconds, or none when they are zero.
    """
    if stored[-1] == "Z":
        return stored[:-1] + ("+00:00" if len(stored) > 20 else ".000000+00:00")
    return utc_instant(datetime.fromisoformat(stored)).isoformat(timespec="microseconds")


_PURCHASE: Final = InteractionKind.PURCHASE.value
_REFUND: Final = InteractionKind.REFUND.value


def add_entry(history: list[Any], entry: list[str]) -> None:
    """Insert ``entry`` in business-time order (late-recorded interactions arrive out of order).

    Entries with equal times keep their log order, so a rebuild lays the
    history out exactly as the incremental fold did.
    """
    if not history or str(history[-1][0]) <= entry[0]:
        history.append(entry)  # the usual case, where insort would put it too
    else:
        insort(history, entry, key=lambda item: str(item[0]))


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


def parse_entries(history: Iterable[Sequence[str]]) -> list[Entry]:
    """Stored ``[occurred_at, amount]`` pairs as entries on UTC dates, in time order."""
    return [
        Entry(utc_instant(datetime.fromisoformat(occurred)).date(), Decimal(amount))
        for occurred, amount in history
    ]


def purchase_dates(entries: Iterable[Entry]) -> list[date]:
    """The sorted dates of the PURCHASE entries (refunds are not purchases)."""
    return sorted(entry.on for entry in entries if entry.is_purchase)


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
    version: ClassVar[int] = 1
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
