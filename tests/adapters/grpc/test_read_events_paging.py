"""ReadEvents reads the log once, a bounded range of positions at a time, however batches end.

Batches end at a count or at ``BATCH_BYTES``, pages at ``LOG_PAGE``; here
both are made small so batches end in the middle of pages. The servicer is
called in-process, as the interceptor would call it for the local admin.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any, cast

import grpc
import pytest
from psycopg.sql import SQL

from adapters.grpc import interceptor
from adapters.grpc.generated.accord.v1 import audit_pb2
from adapters.grpc.services import audit
from adapters.grpc.services.audit import AuditServicer
from adapters.grpc.tokens import LOCAL_ADMIN, Principal
from adapters.postgres.views import PostgresViewStore
from application import commands as c
from application.service import Accord
from projections.audit_trail import AuditTrail
from tests import builders
from tests.builders import CTX, register_customer
from tests.conftest import ReadModelsFactory
from tests.support import FakeClock

PAGE = 16


class _Context:
    """The little of a ``grpc.ServicerContext`` that ReadEvents asks of its call."""

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return None


AUDITOR = Principal("auditor", frozenset({"auditor"}))
"""Replays history without personal data."""


@contextmanager
def _as_local_admin(principal: Principal = LOCAL_ADMIN) -> Iterator[None]:
    context = cast(grpc.ServicerContext, _Context())
    token = interceptor._current.set(
        interceptor.Call("/accord.v1.AuditService/ReadEvents", principal, "c", context)
    )
    try:
        yield
    finally:
        interceptor._current.reset(token)


@pytest.fixture
def servicer(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> AuditServicer:
    builders.bulk_purchases(accord, customers=3, per_customer=30, now=clock.now())
    views = make_read_models(accord, [AuditTrail()])
    views.runner.catch_up()
    return AuditServicer(accord, views)


@pytest.fixture
def reads(servicer: AuditServicer, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (start, stop) of every read of the log (stop -1: none), with small pages and batches."""
    monkeypatch.setattr(audit, "LOG_PAGE", PAGE)
    monkeypatch.setattr(audit, "BATCH_BYTES", 2500)
    select = servicer._log_page
    seen: list[tuple[int, int]] = []

    def recording(start: int, stop: int, topics: Any, limit: int) -> Any:
        seen.append((start, stop))
        return select(start, stop, topics, limit)

    monkeypatch.setattr(servicer, "_log_page", recording)
    return seen


def _received(
    responses: Iterator[audit_pb2.ReadEventsResponse | bytes],
) -> Iterator[audit_pb2.ReadEventsResponse]:
    """As a client receives them: a response the servicer wrote itself, parsed."""
    for response in responses:
        if isinstance(response, bytes):
            yield audit_pb2.ReadEventsResponse.FromString(response)
        else:
            yield response


def _read(servicer: AuditServicer, **fields: Any) -> list[audit_pb2.ReadEventsResponse]:
    with _as_local_admin():
        return list(_received(servicer.ReadEvents(audit_pb2.ReadEventsRequest(**fields), None)))


def _log(servicer: AuditServicer) -> list[Any]:
    return list(servicer.log.recorder.select_notifications(start=1, limit=10_000))


def test_batches_ending_mid_page_send_every_event_once_and_read_each_once(
    servicer: AuditServicer, reads: list[tuple[int, int]]
) -> None:
    log = _log(servicer)
    reads.clear()

    batches = _read(servicer, batch_size=PAGE)

    sent = [event.position for batch in batches for event in batch.events]
    assert sent == [n.id for n in log]
    assert len(batches) > len(log) / PAGE  # the byte limit ended batches mid-page
    for batch in batches[:-1]:
        assert (batch.position, batch.caught_up) == (batch.events[-1].position, False)
    assert (batches[-1].position, batches[-1].caught_up) == (log[-1].id, True)
    # Ranges of at most a page, each following the last: no event is read twice.
    assert reads[0][0] == 1
    assert reads[-1][1] == log[-1].id
    assert all(stop - start < PAGE for start, stop in reads)
    for (_, stop), (next_start, _) in pairwise(reads):
        assert next_start == stop + 1


def test_a_batch_written_by_the_servicer_is_the_serialised_response_byte_for_byte(
    servicer: AuditServicer,
) -> None:
    """What the interceptor passes on as it is must be what serialising the message gives."""
    log = _log(servicer)
    with _as_local_admin():
        sent = list(servicer.ReadEvents(audit_pb2.ReadEventsRequest(batch_size=40), None))
        past_the_head = list(
            servicer.ReadEvents(audit_pb2.ReadEventsRequest(from_position=log[-1].id + 1), None)
        )
    assert len(sent) > 2
    assert all(isinstance(response, bytes) for response in sent + past_the_head)
    for response in [*sent, *past_the_head]:
        assert isinstance(response, bytes)
        message = audit_pb2.ReadEventsResponse.FromString(response)
        assert message.SerializeToString() == response
    last = audit_pb2.ReadEventsResponse.FromString(sent[-1])
    assert (last.position, last.caught_up) == (log[-1].id, True)
    first = audit_pb2.ReadEventsResponse.FromString(sent[0])
    assert (first.position, first.caught_up, len(first.events)) == (log[39].id, False, 40)
    [beyond] = past_the_head
    assert audit_pb2.ReadEventsResponse.FromString(beyond) == audit_pb2.ReadEventsResponse(
        position=log[-1].id, caught_up=True
    )


def test_a_small_batch_reads_itself_and_the_next_page_as_small_while_it_is_sent(
    servicer: AuditServicer, reads: list[tuple[int, int]]
) -> None:
    log = _log(servicer)
    reads.clear()
    request = audit_pb2.ReadEventsRequest(batch_size=3, from_position=log[9].id)
    with _as_local_admin():
        stream = servicer.ReadEvents(request, None)
        batch = next(_received(stream))
        assert [e.position for e in batch.events] == [n.id for n in log[9:12]]
        servicer.read_ahead.shutdown(wait=True)  # the next page's read began before the batch left
        assert reads == [(log[9].id, log[9].id + 2), (log[12].id, log[12].id + 2)]
        stream.close()


def test_a_filtered_read_pages_through_the_log_and_sends_what_passes(
    servicer: AuditServicer, reads: list[tuple[int, int]]
) -> None:
    log = _log(servicer)
    reads.clear()

    batches = _read(servicer, batch_size=2, types=["customer.registered"])

    sent = [event.position for batch in batches for event in batch.events]
    assert sent == [n.id for n in log if n.topic == "customer.registered"]
    assert all(stop - start == PAGE - 1 for start, stop in reads[:-1])
    assert batches[-1].caught_up


def test_an_unfiltered_read_sizes_its_pages_by_the_events_it_has_seen(
    servicer: AuditServicer, reads: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _log(servicer)
    average = sum(len(n.state) for n in log) // len(log)
    monkeypatch.setattr(audit, "BATCH_BYTES", 10**6)

    monkeypatch.setattr(audit, "PAGE_BYTES", 5 * average)
    reads.clear()
    assert len(_events(_read(servicer, batch_size=50))) == len(log)
    spans = [stop - start + 1 for start, stop in reads]
    assert spans[0] == PAGE
    assert all(3 <= span <= 7 for span in spans[1:-1]), spans  # about five events' worth

    monkeypatch.setattr(audit, "PAGE_BYTES", 1000 * average)
    reads.clear()
    assert len(_events(_read(servicer, batch_size=50))) == len(log)
    assert [stop - start + 1 for start, stop in reads][:2] == [PAGE, 50]  # never beyond a batch


def _events(batches: list[audit_pb2.ReadEventsResponse]) -> list[audit_pb2.Event]:
    return [event for batch in batches for event in batch.events]


@pytest.mark.parametrize("topics", [(), ("customer.registered",), ("no.such.topic",)])
def test_the_log_rows_are_the_library_s_notifications(
    servicer: AuditServicer, topics: tuple[str, ...]
) -> None:
    """However the store reads them (in binary, into tuples, from PostgreSQL), the same events."""
    log = _log(servicer)
    for start, stop, limit in [(1, log[-1].id, 10_000), (5, 40, 10_000), (5, 40, 7), (3, 2, 10)]:
        expected = [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in servicer.log.recorder.select_notifications(
                start=start, limit=limit, stop=stop, topics=topics
            )
        ]
        rows = servicer._log_rows(start, stop, topics, limit)
        assert [(p, str(o), v, t, bytes(s)) for p, o, v, t, s in rows] == [
            (p, str(o), v, t, bytes(s)) for p, o, v, t, s in expected
        ]


@pytest.mark.parametrize("topics", [(), ("customer.registered",)])
def test_a_page_holds_the_log_rows_and_the_trail_s_entries_for_them(
    servicer: AuditServicer, topics: tuple[str, ...]
) -> None:
    """However the page is read (in one statement on PostgreSQL), what two reads give."""
    log = _log(servicer)
    for start, stop, limit in [(1, log[-1].id, 10_000), (5, 40, 7), (3, 2, 10)]:
        page = servicer._log_page(start, stop, topics, limit)
        rows = servicer._log_rows(start, stop, topics, limit)
        assert page.rows == rows
        entries = servicer._trail_entries([row[0] for row in rows])
        assert page.entries.keys() == entries.keys()
        for position, entry in page.entries.items():  # what a message takes of an entry
            for field in ("position", "version", "hash", "summary"):
                assert entry[field] == entries[position][field]


def _change_entries(servicer: AuditServicer, statement: str, params: Any) -> None:
    """Run ``statement`` on the trail's entries table (``{}``) behind Accord's back."""
    views = servicer.read_models.views
    assert isinstance(views, PostgresViewStore)
    with views.datastore.transaction(commit=True) as curs:
        curs.execute(SQL(statement).format(views.tables["entries"]), params)


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_a_page_missing_an_entry_of_the_trail_is_refused_naming_it(
    servicer: AuditServicer,
) -> None:
    """The one-statement read does not take a missing entry for an event without one."""
    log = _log(servicer)
    _change_entries(servicer, "DELETE FROM {} WHERE position = %s", (log[4].id,))
    with pytest.raises(RuntimeError, match=f"no entry at position {log[4].id}"):
        servicer._log_page(1, log[-1].id, (), 100)
    assert len(servicer._log_page(1, log[3].id, (), 100).entries) == 4


@pytest.mark.parametrize("field", ["position", "version"])
@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_an_entry_of_the_trail_that_disagrees_with_the_log_is_refused_naming_it(
    servicer: AuditServicer, field: str
) -> None:
    """The one-statement read takes an entry apart in the database, and still checks it."""
    log = _log(servicer)
    _change_entries(
        servicer,
        "UPDATE {} SET doc = jsonb_set(doc::jsonb, %s, '7777')::text WHERE position = %s",
        ([field], log[4].id),
    )
    with pytest.raises(RuntimeError, match=f"does not match the log at {log[4].id}"):
        _read(servicer)
    assert [e.position for e in _read(servicer, from_position=log[5].id)[0].events][:1] == [
        log[5].id
    ]


@pytest.mark.parametrize("principal", [LOCAL_ADMIN, AUDITOR], ids=["personal", "redacted"])
def test_an_erasure_between_batches_is_seen_by_the_next_batch(
    accord: Accord,
    make_read_models: ReadModelsFactory,
    monkeypatch: pytest.MonkeyPatch,
    principal: Principal,
) -> None:
    """The keys are read a page at a time, but each batch still asks afresh.

    Batches of one event (``BATCH_BYTES``) from pages of three: the erased
    customer's keys were read with the page, before the erasure, yet its
    event in a later batch of that page reads ``[erased]``.
    """
    monkeypatch.setattr(audit, "BATCH_BYTES", 1)
    ids = [
        accord.customers.register(register_customer(display_name=name), CTX).aggregate_id
        for name in ("First Co.", "Second Co.")
    ]
    accord.customers.update_profile(
        c.UpdateCustomerProfile(customer_id=ids[0], display_name="First Renamed Co."), CTX
    )
    views = make_read_models(accord, [AuditTrail()])
    views.runner.catch_up()
    servicer = AuditServicer(accord, views)
    shown = "First Co." if principal is LOCAL_ADMIN else "[redacted]"
    with _as_local_admin(principal):
        stream = _received(servicer.ReadEvents(audit_pb2.ReadEventsRequest(batch_size=3), None))
        first = next(stream)
        assert json.loads(first.events[0].payload)["display_name"] == shown
        accord.customers.erase(c.EraseCustomerData(customer_id=ids[0], reason="request"), CTX)
        later = [event for batch in stream for event in batch.events]
    names = [json.loads(event.payload).get("display_name") for event in later[:2]]
    assert names == ["Second Co." if principal is LOCAL_ADMIN else "[redacted]", "[erased]"]
