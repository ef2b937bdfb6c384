"""The log as JSON lines for auditors: readable, and verifiable without the database.

Each line carries the event's envelope and payload (personal fields redacted
unless asked for and the exporter holds the master key) *and* the event's
stored body exactly as recorded, with the chain hash at its position. Anyone
can therefore recompute the hash chain from the file alone (`accord verify
--export FILE`) and compare its last hash with a digest taken from the live
system: the export proves itself, and proves the system's history, without
trusting the exporter.

An export is appended to batch by batch and each line is complete before the
next starts; an interrupted export is resumed from its last complete line,
so a long export never has to start over.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from eventsourcing.persistence import Notification

from adapters.grpc.events import EventTranslator
from application.event_log import EventLog
from application.personal_data import is_sealed
from domain.events import DomainEvent
from projections.audit_trail import GENESIS, chain, envelope

Progress = Callable[[int, int], None]
"""Called with (position reached, log head) after each batch."""


@dataclass(frozen=True)
class ExportState:
    position: int
    """The last position written (0: nothing yet)."""
    hash: str
    """The chain hash at ``position`` (64 zeros before the first event)."""
    lines: int


def resume_point(path: Path) -> ExportState:
    """Where an existing export file ends; a torn last line is cut off first."""
    if not path.exists():
        return ExportState(0, GENESIS, 0)
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with path.open("r+b") as torn:
            torn.truncate(len(complete))
    lines = complete.splitlines()
    if not lines:
        return ExportState(0, GENESIS, 0)
    last = json.loads(lines[-1])
    return ExportState(int(last["position"]), str(last["hash"]), len(lines))


def _line(
    translator: EventTranslator, notification: Notification, digest: str, include_pii: bool
) -> str:
    event = translator.decode(notification)
    disclosure = translator.disclosure(show_personal=include_pii)
    record: dict[str, Any] = {
        **envelope(event, notification),
        "payload": json.loads(translator.payload(event, disclosure)),
        "stored": notification.state.decode("utf-8"),
        "hash": digest,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def export(
    log: EventLog,
    out: TextIO,
    start: ExportState,
    *,
    include_pii: bool = False,
    batch_size: int = 2000,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> ExportState:
    """Append the events after ``start`` to ``out`` up to the head; stop between batches."""
    translator = EventTranslator(log.vault)
    position, digest, lines = start.position, start.hash, start.lines
    head = log.recorder.max_notification_id() or 0
    while position < head and not (stop is not None and stop.is_set()):
        notifications = log.recorder.select_notifications(
            start=position + 1, limit=batch_size, stop=head
        )
        if not notifications:
            break
        chunk = []
        for notification in notifications:
            digest = chain(digest, notification)
            chunk.append(_line(translator, notification, digest, include_pii))
            position = notification.id
        out.write("\n".join(chunk) + "\n")
        out.flush()
        lines += len(chunk)
        if progress is not None:
            progress(position, head)
    return ExportState(position, digest, lines)


# ------------------------------------------------------------ verification


@dataclass(frozen=True)
class FileVerification:
    ok: bool
    position: int
    hash: str
    """The hash recomputed from the file's stored bodies at ``position``."""
    first_mismatch_position: int | None
    lines: int


class _Stored:
    """Just what ``chain`` reads from a notification, rebuilt from an export line."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.id = int(record["position"])
        self.originator_id = record["aggregate_id"]
        self.originator_version = int(record["version"])
        self.topic = record["type"]
        self.state = str(record["stored"]).encode("utf-8")


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"line {number} is not JSON") from None
            if not isinstance(record, dict) or not {"position", "stored", "hash"} <= record.keys():
                raise ValueError(f"line {number} is not an Accord export line")
            yield record


def _instant(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _readable_agrees(record: dict[str, Any]) -> bool:
    """The readable fields say what the hashed ``stored`` body says.

    Only ``stored`` (with position, id, version and type) is hashed, so an
    edit to the envelope or payload beside it would otherwise go unseen.
    Sealed personal values are compared by shape only: the file holds them
    redacted, erased or (with --include-pii) revealed, never the ciphertext.
    """
    try:
        stored = json.loads(record["stored"])
        event_class = DomainEvent.for_topic(str(record["type"]))
    except (ValueError, LookupError):
        return False
    stored = event_class.upcast(stored, int(stored.get("_v", 1)))
    if any(record.get(key) != stored.get(key) for key in ENVELOPE):
        return False
    recorded = _instant(record.get("recorded_at"))
    if recorded is None or recorded != _instant(stored.get("timestamp")):
        return False
    payload = record.get("payload")
    if not isinstance(payload, dict):
        return False
    for key, value in payload.items():
        if key not in stored:
            return False
        kept = stored[key]
        agrees = isinstance(value, str) if is_sealed(kept) else value == kept
        if not agrees:
            return False
    return True


ENVELOPE = ("actor", "request_id", "correlation_id")


def verify_export(
    path: Path, *, position: int | None = None, expected_hash: str | None = None
) -> FileVerification:
    """Recompute the chain from the file; every line's hash and the digest (if given) must match.

    Lines must follow one another from the first event: a missing or
    reordered line changes every hash after it, like an edited one. A line
    whose readable fields contradict its stored body is a mismatch too.
    """
    current, at, first_mismatch, count = GENESIS, 0, None, 0
    for record in _records(path):
        if position is not None and int(record["position"]) > position:
            break
        count += 1
        current = chain(current, _Stored(record))
        at = int(record["position"])
        if first_mismatch is None and (record["hash"] != current or not _readable_agrees(record)):
            first_mismatch = at
    ok = first_mismatch is None
    if position is not None:
        ok = ok and at == position
    if expected_hash is not None:
        ok = ok and current == expected_hash
        if first_mismatch is None and current != expected_hash:
            first_mismatch = at
    return FileVerification(ok, at, current, None if ok else first_mismatch, count)
