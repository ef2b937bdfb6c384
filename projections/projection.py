"""What a read model is: a name, a version, the events it reads, and a fold."""

from __future__ import annotations

from typing import ClassVar, Protocol

from eventsourcing.persistence import Notification

from domain.events import DomainEvent
from projections.store import Docs


class Projection(Protocol):
    name: ClassVar[str]
    """Stable name: the namespace of its documents and its tracking row."""
    version: ClassVar[int]
    """Bumped when the fold changes: a new version is rebuilt beside the old one."""
    topics: ClassVar[frozenset[str] | None]
    """The event topics it reads (None: all of them)."""

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        """Fold one event (at ``notification.id`` in the log) into the documents."""
        ...
