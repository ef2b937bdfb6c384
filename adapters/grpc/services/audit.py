"""AuditService: the log, replays and the hash chain, for auditors and followers.

Events are served only up to the audit trail's position, so every one of
them carries its chain hash. The log is read a page of positions at a time
(with the type filters pushed into the read), with the trail's entries for
that page (in the same statement on PostgreSQL, one more read elsewhere),
so memory is bounded by a batch and a page however long the log. Following waits for the trail in
short, bounded steps, so a stream notices within a second that its client
went away or its deadline is near, and sends a heartbeat when idle.

A batch is never built as message objects: each event is written in its
serialised form (``EventTranslator.stored_wire``) and the batch is their
concatenation, parsed once into the response.

A batch also ends once its events reach ``BATCH_BYTES``, so no message comes
near the 4 MiB limit however large the events are. A slow reader is paced by
gRPC itself: the synchronous server asks a stream's generator for its next
batch only when the previous one has been handed to the transport, which
HTTP/2 flow control holds while the client does not read. A stalled stream
thus holds one batch, the rest of a page and the page read ahead (and its
thread: see ``adapters.grpc.limits``), never the log
(``tests/e2e/test_backpressure.py`` measures it).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from adapters.grpc import server
from adapters.grpc.errors import RpcError, invalid
from adapters.grpc.events import EVENTS_FIELD, Disclosure, EventTranslator, varint
from adapters.grpc.generated.accord.v1 import audit_pb2, audit_pb2_grpc
from adapters.grpc.interceptor import current_call
from adapters.grpc.services.reads import await_log, log_position, read_wait
from adapters.grpc.state import customer_message, partner_message
from adapters.grpc.translate import MAX_REPEATED, instant_in, uuid_in
from adapters.postgres.views import PostgresReader, PostgresViewStore, Row
from application.errors import FieldViolation, NotFoundError
from application.service import Accord
from domain.events import DomainEvent
from projections import audit_trail
from projections.read_models import NotCaughtUpError, ReadModels
from projections.store import Doc

DEFAULT_BATCH = 500
MAX_BATCH = 5000
BATCH_BYTES = 1024 * 1024
"""A batch ends once its events reach this size (it always holds at least one event)."""
READ_PAGE = 100
"""One aggregate's events read from the store at a time while a batch fills."""
LOG_PAGE = 1000
"""Positions of the log in a stream's first page, and in every page of a filtered read."""
PAGE_BYTES = 2 * BATCH_BYTES
"""About how much stored JSON a page of an unfiltered read holds (a stream holds two pages)."""
READ_AHEAD = 4
"""Threads reading streams' next pages (more streams' reads wait their turn)."""
HEARTBEAT_SECONDS = 5.0
"""An idle follower gets an empty, caught-up batch this often, so it knows the stream is alive."""
POLL_SECONDS = 1.0
"""A follower waits for the trail at most this long at a time before checking on its client."""
DEADLINE_MARGIN = 0.5
"""A follow ends (OK) this long before the call's deadline rather than fail DEADLINE_EXCEEDED."""

_HASH = re.compile(r"[0-9a-fA-F]{64}")


def _batch_size(requested: int, violations: list[FieldViolation]) -> int:
    if requested < 0:
        violations.append(FieldViolation("batch_size", "must not be negative"))
    return min(requested or DEFAULT_BATCH, MAX_BATCH)


def _batch(messages: Iterator[audit_pb2.Event], limit: int) -> tuple[list[audit_pb2.Event], bool]:
    """The next ``limit`` of ``messages``, fewer if they reach ``BATCH_BYTES`` first.

    And whether the batch ended at a limit (more may follow) rather than at the
    end of ``messages``. What is not taken is never made: ``messages`` is lazy,
    so a batch reads and decrypts little more than it sends.
    """
    taken: list[audit_pb2.Event] = []
    size = 0
    for message in messages:
        taken.append(message)
        size += message.ByteSize()
        if len(taken) >= limit or size >= BATCH_BYTES:
            return taken, True
    return taken, False


def _filled(events: Iterator[tuple[int, bytes]], limit: int) -> tuple[bytes, int, bool]:
    """The next ``limit`` of ``events`` as a response's ``events`` field, fewer if they reach
    ``BATCH_BYTES`` first.

    With the position of the last one taken (0: none), and whether the batch
    ended at a limit (more may follow). What is not taken is never made.
    """
    parts: list[bytes] = []
    size = last = 0
    for taken, (last, wire) in enumerate(events, start=1):
        length = len(wire)
        parts += (EVENTS_FIELD, varint(length), wire)  # delimited, joined once
        size += length
        if taken >= limit or size >= BATCH_BYTES:
            return b"".join(parts), last, True
    return b"".join(parts), last, False


def _not_negative(field: str, value: int, violations: list[FieldViolation]) -> None:
    if value < 0:
        violations.append(FieldViolation(field, "must not be negative"))


def _check(violations: list[FieldViolation]) -> None:
    if violations:
        raise RpcError(invalid(violations))


def _optional_uuid(field: str, value: str, violations: list[FieldViolation]) -> UUID | None:
    try:
        return uuid_in(field, value, required=False)
    except RpcError:
        violations.append(FieldViolation(field, "must be a UUID"))
        return None


@dataclass(frozen=True)
class _Filter:
    """What a ReadEvents request asks for, validated."""

    aggregate_id: UUID | None
    aggregate_type: str | None
    types: frozenset[str] | None
    """Event types that may pass (None: all); an empty set matches nothing."""
    batch_size: int

    @classmethod
    def of(cls, request: audit_pb2.ReadEventsRequest) -> _Filter:
        violations: list[FieldViolation] = []
        _not_negative("from_position", request.from_position, violations)
        _not_negative("min_position", request.min_position, violations)
        size = _batch_size(request.batch_size, violations)
        aggregate_id = _optional_uuid("aggregate_id", request.aggregate_id, violations)
        registry = DomainEvent.registry
        aggregate_types = {c.aggregate_type for c in registry.values()}
        aggregate_type = request.aggregate_type or None
        if aggregate_type is not None and aggregate_type not in aggregate_types:
            violations.append(
                FieldViolation(
                    "aggregate_type", f"must be one of {', '.join(sorted(aggregate_types))}"
                )
            )
        if len(request.types) > MAX_REPEATED:
            violations.append(FieldViolation("types", f"at most {MAX_REPEATED} items"))
        for index, name in enumerate(request.types[:MAX_REPEATED]):
            if name not in registry:
                violations.append(FieldViolation(f"types[{index}]", "not a known event type"))
        _check(violations)
        types = frozenset(request.types) or None
        if aggregate_type is not None:
            of_type = frozenset(
                t for t, c in registry.items() if c.aggregate_type == aggregate_type
            )
            types = of_type if types is None else types & of_type
        return cls(aggregate_id, aggregate_type, types, size)

    def passes(self, doc: Doc) -> bool:
        return self.types is None or doc["type"] in self.types


@dataclass(frozen=True)
class _Page:
    """A page of the log, and the trail's entries of its events by position."""

    rows: list[Row]
    entries: dict[int, Doc]


_POSITION = b"\x10"
"""The tag of ``ReadEventsResponse.position`` (field 2, a varint)."""
_CAUGHT_UP = b"\x18\x01"
"""``ReadEventsResponse.caught_up`` (field 3) set."""


@dataclass(frozen=True)
class _Batch:
    """A ReadEvents response as it goes out, and what the stream goes on from.

    A batch of the whole log is its serialised form (the events as written,
    then its position and whether it caught up, in field order, as
    ``SerializeToString`` writes them), which the interceptor's serializer
    passes on as it is; other responses are messages.
    """

    response: audit_pb2.ReadEventsResponse | bytes
    position: int
    caught_up: bool
    events: bool

    @classmethod
    def of(cls, message: audit_pb2.ReadEventsResponse) -> _Batch:
        return cls(message, message.position, message.caught_up, bool(message.events))


class _LogCursor:
    """Where one ReadEvents stream is in the log, holding the rest of the page it read last.

    The log is read a page at a time, but a batch may end mid-page (at its
    byte limit): the events it did not take wait here for the next batch, so a
    stream reads each event from the store once, and never holds more than a
    page of them.

    A page is a range of positions, not a count of events, so its query reads
    at most a page of rows whatever plan the database picks: bounded only by
    the head, a count was planned as a scan (and sort) of the whole rest of
    the log while the table's statistics were stale, as after a bulk load.
    Filtered, a page spans ``LOG_PAGE`` positions, since few of its events may
    pass. Unfiltered, pages after the first are sized by the events seen so far
    to hold about ``PAGE_BYTES``, never more events than a batch: a log of
    small events is read in few round trips (each costs a pool checkout, and
    outside PostgreSQL a read of the trail too), one of large events in pages
    that stay small.

    Once a page is read, the next one (up to the head as known then) is read
    in another thread while this one is sent: the database's time for it
    (about a tenth of a replay's) no longer holds the stream up. A stream
    thus holds at most two pages.
    """

    def __init__(self, servicer: AuditServicer, wanted: _Filter, after: int) -> None:
        self.servicer = servicer
        self.topics = sorted(wanted.types or ())
        self.none_pass = wanted.types == frozenset()
        self.batch_size = wanted.batch_size
        self.span = LOG_PAGE if self.topics else min(LOG_PAGE, wanted.batch_size)
        self.read_to = after
        """The last position read from the store."""
        self.pending: deque[Row] = deque()
        self.entries: dict[int, Doc] = {}
        """The trail's entries of the ``pending`` events, by position."""
        self.ahead: tuple[int, int, Future[_Page]] | None = None
        """The next page, being read: its first and last positions, and the read."""

    def events(self, head: int, disclosure: Disclosure) -> Iterator[tuple[int, bytes]]:
        """The events up to ``head`` that pass, lazily: a batch takes what it can hold.

        Each as its position and its serialised message. The data keys a page
        needs are read in one go: the rest of a page when a batch starts (its
        disclosure is new), a page when it is read.
        """
        wire = self.servicer.translator.stored_wire
        disclosure.prefetch(row[1] for row in self.pending)
        while True:
            pending = self.pending
            while pending and pending[0][0] <= head:
                position, originator_id, version, topic, state = pending.popleft()
                entry = self.entries.pop(position)
                yield (
                    position,
                    wire(position, originator_id, version, topic, state, entry, disclosure),
                )
            if pending or self.none_pass or self.read_to >= head:
                return
            self._read(head)
            disclosure.prefetch(row[1] for row in pending)

    def _read(self, head: int) -> None:
        start = self.read_to + 1
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead[0] == start:
            stop, page = ahead[1], ahead[2].result()
        else:
            stop = min(head, self.read_to + self.span)
            page = self.servicer._log_page(start, stop, self.topics, self.span)
        rows = page.rows
        self.entries = page.entries
        self.pending.extend(rows)
        self.read_to = stop
        if rows and not self.topics:
            stored = sum(len(row[4]) for row in rows)
            fits = PAGE_BYTES * len(rows) // max(stored, 1)
            self.span = max(1, min(fits, self.batch_size, MAX_BATCH))
        if stop < head:
            following = min(head, stop + self.span)
            read = self.servicer.read_ahead.submit(
                self.servicer._log_page, stop + 1, following, self.topics, self.span
            )
            self.ahead = (stop + 1, following, read)

    def close(self) -> None:
        """The stream is over: a page not yet being read is not read; one being read is
        waited for, so that no read outlives its stream."""
        if self.ahead is not None:
            read = self.ahead[2]
            self.ahead = None
            if not read.cancel():
                wait([read])


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, accord: Accord, read_models: ReadModels) -> None:
        self.accord = accord
        self.log = accord.log
        self.read_models = read_models
        self.translator = EventTranslator(accord.log.vault)
        self.read_ahead = ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="accord-log-ahead")
        """Reads the next page of ReadEvents streams (see ``_LogCursor``)."""

    # ---------------------------------------------------------------- the log

    def _log_rows(self, start: int, stop: int, topics: Sequence[str], limit: int) -> list[Row]:
        """The log's events at positions ``start``..``stop`` (of ``topics``, if any), as rows.

        From PostgreSQL in binary, into tuples; from another store, by the library.
        """
        views = self.read_models.views
        if isinstance(views, PostgresViewStore):
            return views.read_log_range(start, stop, topics, limit)
        return [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in self.log.recorder.select_notifications(
                start=start, limit=limit, stop=stop, topics=topics
            )
        ]

    def _log_page(self, start: int, stop: int, topics: Sequence[str], limit: int) -> _Page:
        """``_log_rows`` with the trail's entries for them: in one read where the store can.

        From PostgreSQL, one statement reads both (in one snapshot); an entry
        it cannot take apart there (or a missing one) sends the page the long
        way, which reads the entries as documents (and fails for a missing one).
        """
        with self.read_models.read(audit_trail.NAME) as reader:
            if isinstance(reader, PostgresReader):
                joined = reader.log_with_entries(start, stop, topics, limit)
                entries = {row[0]: entry for row, entry in joined if entry is not None}
                rows = [row for row, _ in joined]
                if len(entries) == len(rows):
                    return _Page(rows, entries)
        rows = self._log_rows(start, stop, topics, limit)
        return _Page(rows, self._trail_entries([row[0] for row in rows]))

    # -------------------------------------------------------------- the trail

    def _await_trail(self, position: int) -> None:
        """Wait (bounded by the deadline) until the audit trail has applied ``position``."""
        runner = self.read_models.runner
        if position and not runner.wait_for(audit_trail.NAME, position, read_wait()):
            raise NotCaughtUpError(
                audit_trail.NAME, position, runner.active_position(audit_trail.NAME)
            )

    def _trail_head(self) -> int:
        return self.read_models.runner.active_position(audit_trail.NAME)

    def _trail_entries(self, positions: Sequence[int]) -> dict[int, Doc]:
        """The trail's entries at ``positions`` (ascending), in one scan when they are dense.

        When a type filter leaves them sparse, one lookup each instead, so a rare
        type in a long log never reads more than the batch's own entries.
        """
        if not positions:
            return {}
        span = positions[-1] - positions[0] + 1
        with self.read_models.read(audit_trail.NAME) as reader:
            if span <= 2 * len(positions):
                found = audit_trail.events(reader, after=positions[0] - 1, limit=span)
                entries = {doc["position"]: doc for doc in found}
            else:
                entries = {}
                for position in positions:
                    for doc in audit_trail.events(reader, after=position - 1, limit=1):
                        entries[doc["position"]] = doc
        missing = [p for p in positions if p not in entries]
        if missing:
            raise RuntimeError(f"the audit trail has no entry at position {missing[0]}")
        return entries

    # ------------------------------------------------------------- ReadEvents

    def ReadEvents(
        self, request: audit_pb2.ReadEventsRequest, _: Any
    ) -> Generator[Any, None, None]:  # ReadEventsResponse messages, or their serialised form
        """Catch up batch by batch; then, if following, until the client leaves or time is up.

        Ending just before the deadline lets a follower see a clean end of stream (OK)
        and resume from the last batch's position, instead of a DEADLINE_EXCEEDED.
        A batch of the whole log goes out as written (see ``_Batch``).
        """
        wanted = _Filter.of(request)
        self._await_trail(request.min_position)
        after = max(request.from_position, 1) - 1
        cursor = _LogCursor(self, wanted, after)
        try:
            yield from self._stream(request, wanted, cursor, after)
        finally:
            cursor.close()

    def _stream(
        self, request: audit_pb2.ReadEventsRequest, wanted: _Filter, cursor: _LogCursor, after: int
    ) -> Iterator[Any]:
        call = current_call()
        while True:
            batch = self._events_batch(wanted, cursor, after, call.sees_personal_data)
            after = batch.position
            yield batch.response
            if batch.caught_up or not call.context.is_active():
                break
        if not request.follow:
            return
        last_sent = time.monotonic()
        while call.context.is_active() and not server.stopping.is_set():
            remaining = call.time_left(float("inf"))
            if remaining <= DEADLINE_MARGIN:
                return
            wait = min(POLL_SECONDS, remaining - DEADLINE_MARGIN)
            if self.read_models.runner.wait_for(audit_trail.NAME, after + 1, wait):
                batch = self._events_batch(wanted, cursor, after, call.sees_personal_data)
                after = batch.position
            else:
                batch = _Batch.of(audit_pb2.ReadEventsResponse(position=after, caught_up=True))
            if batch.events or time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
                yield batch.response
                last_sent = time.monotonic()

    def _events_batch(
        self, wanted: _Filter, cursor: _LogCursor, after: int, show_personal: bool
    ) -> _Batch:
        """The next batch after position ``after`` (the last one examined so far)."""
        if wanted.aggregate_id is not None:
            return _Batch.of(
                self._aggregate_batch(wanted, wanted.aggregate_id, after, show_personal)
            )
        head = self._trail_head()
        disclosure = self.translator.disclosure(show_personal=show_personal)
        events, last, more = _filled(cursor.events(head, disclosure), wanted.batch_size)
        examined = last if more else max(head, after)
        caught_up = examined >= head
        response = b"".join(
            (
                events,
                _POSITION + varint(examined) if examined else b"",
                _CAUGHT_UP if caught_up else b"",
            )
        )
        return _Batch(response, examined, caught_up, bool(events))

    def _aggregate_batch(
        self, wanted: _Filter, aggregate_id: UUID, after: int, show_personal: bool
    ) -> audit_pb2.ReadEventsResponse:
        """One aggregate's events, found through the trail's index by aggregate."""
        with self.read_models.read(audit_trail.NAME) as reader:
            head = reader.position
            entries = list(
                audit_trail.events(
                    reader, after=after, limit=wanted.batch_size, aggregate_id=str(aggregate_id)
                )
            )
        full = len(entries) == wanted.batch_size
        examined = entries[-1]["position"] if full else max(head, after)
        chosen = [e for e in entries if wanted.passes(e)]
        disclosure = self.translator.disclosure(show_personal=show_personal)
        events, more = _batch(
            self._aggregate_messages(aggregate_id, chosen, disclosure), wanted.batch_size
        )
        if more and len(events) < len(chosen):
            examined = events[-1].position
        return audit_pb2.ReadEventsResponse(
            events=events, position=examined, caught_up=examined >= head
        )

    def _aggregate_messages(
        self, aggregate_id: UUID, entries: Sequence[Doc], disclosure: Disclosure
    ) -> Iterator[audit_pb2.Event]:
        """The events of the trail's ``entries`` (one aggregate's, by version), a page at a time."""
        for start in range(0, len(entries), READ_PAGE):
            page = entries[start : start + READ_PAGE]
            stored = self.log.recorder.select_events(
                aggregate_id, gt=page[0]["version"] - 1, lte=page[-1]["version"]
            )
            by_version = {s.originator_version: s for s in stored}
            for entry in page:
                yield self.translator.message(
                    by_version[entry["version"]], entry["position"], entry, disclosure
                )

    # ---------------------------------------------------- GetAggregateHistory

    def GetAggregateHistory(
        self, request: audit_pb2.GetAggregateHistoryRequest, _: Any
    ) -> Iterator[audit_pb2.GetAggregateHistoryResponse]:
        violations: list[FieldViolation] = []
        aggregate_id = _optional_uuid("aggregate_id", request.aggregate_id, violations)
        if not request.aggregate_id:
            violations.append(FieldViolation("aggregate_id", "required"))
        _not_negative("from_version", request.from_version, violations)
        _not_negative("min_position", request.min_position, violations)
        size = _batch_size(request.batch_size, violations)
        to_version = request.to_version if request.HasField("to_version") else None
        if to_version is not None and to_version < max(request.from_version, 1):
            violations.append(FieldViolation("to_version", "must be at least from_version (and 1)"))
        _check(violations)
        assert aggregate_id is not None
        await_log(self.log, request.min_position)
        positions = self.log.journal.positions(aggregate_id)
        if not positions:
            raise NotFoundError("aggregate", aggregate_id)
        first = max(request.from_version, 1)
        last = max(positions) if to_version is None else to_version
        versions = [v for v in sorted(positions) if first <= v <= last]
        if not versions:
            return
        self._await_trail(positions[versions[-1]])
        disclosure = self.translator.disclosure(show_personal=current_call().sees_personal_data)
        messages = self._history_messages(aggregate_id, versions, positions, disclosure)
        more = True
        while more:
            events, more = _batch(messages, size)
            if events:
                yield audit_pb2.GetAggregateHistoryResponse(events=events)

    def _history_messages(
        self,
        aggregate_id: UUID,
        versions: Sequence[int],
        positions: Mapping[int, int],
        disclosure: Disclosure,
    ) -> Iterator[audit_pb2.Event]:
        """The events at ``versions`` (ascending) of one aggregate, a page at a time."""
        for start in range(0, len(versions), READ_PAGE):
            page = versions[start : start + READ_PAGE]
            stored = self.log.recorder.select_events(aggregate_id, gt=page[0] - 1, lte=page[-1])
            with self.read_models.read(audit_trail.NAME) as reader:
                entries = {
                    doc["version"]: doc
                    for doc in audit_trail.events(
                        reader,
                        after=positions[page[0]] - 1,
                        limit=len(page),
                        aggregate_id=str(aggregate_id),
                    )
                }
            for event in stored:
                version = event.originator_version
                yield self.translator.message(
                    event, positions[version], entries[version], disclosure
                )

    # --------------------------------------------------------- GetAggregateAt

    def GetAggregateAt(
        self, request: audit_pb2.GetAggregateAtRequest, _: Any
    ) -> audit_pb2.GetAggregateAtResponse:
        violations: list[FieldViolation] = []
        aggregate_id = _optional_uuid("aggregate_id", request.aggregate_id, violations)
        if not request.aggregate_id:
            violations.append(FieldViolation("aggregate_id", "required"))
        _not_negative("min_position", request.min_position, violations)
        if request.HasField("as_of_version") and request.HasField("as_of_time"):
            violations.append(
                FieldViolation("as_of_version", "give as_of_version or as_of_time, not both")
            )
        _check(violations)
        assert aggregate_id is not None
        await_log(self.log, request.min_position)
        aggregate_type = self._aggregate_type(aggregate_id)
        as_of_time = (
            instant_in("as_of_time", request.as_of_time) if request.HasField("as_of_time") else None
        )
        as_of_version = request.as_of_version if request.HasField("as_of_version") else None
        at = as_of_time or self.accord.clock.now()
        base_currency = self.accord.settings.base_currency
        positions = self.log.journal.positions(aggregate_id)
        queries = self.accord.queries
        if aggregate_type == "customer":
            customer = queries.customer(
                aggregate_id, as_of_version=as_of_version, as_of_time=as_of_time
            )
            return audit_pb2.GetAggregateAtResponse(
                customer=customer_message(
                    customer,
                    positions=positions,
                    at=at,
                    base_currency=base_currency,
                    show_personal=current_call().sees_personal_data,
                ),
                aggregate_type=aggregate_type,
                version=customer.version,
                position=positions.get(customer.version, 0),
            )
        partner = queries.partner(aggregate_id, as_of_version=as_of_version, as_of_time=as_of_time)
        return audit_pb2.GetAggregateAtResponse(
            partner=partner_message(partner, at=at, base_currency=base_currency),
            aggregate_type=aggregate_type,
            version=partner.version,
            position=positions.get(partner.version, 0),
        )

    def _aggregate_type(self, aggregate_id: UUID) -> str:
        """From the creating event's topic: no need to load (or decrypt) anything to know it."""
        created = self.log.recorder.select_events(aggregate_id, limit=1)
        if not created:
            raise NotFoundError("aggregate", aggregate_id)
        return DomainEvent.for_topic(created[0].topic).aggregate_type

    # ------------------------------------------------------ digest and verify

    def GetDigest(self, request: audit_pb2.GetDigestRequest, _: Any) -> audit_pb2.GetDigestResponse:
        violations: list[FieldViolation] = []
        _not_negative("min_position", request.min_position, violations)
        _check(violations)
        with self.read_models.read(
            audit_trail.NAME, min_position=request.min_position, timeout=read_wait()
        ) as reader:
            position, digest = audit_trail.digest(reader)
        return audit_pb2.GetDigestResponse(position=position, hash=digest)

    def VerifyLog(self, request: audit_pb2.VerifyLogRequest, _: Any) -> audit_pb2.VerifyLogResponse:
        violations: list[FieldViolation] = []
        if request.position < 1:
            violations.append(FieldViolation("position", "must be at least 1"))
        if not _HASH.fullmatch(request.hash):
            violations.append(FieldViolation("hash", "must be 64 hex digits"))
        _check(violations)
        # The recorded hashes name the first mismatch, so the trail must have reached the
        # digest's position (or the log's end, for a digest beyond it: that only fails to verify).
        self._await_trail(min(request.position, log_position(self.log)))
        with self.read_models.read(audit_trail.NAME) as reader:
            result = audit_trail.verify(
                self.log.recorder, reader, request.position, request.hash.lower()
            )
        response = audit_pb2.VerifyLogResponse(
            ok=result.ok, position=result.position, hash=result.hash
        )
        if result.first_mismatch_position is not None:
            response.first_mismatch_position = result.first_mismatch_position
        return response
