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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial
from json.encoder import encode_basestring_ascii
from typing import Any, ClassVar, Protocol, get_args

import orjson
from eventsourcing.persistence import ApplicationRecorder, Notification
from pydantic import BaseModel

from application.mapper import SCHEMA_KEY
from domain.events import DomainEvent
from domain.personal import personal_fields
from projections.store import Doc, DocReader, Docs, Entry

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
EMPTY_KINDS = (str, list, dict)
"""The types of EMPTY's false values other than None."""


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
        # A JSON value outside EMPTY is true, or false but neither None nor an empty container.
        return _joined(
            [
                f"{name}={value}"
                for name in _shown_names(event_class)
                if (value := body.get(name))
                or (value is not None and type(value) not in EMPTY_KINDS)
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
def _shown_names(event_class: type[DomainEvent]) -> tuple[str, ...]:
    return tuple(name for name, _ in _shown(event_class))


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
# One encoder for every entry: ``json.dumps`` with options builds a new one per call.
_dump = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


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
    """Folds events as stored: the runner hands it each batch and decodes nothing for it.

    ``apply`` (from a decoded event) writes the same entries; it is kept so
    that a fold over events in memory, without stored bytes, still works.
    The entries go to the read model's log of entries (``Docs.record``),
    keyed by position and grouped by aggregate; the chain's head is a
    document, written once per batch.
    """

    name: ClassVar[str] = NAME
    version: ClassVar[int] = 2
    """2: entries kept apart from the documents (a rebuild moves them)."""
    topics: ClassVar[frozenset[str] | None] = None

    def __init__(self) -> None:
        self._head = (GENESIS, bytes(32))
        """The last hash written, as text and as bytes (saves parsing it back each batch)."""

    def _previous(self, docs: Docs) -> bytes:
        head = docs.get(*HEAD)
        previous = head["hash"] if head else GENESIS
        text, raw = self._head
        return raw if previous == text else bytes.fromhex(previous)

    def _advance(self, docs: Docs, position: int, digest: bytes) -> None:
        hexdigest = digest.hex()
        self._head = (hexdigest, digest)
        docs.put(*HEAD, {"position": position, "hash": hexdigest})

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        entry = {**envelope(event, notification), "summary": summary(event)}
        digest = _link(self._previous(docs), notification, entry["aggregate_id"])
        entry["hash"] = digest.hex()
        text = render(entry)
        docs.record(
            [(notification.id, entry["aggregate_id"], _dump(entry) if text is None else text)]
        )
        self._advance(docs, notification.id, digest)

    def apply_stored(self, notification: Notification, docs: Docs) -> None:
        self.apply_stored_batch([notification], docs)

    def apply_stored_batch(self, notifications: Sequence[Notification], docs: Docs) -> None:
        """The batch's entries from the stored events, each body parsed once by orjson.

        The short way takes a body at its current schema version whose
        envelope is text and whose shown fields orjson read as the standard
        library does (no float: see ``_any_float``). Any other (one orjson
        refuses, an older version to upcast, a body edited behind Accord's
        back) takes ``stored_body``, which reads it as the standard library
        does, or fails as it does.
        """
        if not notifications:
            return
        raw = self._previous(docs)
        entries: list[Entry] = []
        record = entries.append
        kinds = _kinds
        loads = orjson.loads
        sha256 = hashlib.sha256
        quoted = _quoted
        last_originator: Any = None
        key = ""
        # The events of one save share their envelope: its parts of the entry are written once.
        last_save: tuple[Any, ...] = ()
        head = middle = tail = ""
        for notification in notifications:
            topic = notification.topic
            kind = kinds.get(topic) or _kind(topic)
            state = notification.state
            originator = notification.originator_id
            if originator != last_originator or type(originator) is not type(last_originator):
                key = str(originator)
                last_originator = originator
            position = notification.id
            version = notification.originator_version
            digest = sha256(raw)
            digest.update(f"{position}|{key}|{version}|{topic}|".encode())
            digest.update(state if isinstance(state, bytes) else str(state).encode())
            raw = digest.digest()
            hexdigest = raw.hex()
            body: Any
            try:
                body = loads(state)
            except orjson.JSONDecodeError:
                body = None
            shown = None
            timestamp: Any
            actor: Any
            request_id: Any
            correlation_id: Any
            if type(body) is dict and body.get(SCHEMA_KEY, 1) == kind.schema_version:
                timestamp, actor, request_id, correlation_id = (
                    body.get("timestamp"),
                    body.get("actor"),
                    body.get("request_id"),
                    body.get("correlation_id"),
                )
                if (
                    type(timestamp) is str
                    and type(actor) is str
                    and type(request_id) is str
                    and type(correlation_id) is str
                ):
                    shown = kind.summary(body)
            if shown is not None:
                save = (timestamp, actor, request_id, correlation_id, key, topic)
                if save != last_save:
                    last_save = save
                    head = (
                        f'{{"actor":{quoted(actor)},"aggregate_id":{quoted(key)},'
                        f'"aggregate_type":{kind.aggregate_type},'
                        f'"correlation_id":{quoted(correlation_id)},"hash":"'
                    )
                    middle = (
                        f',"recorded_at":{quoted(recorded_at(timestamp))},'
                        f'"request_id":{quoted(request_id)},"summary":'
                    )
                    tail = f',"type":{quoted(topic)},"version":'
                text = (
                    f'{head}{hexdigest}","position":{position}{middle}'
                    f"{quoted(shown)}{tail}{version}}}"
                )
            else:
                event_class, body = stored_body(notification)
                entry = {
                    "position": position,
                    "aggregate_id": key,
                    "aggregate_type": event_class.aggregate_type,
                    "version": version,
                    "type": topic,
                    "recorded_at": recorded_at(body["timestamp"]),
                    "actor": body["actor"],
                    "request_id": body["request_id"],
                    "correlation_id": body["correlation_id"],
                    "summary": stored_summary(event_class, body),
                    "hash": hexdigest,
                }
                rendered = render(entry)
                text = _dump(entry) if rendered is None else rendered
            record((position, key, text))
        docs.record(entries)
        self._advance(docs, notifications[-1].id, raw)


def _any_float(values: Iterable[Any]) -> bool:
    """Whether orjson read a number as a float anywhere in a body.

    It reads an integer beyond 64 bits as one (the standard library keeps it
    an int, which a summary shows in full); a body with a float goes the long
    way. Accord's bodies hold none (amounts are decimal strings).
    """
    kinds = set(map(type, values))
    if float in kinds:
        return True
    if list in kinds or dict in kinds:
        for value in values:
            kind = type(value)
            if kind is list and value and _any_float(value):
                return True
            if kind is dict and value and _any_float(value.values()):
                return True
    return False


@dataclass(frozen=True)
class _Kind:
    """What the trail needs of one event class, looked up once per topic."""

    event_class: type[DomainEvent]
    schema_version: int
    aggregate_type: str
    """As JSON."""
    summary: Callable[[Mapping[str, Any]], str | None]
    """``stored_summary`` of a body as orjson read it; None if it read a float there."""


_kinds: dict[str, _Kind] = {}


def _kind(topic: str) -> _Kind:
    event_class = DomainEvent.for_topic(topic)
    summary: Callable[[Mapping[str, Any]], str | None]
    if _flat(event_class):
        summary = partial(_flat_summary, tuple((n, f"{n}=") for n in _shown_names(event_class)))
    else:
        summary = partial(_nested_summary, event_class)
    kind = _kinds[topic] = _Kind(
        event_class, event_class.schema_version, _quoted(event_class.aggregate_type), summary
    )
    return kind


def _flat_summary(shown: tuple[tuple[str, str], ...], body: Mapping[str, Any]) -> str | None:
    """``stored_summary`` of a flat event's body, or None if a shown value holds a float."""
    parts: list[str] = []
    append = parts.append
    get = body.get
    for name, prefix in shown:
        value = get(name)
        if value is None:
            continue
        kind = type(value)
        if kind is str:
            if value:
                append(prefix + value)
        elif kind is float:
            return None
        elif kind is list or kind is dict:
            if value:
                if _any_float(value if kind is list else value.values()):
                    return None
                append(f"{prefix}{value}")
        else:
            append(f"{prefix}{value}")
    return _joined(parts)


def _nested_summary(event_class: type[DomainEvent], body: Mapping[str, Any]) -> str | None:
    return None if _any_float(body.values()) else stored_summary(event_class, body)


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
    found = list(reader.entries(after=after, group=aggregate_id, limit=limit))
    if not found:
        # A generation built by version 1 (until its rebuild, which starts by itself,
        # switches over) kept its entries as documents of kind "event".
        found = [
            doc
            for _, doc in reader.scan(
                "event", group=aggregate_id, after_key=event_key(after), limit=limit
            )
        ]
    yield from found


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
