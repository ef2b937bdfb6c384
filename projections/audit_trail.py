"""The audit trail (DESIGN §5, §6): every event in log order, and a hash chain over the log.

h(n) = sha256(h(n-1) || canonical bytes of event n as stored), where the
canonical bytes are its position, aggregate id, version and topic, then the
stored body exactly as recorded (personal fields sealed). Erasure destroys a
key, never a stored byte, so it cannot break the chain; editing any stored
row does, and ``verify`` names the first position that no longer matches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from json.encoder import encode_basestring_ascii
from typing import Any, ClassVar, Protocol, get_args

from eventsourcing.persistence import ApplicationRecorder, Notification
from pydantic import BaseModel

from application.mapper import SCHEMA_KEY
from domain.events import DomainEvent
from domain.personal import personal_fields
from projections.store import Doc, DocReader, Docs

GENESIS = "0" * 64
NAME = "audit_trail"
HEAD = ("chain", "head")


def event_key(position: int) -> str:
    return f"{position:020d}"


class Recorded(Protocol):
    """What the chain reads of a recorded event (a notification, or an exported line)."""

    @property
    def id(self) -> int: ...
    @property
    def originator_id(self) -> Any: ...
    @property
    def originator_version(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def state(self) -> bytes: ...


def canonical_bytes(notification: Recorded) -> bytes:
    header = (
        f"{notification.id}|{notification.originator_id}|"
        f"{notification.originator_version}|{notification.topic}|"
    )
    state = notification.state
    # A row edited behind Accord's back may not even hold bytes any more; it still hashes.
    body = state if isinstance(state, bytes) else str(state).encode()
    return header.encode() + body


def chain(previous: str, notification: Recorded) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + canonical_bytes(notification)).hexdigest()


def _link(previous: bytes, notification: Recorded, originator_id: str) -> bytes:
    """``chain`` on raw digests, hashing the parts without joining them first."""
    digest = hashlib.sha256(previous)
    digest.update(
        f"{notification.id}|{originator_id}|{notification.originator_version}|"
        f"{notification.topic}|".encode()
    )
    state = notification.state
    digest.update(state if isinstance(state, bytes) else str(state).encode())
    return digest.digest()


ENVELOPE_FIELDS = frozenset({"timestamp", "actor", "request_id", "correlation_id"})
EMPTY: tuple[Any, ...] = (None, "", [], {})
"""Values a summary leaves out."""


@cache
def _hidden(event_class: type[DomainEvent]) -> frozenset[str]:
    return personal_fields(event_class) | ENVELOPE_FIELDS


def _joined(parts: list[str]) -> str:
    text = " ".join(parts)
    return text if len(text) <= 500 else text[:497] + "..."


def summary(event: DomainEvent) -> str:
    """The event's business fields without its personal ones, for humans scanning the trail."""
    exclude = {"originator_id", "originator_version", *_hidden(type(event))}
    body = event.model_dump(mode="json", exclude=exclude)
    return _joined([f"{k}={v}" for k, v in sorted(body.items()) if v not in EMPTY])


FieldOrder = tuple[tuple[str, "FieldOrder | None"], ...]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (directly or as ``Model | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = [m for m in map(_model_of, get_args(annotation)) if m is not None]
    return models[0] if len(models) == 1 else None


@cache
def _field_order(model: type[BaseModel]) -> FieldOrder:
    return tuple(
        (name, _field_order(nested) if (nested := _model_of(info.annotation)) else None)
        for name, info in model.model_fields.items()
    )


def _in_model_order(value: Any, order: FieldOrder) -> Any:
    """A nested object as ``model_dump`` lays it out (the stored body sorts its keys)."""
    if not isinstance(value, dict):
        return value
    return {
        name: _in_model_order(value[name], nested) if nested else value[name]
        for name, nested in order
        if name in value
    }


@cache
def _shown(event_class: type[DomainEvent]) -> FieldOrder:
    """The fields a summary shows, in the order it shows them (by name)."""
    hidden = _hidden(event_class)
    return tuple(
        sorted(
            ((name, nested) for name, nested in _field_order(event_class) if name not in hidden),
            key=lambda field: field[0],
        )
    )


_decoder = json.JSONDecoder()


def stored_body(notification: Recorded) -> tuple[type[DomainEvent], dict[str, Any]]:
    """The event class and the stored body in its current schema, without the model.

    The body is what the mapper validates into the event (its upcasters
    applied), still with personal fields sealed; the trail reads it directly
    because it needs no field that validation would change, and validating
    every event was most of what building the trail cost.
    """
    event_class = DomainEvent.for_topic(notification.topic)
    state = notification.state
    text = state.decode() if isinstance(state, bytes) else str(state)
    body, end = _decoder.raw_decode(text)
    if end != len(text) or not isinstance(body, dict):
        body = json.loads(text)  # raises for trailing bytes, as a full parse does
        if not isinstance(body, dict):
            raise ValueError(f"the stored body of position {notification.id} is not an object")
    return event_class, event_class.upcast(body, body.pop(SCHEMA_KEY, 1))


def stored_summary(event_class: type[DomainEvent], body: Mapping[str, Any]) -> str:
    """``summary`` of the event a stored body holds, computed from the body alone.

    The stored body is the event's ``model_dump(mode="json")`` with sorted
    keys, so only nested objects need laying out in field order again to give
    the same text.
    """
    shown = _shown(event_class)
    if _flat(event_class):  # no nested objects (all but one kind of event): the short way
        return _joined(
            [
                f"{name}={value}"
                for name, _ in shown
                if (value := body.get(name)) is not None and value not in EMPTY
            ]
        )
    parts = []
    for name, nested in shown:
        if name in body:
            value = body[name]
            if value not in EMPTY:
                parts.append(f"{name}={_in_model_order(value, nested) if nested else value}")
    return _joined(parts)


@cache
def _flat(event_class: type[DomainEvent]) -> bool:
    return all(nested is None for _, nested in _shown(event_class))


def recorded_at(timestamp: str) -> str:
    """``datetime.fromisoformat(timestamp).isoformat()``, the usual shape without parsing.

    Pydantic writes an aware UTC time with microseconds as ``...:SS.ffffffZ``;
    ``isoformat`` writes the same instant as ``...:SS.ffffff+00:00``.
    """
    if (
        len(timestamp) == 27
        and timestamp[26] == "Z"
        and timestamp[19] == "."
        and timestamp[10] == "T"
        and timestamp[20:26] != "000000"
    ):
        return timestamp[:26] + "+00:00"
    return datetime.fromisoformat(timestamp).isoformat()


def render(entry: Doc) -> str | None:
    """A trail entry as JSON, three times faster than the general encoder.

    One entry is written per event, so its encoding is a large share of a
    rebuild. None when a field is not of its usual type (a body edited behind
    Accord's back): the store then encodes the entry itself.
    """
    # The fields a body supplies (the rest Accord derives, always as text or numbers).
    if not (
        type(entry["actor"]) is str
        and type(entry["request_id"]) is str
        and type(entry["correlation_id"]) is str
    ):
        return None
    return (
        f'{{"actor":{_quoted(entry["actor"])},"aggregate_id":{_quoted(entry["aggregate_id"])},'
        f'"aggregate_type":{_quoted(entry["aggregate_type"])},'
        f'"correlation_id":{_quoted(entry["correlation_id"])},"hash":{_quoted(entry["hash"])},'
        f'"position":{entry["position"]},"recorded_at":{_quoted(entry["recorded_at"])},'
        f'"request_id":{_quoted(entry["request_id"])},"summary":{_quoted(entry["summary"])},'
        f'"type":{_quoted(entry["type"])},"version":{entry["version"]}}}'
    )


_quoted = encode_basestring_ascii


def envelope(event: DomainEvent, notification: Notification) -> dict[str, Any]:
    """Where an event stands in the log and who caused it: what each trail entry and
    each export line says beside the event's own fields."""
    return {
        "position": notification.id,
        "aggregate_id": str(event.originator_id),
        "aggregate_type": event.aggregate_type,
        "version": event.originator_version,
        "type": event.topic,
        "recorded_at": event.timestamp.isoformat(),
        "actor": event.actor,
        "request_id": event.request_id,
        "correlation_id": event.correlation_id,
    }


class AuditTrail:
    """Folds events as stored: the runner calls ``apply_stored`` and decodes nothing for it.

    ``apply`` (from a decoded event) writes the same documents; both are kept
    so that a fold over events in memory, without stored bytes, still works.
    """

    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    topics: ClassVar[frozenset[str] | None] = None

    def __init__(self) -> None:
        self._head = (GENESIS, bytes(32))
        """The last hash written, as text and as bytes (saves parsing it back each event)."""

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        entry = {**envelope(event, notification), "summary": summary(event)}
        self._record(entry, notification, docs)

    def apply_stored(self, notification: Notification, docs: Docs) -> None:
        event_class, body = stored_body(notification)
        entry = {
            "position": notification.id,
            "aggregate_id": str(notification.originator_id),
            "aggregate_type": event_class.aggregate_type,
            "version": notification.originator_version,
            "type": notification.topic,
            "recorded_at": recorded_at(body["timestamp"]),
            "actor": body["actor"],
            "request_id": body["request_id"],
            "correlation_id": body["correlation_id"],
            "summary": stored_summary(event_class, body),
        }
        self._record(entry, notification, docs)

    def _record(self, entry: Doc, notification: Notification, docs: Docs) -> None:
        head = docs.get(*HEAD)
        previous = head["hash"] if head else GENESIS
        text, raw = self._head
        if previous != text:
            raw = bytes.fromhex(previous)
        digest = _link(raw, notification, entry["aggregate_id"])
        entry["hash"] = hexdigest = digest.hex()
        self._head = (hexdigest, digest)
        # Keyed by log position, which a generation applies once: never an update.
        docs.append(
            "event",
            event_key(notification.id),
            entry,
            group=entry["aggregate_id"],
            text=render(entry),
        )
        docs.put(*HEAD, {"position": notification.id, "hash": hexdigest})


# ------------------------------------------------------------------- queries


def digest(reader: DocReader) -> tuple[int, str]:
    """(position, hash) of the newest event in the trail: what an auditor writes down."""
    head = reader.get(*HEAD)
    return (head["position"], head["hash"]) if head else (0, GENESIS)


def events(
    reader: DocReader,
    *,
    after: int = 0,
    limit: int = 1000,
    aggregate_id: str | None = None,
) -> Iterator[Doc]:
    for _, doc in reader.scan("event", group=aggregate_id, after_key=event_key(after), limit=limit):
        yield doc


@dataclass(frozen=True)
class Verification:
    ok: bool
    position: int
    hash: str
    """The hash recomputed from the stored events at ``position``."""
    first_mismatch_position: int | None


class VerificationStopped(Exception):  # noqa: N818 (a stop, not a fault)
    """Asked to stop before a verdict; ``position`` is how far the check had read."""

    def __init__(self, position: int) -> None:
        super().__init__(f"verification stopped at position {position}")
        self.position = position


def verify(
    recorder: ApplicationRecorder,
    reader: DocReader,
    position: int,
    expected_hash: str,
    *,
    batch: int = 2000,
    progress: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Verification:
    """Recompute the chain from the stored events up to ``position`` and compare.

    The first position whose recomputed hash differs from the one the trail
    recorded when the event was new is the first mismatch; if the trail agrees
    throughout but the digest does not, the mismatch is at ``position``.
    ``progress`` hears the position reached after each batch; when ``stop``
    says so between batches, ``VerificationStopped`` ends the check with no
    verdict: it only reads, so there is nothing to undo and a rerun starts afresh.
    """
    current, at, first_mismatch = GENESIS, 0, None
    while at < position:
        if stop is not None and stop():
            raise VerificationStopped(at)
        notifications = recorder.select_notifications(
            start=at, limit=min(batch, position - at), inclusive_of_start=False
        )
        if not notifications:
            break
        recorded = {
            doc["position"]: doc["hash"]
            for doc in events(reader, after=at, limit=len(notifications) + 1)
        }
        for notification in notifications:
            if notification.id > position:
                break
            current = chain(current, notification)
            at = notification.id
            known = recorded.get(notification.id)
            if first_mismatch is None and known is not None and known != current:
                first_mismatch = notification.id
        if progress is not None:
            progress(at)
    ok = at == position and current == expected_hash
    if not ok and first_mismatch is None:
        first_mismatch = min(at + 1, position) if at < position else position
    return Verification(ok, at, current, None if ok else first_mismatch)
