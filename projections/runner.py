"""Keeping read models up to date: catch up, follow, rebuild beside the serving copy.

Each read model has an active *generation*. The runner applies events in
batches; each batch's document changes and the new tracking position are
committed together, and only if the tracking position is still the one the
batch started from, so a crash loses nothing and a second worker can never
apply a batch twice. A rebuild fills the next generation from position 0
while the active one keeps serving, and switches over in the transaction
that brings it level with the log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import structlog
from eventsourcing.persistence import Notification

from application.event_log import EventLog
from application.mapper import EventMapper
from domain.events import DomainEvent
from projections.projection import Projection
from projections.store import Doc, DocReader, ViewStore

logger = structlog.get_logger(__name__)

DEFAULT_BATCH = 500


class UnitOfWork:
    """The ``Docs`` a batch folds into: reads see the batch's own writes."""

    def __init__(self, views: ViewStore, name: str, generation: int, position: int) -> None:
        self.views = views
        self.name = name
        self.generation = generation
        self._position = position
        self._docs: dict[tuple[str, str], tuple[str | None, Doc | None]] = {}
        self._loaded: set[tuple[str, str]] = set()

    @property
    def position(self) -> int:
        return self._position

    def get(self, kind: str, key: str) -> Doc | None:
        slot = (kind, key)
        if slot not in self._docs:
            doc = self.views.load(self.name, self.generation, kind, key)
            self._docs[slot] = (None, doc)
            self._loaded.add(slot)
        return self._docs[slot][1]

    def put(self, kind: str, key: str, doc: Doc, *, group: str | None = None) -> None:
        self._docs[(kind, key)] = (group, doc)
        self._loaded.discard((kind, key))

    def delete(self, kind: str, key: str) -> None:
        self._docs[(kind, key)] = (None, None)
        self._loaded.discard((kind, key))

    def scan(
        self,
        kind: str,
        *,
        group: str | None = None,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[str, Doc]]:
        stored = dict(
            self.views.scan(
                self.name, self.generation, kind, group=group, after_key=after_key, limit=None
            )
        )
        for (k, key), (g, doc) in self._docs.items():
            if k != kind or (k, key) in self._loaded:
                continue
            if doc is None or (group is not None and g != group):
                stored.pop(key, None)
            elif after_key is None or key > after_key:
                stored[key] = doc
        keys = sorted(stored)
        yield from ((key, stored[key]) for key in (keys[:limit] if limit is not None else keys))

    def changes(self) -> list[tuple[str, str, str | None, Doc | None]]:
        return [
            (kind, key, group, doc)
            for (kind, key), (group, doc) in self._docs.items()
            if (kind, key) not in self._loaded
        ]


@dataclass
class Progress:
    """Observable progress of a long catch-up or rebuild."""

    name: str
    position: int = 0
    head: int = 0
    events: int = 0
    started: float = field(default_factory=time.monotonic)


class ProjectionRunner:
    def __init__(
        self,
        log: EventLog,
        views: ViewStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.log = log
        self.views = views
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        # Personal fields come through as sealed references: views never hold plaintext.
        self.mapper = EventMapper(log.vault, references=True)
        self.changed = threading.Condition()

    # ------------------------------------------------------------ generations

    def ensure_started(self, projection: Projection) -> tuple[int, int]:
        """The active (generation, version); the first build starts generation 1."""
        state = self.views.state(projection.name)
        if state is None:
            self.views.start(projection.name, 1)
            self.views.set_active(projection.name, 1, projection.version)
            state = (1, projection.version)
        return state

    def active_position(self, name: str) -> int:
        state = self.views.state(name)
        if state is None:
            return 0
        return self.views.position(name, state[0]) or 0

    # --------------------------------------------------------------- batches

    def _decode(self, notification: Notification) -> DomainEvent:
        event = self.mapper.to_domain_event(notification)
        assert isinstance(event, DomainEvent)
        return event

    def apply_batch(
        self,
        projection: Projection,
        generation: int,
        position: int,
        notifications: Sequence[Notification],
        decoded: dict[int, DomainEvent],
        *,
        activate_version: int | None = None,
    ) -> bool:
        unit = UnitOfWork(self.views, projection.name, generation, position)
        for notification in notifications:
            if projection.topics is not None and notification.topic not in projection.topics:
                continue
            event = decoded.get(notification.id)
            if event is None:
                event = decoded[notification.id] = self._decode(notification)
            projection.apply(event, notification, unit)
        last = notifications[-1].id if notifications else position
        return self.views.commit(
            projection.name,
            generation,
            position,
            last,
            unit.changes(),
            activate_version=activate_version,
        )

    def step(self, names: Iterable[str] | None = None) -> int:
        """Apply one batch to every (named) active read model that is behind; events applied."""
        chosen = self.projections if names is None else {n: self.projections[n] for n in names}
        positions: dict[int, list[tuple[Projection, int]]] = {}
        for projection in chosen.values():
            generation, _ = self.ensure_started(projection)
            position = self.views.position(projection.name, generation) or 0
            positions.setdefault(position, []).append((projection, generation))
        applied = 0
        for position, group in sorted(positions.items()):
            notifications = self.log.recorder.select_notifications(
                start=position, limit=self.batch_size, inclusive_of_start=False
            )
            if not notifications:
                continue
            decoded: dict[int, DomainEvent] = {}
            for projection, generation in group:
                if self.apply_batch(projection, generation, position, notifications, decoded):
                    applied += len(notifications)
        if applied:
            with self.changed:
                self.changed.notify_all()
        return applied

    def catch_up(self) -> int:
        total = 0
        while applied := self.step():
            total += applied
        return total

    # --------------------------------------------------------------- rebuild

    def rebuild(
        self,
        name: str,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> int | None:
        """Build the next generation from position 0, then make it the active one.

        The active generation keeps serving (and following) throughout; the
        switch happens in the same transaction as the batch that reaches the
        head of the log. A rebuild interrupted part way (``stop`` set: it
        returns None after the batch in hand) resumes where it stopped when run
        again.
        """
        projection = self.projections[name]
        active, _ = self.ensure_started(projection)
        target = active + 1
        position = self.views.position(name, target)
        if position is None:
            self.views.start(name, target)
            position = 0
        progress = progress or Progress(name)
        while True:
            if stop is not None and stop.is_set():
                logger.info("projection_rebuild_paused", projection=name, position=position)
                return None
            head = self.log.recorder.max_notification_id() or 0
            progress.head, progress.position = head, position
            notifications = self.log.recorder.select_notifications(
                start=position, limit=self.batch_size, inclusive_of_start=False
            )
            reaches_head = not notifications or notifications[-1].id >= head
            committed = self.apply_batch(
                projection,
                target,
                position,
                notifications,
                {},
                activate_version=projection.version if reaches_head else None,
            )
            if not committed:
                raise RuntimeError(f"another worker is rebuilding {name}")
            progress.events += len(notifications)
            position = notifications[-1].id if notifications else position
            progress.position = position
            if reaches_head:
                break
        self.views.drop(name, active)
        logger.info("projection_rebuilt", projection=name, generation=target, position=position)
        return target

    def rebuild_outdated(self, names: Iterable[str] | None = None) -> list[str]:
        """Rebuild every (named) read model whose code version differs from its active copy."""
        rebuilt = []
        chosen = self.projections if names is None else {n: self.projections[n] for n in names}
        for projection in chosen.values():
            _, version = self.ensure_started(projection)
            if version != projection.version:
                self.rebuild(projection.name)
                rebuilt.append(projection.name)
        return rebuilt

    # ---------------------------------------------------------------- reading

    def reader(self, name: str) -> AbstractContextManager[DocReader]:
        projection = self.projections[name]
        generation, _ = self.ensure_started(projection)
        return self.views.reader(name, generation)

    def wait_for(self, name: str, position: int, timeout: float) -> bool:
        """Wait (bounded) until ``name`` has applied ``position``; False on time-out."""
        deadline = time.monotonic() + timeout
        while self.active_position(name) < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self.changed:
                self.changed.wait(timeout=min(remaining, 0.05))
        return True

    # -------------------------------------------------------------- following

    def follow(
        self,
        stop: threading.Event,
        *,
        idle_wait: float = 1.0,
        names: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        """Apply new events as they are recorded, until ``stop`` is set.

        ``names`` says, each time round, which read models this worker may
        advance (those whose lock it holds); by default all of them.
        """
        outdated_checked = False
        while not stop.is_set():
            try:
                # Inside the loop: a store that is down when the worker starts must not
                # end the worker before it ever follows (it retries like any step).
                if not outdated_checked:
                    self.rebuild_outdated(names() if names is not None else None)
                    outdated_checked = True
                if self.step(names() if names is not None else None):
                    continue
            except Exception:  # keep following: the next batch retries from the tracked position
                logger.exception("projection_step_failed")
                stop.wait(1.0)
                continue
            self.views.wait_for_events(idle_wait)
