"""Folding an event from its stored body writes exactly what folding the decoded event writes.

The read models that hold customers fold ``InteractionRecorded`` (most of the
log) from the stored body when ``application.stored_bodies`` vouches for it,
and from the decoded event otherwise; the runner decides, with the same code
for the follower and a rebuild. The reference here is the decoded fold, one
event at a time, compared after every event, for every kind of event a
history holds and for histories mixing bodies vouched for and bodies not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Notification
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.mapper import EventMapper
from application.service import Accord
from application.stored_bodies import body_plan
from domain.customer import InteractionRecorded
from domain.events import DomainEvent
from domain.values import Channel, Direction, InteractionKind
from projections.catalog import all_projections
from projections.projection import BodyProjection, Projection, StoredProjection
from projections.runner import ProjectionRunner
from tests.builders import new_customer
from tests.conftest import ReadModelsFactory
from tests.projections.memory import MemoryDocs
from tests.projections.test_rebuild_pass import _all_notifications, _world
from tests.support import FakeClock

FOLDED = [p for p in all_projections() if not isinstance(p, StoredProjection)]
"""The read models the runner hands decoded events (or bodies)."""


def _read_by_body(projection: Projection, notification: Notification) -> Any:
    """What the runner hands ``apply_body`` for this event, or None (it decodes)."""
    if not isinstance(projection, BodyProjection):
        return None
    if notification.topic not in projection.body_topics:
        return None
    plan = body_plan(notification.topic)
    return None if plan is None else ProjectionRunner._vouched(plan, notification)


def _fold_both_ways(mapper: EventMapper, notifications: Sequence[Notification]) -> dict[str, int]:
    """Fold every read model both ways, comparing after each event; bodies folded, per model."""
    by_body: dict[str, int] = {}
    for projection in FOLDED:
        decoded, stored = MemoryDocs(), MemoryDocs()
        by_body[projection.name] = 0
        for notification in notifications:
            if projection.topics is not None and notification.topic not in projection.topics:
                continue
            event = mapper.to_domain_event(notification)
            assert isinstance(event, DomainEvent)
            projection.apply(event, notification, decoded)
            read = _read_by_body(projection, notification)
            if read is None:
                projection.apply(event, notification, stored)
            else:
                assert isinstance(projection, BodyProjection)
                projection.apply_body(read[0], read[1], notification, stored)
                by_body[projection.name] += 1
            assert stored.docs == decoded.docs, (projection.name, notification.topic)
    return by_body


def test_the_customer_read_models_fold_interactions_from_stored_bodies() -> None:
    takes_bodies = {p.name for p in FOLDED if isinstance(p, BodyProjection)}
    assert takes_bodies == {"customer_summary", "segments", "lifecycle"}
    for projection in FOLDED:
        if isinstance(projection, BodyProjection):
            assert projection.body_topics == {InteractionRecorded.topic}
            assert body_plan(InteractionRecorded.topic) is not None


def test_every_kind_of_event_folds_the_same_from_its_body(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _world(accord, clock)
    views = make_read_models(accord)
    notifications = _all_notifications(views)
    assert len({n.topic for n in notifications}) >= 12
    by_body = _fold_both_ways(views.runner.mapper, notifications)
    interactions = sum(n.topic == InteractionRecorded.topic for n in notifications)
    assert interactions >= 10
    for name in ("customer_summary", "segments", "lifecycle"):
        assert by_body[name] == interactions, name  # every one of them as stored
    # Every kind of event the history holds, one at a time, on a read model's state so far.
    assert all(by_body[p.name] == 0 for p in FOLDED if not isinstance(p, BodyProjection))


# ------------------------------------------------- mixed and generated histories

Change = Callable[[dict[str, Any]], None]
OTHER_FORMS: list[Change] = [
    lambda body: body.pop("_v"),  # unversioned: read as version 1 by the decode
    lambda body: body.update(occurred_at=body["occurred_at"].replace("Z", "+00:00")),
    lambda body: body.update(interaction_id=body["interaction_id"].upper()),
    lambda body: body.update(amount=None if body["amount"] is None else float(body["amount"])),
    lambda body: body.update(currency=body["currency"]),  # unchanged: still vouched for
]
"""Bodies in forms the decode reads but the vouching refuses (the last one: untouched)."""


def _vouched_for(form: int | None, occurred_at: datetime, amount: Decimal | None) -> bool:
    """Whether a body changed by ``OTHER_FORMS[form]`` is still vouched for."""
    if form == 1:  # only a time stored in UTC ends in Z
        return occurred_at.tzinfo is None or occurred_at.utcoffset() != timedelta(0)
    if form == 3:
        return amount is None
    return form is None or form == len(OTHER_FORMS) - 1


def _stored(
    mapper: EventMapper, event: InteractionRecorded, position: int, change: Change | None
) -> Notification:
    stored = mapper.to_stored_event(event)
    state = stored.state
    if change is not None:
        body = json.loads(state)
        change(body)
        state = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return Notification(
        id=position,
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=state,
    )


ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5, minutes=30))]
)
MOMENTS = st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1), timezones=ZONES) | (
    st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1))  # naive: read the same both ways
)
INTERACTIONS = st.lists(
    st.tuples(
        st.sampled_from(InteractionKind),
        MOMENTS,
        st.none()
        | st.decimals(allow_nan=False, allow_infinity=False, places=2)
        | st.decimals(allow_nan=False, allow_infinity=False),
        st.none() | st.integers(0, 10),
        st.none() | st.integers(0, len(OTHER_FORMS) - 1),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(interactions=INTERACTIONS)
def test_any_mixed_history_of_interactions_folds_the_same_both_ways(
    accord: Accord, interactions: list[Any]
) -> None:
    customer = new_customer(accord)  # the one store serves every example: no pools pile up
    registered = [
        n
        for n in accord.log.recorder.select_notifications(0, 1_000_000)
        if n.originator_id == customer
    ]
    mapper = accord.log.event_mapper
    notifications = list(registered)
    version = registered[-1].originator_version
    for kind, occurred_at, amount, satisfaction, form in interactions:
        version += 1
        event = InteractionRecorded(
            originator_id=customer,
            originator_version=version,
            timestamp=datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
            actor="crm-sync",
            request_id="r-1",
            correlation_id="c-1",
            interaction_id=uuid4(),
            kind=kind,
            channel=Channel.WEB,
            direction=Direction.INBOUND,
            occurred_at=occurred_at,
            summary="called about the order",
            amount=amount,
            currency=None if amount is None else "CNY",
            satisfaction=satisfaction,
        )
        change = None if form is None else OTHER_FORMS[form]
        notifications.append(_stored(mapper, event, notifications[-1].id + 1, change))
    by_body = _fold_both_ways(EventMapper(accord.log.vault, references=True), notifications)
    vouched = sum(_vouched_for(form, moment, amount) for _, moment, amount, _, form in interactions)
    assert by_body["customer_summary"] == vouched
    assert by_body["lifecycle"] == by_body["segments"] == vouched


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("satisfaction", 11),  # the model refuses it: so must the vouching
        ("actor", ""),
        ("occurred_at", "2026-02-30T00:00:00Z"),
        ("occurred_at", "٢٠٢٦-01-01T00:00:00Z"),  # digits, but not ASCII ones
        ("_v", 0),
    ],
)
def test_a_body_the_model_would_refuse_is_left_to_the_decode(field: str, value: Any) -> None:
    event = InteractionRecorded(
        originator_id=uuid4(),
        originator_version=2,
        timestamp=datetime(2026, 1, 2, tzinfo=UTC),
        actor="crm-sync",
        request_id="r-1",
        correlation_id="c-1",
        interaction_id=uuid4(),
        kind=InteractionKind.PURCHASE,
        channel=Channel.WEB,
        direction=Direction.INBOUND,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        amount=Decimal("12.50"),
        currency="CNY",
    )
    plan = body_plan(InteractionRecorded.topic)
    assert plan is not None
    good = _stored(EventMapper(), event, 7, None)
    assert ProjectionRunner._vouched(plan, good) is not None
    bad = _stored(EventMapper(), event, 7, lambda body: body.update({field: value}))
    assert ProjectionRunner._vouched(plan, bad) is None
    odd_id = Notification(
        id=7,
        originator_id=str(good.originator_id).upper(),
        originator_version=2,
        topic=good.topic,
        state=good.state,
    )
    assert ProjectionRunner._vouched(plan, odd_id) is None
    assert isinstance(good.originator_id, UUID)


CANDIDATES: list[Any] = [
    None,
    "",
    "x",
    "CNY",
    "12.50",
    "1E+1",
    "-0",
    "2026-03-01T08:30:00.123456Z",
    "2026-02-31T08:30:00Z",
    "2026-03-01T08:30:00.000000Z",
    str(uuid4()),
    str(uuid4()).upper(),
    0,
    -1,
    7,
    11,
    101,
    2**64,
    True,
    False,
    1.5,
    [],
    ["x"],
    [str(uuid4())],
    {},
    {"sealed": "v1:abc"},
    {"sealed": 1},
]
"""Values of every JSON type, in forms the model writes and in forms it does not."""


def _checked_one_by_one(plan: Any, body: dict[str, Any]) -> bool:
    return all(type(body[name]) is kind or check(body[name]) for name, kind, check in plan.checks)


def test_the_compiled_vouching_says_what_the_checks_say_one_by_one(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _world(accord, clock)
    notifications = _all_notifications(make_read_models(accord))
    compared = vouched = 0
    for notification in notifications:
        plan = body_plan(notification.topic)
        if plan is None:
            continue
        real = json.loads(notification.state)
        fields = [name for name, _, _ in plan.checks]
        values = {name: [real[name], *CANDIDATES] for name in fields}
        # The values the events hold are candidates for every field (enum members among them).
        for name in fields:
            values[name] += [v for v in real.values() if not isinstance(v, (dict, list))]
        for name in fields:
            for value in values[name]:
                body = {**real, name: value}
                expected = _checked_one_by_one(plan, body)
                assert plan.vouch(body) is expected, (notification.topic, name, value)
                compared += 1
                vouched += expected
    assert compared > 1000
    assert 0 < vouched < compared
