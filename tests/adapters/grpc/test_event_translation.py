"""The audit stream's translation from stored JSON says exactly what the full decode says.

``EventTranslator.message`` builds most messages straight from the stored
body; ``decoded_message`` goes through the event model, as every message
once did. Both must give the same message, byte for byte, for every kind of
event, for callers who see personal data and those who do not, after an
erasure, and for bodies stored in an older shape (which only the decode
upcasts).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Notification, StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.grpc import events, payloads
from adapters.grpc.events import ENVELOPE, Disclosure, EventTranslator
from adapters.grpc.generated.accord.v1 import audit_pb2
from application import commands as c
from application.context import CallContext
from application.mapper import EventMapper
from application.service import Accord
from domain.customer import CustomerEvent, InteractionRecorded
from domain.values import Channel, Direction, InteractionKind
from tests import builders
from tests.builders import CTX
from tests.conftest import AccordFactory
from tests.support import FakeClock


def _trail(stored: StoredEvent, position: int) -> dict[str, Any]:
    return {"position": position, "version": stored.originator_version, "hash": "h", "summary": ""}


def _both(
    translator: EventTranslator, stored: StoredEvent, position: int, *, show: bool
) -> tuple[audit_pb2.Event, audit_pb2.Event]:
    """(fast, full): each with a disclosure of its own, as each batch has."""
    trail = _trail(stored, position)
    fast = translator.message(stored, position, trail, translator.disclosure(show_personal=show))
    full = translator.decoded_message(
        stored, position, trail, translator.disclosure(show_personal=show)
    )
    return fast, full


def _wires(
    translator: EventTranslator,
    stored: Notification,
    trail: dict[str, Any],
    *,
    show: bool = True,
    disclosure: Disclosure | None = None,
) -> tuple[bytes, bytes]:
    """(``stored_wire``, the full decode's message serialised): what a replay sends, both ways.

    Each with a disclosure of its own, as each batch has, unless one is given.
    """
    wire = translator.stored_wire(
        stored.id,
        stored.originator_id,
        stored.originator_version,
        stored.topic,
        stored.state,
        trail,
        disclosure or translator.disclosure(show_personal=show),
    )
    full = translator.decoded_message(
        stored, stored.id, trail, disclosure or translator.disclosure(show_personal=show)
    )
    return wire, full.SerializeToString()


def _history(app: Accord, clock: FakeClock) -> UUID:
    """A customer with every kind of personal field: sealed, empty, absent, and a partner."""
    now = clock.now()
    partner_id = builders.active_partner(app, now)
    customer_id = builders.new_customer(app, display_name="Lakeside Trading")
    app.customers.add_contact(
        c.AddContact(
            customer_id=customer_id,
            name="Li Wei",
            email="li.wei@example.com",
            layer="DECISION",
            function="PROCUREMENT",
        ),
        CTX,
    )
    app.customers.record_interaction(
        builders.purchase(customer_id, "1250.50", now - timedelta(days=2), summary="renewal"),
        CTX,
    )
    app.customers.record_interaction(builders.purchase(customer_id, "1E+2", now), CTX)
    app.customers.update_profile(
        c.UpdateCustomerProfile(customer_id=customer_id, display_name="Lakeside Trading Ltd."), CTX
    )
    app.customers.update_profile(
        c.UpdateCustomerProfile(customer_id=customer_id, region="WEST"), CTX
    )
    app.customers.grant_consent(builders.grant(customer_id, partner_id, now), CTX)
    app.customers.share_data(builders.share(customer_id, partner_id), CTX)
    return customer_id


def _log(app: Accord) -> list[Any]:
    return list(app.log.recorder.select_notifications(start=1, limit=1000))


def _payload(app: Accord, topic: str, *, show: bool) -> dict[str, Any]:
    translator = EventTranslator(app.log.vault)
    [stored] = [n for n in _log(app) if n.topic == topic][:1]
    fast, full = _both(translator, stored, stored.id, show=show)
    assert fast == full
    decoded: dict[str, Any] = json.loads(fast.payload)
    return decoded


@pytest.mark.parametrize("show", [True, False], ids=["sees-personal", "redacted"])
def test_every_event_of_a_history_reads_the_same_both_ways(
    accord: Accord, clock: FakeClock, show: bool
) -> None:
    _history(accord, clock)
    translator = EventTranslator(accord.log.vault)
    log = _log(accord)
    assert {n.topic for n in log} >= {
        "customer.registered",
        "customer.contact_added",
        "customer.interaction_recorded",
        "customer.profile_updated",
        "customer.consent_granted",
        "customer.data_shared",
        "partner.agreement_signed",
    }
    for stored in log:
        fast, full = _both(translator, stored, stored.id, show=show)
        assert fast == full, stored.topic
        assert fast.payload == full.payload  # the same bytes, not only the same JSON


@pytest.mark.parametrize("show", [True, False], ids=["sees-personal", "redacted"])
def test_the_wire_form_is_the_serialised_message_byte_for_byte(
    accord: Accord, clock: FakeClock, show: bool
) -> None:
    """A replay sends ``stored_wire`` as it is: it must be what serialising the message gives."""
    _history(accord, clock)
    translator = EventTranslator(accord.log.vault)
    for stored in _log(accord):
        trail = {**_trail(stored, stored.id), "summary": "kind=PURCHASE amount=1.5"}
        fast, full = _wires(translator, stored, trail, show=show)
        assert fast == full, stored.topic


def test_events_of_one_save_share_their_written_envelope_and_no_other_event_does(
    accord: Accord, clock: FakeClock
) -> None:
    """A save's events are written with its aggregate and envelope once; the next save's own."""
    first, second = builders.bulk_purchases(accord, customers=2, per_customer=3, now=clock.now())
    for actor in ("crm-sync", "crm-sync", "importer"):  # a new request id each time
        accord.customers.record_interaction(
            builders.purchase(first, "9", clock.now()), CallContext(actor=actor)
        )
    translator = EventTranslator(accord.log.vault)
    disclosure = translator.disclosure(show_personal=True)
    log = _log(accord)
    assert {n.originator_id for n in log} == {first, second}
    for stored in log:
        fast, full = _wires(translator, stored, _trail(stored, stored.id), disclosure=disclosure)
        assert fast == full, (stored.id, stored.topic)


def test_the_wire_form_writes_long_and_negative_numbers_as_protobuf_does() -> None:
    """Positions past one byte, lengths past 127, times before 1970: what upb writes."""
    message = audit_pb2.Event(position=300, version=2**40, payload="x" * 200, summary="é" * 70)
    message.recorded_at.seconds = -86_400
    written = b"".join(
        (
            b"\x08" + events.varint(300),
            b"\x20" + events.varint(2**40),
            events._recorded_at("1969-12-31T00:00:00+00:00"),
            events._text(b"\x52", "x" * 200),
            events._text(b"\x62", "é" * 70),
        )
    )
    assert written == message.SerializeToString()
    assert events._text(b"\x3a", "") == b""


@pytest.mark.parametrize(
    "value",
    [1, 127, 128, 300, 16_383, 16_384, 2**21 - 1, 2**21, 2**28, 2**40, 2**63 - 1, -1, -(2**63)],
)
def test_a_varint_is_written_as_protobuf_writes_it(value: int) -> None:
    """Each width the writing unrolls, the first past it, and the int64 extremes."""
    assert b"\x08" + events.varint(value) == audit_pb2.Event(position=value).SerializeToString()


def test_the_stored_json_is_translated_without_decoding_events(
    accord: Accord, clock: FakeClock
) -> None:
    _history(accord, clock)
    translator = EventTranslator(accord.log.vault)
    disclosure = translator.disclosure(show_personal=True)
    interactions = [n for n in _log(accord) if n.topic == "customer.interaction_recorded"]
    for stored in interactions:
        translator.message(stored, stored.id, _trail(stored, stored.id), disclosure)
    assert translator.mapper.decoded == 0
    # A class with a nested model is left to the decode, which still serves it.
    assert payloads.plan("customer.consent_granted", ENVELOPE) is None


def test_personal_fields_are_revealed_redacted_then_erased_both_ways(
    accord: Accord, clock: FakeClock
) -> None:
    customer_id = _history(accord, clock)
    assert _payload(accord, "customer.registered", show=True)["display_name"] == "Lakeside Trading"
    assert _payload(accord, "customer.registered", show=False)["display_name"] == "[redacted]"
    contact = _payload(accord, "customer.contact_added", show=False)
    assert [contact[k] for k in ("name", "email", "phone")] == ["[redacted]", "[redacted]", None]

    accord.customers.erase(c.EraseCustomerData(customer_id=customer_id, reason="request"), CTX)

    translator = EventTranslator(accord.log.vault)
    for show in (True, False):
        for stored in _log(accord):
            fast, full = _both(translator, stored, stored.id, show=show)
            assert fast == full, (stored.topic, show)
        assert _payload(accord, "customer.registered", show=show)["display_name"] == "[erased]"
        interaction = _payload(accord, "customer.interaction_recorded", show=show)
        assert interaction["summary"] == "[erased]"


class TranslationProbe(CustomerEvent):
    """A test-only event whose schema changed once: ``note`` became ``notes``."""

    topic: ClassVar[str] = "test.translation_probe"
    schema_version: ClassVar[int] = 2

    notes: tuple[str, ...]

    @staticmethod
    def _v1_to_v2(body: dict[str, Any]) -> dict[str, Any]:
        note = body.pop("note")
        body["notes"] = [note] if note else []
        return body

    upcasters: ClassVar[dict[int, Any]] = {1: _v1_to_v2}


def _raw(originator: UUID, version: int, body: dict[str, Any]) -> StoredEvent:
    envelope = {
        "timestamp": "2024-03-01T08:00:00Z",
        "actor": "legacy-import",
        "request_id": f"r-{version}",
        "correlation_id": "c-1",
    }
    state = json.dumps({**envelope, **body}, sort_keys=True).encode()
    return StoredEvent(originator, version, TranslationProbe.topic, state)


def test_a_body_of_an_older_schema_version_is_upcast_not_passed_through(accord: Accord) -> None:
    originator = uuid4()
    old = _raw(originator, 1, {"_v": 1, "note": "called back"})
    current = _raw(originator, 2, {"_v": 2, "notes": ["called again"]})
    plan = payloads.plan(TranslationProbe.topic, ENVELOPE)
    assert plan is not None
    assert plan.body(old.state) is None
    assert plan.body(current.state) is not None
    translator = EventTranslator(accord.log.vault)

    fast, full = _both(translator, old, 7, show=True)

    assert fast == full
    assert json.loads(fast.payload) == {"notes": ["called back"]}
    assert json.loads(_both(translator, current, 8, show=True)[0].payload) == {
        "notes": ["called again"]
    }


# ------------------------------------------------------------ vouching for a body


def _interaction(**fields: Any) -> InteractionRecorded:
    values: dict[str, Any] = {
        "originator_id": uuid4(),
        "originator_version": 3,
        "timestamp": datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
        "actor": "crm-sync",
        "request_id": "r-1",
        "correlation_id": "c-1",
        "interaction_id": uuid4(),
        "kind": InteractionKind.PURCHASE,
        "channel": Channel.WEB,
        "direction": Direction.INBOUND,
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
        "amount": Decimal("12.50"),
        "currency": "CNY",
        "satisfaction": 7,
        "contact_ids": (uuid4(),),
    }
    return InteractionRecorded(**{**values, **fields})


def _stored_body() -> dict[str, Any]:
    stored = EventMapper().to_stored_event(_interaction())
    body: dict[str, Any] = json.loads(stored.state)
    return body


PLAN = payloads.plan(InteractionRecorded.topic, ENVELOPE)


def test_a_body_as_the_mapper_stores_it_is_vouched_for() -> None:
    assert PLAN is not None
    body = _stored_body()
    assert PLAN.body(json.dumps(body).encode()) == body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "2026-01-02T03:04:05.600000+00:00"),  # pydantic writes Z
        ("occurred_at", "2026-01-01T00:00:00.000000Z"),  # ... and no zero microseconds
        ("occurred_at", "2026-01-01 00:00:00Z"),
        ("interaction_id", "8F0E4C4A-0000-4000-8000-000000000000"),
        ("amount", "1e2"),  # Decimal reads it, and writes 1E+2
        ("amount", 12.5),
        ("amount", "NaN"),
        ("satisfaction", 7.0),
        ("satisfaction", True),
        ("satisfaction", 2**70),  # orjson reads it as a float
        ("kind", "TELEPATHY"),
        ("contact_ids", ["not-a-uuid"]),
        ("contact_ids", "8f0e4c4a-0000-4000-8000-000000000000"),
        ("summary", None),  # not optional
        ("summary", {"$enc": 1}),
        ("summary", {"$enc": "x", "more": "y"}),
        ("currency", 7),
        ("_v", 0),
    ],
)
def test_a_value_in_another_form_is_left_to_the_decode(field: str, value: Any) -> None:
    assert PLAN is not None
    body = _stored_body() | {field: value}
    assert PLAN.body(json.dumps(body).encode()) is None


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body.pop("currency"),
        lambda body: body.update(extra="x"),
        lambda body: body.pop("_v"),
    ],
    ids=["missing", "extra", "unversioned"],
)
def test_a_body_with_other_fields_is_left_to_the_decode(change: Any) -> None:
    assert PLAN is not None
    body = _stored_body()
    change(body)
    assert PLAN.body(json.dumps(body).encode()) is None
    assert PLAN.body(b"[1, 2]") is None
    assert PLAN.body(b'{"unterminated') is None


ZONES = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=8)),
        timezone(-timedelta(hours=5, minutes=30)),
        timezone(timedelta(seconds=30)),  # pydantic writes it as +00:00, which it reads as Z
    ]
)
EARLIEST, LATEST = datetime(1900, 1, 1), datetime(2200, 1, 1)
MOMENTS = st.datetimes(EARLIEST, LATEST, timezones=ZONES) | st.datetimes(EARLIEST, LATEST)
"""Aware, and naive (read as local time, the same both ways)."""


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    summary=st.text(max_size=40),
    currency=st.none() | st.text(max_size=8),
    amount=st.none() | st.decimals(allow_nan=False, allow_infinity=False),
    satisfaction=st.none() | st.integers(0, 10),
    timestamp=MOMENTS,
    occurred_at=MOMENTS,
    contacts=st.integers(0, 3),
    show=st.booleans(),
)
def test_any_interaction_reads_the_same_both_ways(
    make_accord: AccordFactory,
    summary: str,
    currency: str | None,
    amount: Decimal | None,
    satisfaction: int | None,
    timestamp: datetime,
    occurred_at: datetime,
    contacts: int,
    show: bool,
) -> None:
    app = make_accord()
    event = _interaction(
        summary=summary,
        currency=currency,
        amount=amount,
        satisfaction=satisfaction,
        timestamp=timestamp,
        occurred_at=occurred_at,
        contact_ids=tuple(uuid4() for _ in range(contacts)),
        partner_id=uuid4() if contacts % 2 else None,
    )
    stored = app.log.event_mapper.to_stored_event(event)
    translator = EventTranslator(app.log.vault)

    fast, full = _both(translator, stored, 11, show=show)

    assert fast == full
    odd = [m for m in (timestamp, occurred_at) if m.utcoffset() == timedelta(seconds=30)]
    assert translator.mapper.decoded == (2 if odd else 1)  # the fast way decoded nothing
    app.close()
