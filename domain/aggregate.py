"""The aggregate base: state as a pydantic model, changed only by events.

An aggregate method checks an invariant and, if it holds, *triggers* an event;
``apply`` is the only place state changes, and it is the same code whether the
event was just decided or is replayed from the log years later. Because the
state is a pydantic model, a snapshot is simply its JSON dump.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Self, TypeVar, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict, PrivateAttr

from domain.events import AGGREGATE_TYPES, DomainEvent

E = TypeVar("E", bound=DomainEvent)
A = TypeVar("A", bound="Aggregate")


class EventMeta(BaseModel):
    """Who asked, under which keys, and when the fact is recorded.

    Passed into every command method, so the domain never reads a clock.
    """

    model_config = ConfigDict(frozen=True)

    actor: str
    request_id: str
    correlation_id: str
    recorded_at: datetime


def applies(event_type: type[E]) -> Callable[[Callable[[A, E], None]], Callable[[A, E], None]]:
    """Mark an aggregate method as the state change for ``event_type``."""

    def mark(method: Callable[[A, E], None]) -> Callable[[A, E], None]:
        method.__applies__ = event_type  # type: ignore[attr-defined]
        return method

    return mark


class Aggregate(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    type_name: ClassVar[str]
    state_version: ClassVar[int] = 1
    _handlers: ClassVar[dict[type[DomainEvent], Callable[[Any, Any], None]]]

    id: UUID
    version: int
    created_on: datetime
    modified_on: datetime

    _pending: list[DomainEvent] = PrivateAttr(default_factory=list)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        handlers: dict[type[DomainEvent], Callable[[Any, Any], None]] = {}
        for klass in reversed(cls.__mro__):
            for member in vars(klass).values():
                event_type = getattr(member, "__applies__", None)
                if event_type is not None:
                    handlers[event_type] = member
        cls._handlers = handlers
        if "type_name" in cls.__dict__:
            AGGREGATE_TYPES[cls.type_name] = cls

    @classmethod
    def created(cls, event: DomainEvent) -> Self:
        """Build the aggregate from its creation event (replay and decision alike)."""
        handler = cls._handlers[type(event)]
        fields: dict[str, Any] = {
            "id": event.originator_id,
            "version": event.originator_version,
            "created_on": event.timestamp,
            "modified_on": event.timestamp,
        }
        aggregate = cast(Self, cls.model_construct(**fields))
        handler(aggregate, event)
        return aggregate

    def apply(self, event: DomainEvent) -> None:
        if event.originator_id != self.id or event.originator_version != self.version + 1:
            raise ValueError(
                f"event {event.topic} v{event.originator_version} does not follow "
                f"{self.type_name} {self.id} v{self.version}"
            )
        self._handlers[type(event)](self, event)
        self.version = event.originator_version
        self.modified_on = event.timestamp

    @classmethod
    def _create(
        cls, event_type: type[E], aggregate_id: UUID, meta: EventMeta, **fields: Any
    ) -> Self:
        event = event_type(
            originator_id=aggregate_id,
            originator_version=1,
            timestamp=meta.recorded_at,
            actor=meta.actor,
            request_id=meta.request_id,
            correlation_id=meta.correlation_id,
            **fields,
        )
        aggregate = cls.created(event)
        aggregate._pending.append(event)
        return aggregate

    def _trigger(self, event_type: type[E], meta: EventMeta, **fields: Any) -> E:
        event = event_type(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=meta.recorded_at,
            actor=meta.actor,
            request_id=meta.request_id,
            correlation_id=meta.correlation_id,
            **fields,
        )
        self.apply(event)
        self._pending.append(event)
        return event

    @property
    def pending_events(self) -> Sequence[DomainEvent]:
        return tuple(self._pending)

    def collect_events(self) -> Sequence[DomainEvent]:
        """Hand over (and forget) the events decided since the last save."""
        events, self._pending = self._pending, []
        return events

    def state(self) -> dict[str, Any]:
        """The aggregate's state as JSON-ready data (what a snapshot stores)."""
        return self.model_dump(mode="json")
