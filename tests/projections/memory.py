"""An in-memory ``Docs`` for unit tests of a projection's fold and queries (no store involved).

Integration tests run the same projections through the runner on SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

from eventsourcing.persistence import Notification

from domain.aggregate import Aggregate
from domain.events import DomainEvent
from projections.projection import Projection
from projections.store import Doc


class MemoryDocs:
    def __init__(self, position: int = 0) -> None:
        self.docs: dict[tuple[str, str], tuple[str | None, Doc]] = {}
        self._position = position

    @property
    def position(self) -> int:
        return self._position

    def get(self, kind: str, key: str) -> Doc | None:
        found = self.docs.get((kind, key))
        return copy.deepcopy(found[1]) if found else None

    def put(self, kind: str, key: str, doc: Doc, *, group: str | None = None) -> None:
        self.docs[(kind, key)] = (group, copy.deepcopy(doc))

    def append(
        self, kind: str, key: str, doc: Doc, *, group: str | None = None, text: str | None = None
    ) -> None:
        assert (kind, key) not in self.docs, f"{kind} {key} was appended twice"
        assert text is None or json.loads(text) == doc, "the text is not the document"
        self.put(kind, key, doc, group=group)

    def delete(self, kind: str, key: str) -> None:
        self.docs.pop((kind, key), None)

    def scan(
        self,
        kind: str,
        *,
        group: str | None = None,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[str, Doc]]:
        keys = sorted(
            key
            for (k, key), (g, _) in self.docs.items()
            if k == kind
            and (group is None or g == group)
            and (after_key is None or key > after_key)
        )
        for key in keys[:limit] if limit is not None else keys:
            yield key, copy.deepcopy(self.docs[(kind, key)][1])


class FoldedLog:
    """A log in miniature: events get consecutive positions and one read model folds them."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.docs = MemoryDocs()
        self.position = 0

    def append(self, event: DomainEvent) -> int:
        self.position += 1
        topics = self.projection.topics
        if topics is None or event.topic in topics:
            notification = Notification(
                originator_id=event.originator_id,
                originator_version=event.originator_version,
                topic=event.topic,
                state=b"",
                id=self.position,
            )
            self.projection.apply(event, notification, self.docs)
        return self.position

    def feed(self, *aggregates: Aggregate) -> int:
        """Record what the aggregates decided; the position of the last event."""
        for aggregate in aggregates:
            for event in aggregate.collect_events():
                self.append(event)
        return self.position
