"""The one event log: Customer and Partner aggregates in one total order.

A thin subclass of the library's ``Application``: our mapper, our snapshots
(taken from the aggregate already in memory instead of re-reading it), and a
configuration that comes only from what the composition root passes in, never
from stray process environment variables.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.application import Repository as LibraryRepository
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import Environment

from application.clock import Clock
from application.journal import CurrentRead, RequestJournal
from application.mapper import EventMapper
from application.personal_data import DataKeyStore, MasterKey, PersonalDataVault
from domain.aggregate import Aggregate
from domain.events import DomainEvent
from domain.snapshot import Snapshot, StaleSnapshotError

A = TypeVar("A", bound=Aggregate)


def _project(aggregate: Aggregate | None, events: Iterable[DomainEvent]) -> Aggregate | None:
    """Apply events in order: the library's projector, without its per-event check.

    The library asserts that each event matches a runtime-checkable Protocol,
    which costs more than applying the event (about a third of every load).
    Our events are all ``DomainEvent``s, which the mapper already guarantees.
    """
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class Repository(LibraryRepository[UUID]):
    """Loads from the newest usable snapshot; a stale one falls back to full replay."""

    def _reconstruct_aggregate(
        self, aggregate_id: UUID, version: int | None, projector_func: Any
    ) -> Any:
        try:
            return super()._reconstruct_aggregate(aggregate_id, version, projector_func)
        except StaleSnapshotError:
            aggregate = projector_func(None, self.event_store.get(aggregate_id, lte=version))
            if aggregate is None:
                raise AggregateNotFoundError(aggregate_id) from None
            return aggregate


class EventLog(Application[UUID]):
    name = "Accord"

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        snapshot_interval: int,
        clock: Clock,
        master_key: MasterKey,
        key_cache_ttl: float = 2.0,
    ) -> None:
        if snapshot_interval < 1:
            raise ValueError("snapshot_interval must be at least 1")
        self.snapshot_interval = snapshot_interval
        self.clock = clock
        self._closed = False
        try:
            super().__init__(env={**env, "IS_SNAPSHOTTING_ENABLED": "y"})
            if not isinstance(self.recorder, RequestJournal):
                raise TypeError("the recorder must also keep the request journal")
            if not isinstance(self.recorder, DataKeyStore):
                raise TypeError("the recorder must also keep the data keys")
            self.journal: RequestJournal = self.recorder
            self.vault = PersonalDataVault(self.recorder, master_key, ttl=key_cache_ttl)
            self.vault.check_master_key()
        except BaseException:
            # A half-built application still owns a connection pool: release it
            # now, not whenever the garbage collector finds the object.
            self.close()
            raise
        self.event_mapper.vault = self.vault

    def close(self) -> None:
        """Close once; later calls (and the finalizer) do nothing."""
        if self._closed:
            return
        self._closed = True
        if hasattr(self, "closing"):
            self.closing.set()
        if hasattr(self, "factory"):
            self.factory.close()

    def __del__(self) -> None:
        """Warn about, but never close from, a finalizer.

        The library's finalizer closes the pool, which joins the pool's worker
        threads; when the collector happens to run on one of those threads the
        join fails with "cannot join current thread". Every owner closes its
        application explicitly (``Accord`` is a context manager); one that
        forgot is reported the way an unclosed file is.
        """
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1)

    def forget_data_key(self, customer_id: UUID) -> None:
        self.vault.forget(customer_id)

    def construct_env(self, name: str, env: Any = None) -> Environment:
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> EventMapper:
        return EventMapper()

    def construct_repository(self) -> Repository:
        return Repository(event_store=self.events, snapshot_store=self.snapshots)

    @property
    def event_mapper(self) -> EventMapper:
        assert isinstance(self.mapper, EventMapper)
        return self.mapper

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """The library's save, collecting events without its runtime Protocol checks.

        Its ``collect_events`` asks ``isinstance`` of two runtime-checkable
        Protocols per object (a noticeable share of a command); ours are all
        ``Aggregate``s, whose pending events are taken directly.
        """
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for obj in objs:
            if isinstance(obj, Aggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            elif isinstance(obj, DomainEvent):  # an event stored as is (data set-up, tests)
                processing_event.events.append(obj)
            else:
                raise TypeError(f"not an Accord aggregate or event: {type(obj).__name__}")
        processing_event.saved_kwargs.update(kwargs)
        self.event_mapper.prefetch_keys(processing_event.events)
        snapshots = self._due_snapshots(processing_event)
        if snapshots:
            processing_event.saved_kwargs["snapshots"] = snapshots
        recordings = self._record(processing_event)
        self._notify(recordings)
        return recordings

    def _due_snapshots(self, processing_event: ProcessingEvent[UUID]) -> tuple[StoredEvent, ...]:
        """Snapshots of the aggregates this save takes across a multiple of the interval,
        ready to be written in the same transaction as the events.

        Taken from the in-memory aggregate (already at its new version), so a
        snapshot costs no read; written with the events, it costs no round
        trip or transaction of its own (one in three of a busy server's
        coalesced batches paid one), and no snapshot can exist for events that
        were never committed. The recorder skips one already stored.
        """
        if self.snapshots is None:
            return ()
        first_versions: dict[UUID, int] = {}
        for event in processing_event.events:
            first_versions.setdefault(event.originator_id, event.originator_version)
        due: list[StoredEvent] = []
        for aggregate_id, aggregate in processing_event.aggregates.items():
            if not isinstance(aggregate, Aggregate) or aggregate_id not in first_versions:
                continue
            before = first_versions[aggregate_id] - 1
            if aggregate.version // self.snapshot_interval <= before // self.snapshot_interval:
                continue
            snapshot = Snapshot.take(aggregate, self.clock.now())
            due.append(self.event_mapper.to_stored_event(snapshot))
        return tuple(due)

    def load(self, aggregate_id: UUID, *, version: int | None = None) -> Aggregate:
        aggregate: object = self.repository.get(
            aggregate_id, version=version, projector_func=_project
        )
        assert isinstance(aggregate, Aggregate)
        return aggregate

    def read_current(
        self, aggregates: Sequence[A], positions_of: UUID, versions: Sequence[int]
    ) -> tuple[list[A], dict[int, int], int]:
        """Each aggregate fast-forwarded, with the positions of ``versions`` of
        ``positions_of`` and the log's head, all from one read (one round trip
        where reading each would cost one apiece)."""
        current = self.journal.read_current(
            [(aggregate.id, aggregate.version) for aggregate in aggregates], positions_of, versions
        )
        return self.forward(aggregates, current), current.positions, current.head

    def forward(self, aggregates: Sequence[A], current: CurrentRead) -> list[A]:
        """Each aggregate with the newer events ``current`` read for it applied."""
        forwarded = []
        for aggregate in aggregates:
            newer = current.newer.get(aggregate.id)
            if newer:
                events = (self.mapper.to_domain_event(stored) for stored in newer)
                result = _project(aggregate, events)  # type: ignore[arg-type]
                assert isinstance(result, type(aggregate))
                aggregate = result
            forwarded.append(aggregate)
        return forwarded

    def load_as_of_time(self, aggregate_id: UUID, at: datetime) -> Aggregate:
        """State as recorded up to ``at``: events whose recorded time is at or before it."""
        aggregate: Aggregate | None = None
        for event in self.events.get(aggregate_id):
            assert isinstance(event, DomainEvent)
            if event.timestamp > at:
                break
            aggregate = event.mutate(aggregate)
        if aggregate is None:
            raise AggregateNotFoundError(aggregate_id)
        return aggregate

    def event_at(self, aggregate_id: UUID, version: int) -> DomainEvent:
        [event] = self.events.get(aggregate_id, gt=version - 1, lte=version)
        assert isinstance(event, DomainEvent)
        return event

    def history(self, aggregate_id: UUID) -> Iterable[DomainEvent]:
        for event in self.events.get(aggregate_id):
            assert isinstance(event, DomainEvent)
            yield event
