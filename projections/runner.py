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
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, closing, suppress
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import structlog
from eventsourcing.persistence import Notification

from application.event_log import EventLog
from application.mapper import EventMapper
from application.stored_bodies import BodyPlan, body_plan, canonical_originator
from domain.events import DomainEvent
from projections.projection import (
    BatchProjection,
    Projection,
    folds_batches,
    folds_bodies,
    folds_stored,
)
from projections.store import (
    Change,
    Commit,
    Doc,
    DocReader,
    Docs,
    Entry,
    ViewStore,
    parse_doc,
)

logger = structlog.get_logger(__name__)

StoredApply = Callable[[Notification, Docs], None]
DecodedApply = Callable[[DomainEvent, Notification, Docs], None]
BodyApply = Callable[[dict[str, Any], str, Notification, Docs], None]
Body = tuple[dict[str, Any], str]
"""A stored body vouched for, and its aggregate's id as the model writes it."""
Target = tuple[DecodedApply, BodyApply | None, "UnitOfWork", int]
"""A read model folding a topic's events: its folds, its unit of work, its position."""

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


class BatchKeys:
    """The ids of the aggregates a batch's events belong to, written out once when first asked."""

    def __init__(self, notifications: Sequence[Notification]) -> None:
        self._notifications = notifications
        self._keys: frozenset[str] | None = None

    def __call__(self) -> frozenset[str]:
        if self._keys is None:
            self._keys = frozenset(str(n.originator_id) for n in self._notifications)
        return self._keys


class UnitOfWork:
    """The ``Docs`` a batch folds into: reads see the batch's own writes.

    With ``keys`` (the batch's aggregates), the first document of a kind it
    must load brings the documents of that kind of every aggregate of the
    batch with it, in one query: read models keep a document per customer,
    and loading them one query each was most of a rebuild's round trips.
    """

    def __init__(
        self,
        views: ViewStore,
        name: str,
        generation: int,
        position: int,
        recent: Recent | None = None,
        keys: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.views = views
        self.name = name
        self.generation = generation
        self._position = position
        self._docs: dict[tuple[str, str], tuple[str | None, Doc | None]] = {}
        self._loaded: set[tuple[str, str]] = set()
        self.recorded: list[Entry] = []
        """The entries the batch added to the read model's log, in log order."""
        self._recent = recent.docs if recent is not None and recent.position == position else {}
        self._keys = keys
        self._fetched: dict[str, dict[str, Doc | None]] = {}
        """Documents loaded ahead, by kind and key (None: not in the store)."""

    @property
    def position(self) -> int:
        return self._position

    def get(self, kind: str, key: str) -> Doc | None:
        slot = (kind, key)
        found = self._docs.get(slot)
        if found is not None:
            return found[1]
        doc = self._recent[slot] if slot in self._recent else self._load(kind, key)
        self._docs[slot] = (None, doc)
        self._loaded.add(slot)
        return doc

    def _load(self, kind: str, key: str) -> Doc | None:
        fetched = self._fetched.get(kind)
        if fetched is None and self._keys is not None and key in (keys := self._keys()):
            # Loaded as of the batch's start, as one by one: nothing else writes this
            # generation meanwhile (a worker that did would make the commit fail).
            wanted = [
                k for k in keys if (kind, k) not in self._docs and (kind, k) not in self._recent
            ]
            fetched = dict.fromkeys(wanted, None)
            fetched.update(self.views.load_many(self.name, self.generation, kind, wanted))
            self._fetched[kind] = fetched
        if fetched is not None and key in fetched:
            return fetched.pop(key)
        return self.views.load(self.name, self.generation, kind, key)

    def kept(self) -> dict[tuple[str, str], tuple[str | None, Doc | None]]:
        """What a successful commit leaves for the next batch."""
        return self._docs

    def put(self, kind: str, key: str, doc: Doc, *, group: str | None = None) -> None:
        slot = (kind, key)
        self._docs[slot] = (group, doc)
        self._loaded.discard(slot)

    def delete(self, kind: str, key: str) -> None:
        slot = (kind, key)
        self._docs[slot] = (None, None)
        self._loaded.discard(slot)

    def record(self, entries: Sequence[Entry]) -> None:
        self.recorded.extend(entries)

    def entries(
        self, *, after: int = 0, group: str | None = None, limit: int | None = None
    ) -> Iterator[Doc]:
        found = self.views.entries(
            self.name, self.generation, after=after, group=group, limit=limit
        )
        if limit is None or len(found) < limit:
            # The batch's own entries follow every committed one in the log.
            found += [
                parse_doc(text)
                for position, g, text in self.recorded
                if position > after and (group is None or g == group)
            ]
        yield from found[:limit] if limit is not None else found

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
        """Documents to upsert or delete."""
        skip = self._loaded
        return [
            (kind, key, group, doc)
            for (kind, key), (group, doc) in self._docs.items()
            if (kind, key) not in skip
        ]


class ReadAhead:
    """Reads a rebuild's next batch of the log in a thread while this one is folded.

    Most of a read is PostgreSQL's time, which the fold then no longer waits
    for. A batch read ahead is used only by a batch starting exactly where it
    was read from; the log is append-only, so it holds what reading it then
    would have.
    """

    def __init__(self, views: ViewStore, batch_size: int) -> None:
        self._views = views
        self._size = batch_size
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="accord-read-ahead")
        self._next: tuple[int, Future[Sequence[Notification]]] | None = None

    def read(self, start: int) -> Sequence[Notification]:
        ahead, self._next = self._next, None
        if ahead is not None:
            if ahead[0] == start:
                return ahead[1].result()
            ahead[1].cancel()
        return self._views.read_log(start, self._size)

    def prefetch(self, start: int) -> None:
        if self._next is not None:
            self._next[1].cancel()
        self._next = (start, self._pool.submit(self._views.read_log, start, self._size))

    def close(self) -> None:
        if self._next is not None:
            self._next[1].cancel()
            self._next = None
        self._pool.shutdown(wait=True)


def _building(commits: Sequence[Commit], head: int | None) -> bool:
    """Whether no commit activates its generation: none needs flushing to disk at once."""
    return head is not None and all(c.activate_version is None for c in commits)


@dataclass(eq=False)
class _Flight:
    """A rebuild's commit in flight (its lanes moved and kept their documents meanwhile)."""

    future: Future[list[bool]]
    lanes: list[Lane]
    commits: list[Commit]


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
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1 (a batch of none never moves)")
        self.log = log
        self.views = views
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        # Personal fields come through as sealed references: views never hold plaintext.
        self.mapper = EventMapper(log.vault, references=True)
        self.changed = threading.Condition()
        self.pipelined = True
        """Whether a rebuild folds each batch while the one before it commits."""
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
        return self.views.active().get(name, (0, 0))[1]

    # --------------------------------------------------------------- batches

    def _decode(self, notification: Notification) -> DomainEvent:
        event = self.mapper.to_domain_event(notification)
        assert isinstance(event, DomainEvent)
        return event

    @staticmethod
    def _way(topic: str, readers: Sequence[Projection]) -> tuple[bool, BodyPlan | None]:
        """Whether some read model needs events of ``topic`` read; the plan if all take bodies."""
        reading = [p for p in readers if p.topics is None or topic in p.topics]
        if not reading:
            return False, None
        if all(folds_bodies(p) and topic in p.body_topics for p in reading):
            return True, body_plan(topic)
        return True, None

    @staticmethod
    def _vouched(plan: BodyPlan, notification: Notification) -> Body | None:
        """One event's body, if vouched for (``_fold`` does the same, inline)."""
        version = notification.originator_version
        if type(version) is not int or version < 1:
            return None  # the model would refuse it: the decode says how
        key = canonical_originator(notification.originator_id)
        if key is None:
            return None
        body = plan.body(notification.state)
        return None if body is None else (body, key)

    def _fold(self, lanes: Sequence[Lane], notifications: Sequence[Notification]) -> list[Commit]:
        """Apply the batch's events, after each lane's position; each lane's share of the commit.

        Event by event: each is read once, if any read model here needs it, and
        handed at once to the read models that read its topic (found once per
        topic and batch), so a body is folded while it is fresh in memory and
        freed before the next is read. An event every such read model can fold
        from its stored body (see ``BodyProjection``) is read as stored when
        the body is vouched for, and decoded otherwise (an older schema
        version, a value in another form): the one path the follower and a
        rebuild both take. Every read model has its own unit of work, so the
        order across read models changes nothing.
        """
        stored: dict[str, list[tuple[StoredApply, UnitOfWork, int]]] = {}
        decoded: dict[str, tuple[BodyPlan | None, list[Target]]] = {}
        level: list[tuple[Lane, UnitOfWork]] = []
        keys = BatchKeys(notifications)
        for lane in lanes:
            unit = UnitOfWork(
                self.views,
                lane.projection.name,
                lane.generation,
                lane.position,
                self._recent_for(lane),
                keys,
            )
            lane.unit = unit
            if folds_batches(lane.projection):
                self._fold_batch(lane.projection, lane.position, unit, notifications)
            else:
                level.append((lane, unit))
        decode = self._decode
        # Consecutive events are often one aggregate's: its id is written out once for them.
        last_originator: Any = None
        key: str | None = None
        for notification in notifications:
            topic = notification.topic
            route = decoded.get(topic)
            if route is None:
                route = self._route(topic, level, stored, decoded)
            position = notification.id
            for apply_stored, unit, after in stored[topic]:
                if position > after:
                    apply_stored(notification, unit)
            plan, targets = route
            if not targets:
                continue
            read: Body | None = None
            version = notification.originator_version
            # A version the model would refuse, or an id in another form: the decode says how.
            if plan is not None and type(version) is int and version >= 1:
                originator = notification.originator_id
                if originator != last_originator or type(originator) is not type(last_originator):
                    key = canonical_originator(originator)
                    last_originator = originator
                if key is not None and (body := plan.body(notification.state)) is not None:
                    read = (body, key)
            if read is not None:
                body, key = read
                for _, apply_body, unit, after in targets:
                    if position > after:
                        assert apply_body is not None
                        apply_body(body, key, notification, unit)
            elif any(position > after for _, _, _, after in targets):
                event = decode(notification)
                for apply, _, unit, after in targets:
                    if position > after:
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
                    lane.unit.recorded,
                )
            )
        return commits

    def _route(
        self,
        topic: str,
        lanes: Sequence[tuple[Lane, UnitOfWork]],
        stored: dict[str, list[tuple[StoredApply, UnitOfWork, int]]],
        decoded: dict[str, tuple[BodyPlan | None, list[Target]]],
    ) -> tuple[BodyPlan | None, list[Target]]:
        """Who folds events of ``topic`` and how: as stored, from the body, or decoded."""
        stored[topic] = []
        targets: list[Target] = []
        readers = []
        for lane, unit in lanes:
            projection = lane.projection
            if projection.topics is not None and topic not in projection.topics:
                continue
            if folds_stored(projection):
                stored[topic].append((projection.apply_stored, unit, lane.position))
                continue
            readers.append(projection)
            apply_body = (
                projection.apply_body
                if folds_bodies(projection) and topic in projection.body_topics
                else None
            )
            targets.append((projection.apply, apply_body, unit, lane.position))
        _, plan = self._way(topic, readers)
        route: tuple[BodyPlan | None, list[Target]] = (plan, targets)
        decoded[topic] = route
        return route

    @staticmethod
    def _fold_batch(
        projection: BatchProjection,
        position: int,
        unit: UnitOfWork,
        notifications: Sequence[Notification],
    ) -> None:
        """The batch's events after ``position`` of the topics it reads, in one call."""
        topics = projection.topics
        if (notifications and notifications[0].id <= position) or topics is not None:
            notifications = [
                n
                for n in notifications
                if n.id > position and (topics is None or n.topic in topics)
            ]
        if notifications:
            projection.apply_stored_batch(notifications, unit)

    def advance(
        self, lanes: Sequence[Lane], head: int | None = None, ahead: ReadAhead | None = None
    ) -> tuple[list[Lane], list[Lane]]:
        """Apply one batch to every lane, from the lowest lane's position.

        Returns the lanes that moved, and those that found their tracking
        position moved by another worker (which wrote nothing).

        The batch is read and each event decoded once, whatever the number of
        read models; all their changes commit in one transaction. A lane
        ahead of the others skips what it has applied. With ``head`` (a
        rebuild), a lane whose batch reaches it is activated in the same
        transaction; such batches are flushed to disk, the others need not be
        (the generation they fill serves nobody until then). With ``ahead``,
        the next batch is read while this one is folded.
        """
        moving, commits = self._prepare(lanes, head, ahead)
        if not commits:
            return [], []
        try:
            outcomes = self.views.commit_all(commits, durable=not _building(commits, head))
        except BaseException:
            self._forget(moving)
            raise
        return self._settle(moving, commits, outcomes)

    def _prepare(
        self, lanes: Sequence[Lane], head: int | None, ahead: ReadAhead | None
    ) -> tuple[list[Lane], list[Commit]]:
        """Read and fold one batch: the lanes it moves, and their commits (not yet made)."""
        start = min(lane.position for lane in lanes)
        if ahead is None:
            notifications = self.views.read_log(start, self.batch_size)
        else:
            notifications = ahead.read(start)
        last = notifications[-1].id if notifications else start
        full = len(notifications) == self.batch_size
        if ahead is not None and head is not None and full and last < head:
            ahead.prefetch(last)
        moving: list[Lane] = []
        for lane in lanes:
            reaches_head = head is not None and max(last, lane.position) >= head
            if last > lane.position or (reaches_head and lane.activate_version is not None):
                moving.append(lane)
        try:
            commits = self._fold(moving, notifications)
        except BaseException:
            self._forget(moving)
            raise
        for lane, commit in zip(moving, commits, strict=True):
            if head is not None and commit.position >= head:
                commit.activate_version = lane.activate_version
        return moving, commits

    def _forget(self, lanes: Sequence[Lane]) -> None:
        for lane in lanes:  # folds may have changed kept documents in place
            self._recent_for(lane).clear()

    def _settle(
        self, moving: Sequence[Lane], commits: Sequence[Commit], outcomes: Sequence[bool]
    ) -> tuple[list[Lane], list[Lane]]:
        """Move the lanes whose commit was made; forget what the others kept."""
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
        active = self.views.active()
        groups: dict[int, list[Lane]] = {}
        for projection in chosen.values():
            known = active.get(projection.name)
            if known is None:  # never built: its first generation starts empty
                generation, _ = self.ensure_started(projection)
                position = self.views.position(projection.name, generation) or 0
            else:
                generation, position = known
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
        with closing(ReadAhead(self.views, self.batch_size)) as ahead:
            if self._rebuild(lanes, progress, stop, ahead) is None:
                return None
        return {lane.projection.name: lane.generation for lane in lanes}

    def _rebuild(
        self,
        lanes: list[Lane],
        progress: Progress,
        stop: threading.Event | None,
        ahead: ReadAhead,
    ) -> list[Lane] | None:
        if self.pipelined:
            with ThreadPoolExecutor(1, thread_name_prefix="accord-commit") as committer:
                return self._rebuild_pipelined(lanes, progress, stop, ahead, committer)
        pending = list(lanes)
        while pending:
            if stop is not None and stop.is_set():
                self._paused(pending)
                return None
            head = self.log.recorder.max_notification_id() or 0
            before = min(lane.position for lane in pending)
            progress.head, progress.position = head, before
            moved, lost = self.advance(pending, head=head, ahead=ahead)
            if lost:
                raise RuntimeError(f"another worker is rebuilding {lost[0].projection.name}")
            progress.position = min(lane.position for lane in pending)
            progress.events += max(progress.position - before, 0)
            for lane in moved:
                if lane.position >= head:
                    pending = [other for other in pending if other is not lane]
                    self._finish(lane)
        return lanes

    def _rebuild_pipelined(
        self,
        lanes: list[Lane],
        progress: Progress,
        stop: threading.Event | None,
        ahead: ReadAhead,
        committer: ThreadPoolExecutor,
    ) -> list[Lane] | None:
        """``_rebuild``, folding each batch while the one before it commits.

        Most of a commit is PostgreSQL's work (taking in the audit trail's
        entries, above all), which the fold then no longer waits for. The
        next batch is folded as if the commit in flight succeeded (lanes
        moved, their documents kept); it is committed only once that one
        has, and dropped with it otherwise. The commit in flight writes its
        documents as encoded before it left, so the next fold may change
        them; a document the next fold loads from the store is one the batch
        in flight did not touch (those it touched are kept, unless there are
        more than can be kept: then the commit lands first).
        """
        pending = list(lanes)
        flight: _Flight | None = None
        try:
            while pending:
                if stop is not None and stop.is_set():
                    self._land(flight)
                    flight = None
                    self._paused(pending)
                    return None
                head = self.log.recorder.max_notification_id() or 0
                before = min(lane.position for lane in pending)
                progress.head = head
                moving, commits = self._prepare(pending, head, ahead)
                self._land(flight)
                flight = None
                if not commits:
                    continue
                for commit in commits:
                    commit.encode()
                durable = not _building(commits, head)
                future = committer.submit(self.views.commit_all, commits, durable=durable)
                flight = _Flight(future, moving, commits)
                overflow = False
                for lane, commit in zip(moving, commits, strict=True):
                    assert lane.unit is not None
                    recent = self._recent_for(lane)
                    kept = lane.unit.kept()
                    overflow = overflow or len(kept) > recent.capacity
                    recent.keep(commit.position, kept)
                    lane.position, lane.unit = commit.position, None
                    if commit.position >= head:
                        pending = [other for other in pending if other is not lane]
                if overflow:
                    self._land(flight)
                    flight = None
                progress.position = min((lane.position for lane in pending), default=head)
                progress.events += max(progress.position - before, 0)
            self._land(flight)
            flight = None
        finally:
            if flight is not None:  # failing: let the commit in flight end, keep nothing
                with suppress(BaseException):
                    flight.future.result()
                self._forget(flight.lanes)
        return lanes

    def _land(self, flight: _Flight | None) -> None:
        """Wait for the commit in flight; finish the lanes it brought to the head."""
        if flight is None:
            return
        try:
            outcomes = flight.future.result()
        except BaseException:
            self._forget(flight.lanes)
            raise
        for lane, commit, committed in zip(flight.lanes, flight.commits, outcomes, strict=True):
            if not committed:
                self._forget(flight.lanes)
                raise RuntimeError(f"another worker is rebuilding {lane.projection.name}")
            if commit.activate_version is not None:
                self._finish(lane)

    def _paused(self, pending: Sequence[Lane]) -> None:
        for lane in pending:
            logger.info(
                "projection_rebuild_paused", projection=lane.projection.name, position=lane.position
            )

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
