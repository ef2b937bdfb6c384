"""An in-memory ``Docs`` for unit tests of a projection's fold and queries (no store involved).

Integration tests run the same projections through the runner on SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence

from eventsourcing.persistence import Notification

from domain.aggregate import Aggregate
from domain.events import DomainEvent
from projections.projection import Projection
from projections.store import ENTRY_KIND, Doc, Entry, entry_key


class MemoryDocs:
    def __init__(self, position: int = 0) -> None:
        self.docs: dict[tuple[str, str], tuple[str | None, Doc]] = {}
        self.log: dict[int, tuple[str | None, Doc]] = {}
        """The entries recorded, by position."""
        self._position = position

    @property
    def position(self) -> int:
        return self._position

    def get(self, kind: str, key: str) -> Doc | None:
        found = self.docs.get((kind, key))
        return copy.deepcopy(found[1]) if found else None

    def put(self, kind: str, key: str, doc: Doc, *, group: str | None = None) -> None:
        self.docs[(kind, key)] = (group, copy.deepcopy(doc))

    def dumped(self) -> dict[tuple[str, str], tuple[str | None, Doc]]:
        """Documents and entries as ``ViewStore.dump`` lists them."""
        return {**self.docs, **{(ENTRY_KIND, entry_key(p)): e for p, e in self.log.items()}}

    def record(self, entries: Sequence[Entry]) -> None:
        for position, group, text in entries:
            assert position not in self.log, f"the entry at {position} was recorded twice"
            self.log[position] = (group, json.loads(text))

    def entries(
        self, *, after: int = 0, group: str | None = None, limit: int | None = None
    ) -> Iterator[Doc]:
        positions = sorted(
            p for p, (g, _) in self.log.items() if p > after and (group is None or g == group)
        )
        for position in positions[:limit] if limit is not None else positions:
            yield copy.deepcopy(self.log[position][1])

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
