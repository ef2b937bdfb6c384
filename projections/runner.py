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
from itertools import islice
from typing import Any

import structlog
from eventsourcing.persistence import Notification

from application.event_log import EventLog
from application.mapper import EventMapper
from application.stored_bodies import BodyPlan, body_plan, canonical_originator
from domain.events import DomainEvent
from projections.projection import BodyProjection, Projection, StoredProjection
from projections.store import Append, Change, Commit, Doc, DocReader, Docs, ViewStore

logger = structlog.get_logger(__name__)

StoredApply = Callable[[Notification, Docs], None]
DecodedApply = Callable[[DomainEvent, Notification, Docs], None]
BodyApply = Callable[[dict[str, Any], str, Notification, Docs], None]
Body = tuple[dict[str, Any], str]
"""A stored body vouched for, and its aggregate's id as the model writes it."""

DEFAULT_BATCH = 500
RECENT_DOCS = 4096
"""Documents each read model keeps from its last batches (bounds the memory they take)."""


class Recent:
    """The documents one read model's last batches left, as committed at ``position``.

    A read model whose next batch starts where its last one ended finds the
    documents it keeps touching (a busy customer's) here instead of loading
    them again, one query each. A batch starting anywhere else (another
    worker moved the read model in between) ignores them: the documents at a
    log position are a function of the log, so a copy taken at the position a
    batch starts from is what the store holds. The copy is dropped whenever a
    batch fails or does not commit (its fold may have changed it in place).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.position = -1
        self.docs: dict[tuple[str, str], Doc | None] = {}

    def keep(
        self, position: int, docs: dict[tuple[str, str], tuple[str | None, Doc | None]]
    ) -> None:
        """After a commit at ``position``: remember the batch's documents, newest last."""
        kept = self.docs
        for slot, (_, doc) in docs.items():
            kept.pop(slot, None)
            kept[slot] = doc
        for slot in list(islice(kept, max(len(kept) - self.capacity, 0))):
            del kept[slot]
        self.position = position

    def clear(self) -> None:
        self.docs.clear()
        self.position = -1


class UnitOfWork:
    """The ``Docs`` a batch folds into: reads see the batch's own writes."""

    def __init__(
        self,
        views: ViewStore,
        name: str,
        generation: int,
        position: int,
        recent: Recent | None = None,
    ) -> None:
        self.views = views
        self.name = name
        self.generation = generation
        self._position = position
        self._docs: dict[tuple[str, str], tuple[str | None, Doc | None]] = {}
        self._loaded: set[tuple[str, str]] = set()
        self._appended: dict[tuple[str, str], str | None] = {}
        self._recent = recent.docs if recent is not None and recent.position == position else {}

    @property
    def position(self) -> int:
        return self._position

    def get(self, kind: str, key: str) -> Doc | None:
        slot = (kind, key)
        found = self._docs.get(slot)
        if found is not None:
            return found[1]
        if slot in self._recent:
            doc = self._recent[slot]
        else:
            doc = self.views.load(self.name, self.generation, kind, key)
        self._docs[slot] = (None, doc)
        self._loaded.add(slot)
        return doc

    def kept(self) -> dict[tuple[str, str], tuple[str | None, Doc | None]]:
        """What a successful commit leaves for the next batch (not the appended documents)."""
        appended = self._appended
        return {slot: entry for slot, entry in self._docs.items() if slot not in appended}

    def put(self, kind: str, key: str, doc: Doc, *, group: str | None = None) -> None:
        slot = (kind, key)
        self._docs[slot] = (group, doc)
        self._loaded.discard(slot)
        if slot in self._appended:
            self._appended[slot] = None  # still new to the store, but the text is stale

    def append(
        self, kind: str, key: str, doc: Doc, *, group: str | None = None, text: str | None = None
    ) -> None:
        slot = (kind, key)
        self._docs[slot] = (group, doc)
        self._appended[slot] = text

    def delete(self, kind: str, key: str) -> None:
        slot = (kind, key)
        self._docs[slot] = (None, None)
        self._loaded.discard(slot)
        self._appended.pop(slot, None)

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

    def changes(self) -> list[Change]:
        """Documents to upsert or delete (appended ones are in ``appends``)."""
        skip = self._loaded | self._appended.keys()
        return [
            (kind, key, group, doc)
            for (kind, key), (group, doc) in self._docs.items()
            if (kind, key) not in skip
        ]

    def appends(self) -> list[Append]:
        """Documents no earlier batch wrote: the store inserts them in bulk."""
        docs = self._docs
        out: list[Append] = []
        for slot, text in self._appended.items():
            group, doc = docs[slot]
            if doc is not None:
                out.append((slot[0], slot[1], group, doc, text))
        return out


@dataclass
class Progress:
    """Observable progress of a long catch-up or rebuild."""

    name: str
    position: int = 0
    head: int = 0
    events: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class Lane:
    """One generation of one read model moving through the log with the others."""

    projection: Projection
    generation: int
    position: int
    activate_version: int | None = None
    """Set while rebuilding: the batch that reaches the head makes it the active one."""
    replaces: int | None = None
    """The generation it replaces (dropped once it is active)."""
    unit: UnitOfWork | None = None
    """The batch in hand."""


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
        self._recent: dict[tuple[str, int], Recent] = {}
        self._recent_lock = threading.Lock()

    def _recent_for(self, lane: Lane) -> Recent:
        with self._recent_lock:
            key = (lane.projection.name, lane.generation)
            recent = self._recent.get(key)
            if recent is None:
                recent = self._recent[key] = Recent(RECENT_DOCS)
            return recent

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

    def _decoded(
        self, lanes: Sequence[Lane], notifications: Sequence[Notification]
    ) -> tuple[list[DomainEvent | None], list[Body | None]]:
        """The batch's events, each read once if any read model here needs it.

        An event every such read model can fold from its stored body (see
        ``BodyProjection``) is read as stored when the body is vouched for,
        and decoded otherwise (an older schema version, a value in another
        form): the one path the follower and a rebuild both take.
        """
        readers = [
            lane.projection for lane in lanes if not isinstance(lane.projection, StoredProjection)
        ]
        ways: dict[str, tuple[bool, BodyPlan | None]] = {}
        decode = self._decode
        events: list[DomainEvent | None] = []
        bodies: list[Body | None] = []
        for notification in notifications:
            topic = notification.topic
            way = ways.get(topic)
            if way is None:
                way = ways[topic] = self._way(topic, readers)
            needed, plan = way
            if not needed:
                events.append(None)
                bodies.append(None)
                continue
            body = None if plan is None else self._vouched(plan, notification)
            bodies.append(body)
            events.append(decode(notification) if body is None else None)
        return events, bodies

    @staticmethod
    def _way(topic: str, readers: Sequence[Projection]) -> tuple[bool, BodyPlan | None]:
        """Whether some read model needs events of ``topic`` read; the plan if all take bodies."""
        reading = [p for p in readers if p.topics is None or topic in p.topics]
        if not reading:
            return False, None
        if all(isinstance(p, BodyProjection) and topic in p.body_topics for p in reading):
            return True, body_plan(topic)
        return True, None

    @staticmethod
    def _vouched(plan: BodyPlan, notification: Notification) -> Body | None:
        version = notification.originator_version
        if type(version) is not int or version < 1:
            return None  # the model would refuse it: the decode says how
        key = canonical_originator(notification.originator_id)
        if key is None:
            return None
        body = plan.body(notification.state)
        return None if body is None else (body, key)

    def _fold(
        self,
        lanes: Sequence[Lane],
        notifications: Sequence[Notification],
        events: Sequence[DomainEvent | None],
        bodies: Sequence[Body | None],
    ) -> list[Commit]:
        """Apply the batch's events, after each lane's position; each lane's share of the commit.

        Event by event, each handed to the read models that read its topic
        (found once per topic and batch); every read model has its own unit
        of work, so the order across read models changes nothing.
        """
        stored: dict[str, list[tuple[StoredApply, UnitOfWork]]] = {}
        decoded: dict[str, list[tuple[DecodedApply, BodyApply | None, UnitOfWork]]] = {}
        level: list[tuple[Lane, UnitOfWork]] = []
        for lane in lanes:
            unit = UnitOfWork(
                self.views,
                lane.projection.name,
                lane.generation,
                lane.position,
                self._recent_for(lane),
            )
            lane.unit = unit
            if notifications and notifications[0].id <= lane.position:
                self._fold_ahead(lane, unit, notifications, events, bodies)  # a lane ahead: rare
            else:
                level.append((lane, unit))
        for index, notification in enumerate(notifications):
            topic = notification.topic
            if topic not in decoded:
                self._route(topic, level, stored, decoded)
            for apply_stored, unit in stored[topic]:
                apply_stored(notification, unit)
            targets = decoded[topic]
            if not targets:
                continue
            read = bodies[index]
            if read is not None:
                body, key = read
                for _, apply_body, unit in targets:
                    assert apply_body is not None
                    apply_body(body, key, notification, unit)
            else:
                event = events[index]
                assert event is not None
                for apply, _, unit in targets:
                    apply(event, notification, unit)
        last = notifications[-1].id if notifications else 0
        commits = []
        for lane in lanes:
            assert lane.unit is not None
            commits.append(
                Commit(
                    lane.projection.name,
                    lane.generation,
                    lane.position,
                    max(last, lane.position),
                    lane.unit.changes(),
                    lane.unit.appends(),
                )
            )
        return commits

    @staticmethod
    def _route(
        topic: str,
        lanes: Sequence[tuple[Lane, UnitOfWork]],
        stored: dict[str, list[tuple[StoredApply, UnitOfWork]]],
        decoded: dict[str, list[tuple[DecodedApply, BodyApply | None, UnitOfWork]]],
    ) -> None:
        stored[topic], decoded[topic] = [], []
        for lane, unit in lanes:
            projection = lane.projection
            if projection.topics is not None and topic not in projection.topics:
                continue
            if isinstance(projection, StoredProjection):
                stored[topic].append((projection.apply_stored, unit))
            else:
                apply_body = (
                    projection.apply_body
                    if isinstance(projection, BodyProjection) and topic in projection.body_topics
                    else None
                )
                decoded[topic].append((projection.apply, apply_body, unit))

    @staticmethod
    def _fold_ahead(
        lane: Lane,
        unit: UnitOfWork,
        notifications: Sequence[Notification],
        events: Sequence[DomainEvent | None],
        bodies: Sequence[Body | None],
    ) -> None:
        projection, topics = lane.projection, lane.projection.topics
        for notification, event, read in zip(notifications, events, bodies, strict=True):
            if notification.id <= lane.position:
                continue
            if topics is not None and notification.topic not in topics:
                continue
            if isinstance(projection, StoredProjection):
                projection.apply_stored(notification, unit)
            elif read is not None:
                assert isinstance(projection, BodyProjection)
                projection.apply_body(read[0], read[1], notification, unit)
            else:
                assert event is not None
                projection.apply(event, notification, unit)

    def advance(
        self, lanes: Sequence[Lane], head: int | None = None
    ) -> tuple[list[Lane], list[Lane]]:
        """Apply one batch to every lane, from the lowest lane's position.

        Returns the lanes that moved, and those that found their tracking
        position moved by another worker (which wrote nothing).

        The batch is read and each event decoded once, whatever the number of
        read models; all their changes commit in one transaction. A lane
        ahead of the others skips what it has applied. With ``head`` (a
        rebuild), a lane whose batch reaches it is activated in the same
        transaction; such batches are flushed to disk, the others need not be
        (the generation they fill serves nobody until then).
        """
        start = min(lane.position for lane in lanes)
        notifications = self.views.read_log(start, self.batch_size)
        last = notifications[-1].id if notifications else start
        moving: list[Lane] = []
        for lane in lanes:
            reaches_head = head is not None and max(last, lane.position) >= head
            if last > lane.position or (reaches_head and lane.activate_version is not None):
                moving.append(lane)
        commits: list[Commit] = []
        try:
            events, bodies = self._decoded(moving, notifications)
            commits = self._fold(moving, notifications, events, bodies)
            for lane, commit in zip(moving, commits, strict=True):
                if head is not None and commit.position >= head:
                    commit.activate_version = lane.activate_version
            if not commits:
                return [], []
            building = head is not None and all(c.activate_version is None for c in commits)
            outcomes = self.views.commit_all(commits, durable=not building)
        except BaseException:
            for lane in moving:  # folds may have changed kept documents in place
                self._recent_for(lane).clear()
            raise
        moved, lost = [], []
        for lane, commit, committed in zip(moving, commits, outcomes, strict=True):
            recent = self._recent_for(lane)
            if committed and lane.unit is not None:
                lane.position = commit.position
                recent.keep(commit.position, lane.unit.kept())
                moved.append(lane)
            else:
                recent.clear()
                lost.append(lane)
            lane.unit = None
        return moved, lost

    def step(self, names: Iterable[str] | None = None) -> int:
        """Apply one batch to every (named) active read model that is behind; events applied."""
        chosen = self.projections if names is None else {n: self.projections[n] for n in names}
        groups: dict[int, list[Lane]] = {}
        for projection in chosen.values():
            generation, _ = self.ensure_started(projection)
            position = self.views.position(projection.name, generation) or 0
            groups.setdefault(position, []).append(Lane(projection, generation, position))
        applied = 0
        # Read models at the same position share a read, a decode and a transaction;
        # each group moves by its own batch, so one far behind delays no other.
        for position, group in sorted(groups.items()):
            for lane in self.advance(group)[0]:
                applied += lane.position - position
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
        rebuilt = self.rebuild_many([name], progress, stop)
        return None if rebuilt is None else rebuilt[name]

    def rebuild_many(
        self,
        names: Iterable[str],
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> dict[str, int] | None:
        """``rebuild`` several read models in one pass over the log: {name: new generation}.

        Each is built, switched over and resumed exactly as on its own; the
        log is read and every event decoded once for all of them.
        """
        lanes = [self._rebuild_lane(self.projections[name]) for name in names]
        progress = progress or Progress(", ".join(lane.projection.name for lane in lanes))
        pending = list(lanes)
        while pending:
            if stop is not None and stop.is_set():
                for lane in pending:
                    logger.info(
                        "projection_rebuild_paused",
                        projection=lane.projection.name,
                        position=lane.position,
                    )
                return None
            head = self.log.recorder.max_notification_id() or 0
            before = min(lane.position for lane in pending)
            progress.head, progress.position = head, before
            moved, lost = self.advance(pending, head=head)
            if lost:
                raise RuntimeError(f"another worker is rebuilding {lost[0].projection.name}")
            progress.position = min(lane.position for lane in pending)
            progress.events += max(progress.position - before, 0)
            for lane in moved:
                if lane.position >= head:
                    pending = [other for other in pending if other is not lane]
                    self._finish(lane)
        return {lane.projection.name: lane.generation for lane in lanes}

    def _rebuild_lane(self, projection: Projection) -> Lane:
        active, _ = self.ensure_started(projection)
        target = active + 1
        position = self.views.position(projection.name, target)
        if position is None:
            self.views.start(projection.name, target)
            position = 0
        return Lane(projection, target, position, projection.version, active)

    def _finish(self, lane: Lane) -> None:
        if lane.replaces is not None:
            self.views.drop(lane.projection.name, lane.replaces)
            with self._recent_lock:
                self._recent.pop((lane.projection.name, lane.replaces), None)
        logger.info(
            "projection_rebuilt",
            projection=lane.projection.name,
            generation=lane.generation,
            position=lane.position,
        )

    def rebuild_outdated(self, names: Iterable[str] | None = None) -> list[str]:
        """Rebuild every (named) read model whose code version differs from its active copy."""
        chosen = self.projections if names is None else {n: self.projections[n] for n in names}
        rebuilt = [
            projection.name
            for projection in chosen.values()
            if self.ensure_started(projection)[1] != projection.version
        ]
        if rebuilt:
            self.rebuild_many(rebuilt)
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
