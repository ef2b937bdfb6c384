"""ReadEvents reads the log once, a bounded range of positions at a time, however batches end.

Batches end at a count or at ``BATCH_BYTES``, pages at ``LOG_PAGE``; here
both are made small so batches end in the middle of pages. The servicer is
called in-process, as the interceptor would call it for the local admin.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any, cast

import grpc
import pytest

from adapters.grpc import interceptor
from adapters.grpc.generated.accord.v1 import audit_pb2
from adapters.grpc.services import audit
from adapters.grpc.services.audit import AuditServicer
from adapters.grpc.tokens import LOCAL_ADMIN
from application.service import Accord
from projections.audit_trail import AuditTrail
from tests import builders
from tests.conftest import ReadModelsFactory
from tests.support import FakeClock

PAGE = 16


class _Context:
    """The little of a ``grpc.ServicerContext`` that ReadEvents asks of its call."""

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return None


@contextmanager
def _as_local_admin() -> Iterator[None]:
    context = cast(grpc.ServicerContext, _Context())
    token = interceptor._current.set(
        interceptor.Call("/accord.v1.AuditService/ReadEvents", LOCAL_ADMIN, "c", context)
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
    recorder = servicer.log.recorder
    select = recorder.select_notifications
    seen: list[tuple[int, int]] = []

    def recording(start: int, limit: int, stop: int | None = None, topics: Any = ()) -> Any:
        seen.append((start, -1 if stop is None else stop))
        return select(start, limit, stop, topics)

    monkeypatch.setattr(recorder, "select_notifications", recording)
    return seen


def _read(servicer: AuditServicer, **fields: Any) -> list[audit_pb2.ReadEventsResponse]:
    with _as_local_admin():
        return list(servicer.ReadEvents(audit_pb2.ReadEventsRequest(**fields), None))


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


def test_a_small_batch_reads_no_more_than_itself_at_a_time(
    servicer: AuditServicer, reads: list[tuple[int, int]]
) -> None:
    log = _log(servicer)
    reads.clear()
    request = audit_pb2.ReadEventsRequest(batch_size=3, from_position=log[9].id)
    with _as_local_admin():
        batch = next(iter(servicer.ReadEvents(request, None)))
    assert [e.position for e in batch.events] == [n.id for n in log[9:12]]
    assert reads == [(log[9].id, log[9].id + 2)]


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
