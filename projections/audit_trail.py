"""The audit trail (DESIGN §5, §6): every event in log order, and a hash chain over the log.

h(n) = sha256(h(n-1) || canonical bytes of event n as stored), where the
canonical bytes are its position, aggregate id, version and topic, then the
stored body exactly as recorded (personal fields sealed). Erasure destroys a
key, never a stored byte, so it cannot break the chain; editing any stored
row does, and ``verify`` names the first position that no longer matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from eventsourcing.persistence import ApplicationRecorder, Notification

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


def summary(event: DomainEvent) -> str:
    """The event's business fields without its personal ones, for humans scanning the trail."""
    hidden = personal_fields(type(event)) | {"timestamp", "actor", "request_id", "correlation_id"}
    body = event.model_dump(mode="json", exclude={"originator_id", "originator_version", *hidden})
    parts = [f"{k}={v}" for k, v in sorted(body.items()) if v not in (None, "", [], {})]
    text = " ".join(parts)
    return text if len(text) <= 500 else text[:497] + "..."


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
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    topics: ClassVar[frozenset[str] | None] = None

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        head = docs.get(*HEAD) or {"position": 0, "hash": GENESIS}
        digest = chain(head["hash"], notification)
        docs.put(
            "event",
            event_key(notification.id),
            {**envelope(event, notification), "summary": summary(event), "hash": digest},
            group=str(event.originator_id),
        )
        docs.put(*HEAD, {"position": notification.id, "hash": digest})


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
