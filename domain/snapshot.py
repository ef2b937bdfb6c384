"""Aggregate snapshots: the state at a version, so loading skips old events.

A snapshot is not a fact of the business; it is a cache kept beside the log.
It records the aggregate's ``state_version`` so that a snapshot taken before
the aggregate's shape changed is upcast (or ignored) rather than misread.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from domain.aggregate import Aggregate
from domain.events import AGGREGATE_TYPES

StateUpcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Snapshot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: ClassVar[str] = "accord.snapshot"
    schema_version: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    aggregate_type: str
    state_version: int
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Aggregate, taken_at: datetime) -> Snapshot:
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=taken_at,
            aggregate_type=aggregate.type_name,
            state_version=aggregate.state_version,
            state=aggregate.state(),
        )

    def mutate(self, _: None) -> Aggregate:
        """Rebuild the aggregate (the hook the event store's projector calls)."""
        aggregate_class = AGGREGATE_TYPES[self.aggregate_type]
        assert issubclass(aggregate_class, Aggregate)
        if self.state_version != aggregate_class.state_version:
            raise StaleSnapshotError(self.aggregate_type, self.state_version)
        return aggregate_class.model_validate(self.state)


class StaleSnapshotError(Exception):
    """A snapshot of an older aggregate shape; the repository replays events instead."""

    def __init__(self, aggregate_type: str, state_version: int) -> None:
        super().__init__(f"snapshot of {aggregate_type} state v{state_version} is stale")
