"""Running a command: idempotency, optimistic concurrency, bounded retries.

One path for every command. It loads the aggregate, lets the domain decide,
and saves the new events together with the request record (and any unique
claims) in one transaction. A version conflict means another writer got
there first: the command is decided again against the new state, up to
``max_attempts`` times, unless the caller pinned ``expected_version``, in
which case a conflict is the caller's to resolve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar
from uuid import UUID, uuid4

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
from application.journal import Claim, RequestRecord, StoredRequest, VersionGuard, fingerprint
from application.observer import CommandObserver, NoObserver
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


Build = Callable[[EventMeta], Aggregate]
Act = Callable[[A, EventMeta], "UUID | Effects | None"]


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
        if (stored := self._stored(request_id)) is not None:
            return self._replay(stored, print_)
        if (taken := self._claimed(claims)) is not None:
            # A retry racing its first attempt finds the claim that attempt made: its result.
            if (stored := self._stored(request_id)) is not None:
                return self._replay(stored, print_)
            raise AlreadyExistsError(kind, taken[0].key, taken[1])
        meta = self._meta(request_id, ctx)
        aggregate = build(meta)
        try:
            return self._save(aggregate, request_id, print_, Effects(), claims, command, kind)
        except RecordConflictError:
            self.observer.conflict(command)
            if (stored := self._stored(request_id)) is not None:
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
        for attempt in range(1, self.max_attempts + 1):
            try:
                aggregate, outcome = self._decide(command, kind, aggregate_id, request_id, ctx, act)
            except (DomainError, VersionMismatchError):
                # A retry racing its first attempt may be refused by the state that attempt
                # left (the tier it set is "unchanged"): the first result, not the refusal.
                if (stored := self._stored(request_id)) is not None:
                    return self._replay(stored, print_)
                raise
            effects = outcome if isinstance(outcome, Effects) else Effects(entity_id=outcome)
            try:
                return self._save(
                    aggregate, request_id, print_, effects, (), command, kind.type_name
                )
            except RecordConflictError:
                self.observer.conflict(command)
                if (stored := self._stored(request_id)) is not None:
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
        cached = self.cache.take(aggregate_id)
        if cached is None:
            return self.load(kind, aggregate_id), False
        if not isinstance(cached, kind):
            self.cache.give_back(cached)
            raise NotFoundError(kind.type_name, aggregate_id)
        return cached, True

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
        return command.request_id or str(uuid4()), fingerprint(command, ctx.actor)

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

    def _stored(self, request_id: str) -> StoredRequest | None:
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
                request=record,
                claims=tuple(claims),
                guards=effects.guards,
                destroy_keys=effects.destroy_keys,
            )
        )
        result = CommandResult(
            aggregate.id, aggregate.version, recordings[-1].notification.id, effects.entity_id
        )
        for customer_id in effects.destroy_keys:
            self.log.forget_data_key(customer_id)
            self.cache.discard(customer_id)
        if not effects.destroy_keys:
            # Given back last: from here on another command may take it and change it.
            # An erased customer is not kept, so no plaintext stays behind in memory.
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
