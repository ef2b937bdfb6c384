"""Recorded events -> the audit ``Event`` message (ReadEvents, GetAggregateHistory).

Events are decoded with their personal fields as sealed references (the
mapper's ``references`` mode), never opened: a stream for a caller who may
not see personal data therefore never decrypts anything. Such a caller gets
``[redacted]``, or ``[erased]`` once the customer's data key is destroyed,
which only takes knowing the key is gone, not the key. Only for a caller who
sees personal data is each reference revealed, through the vault (which
itself yields ``[erased]`` after erasure).

A replay is mostly this translation, so an event whose stored body can be
vouched for (``adapters.grpc.payloads``) skips the decode: its payload is
made from the stored JSON, touching only the personal fields, by the same
rules. Any other event (an older schema version, say) is decoded in full.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from adapters.grpc import payloads
from adapters.grpc.generated.accord.v1 import audit_pb2
from adapters.grpc.state import REDACTED
from adapters.grpc.translate import timestamp_out
from application.mapper import EventMapper
from application.personal_data import PersonalDataVault, is_reference, is_sealed
from domain.events import DomainEvent
from domain.personal import ERASED, personal_fields
from projections.store import Doc

ENVELOPE = frozenset(
    {"originator_id", "originator_version", "timestamp", "actor", "request_id", "correlation_id"}
)
"""Fields every event has, which the message carries as its own fields, not in the payload."""

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""What ``json.dumps`` builds on every call with these options, built once."""


@cache
def _personal(event_class: type[DomainEvent]) -> frozenset[str]:
    return personal_fields(event_class)


class Disclosure:
    """How personal fields read for one caller, within one batch.

    Whether a customer is erased is asked of the key store at most once per
    batch and customer, so a long follow still sees an erasure promptly; a
    page's customers are asked in one read (``prefetch``).
    """

    def __init__(self, vault: PersonalDataVault, *, show: bool) -> None:
        self.vault = vault
        self.show = show
        self._erased: dict[UUID, bool] = {}

    def prefetch(self, customer_ids: Iterable[UUID]) -> None:
        """Have the keys of ``customer_ids`` at hand, each fetched in one read, not one each.

        For a caller who sees personal data, the vault's keys; otherwise,
        whether each customer not yet asked about in this batch is erased.
        """
        if self.show:
            self.vault.prefetch(customer_ids)
            return
        wanted = [c for c in set(customer_ids) if c not in self._erased]
        if wanted:
            keys = self.vault.store.get_data_keys(wanted)
            for customer_id in wanted:
                key = keys.get(customer_id)
                self._erased[customer_id] = key is not None and key.wrapped is None

    def _is_erased(self, customer_id: UUID) -> bool:
        if customer_id not in self._erased:
            key = self.vault.store.get_data_key(customer_id)
            self._erased[customer_id] = key is not None and key.wrapped is None
        return self._erased[customer_id]

    def value(self, customer_id: UUID, value: Any) -> Any:
        if value is None or value == "" or value == ERASED:
            return value  # nothing personal to protect
        if is_reference(value):
            if self.show:
                return self.vault.reveal(value)
            return ERASED if self._is_erased(customer_id) else REDACTED
        # Not sealed (a value stored before sealing, or never sealable): same rule by role.
        return value if self.show else REDACTED

    def stored_value(self, customer_id: UUID, context: str, value: Any) -> Any:
        """A personal value as stored (sealed under ``context``, or not): as ``value`` reads it.

        ``value`` sees a sealed value as its reference, which holds nothing
        the vault needs beyond the customer, the context and the ciphertext.
        """
        if not is_sealed(value):
            return self.value(customer_id, value)
        if self.show:
            return self.vault.open(customer_id, context, value)
        return ERASED if self._is_erased(customer_id) else REDACTED


class EventTranslator:
    """Decodes stored events without opening personal data, and builds their messages."""

    def __init__(self, vault: PersonalDataVault) -> None:
        self.vault = vault
        self.mapper = EventMapper(vault, references=True)
        self._saved: tuple[tuple[Any, ...], UUID, bytes, bytes] = ((), UUID(int=0), b"", b"")
        """The last event's aggregate and envelope, written: the events of one save share
        them. One tuple, replaced whole, so concurrent streams never see half of one."""

    def disclosure(self, *, show_personal: bool) -> Disclosure:
        return Disclosure(self.vault, show=show_personal)

    def decode(self, stored: StoredEvent) -> DomainEvent:
        event = self.mapper.to_domain_event(stored)
        assert isinstance(event, DomainEvent)
        return event

    @staticmethod
    def payload(event: DomainEvent, disclosure: Disclosure) -> str:
        """The event's own fields as JSON: snake_case, RFC 3339 times, enums by name."""
        body = event.model_dump(mode="json", exclude=set(ENVELOPE))
        for field in _personal(type(event)) & body.keys():
            body[field] = disclosure.value(event.originator_id, body[field])
        return _ENCODER.encode(body)

    def message(
        self,
        stored: StoredEvent,
        position: int,
        trail: Doc,
        disclosure: Disclosure,
        into: Events | None = None,
    ) -> audit_pb2.Event:
        """``trail``: the audit trail's entry at ``position`` (its chain hash and summary).

        ``into``: a response's events, to build the message in (not copied there later).
        """
        return self.stored_message(
            position,
            stored.originator_id,
            stored.originator_version,
            stored.topic,
            stored.state,
            trail,
            disclosure,
            into,
        )

    def stored_message(
        self,
        position: int,
        originator_id: UUID | str,
        version: int,
        topic: str,
        state: bytes,
        trail: Doc,
        disclosure: Disclosure,
        into: Events | None = None,
    ) -> audit_pb2.Event:
        """``message`` of a stored event given by its columns (a row of the log)."""
        wire = self.stored_wire(position, originator_id, version, topic, state, trail, disclosure)
        message = audit_pb2.Event() if into is None else into.add()
        message.MergeFromString(wire)
        return message

    def stored_wire(
        self,
        position: int,
        originator_id: UUID | str,
        version: int,
        topic: str,
        state: bytes,
        trail: Doc,
        disclosure: Disclosure,
    ) -> bytes:
        """The serialised ``Event`` of a stored event, written field by field.

        A replay sends every event it reads, so the message is never built as
        an object: its bytes are what ``SerializeToString`` gives for the
        message ``decoded_message`` builds (fields in number order, empty ones
        left out), so a response's ``events`` are these, each ``delimited``
        under ``EVENTS_FIELD``.
        """
        kind = _kinds[topic] if topic in _kinds else _kind(topic)
        body = None if kind is None else kind.plan.body(state)
        if kind is None or body is None:
            stored = StoredEvent(originator_id, version, topic, state)
            return self.decoded_message(stored, position, trail, disclosure).SerializeToString()
        _check_trail(trail, position, version)
        saved = (
            originator_id,
            body["timestamp"],
            body["actor"],
            body["request_id"],
            body["correlation_id"],
        )
        last = self._saved
        if saved == last[0]:
            _, customer_id, aggregate_id, envelope = last
        else:
            customer_id = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
            aggregate_id = _AGGREGATE_ID + str(customer_id).encode()
            envelope = b"".join(
                (
                    _recorded_at(saved[1]),
                    _text(_ACTOR, saved[2]),
                    _text(_REQUEST_ID, saved[3]),
                    _text(_CORRELATION_ID, saved[4]),
                )
            )
            self._saved = (saved, customer_id, aggregate_id, envelope)
        fields = {name: body[name] for name in kind.plan.fields}
        for name, context in kind.plan.personal:
            if value := fields[name]:  # "" and None read the same for everyone
                fields[name] = disclosure.stored_value(customer_id, context, value)
        payload = payloads.encode(fields)
        return b"".join(
            (
                _POSITION,
                varint(position),
                aggregate_id,
                kind.aggregate_type,
                _VERSION,
                varint(version),
                kind.type,
                envelope,
                _PAYLOAD,  # delimited, joined once with the rest (a copy less per event)
                varint(len(payload)),
                payload,
                _text(_HASH, trail["hash"]),
                _text(_SUMMARY, trail["summary"]),
            )
        )

    def decoded_message(
        self,
        stored: StoredEvent,
        position: int,
        trail: Doc,
        disclosure: Disclosure,
        into: Events | None = None,
    ) -> audit_pb2.Event:
        """The message through the full decode: the reference ``message`` must agree with."""
        event = self.decode(stored)
        _check_trail(trail, position, event.originator_version)
        return _make(into)(
            position=position,
            aggregate_id=str(event.originator_id),
            aggregate_type=event.aggregate_type,
            version=event.originator_version,
            type=event.topic,
            recorded_at=timestamp_out(event.timestamp),
            actor=event.actor,
            request_id=event.request_id,
            correlation_id=event.correlation_id,
            payload=self.payload(event, disclosure),
            hash=trail["hash"],
            summary=trail["summary"],
        )


Events = RepeatedCompositeFieldContainer[audit_pb2.Event]
"""A response's events."""


def _make(into: Events | None) -> Callable[..., audit_pb2.Event]:
    return audit_pb2.Event if into is None else into.add


# ------------------------------------------------------------- the wire form
# Tags of ``Event``'s fields (field number << 3 | wire type: 0 varint, 2 length-delimited).
_POSITION = b"\x08"
_AGGREGATE_ID = b"\x12\x24"
"""With its length: an aggregate id is a UUID's 36 characters."""
_AGGREGATE_TYPE = b"\x1a"
_VERSION = b"\x20"
_TYPE = b"\x2a"
_ACTOR = b"\x3a"
_REQUEST_ID = b"\x42"
_CORRELATION_ID = b"\x4a"
_PAYLOAD = b"\x52"
_HASH = b"\x5a"
_SUMMARY = b"\x62"
EVENTS_FIELD = b"\x0a"
"""The tag of ``ReadEventsResponse.events`` (and of ``GetAggregateHistoryResponse.events``)."""

_BYTES = tuple(bytes((n,)) for n in range(128))


def varint(value: int) -> bytes:
    """A protobuf varint; a negative value as int64 writes it, in ten bytes."""
    if 0 <= value < 0x4000:  # a length or an early position: the common cases, unrolled
        if value < 0x80:
            return _BYTES[value]
        return bytes((value & 0x7F | 0x80, value >> 7))
    if 0x4000 <= value < 0x20_0000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    value &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def delimited(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    size = len(data)
    return tag + (_BYTES[size] if size < 128 else varint(size)) + data


def _text(tag: bytes, value: str | bytes) -> bytes:
    """A string field; an empty one is left out, as proto3 leaves it out."""
    if not value:
        return b""
    return delimited(tag, value.encode() if isinstance(value, str) else value)


@dataclass(frozen=True)
class _Kind:
    """What the wire form of one topic's vouched-for events needs, looked up once."""

    plan: payloads.Plan
    aggregate_type: bytes
    """Field 3, written."""
    type: bytes
    """Field 5, written."""


_kinds: dict[str, _Kind | None] = {}


def _kind(topic: str) -> _Kind | None:
    plan = payloads.plan(topic, ENVELOPE)
    kind = None
    if plan is not None:
        kind = _Kind(plan, _text(_AGGREGATE_TYPE, plan.aggregate_type), _text(_TYPE, topic))
    _kinds[topic] = kind
    return kind


@lru_cache(maxsize=4096)
def _recorded_at(timestamp: str) -> bytes:
    """``recorded_at`` (field 6) of a stored timestamp: the events of one save share it."""
    moment = timestamp_out(timestamp)
    assert moment is not None
    return delimited(b"\x32", moment.SerializeToString())


def _check_trail(trail: Doc, position: int, version: int) -> None:
    if trail["position"] != position or trail["version"] != version:
        raise RuntimeError(
            f"the audit trail's entry at {trail['position']} does not match the log at {position}"
        )
