"""The project-owned mapper: events <-> stored JSON with stable topics.

The stored body is canonical JSON (sorted keys, no whitespace) so that the
bytes hashed by the audit chain are a deterministic function of the event.
Every body carries its schema version; reading an older one runs the event
class's upcasters, so history is never rewritten to follow the code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent, Transcoder

from application.canonical import canonical_json, may_hold_floats
from application.personal_data import PersonalDataVault, is_sealed, sealed_reference
from domain.events import DomainEvent
from domain.personal import ERASED, personal_fields
from domain.snapshot import Snapshot

SCHEMA_KEY = "_v"
STALE_STATE = -1


@cache
def _personal_fields(event_class: type[DomainEvent]) -> frozenset[str]:
    return personal_fields(event_class)


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


class _UnusedTranscoder(Transcoder):
    """The library's mapper wants a transcoder; ours encodes with pydantic."""

    def encode(self, obj: Any) -> bytes:
        return canonical_json(obj)

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


class EventMapper(Mapper[UUID]):
    """Also seals personal fields (and customer snapshots) through the vault.

    Only fields the domain marks ``Personal`` are sealed, so the rest of a body
    stays readable to auditors and projections even after erasure.
    """

    def __init__(self, vault: PersonalDataVault | None = None, *, references: bool = False) -> None:
        super().__init__(transcoder=_UnusedTranscoder())
        self.vault = vault
        self.references = references
        """Decode personal fields to sealed references instead of opening them (read models)."""
        self.decoded = 0
        """How many stored events this mapper has decoded (loading cost, observable)."""

    def _require_vault(self) -> PersonalDataVault:
        if self.vault is None:
            raise RuntimeError("personal data cannot be stored without a master key")
        return self.vault

    def prefetch_keys(self, events: Iterable[object]) -> None:
        """Have at hand the data keys sealing ``events`` may need, in one read, not one each.

        A bulk save seals for many customers; a key not cached (or expired: the
        cache holds a key for seconds) would otherwise be read on its own, one
        round trip per customer, while the save holds the customers' locks.
        """
        if self.vault is None:
            return
        wanted = {
            e.originator_id
            for e in events
            if isinstance(e, DomainEvent) and _personal_fields(type(e))
        }
        if len(wanted) > 1:
            self.vault.prefetch(wanted)

    def _seal_body(self, event: DomainEvent | Snapshot, body: dict[str, Any]) -> None:
        if isinstance(event, Snapshot):
            if event.aggregate_type == "customer" and not event.state.get("erased"):
                context = f"{Snapshot.topic}|{event.originator_version}"
                body["state"] = self._require_vault().seal(
                    event.originator_id, context, canonical_json(body["state"]).decode()
                )
            return
        for field in _personal_fields(type(event)):
            value = body.get(field)
            if isinstance(value, str) and value and value != ERASED:
                context = f"{event.topic}|{field}"
                body[field] = self._require_vault().seal(event.originator_id, context, value)

    def _open_body(
        self, topic: str, originator_id: UUID, version: int, body: dict[str, Any]
    ) -> None:
        if topic == Snapshot.topic:
            if is_sealed(body.get("state")):
                opened = self._require_vault().open(
                    originator_id, f"{topic}|{version}", body["state"]
                )
                if opened == ERASED:  # sealed under a destroyed key: unusable, replay instead
                    body["state"], body["state_version"] = {}, STALE_STATE
                else:
                    body["state"] = json.loads(opened)
            return
        for field in _personal_fields(DomainEvent.for_topic(topic)):
            if is_sealed(body.get(field)):
                context = f"{topic}|{field}"
                if self.references:
                    body[field] = sealed_reference(originator_id, context, body[field])
                else:
                    body[field] = self._require_vault().open(originator_id, context, body[field])

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if not isinstance(domain_event, (DomainEvent, Snapshot)):
            raise TypeError(f"not an Accord event: {type(domain_event).__name__}")
        body = domain_event.model_dump(mode="json", exclude={"originator_id", "originator_version"})
        self._seal_body(domain_event, body)
        body[SCHEMA_KEY] = domain_event.schema_version
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=domain_event.topic,
            state=canonical_json(body, floats=may_hold_floats(type(domain_event))),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        self.decoded += 1
        try:
            body: dict[str, Any] = json.loads(stored_event.state)
            from_version = body.pop(SCHEMA_KEY, 1)
            self._open_body(
                stored_event.topic,
                _uuid(stored_event.originator_id),
                stored_event.originator_version,
                body,
            )
            if stored_event.topic == Snapshot.topic:
                return Snapshot.model_validate(
                    {
                        **body,
                        "originator_id": stored_event.originator_id,
                        "originator_version": stored_event.originator_version,
                    }
                )
            event_class = DomainEvent.for_topic(stored_event.topic)
            body = event_class.upcast(body, from_version)
            return event_class.model_validate(
                {
                    **body,
                    "originator_id": stored_event.originator_id,
                    "originator_version": stored_event.originator_version,
                }
            )
        except (ValueError, LookupError, KeyError) as error:
            raise MapperDeserialisationError(
                f"cannot decode {stored_event.topic!r} "
                f"{stored_event.originator_id} v{stored_event.originator_version}: {error}"
            ) from error
