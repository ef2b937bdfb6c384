"""Running a command: idempotency, optimistic concurrency, bounded retries.

One path for every command. It loads the aggregate, lets the domain decide,
and saves the new events together with the request record (and any unique
claims) in one transaction. A version conflict means another writer got
there first: the command is decided again against the new state, up to
``max_attempts`` times, unless the caller pinned ``expected_version``, in
which case a conflict is the caller's to resolve.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Generic, TypeVar
from uuid import UUID

import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    RecordConflictError,
)

from application.aggregate_cache import AggregateCache
from application.commands import AggregateCommand, Command
from application.context import CallContext
from application.errors import (
    AlreadyExistsError,
    ApplicationError,
    ConcurrencyConflictError,
    IdempotencyKeyReusedError,
    NotFoundError,
    StoreUnavailableError,
    VersionMismatchError,
)
from application.event_log import EventLog
from application.journal import (
    Claim,
    CurrentRead,
    RequestRecord,
    StoredRequest,
    VersionGuard,
    fingerprint,
)
from application.locks import AggregateLocks
from application.observer import CommandObserver, NoObserver
from application.randomness import new_uuid
from application.refusals import RefusalMemo
from application.results import CommandResult
from domain.aggregate import Aggregate, EventMeta
from domain.errors import DomainError

logger = structlog.get_logger(__name__)

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")


@dataclass(frozen=True)
class Effects:
    """What a decision needs written beside its events (see ``application.journal``)."""

    entity_id: UUID | None = None
    guards: tuple[VersionGuard, ...] = ()
    destroy_keys: tuple[UUID, ...] = ()


LENT_WAIT = 0.05
"""How long (seconds) a command or read waits for a cached aggregate lent to another,
before loading it from the store instead."""

Build = Callable[[EventMeta], Aggregate]
Act = Callable[[A, EventMeta], "UUID | Effects | None"]


@dataclass(frozen=True)
class BatchItem(Generic[A]):
    """One command of a batch: what it changes and how (``act`` returns an entity id or None).

    ``ctx`` is who sent it, when a batch gathers commands from several callers
    (the batch's own context otherwise).
    """

    command: AggregateCommand
    aggregate_id: UUID
    act: Act[A]
    ctx: CallContext | None = None


@dataclass(frozen=True)
class Reading:
    """What ``CommandExecutor.reading_current`` read, all of it current at ``head``."""

    aggregates: tuple[Aggregate, ...]
    positions: dict[int, int]
    """The positions asked for, of the versions recorded."""
    head: int


class CommandExecutor:
    def __init__(
        self,
        log: EventLog,
        *,
        max_attempts: int = 5,
        observer: CommandObserver | None = None,
        cache_size: int = 10_000,
    ) -> None:
        """``cache_size``: how many aggregates stay in memory between commands (0: none)."""
        self.log = log
        self.max_attempts = max_attempts
        self.cache = AggregateCache(cache_size)
        self.locks = AggregateLocks()
        self.refusals = RefusalMemo()
        self.observer: CommandObserver = observer or NoObserver()

    def create(
        self,
        command: Command,
        ctx: CallContext,
        *,
        kind: str,
        aggregate_id: UUID,
        build: Build,
        claims: Sequence[Claim] = (),
    ) -> CommandResult:
        """Record the creation of a new aggregate (exactly once)."""
        return self._observed(
            command,
            lambda: self._create(
                command, ctx, kind=kind, aggregate_id=aggregate_id, build=build, claims=claims
            ),
        )

    def update(
        self,
        command: AggregateCommand,
        ctx: CallContext,
        *,
        kind: type[A],
        aggregate_id: UUID,
        act: Act[A],
    ) -> CommandResult:
        """Decide and record a change to an existing aggregate."""
        return self._observed(
            command,
            lambda: self._update(command, ctx, kind=kind, aggregate_id=aggregate_id, act=act),
        )

    def _observed(self, command: Command, run: Callable[[], CommandResult]) -> CommandResult:
        """Run a command and tell the observer how it ended (``recorded`` comes from ``_save``).

        One place sees every way out of a command, so no outcome goes uncounted.
        """
        try:
            result = run()
        except DomainError as error:
            self.observer.refused(command, error.reason.value)
            raise
        except StoreUnavailableError as error:
            self.observer.failed(command, type(error).__name__)
            raise
        except ApplicationError as error:
            self.observer.refused(command, type(error).__name__)
            raise
        except Exception as error:
            self.observer.failed(command, type(error).__name__)
            raise
        if result.replayed:
            self.observer.replayed(command)
        return result

    def _create(
        self,
        command: Command,
        ctx: CallContext,
        *,
        kind: str,
        aggregate_id: UUID,
        build: Build,
        claims: Sequence[Claim],
    ) -> CommandResult:
        request_id, print_ = self._keys(command, ctx)
        if (stored := self._stored(request_id, print_)) is not None:
            return self._replay(stored, print_)
        if (taken := self._claimed(claims)) is not None:
            # A retry racing its first attempt finds the claim that attempt made: its result.
            if (stored := self._stored(request_id, print_)) is not None:
                return self._replay(stored, print_)
            raise AlreadyExistsError(kind, taken[0].key, taken[1])
        meta = self._meta(request_id, ctx)
        aggregate = build(meta)
        try:
            return self._save(aggregate, request_id, print_, Effects(), claims, command, kind)
        except RecordConflictError:
            self.observer.conflict(command)
            if (stored := self._stored(request_id, print_)) is not None:
                return self._replay(stored, print_)
            if (taken := self._claimed(claims)) is not None:
                raise AlreadyExistsError(kind, taken[0].key, taken[1]) from None
            raise AlreadyExistsError(kind, str(aggregate_id), aggregate_id) from None

    def _update(
        self,
        command: AggregateCommand,
        ctx: CallContext,
        *,
        kind: type[A],
        aggregate_id: UUID,
        act: Act[A],
    ) -> CommandResult:
        # No journal lookup up front: a request id used before makes the save
        # conflict on the journal, and the first result is found then. That
        # saves a round trip on every command and costs one only on a retry.
        request_id, print_ = self._keys(command, ctx)
        with self.locks.holding((aggregate_id,)):
            try:
                return self._attempts(command, ctx, kind, aggregate_id, act, request_id, print_)
            finally:
                self.cache.settle(aggregate_id)  # given back, or dropped on the way

    def _attempts(
        self,
        command: AggregateCommand,
        ctx: CallContext,
        kind: type[A],
        aggregate_id: UUID,
        act: Act[A],
        request_id: str,
        print_: str,
    ) -> CommandResult:
        if command.request_id and (refusal := self.refusals.recall(request_id, print_)):
            raise refusal
        for attempt in range(1, self.max_attempts + 1):
            try:
                aggregate, outcome = self._decide(command, kind, aggregate_id, request_id, ctx, act)
            except (DomainError, VersionMismatchError) as error:
                # A retry racing its first attempt may be refused by the state that attempt
                # left (the tier it set is "unchanged"): the first result, not the refusal.
                if (stored := self._stored(request_id, print_)) is not None:
                    return self._replay(stored, print_)
                if command.request_id and isinstance(error, DomainError):
                    self.refusals.remember(request_id, print_, error)
                raise
            effects = outcome if isinstance(outcome, Effects) else Effects(entity_id=outcome)
            try:
                return self._save(
                    aggregate, request_id, print_, effects, (), command, kind.type_name
                )
            except RecordConflictError:
                self.observer.conflict(command)
                if (stored := self._stored(request_id, print_)) is not None:
                    return self._replay(stored, print_)
                if command.expected_version is not None:
                    actual = self.load(kind, aggregate_id).version
                    raise VersionMismatchError(
                        aggregate_id, command.expected_version, actual
                    ) from None
                logger.info(
                    "command_conflict_retry",
                    command=type(command).__name__,
                    aggregate_id=str(aggregate_id),
                    attempt=attempt,
                )
                if attempt < self.max_attempts:
                    self.observer.retry(command)
        raise ConcurrencyConflictError(aggregate_id, self.max_attempts)

    def _decide(
        self,
        command: AggregateCommand,
        kind: type[A],
        aggregate_id: UUID,
        request_id: str,
        ctx: CallContext,
        act: Act[A],
    ) -> tuple[A, UUID | Effects | None]:
        """Decide on the cached aggregate; a refusal is decided again on the stored one.

        A cached copy can be stale (another process wrote since). A stale
        acceptance is caught by the save (it conflicts); a stale refusal would
        not be, so no refusal is reported before the stored state confirms it.
        """
        aggregate, cached = self._checkout(kind, aggregate_id)
        try:
            return aggregate, self._act(command, aggregate, request_id, ctx, act)
        except (DomainError, VersionMismatchError):
            if not cached:
                raise
        aggregate = self.load(kind, aggregate_id)
        return aggregate, self._act(command, aggregate, request_id, ctx, act)

    def _act(
        self,
        command: AggregateCommand,
        aggregate: A,
        request_id: str,
        ctx: CallContext,
        act: Act[A],
    ) -> UUID | Effects | None:
        if command.expected_version is not None and aggregate.version != command.expected_version:
            raise VersionMismatchError(aggregate.id, command.expected_version, aggregate.version)
        return act(aggregate, self._meta(request_id, ctx))

    def _checkout(self, kind: type[A], aggregate_id: UUID) -> tuple[A, bool]:
        """The aggregate, from the cache if it is there (and whether it was)."""
        cached = self.cache.take(aggregate_id, wait=LENT_WAIT)
        if cached is None:
            return self.load(kind, aggregate_id), False
        if not isinstance(cached, kind):
            self.cache.give_back(cached)
            raise NotFoundError(kind.type_name, aggregate_id)
        return cached, True

    def update_many(
        self, items: Sequence[BatchItem[A]], ctx: CallContext, *, kind: type[A]
    ) -> list[CommandResult | Exception]:
        """Many commands, on any number of aggregates, decided together and saved at once.

        The bulk path: one journal query for the whole batch, each aggregate
        loaded (or taken from the cache) once and decided item after item, and
        every new event and request record written in one transaction. Each
        item gets its own outcome, in order: a result, or the error a single
        command would have raised. When the shared save fails (a concurrent
        writer, a stale copy, a request id used meanwhile), every item not yet
        answered is run again on its own through ``update``, so one item's
        conflict never costs another its result.
        """
        return _Batch(self, items, ctx, kind).run()

    @contextmanager
    def reading_current(
        self,
        wanted: Sequence[tuple[type[Aggregate], UUID]],
        positions: Callable[[Sequence[Aggregate]], tuple[UUID, Sequence[int]]],
    ) -> Iterator[Reading]:
        """Several aggregates as stored now, with the log's head and some positions,
        for a read that ends with the block.

        Cached copies are taken out (no command can change them meanwhile; one
        another read or a command holds is waited for, briefly, rather than
        loaded again), brought up to date, and given back afterwards, so the
        next command finds a current copy. Bringing them up to date and reading
        the head and the positions ``positions`` names (given the copies as
        taken) is one round trip: a consent check's reads cost one instead of
        four. An aggregate not cached is loaded first.

        No copy is held through that round trip: they are taken to learn their
        versions and the positions to ask for, given back, and taken again once
        the answer is in. Held throughout, every check on one partner (or one
        customer) queued behind the round trip of the one before it, so checks
        on a popular partner ran one round trip at a time however many threads
        served them. A copy that moved on meanwhile (a command here changed it)
        is read again, held this time.
        """
        held: list[Aggregate] = []
        try:
            read = None
            if self.cache.max_size:  # (without a cache each copy is loaded and ours alone)
                after, current = self._read_unheld(wanted, positions)
                held = self._hold(wanted)
                if [aggregate.version for aggregate in held] == [version for _, version in after]:
                    forwarded = self.log.forward(held, current)
                    read = Reading(tuple(forwarded), current.positions, current.head)
            else:
                held = self._hold(wanted)
            if read is None:
                read = self._read_held(held, positions)
            held = list(read.aggregates)
            yield read
        finally:
            self._give_back(held)

    def _read_unheld(
        self,
        wanted: Sequence[tuple[type[Aggregate], UUID]],
        positions: Callable[[Sequence[Aggregate]], tuple[UUID, Sequence[int]]],
    ) -> tuple[list[tuple[UUID, int]], CurrentRead]:
        """The copies' versions as taken, and one read of what followed, holding nothing."""
        held = self._hold(wanted)
        try:
            of, versions = positions(held)
            after = [(aggregate.id, aggregate.version) for aggregate in held]
        finally:
            self._give_back(held)
        return after, guarded(lambda: self.log.journal.read_current(after, of, versions))

    def _read_held(
        self,
        held: Sequence[Aggregate],
        positions: Callable[[Sequence[Aggregate]], tuple[UUID, Sequence[int]]],
    ) -> Reading:
        """``held`` brought up to date in one read, the caller holding them throughout."""
        of, versions = positions(held)
        forwarded, found, head = guarded(lambda: self.log.read_current(held, of, versions))
        return Reading(tuple(forwarded), found, head)

    def _hold(self, wanted: Sequence[tuple[type[Aggregate], UUID]]) -> list[Aggregate]:
        """Each aggregate, from the cache (now ours) or loaded; all given back on a failure."""
        held: list[Aggregate] = []
        try:
            for kind, aggregate_id in wanted:
                held.append(self._checkout(kind, aggregate_id)[0])
        except BaseException:
            self._give_back(held)
            raise
        return held

    def _give_back(self, held: Sequence[Aggregate]) -> None:
        for aggregate in held:
            self.cache.give_back(aggregate)

    def load(self, kind: type[A], aggregate_id: UUID) -> A:
        try:
            aggregate = guarded(lambda: self.log.load(aggregate_id))
        except AggregateNotFoundError:
            raise NotFoundError(kind.type_name, aggregate_id) from None
        if not isinstance(aggregate, kind):
            raise NotFoundError(kind.type_name, aggregate_id)
        return aggregate

    def exists(self, kind: type[A], aggregate_id: UUID) -> bool:
        try:
            self.load(kind, aggregate_id)
        except NotFoundError:
            return False
        return True

    # -------------------------------------------------------------- internals

    def _keys(self, command: Command, ctx: CallContext) -> tuple[str, str]:
        """The request id and the payload's fingerprint (``""``: nothing to journal).

        A command sent without a request id gets a fresh one, for its events'
        metadata only: nobody can retry with an id they were never given, so
        it is neither fingerprinted nor written to the journal (which would
        grow by a row no lookup can ever find, on every such command).
        """
        if command.request_id:
            return command.request_id, fingerprint(command, ctx.actor)
        return str(new_uuid()), ""

    def _meta(self, request_id: str, ctx: CallContext) -> EventMeta:
        return EventMeta(
            actor=ctx.actor,
            request_id=request_id,
            correlation_id=ctx.correlation_id,
            recorded_at=self.log.clock.now(),
        )

    def _claimed(self, claims: Sequence[Claim]) -> tuple[Claim, UUID] | None:
        journal = self.log.journal
        for claim in claims:
            holder = guarded(partial(journal.find_claim, claim.scope, claim.key))
            if holder is not None:
                return claim, holder
        return None

    def _stored(self, request_id: str, print_: str) -> StoredRequest | None:
        if not print_:  # an id of our own: never journalled
            return None
        return guarded(lambda: self.log.journal.find_request(request_id))

    @staticmethod
    def _replay(stored: StoredRequest, print_: str) -> CommandResult:
        if stored.record.fingerprint != print_:
            raise IdempotencyKeyReusedError(stored.record.request_id)
        return CommandResult(
            aggregate_id=stored.record.aggregate_id,
            version=stored.record.version,
            position=stored.position,
            entity_id=stored.record.entity_id,
            replayed=True,
        )

    def _save(
        self,
        aggregate: Aggregate,
        request_id: str,
        print_: str,
        effects: Effects,
        claims: Sequence[Claim],
        command: Command,
        kind: str,
    ) -> CommandResult:
        record = RequestRecord(
            request_id=request_id,
            fingerprint=print_,
            aggregate_id=aggregate.id,
            version=aggregate.version,
            entity_id=effects.entity_id,
        )
        recordings = guarded(
            lambda: self.log.save(
                aggregate,
                requests=(record,) if print_ else (),
                claims=tuple(claims),
                guards=effects.guards,
                destroy_keys=effects.destroy_keys,
            )
        )
        result = CommandResult(
            aggregate.id, aggregate.version, recordings[-1].notification.id, effects.entity_id
        )
        self.refusals.forget([request_id])
        for customer_id in effects.destroy_keys:
            self.log.forget_data_key(customer_id)
            self.cache.discard(customer_id)
        # Given back last: from here on another command may take it and change it.
        self.cache.give_back(aggregate)
        logger.info(
            "command_recorded",
            command=type(command).__name__,
            aggregate_type=kind,
            aggregate_id=str(result.aggregate_id),
            version=result.version,
            position=result.position,
            events=len(recordings),
        )
        self.observer.recorded(command, len(recordings))
        return result


def guarded(call: Callable[[], T]) -> T:
    """Turn "the database is not there" into one clear, retryable error."""
    try:
        return call()
    except (OperationalError, InterfaceError) as error:
        raise StoreUnavailableError(
            f"the event store is unavailable ({type(error).__name__})"
        ) from error


class _Batch(Generic[A]):
    """One ``update_many`` call (see there)."""

    def __init__(
        self,
        executor: CommandExecutor,
        items: Sequence[BatchItem[A]],
        ctx: CallContext,
        kind: type[A],
    ) -> None:
        self.executor = executor
        self.items = items
        self.kind = kind
        self.contexts = [item.ctx or ctx for item in items]
        self.keys = [
            executor._keys(item.command, item_ctx)
            for item, item_ctx in zip(items, self.contexts, strict=True)
        ]
        self.results: list[CommandResult | Exception | None] = [None] * len(items)
        self.observed: set[int] = set()

    def run(self) -> list[CommandResult | Exception]:
        executor = self.executor
        journal = executor.log.journal
        given = [
            key
            for (key, _), item in zip(self.keys, self.items, strict=True)
            if item.command.request_id
        ]
        stored = guarded(lambda: journal.find_requests(given)) if given else {}
        first_of: dict[str, int] = {}
        duplicates: list[int] = []
        by_aggregate: dict[UUID, list[int]] = {}
        for i, item in enumerate(self.items):
            request_id, print_ = self.keys[i]
            if request_id in stored:
                self.results[i] = self._replayed(stored[request_id], print_)
            elif request_id in first_of:
                duplicates.append(i)
            else:
                first_of[request_id] = i
                by_aggregate.setdefault(item.aggregate_id, []).append(i)
        with executor.locks.holding(by_aggregate):
            try:
                self._recall_refusals(by_aggregate)
                self._decide_and_save(by_aggregate)
                self._remember_refusals()
            finally:
                for aggregate_id in by_aggregate:
                    executor.cache.settle(aggregate_id)  # given back, or dropped on the way
        for i in duplicates:
            self.results[i] = self._same_as(first_of[self.keys[i][0]], self.keys[i][1])
        observer = executor.observer
        for i, (item, result) in enumerate(zip(self.items, self.results, strict=True)):
            if i in self.observed:  # run on its own: ``update`` told the observer
                continue
            if isinstance(result, CommandResult) and result.replayed:
                observer.replayed(item.command)
            elif isinstance(result, DomainError):
                observer.refused(item.command, result.reason.value)
            elif isinstance(result, ApplicationError):
                observer.refused(item.command, type(result).__name__)
        return [r if r is not None else RuntimeError("unanswered") for r in self.results]

    def _recall_refusals(self, by_aggregate: dict[UUID, list[int]]) -> None:
        """Exact retries of refused requests: refused again, not decided (under the locks)."""
        refusals = self.executor.refusals
        for aggregate_id in list(by_aggregate):
            undecided = []
            for i in by_aggregate[aggregate_id]:
                refusal = None
                if self.items[i].command.request_id:
                    refusal = refusals.recall(*self.keys[i])
                if refusal is None:
                    undecided.append(i)
                else:
                    self.results[i] = refusal
            if undecided:
                by_aggregate[aggregate_id] = undecided
            else:
                del by_aggregate[aggregate_id]

    def _remember_refusals(self) -> None:
        """The batch's refusals, for exact retries of them (still under the locks)."""
        refusals = self.executor.refusals
        for i, result in enumerate(self.results):
            if not isinstance(result, DomainError) or i in self.observed:
                continue
            if self.items[i].command.request_id:
                refusals.remember(*self.keys[i], result)

    def _decide_and_save(self, by_aggregate: dict[UUID, list[int]]) -> None:
        """Decide and save; after a conflict (another process wrote) once more from the store."""
        for fresh in (False, True):
            decided: list[tuple[A, dict[int, RequestRecord]]] = []
            for aggregate_id, indexes in by_aggregate.items():
                outcome = self._decide(aggregate_id, indexes, fresh=fresh)
                if outcome is not None:
                    decided.append(outcome)
            self._recheck_refusals()
            if not decided or self._save(decided):
                return
        self._one_by_one([i for indexes in by_aggregate.values() for i in indexes])

    def _decide(
        self, aggregate_id: UUID, indexes: list[int], *, fresh: bool
    ) -> tuple[A, dict[int, RequestRecord]] | None:
        """Decide one aggregate's items in order; a refusal on a cached copy: all again, fresh."""
        executor = self.executor
        for from_store in (fresh, True):
            try:
                if from_store:
                    aggregate, cached = executor.load(self.kind, aggregate_id), False
                else:
                    aggregate, cached = executor._checkout(self.kind, aggregate_id)
            except NotFoundError as error:
                for i in indexes:
                    self.results[i] = error
                return None
            records: dict[int, RequestRecord] = {}
            refused = False
            for i in indexes:
                request_id, print_ = self.keys[i]
                item = self.items[i]
                try:
                    outcome = executor._act(
                        item.command, aggregate, request_id, self.contexts[i], item.act
                    )
                except (DomainError, VersionMismatchError) as error:
                    self.results[i] = error
                    refused = True
                    continue
                if isinstance(outcome, Effects):
                    raise TypeError("a batched command may only return an entity id")
                records[i] = RequestRecord(
                    request_id, print_, aggregate.id, aggregate.version, outcome
                )
            if not (refused and cached):
                return (aggregate, records) if records else None
        return None  # unreachable: the fresh pass always returns

    def _recheck_refusals(self) -> None:
        """A refused item whose request was recorded meanwhile (a racing first try): its result."""
        refused = [
            i
            for i, result in enumerate(self.results)
            if isinstance(result, (DomainError, VersionMismatchError))
            and self.items[i].command.request_id
        ]
        if not refused:
            return
        journal = self.executor.log.journal
        stored = guarded(lambda: journal.find_requests([self.keys[i][0] for i in refused]))
        for i in refused:
            request_id, print_ = self.keys[i]
            if request_id in stored:
                self.results[i] = self._replayed(stored[request_id], print_)

    def _save(self, decided: list[tuple[A, dict[int, RequestRecord]]]) -> bool:
        """Write the batch in one transaction; False (nothing written) on a conflict."""
        executor = self.executor
        records = [record for _, by_index in decided for record in by_index.values()]
        journalled = tuple(record for record in records if record.fingerprint)
        aggregates = [aggregate for aggregate, _ in decided]
        try:
            recordings = guarded(lambda: executor.log.save(*aggregates, requests=journalled))
        except RecordConflictError:
            for aggregate in aggregates:
                executor.cache.discard(aggregate.id)
            return False
        executor.refusals.forget([record.request_id for record in records])
        positions = {
            (r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
            for r in recordings
        }
        for _, by_index in decided:
            for i, record in by_index.items():
                self.results[i] = CommandResult(
                    record.aggregate_id,
                    record.version,
                    positions[(record.aggregate_id, record.version)],
                    record.entity_id,
                )
                executor.observer.recorded(self.items[i].command, 1)
        for aggregate in aggregates:
            executor.cache.give_back(aggregate)
        if len({id(ctx) for ctx in self.contexts}) > 1:
            self._log_each(decided, positions)
            return True
        logger.info(
            "commands_recorded",
            command=type(self.items[0].command).__name__,
            aggregate_type=self.kind.type_name,
            commands=len(records),
            aggregates=len(aggregates),
            first_position=min(positions.values()),
            last_position=max(positions.values()),
        )
        return True

    def _log_each(
        self,
        decided: list[tuple[A, dict[int, RequestRecord]]],
        positions: dict[tuple[UUID, int], int],
    ) -> None:
        """A batch gathered from several callers: each command's line, with its caller's id.

        The log joins a caller's report to what it recorded by correlation id,
        which one line for the whole batch could carry for one caller only.
        """
        for _, by_index in decided:
            for i, record in by_index.items():
                logger.info(
                    "command_recorded",
                    command=type(self.items[i].command).__name__,
                    aggregate_type=self.kind.type_name,
                    aggregate_id=str(record.aggregate_id),
                    version=record.version,
                    position=positions[(record.aggregate_id, record.version)],
                    events=1,
                    correlation_id=self.contexts[i].correlation_id,
                )

    def _one_by_one(self, indexes: list[int]) -> None:
        executor = self.executor
        for i in indexes:
            item = self.items[i]
            self.observed.add(i)
            try:
                self.results[i] = executor.update(
                    item.command,
                    self.contexts[i],
                    kind=self.kind,
                    aggregate_id=item.aggregate_id,
                    act=item.act,
                )
            except (ApplicationError, DomainError) as error:
                self.results[i] = error

    def _replayed(self, stored: StoredRequest, print_: str) -> CommandResult | Exception:
        try:
            return self.executor._replay(stored, print_)
        except IdempotencyKeyReusedError as error:
            return error

    def _same_as(self, first: int, print_: str) -> CommandResult | Exception:
        """A request id repeated within the batch: the first's outcome, as a retry gets it."""
        if self.keys[first][1] != print_:
            return IdempotencyKeyReusedError(self.keys[first][0])
        result = self.results[first]
        if isinstance(result, CommandResult):
            return replace(result, replayed=True)
        return result if result is not None else RuntimeError("unanswered")
