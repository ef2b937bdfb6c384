"""What a command writes beside its events, in the same transaction.

The store adapter writes a ``RequestRecord`` (idempotency), any ``Claim``
(unique business keys), checks any ``VersionGuard`` (the other aggregates the
decision relied on are still at the versions read) and destroys any data key
named for erasure, all atomically with the events: "the events are recorded"
and "this request id is used" can never disagree, even across crashes and
concurrent retries. This module holds the port the adapters implement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from pydantic import BaseModel

from application.canonical import canonical_json, may_hold_floats


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    fingerprint: str
    aggregate_id: UUID
    version: int
    entity_id: UUID | None


@dataclass(frozen=True)
class Claim:
    """A unique business key (e.g. a customer's external reference) held by an aggregate."""

    scope: str
    key: str
    aggregate_id: UUID


@dataclass(frozen=True)
class VersionGuard:
    """The decision read this aggregate at this version; if it moved on, the save conflicts."""

    aggregate_id: UUID
    version: int


@dataclass(frozen=True)
class StoredRequest:
    record: RequestRecord
    position: int


@dataclass(frozen=True)
class CurrentRead:
    """What one read of the log found: see ``RequestJournal.read_current``."""

    newer: dict[UUID, list[StoredEvent]]
    """Per aggregate asked about, its events after the version given, in order."""
    positions: dict[int, int]
    """Position of each version asked for that is recorded."""
    head: int
    """The log's last position, read first: everything up to it is in ``newer``."""


@runtime_checkable
class RequestJournal(Protocol):
    def find_request(self, request_id: str) -> StoredRequest | None: ...

    def find_requests(self, request_ids: Sequence[str]) -> dict[str, StoredRequest]:
        """Those of ``request_ids`` already recorded (one query, for a batch of commands)."""
        ...

    def find_claim(self, scope: str, key: str) -> UUID | None: ...

    def positions(self, aggregate_id: UUID) -> dict[int, int]:
        """Log position of each version of an aggregate."""
        ...

    def read_current(
        self, after: Sequence[tuple[UUID, int]], positions_of: UUID, versions: Sequence[int]
    ) -> CurrentRead:
        """In one read (one round trip on a server): the log's head, each aggregate's
        events after the version given, and the positions of ``versions`` of
        ``positions_of``. What a read of cached aggregates needs, without a round
        trip per question."""
        ...


def fingerprint(command: BaseModel, actor: str) -> str:
    """What makes two requests "the same": the payload and who sent it."""
    payload = command.model_dump(mode="json", exclude={"request_id"})
    encoded = canonical_json(
        {"actor": actor, "command": payload}, floats=may_hold_floats(type(command))
    )
    return hashlib.sha256(encoded).hexdigest()
