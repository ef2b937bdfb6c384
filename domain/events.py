"""The shape every Accord event shares.

Events are frozen pydantic models: pure data, validated on construction, with
an explicit, stable ``topic`` that names them in the log forever (never a
module path, so code can move without rewriting history). ``schema_version``
counts changes of an event's shape; upcasters registered on the class turn
an old stored body into the current shape when it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class AggregateType(Protocol):
    """How an aggregate class is built from its creation event."""

    @classmethod
    def created(cls, event: DomainEvent) -> Any: ...


AGGREGATE_TYPES: dict[str, type[AggregateType]] = {}
"""Aggregate classes by their stable type name (filled as they are defined)."""


class DomainEvent(BaseModel):
    """Base of every recorded fact.

    ``timestamp`` is the recorded time (when Accord learned the fact); business
    times (``occurred_at``, ``effective_from``, ``expressed_at``) are fields of
    the events they belong to.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    topic: ClassVar[str]
    schema_version: ClassVar[int] = 1
    upcasters: ClassVar[dict[int, Upcaster]] = {}
    registry: ClassVar[dict[str, type[DomainEvent]]] = {}
    aggregate_type: ClassVar[str]
    creates_aggregate: ClassVar[bool] = False

    originator_id: UUID
    originator_version: int = Field(ge=1)
    timestamp: datetime
    actor: str = Field(min_length=1)
    request_id: str = Field(min_length=1)
    correlation_id: str = Field(min_length=1)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        topic = cls.__dict__.get("topic")
        if topic is None:
            return  # an intermediate base class, not a recorded event
        if topic in DomainEvent.registry and DomainEvent.registry[topic] is not cls:
            raise TypeError(f"event topic {topic!r} is already taken")
        DomainEvent.registry[topic] = cls

    @classmethod
    def upcast(cls, body: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Bring a stored body from ``from_version`` to the current schema."""
        version = from_version
        while version < cls.schema_version:
            body = cls.upcasters[version](dict(body))
            version += 1
        return body

    @classmethod
    def for_topic(cls, topic: str) -> type[DomainEvent]:
        try:
            return DomainEvent.registry[topic]
        except KeyError:
            raise LookupError(f"no event is registered for topic {topic!r}") from None

    def mutate(self, aggregate: Any) -> Any:
        """Apply this event: the hook the event store's projector calls.

        The logic lives on the aggregate (``apply``); the event only routes.
        """
        if aggregate is None:
            return AGGREGATE_TYPES[self.aggregate_type].created(self)
        aggregate.apply(self)
        return aggregate

    def body(self) -> dict[str, Any]:
        """The business fields, without the envelope the store keeps apart."""
        return self.model_dump(mode="json", exclude={"originator_id", "originator_version"})
