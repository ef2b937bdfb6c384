"""The project-owned mapper: events <-> stored JSON with stable topics.

The stored body is canonical JSON (sorted keys, no whitespace) so that the
bytes hashed by the audit chain are a deterministic function of the event.
Every body carries its schema version; reading an older one runs the event
class's upcasters, so history is never rewritten to follow the code.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent, Transcoder

from domain.events import DomainEvent
from domain.snapshot import Snapshot

SCHEMA_KEY = "_v"


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


class _UnusedTranscoder(Transcoder):
    """The library's mapper wants a transcoder; ours encodes with pydantic."""

    def encode(self, obj: Any) -> bytes:
        return canonical_json(obj)

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


class EventMapper(Mapper[UUID]):
    def __init__(self) -> None:
        super().__init__(transcoder=_UnusedTranscoder())
        self.decoded = 0
        """How many stored events this mapper has decoded (loading cost, observable)."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if not isinstance(domain_event, (DomainEvent, Snapshot)):
            raise TypeError(f"not an Accord event: {type(domain_event).__name__}")
        body = domain_event.model_dump(mode="json", exclude={"originator_id", "originator_version"})
        body[SCHEMA_KEY] = domain_event.schema_version
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=domain_event.topic,
            state=canonical_json(body),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        self.decoded += 1
        try:
            body: dict[str, Any] = json.loads(stored_event.state)
            from_version = body.pop(SCHEMA_KEY, 1)
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
