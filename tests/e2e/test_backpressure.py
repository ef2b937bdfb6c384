"""Backpressure: a stalled reader costs the server one batch, not the log; streams are limited.

gRPC's synchronous server asks a streaming handler for its next message only
once the previous one has been handed to the transport, and HTTP/2 flow
control holds that while the client does not read. So a reader that stops
reading holds the server at about a batch (``BATCH_BYTES``), however long the
log. See ``GROWTH_BOUND_MB`` for what was measured.

Long-lived streams hold a worker thread each, so the server allows a limited
number at once (``--max-streams``, default half the workers) and refuses the
next with RESOURCE_EXHAUSTED, while unary calls keep their threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import grpc
import pytest
from grpc_status import rpc_status

from adapters.grpc.errors import error_details_pb2
from adapters.grpc.generated.accord.v1 import audit_pb2, customer_pb2
from adapters.grpc.server import default_max_streams
from adapters.grpc.services.audit import BATCH_BYTES
from adapters.store import StoreConfig
from adapters.wiring import build_accord
from application.personal_data import MasterKey
from application.service import Accord
from domain.aggregate import EventMeta
from domain.customer import Customer
from domain.values import Channel, Direction, InteractionKind
from tests.builders import new_customer
from tests.conftest import _require_postgres
from tests.e2e.harness import ROOT, Client, Served, rpc_error, serve
from tests.e2e.wire import TIMEOUT, register_customer
from tests.support import postgres_schema, postgres_store, sqlite_store

EVENTS = 15_000
"""Interactions of one customer: the log, and that customer's history, are ~50 MB as sent."""
SUMMARY = "spindle units, calibrated and boxed; " * 80
"""About 3 KB: an interaction summary well inside the 4000-character limit."""
STALL_SECONDS = 3.0
GROWTH_BOUND_MB = 20.0
"""How much a stalled stream may grow the server's resident set.

Measured on a 2-core machine, SQLite and PostgreSQL, ReadEvents and
GetAggregateHistory alike: 1-4 MB over the warmed-up baseline while the reader
stalls (batches of 1 MiB). The same server made to build the whole reply before
sending (``ACCORD_TEST_SERVER_PYTHONPATH`` pointing at a ``sitecustomize.py``
that wraps both RPCs in ``list()``) grew by 50-57 MB and failed every case.
"""


@dataclass
class Seeded:
    served: Served
    customer_id: str
    head: int


SAVE_EVERY = 250
"""Events saved per transaction while seeding (one save of thousands stalls on PostgreSQL)."""


def _seed(app: Accord, count: int) -> UUID:
    """One customer with ``count`` large interactions, decided in memory, saved in chunks."""
    customer_id = new_customer(app)
    customer = app.executor.load(Customer, customer_id)
    now = datetime.now(UTC)
    meta = EventMeta(actor="loader", request_id="bulk", correlation_id="bulk", recorded_at=now)
    for n in range(count):
        customer.record_interaction(
            uuid4(),
            kind=InteractionKind.PURCHASE,
            channel=Channel.WEB,
            direction=Direction.INBOUND,
            occurred_at=now - timedelta(minutes=n + 1),
            summary=f"{n:06d} {SUMMARY}",
            amount=Decimal(n % 500 + 1),
            currency="CNY",
            satisfaction=None,
            partner_id=None,
            contact_ids=(),
            meta=meta,
        )
        if (n + 1) % SAVE_EVERY == 0:
            app.log.save(customer)
    app.log.save(customer)
    return customer_id


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """A server with the default limits over a log of one customer's large interactions."""
    workdir = tmp_path_factory.mktemp(f"backpressure-{request.param}")

    def run(store: StoreConfig) -> Iterator[Seeded]:
        key = MasterKey.generate()
        app = build_accord(store, master_key=key)
        try:
            customer_id = _seed(app, EVENTS)
            head = app.log.recorder.max_notification_id() or 0
        finally:
            app.close()
        served = serve(store, workdir, master_key=key, env=_server_env())
        try:
            # The log is served up to the audit trail's position: wait until it is all there.
            served.client("auditor").audit.GetDigest(
                audit_pb2.GetDigestRequest(min_position=head), timeout=180
            )
            yield Seeded(served, str(customer_id), head)
        finally:
            served.stop()

    if request.param == "sqlite":
        yield from run(sqlite_store(workdir))
        return
    _require_postgres()
    with postgres_schema() as schema:
        yield from run(postgres_store(schema))


def _server_env() -> dict[str, str]:
    """The server's environment: no stream limit from outside (the default is under test).

    ``ACCORD_TEST_SERVER_PYTHONPATH`` puts a directory before the code, which is
    how a deliberately broken server (one that builds the whole reply first) was
    run against these tests to see them fail.
    """
    env = {"ACCORD_MAX_STREAMS": ""}
    if extra := os.environ.get("ACCORD_TEST_SERVER_PYTHONPATH"):
        env["PYTHONPATH"] = f"{extra}{os.pathsep}{ROOT}"
    return env


def rss_mb(pid: int) -> float:
    """The resident set of process ``pid`` (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def stalled_growth(pid: int, seconds: float) -> float:
    """The largest VmRSS over ``seconds`` (sampled every 50 ms), in MB."""
    peak = rss_mb(pid)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(0.05)
        peak = max(peak, rss_mb(pid))
    return peak


TAIL = 600
"""Events of the warm-up read: two batches, so the baseline includes a batch's buffers."""


def stall_then_drain(
    served: Served, open_stream: Callable[[Client, int], Iterator[Any]]
) -> tuple[float, list[Any]]:
    """Read the last ``TAIL`` events; then all of them: one batch, a stall, the rest.

    ``open_stream(client, first)`` streams from position (or version) ``first`` on.
    Returns (MB the server grew while the reader stalled, the stalled stream's batches).
    The warm-up makes the one-off costs of a first stream (connection, pools, a
    batch's worth of buffers) part of the baseline; it is short, so a server that
    built a whole reply at once would not have grown to the size of the log in it.
    """
    client = served.client("admin")  # sees personal data: the summaries travel in full
    pid = served.process.pid
    assert len([e for b in open_stream(client, EVENTS + 2 - TAIL) for e in b.events]) == TAIL
    time.sleep(0.5)
    baseline = rss_mb(pid)
    stream = open_stream(client, 1)
    try:
        batches = [next(stream)]
        peak = stalled_growth(pid, STALL_SECONDS)
        batches.extend(stream)
    finally:
        stream.cancel()  # type: ignore[attr-defined]
    print(f"stalled: baseline {baseline:.1f} MB, peak {peak:.1f} MB, grew {peak - baseline:.1f} MB")
    return peak - baseline, batches


def _assert_bounded_batches(batches: list[Any]) -> None:
    assert len(batches) > 10, "the log is sent in many batches"
    largest = max(b.ByteSize() for b in batches)
    # A batch ends at the event that reaches BATCH_BYTES: never near the 4 MiB message limit.
    assert largest < BATCH_BYTES + 64 * 1024, largest


def test_a_stalled_read_events_reader_costs_the_server_a_batch_not_the_log(
    seeded: Seeded,
) -> None:
    def open_stream(client: Client, first: int) -> Iterator[Any]:
        return client.audit.ReadEvents(
            audit_pb2.ReadEventsRequest(from_position=first), timeout=180
        )

    growth, batches = stall_then_drain(seeded.served, open_stream)

    assert growth < GROWTH_BOUND_MB, f"the server grew {growth:.1f} MB while the reader stalled"
    _assert_bounded_batches(batches)
    events = [e for b in batches for e in b.events]
    assert [e.position for e in events] == list(range(1, seeded.head + 1))
    assert batches[-1].caught_up
    assert [b.caught_up for b in batches[:-1]] == [False] * (len(batches) - 1)
    assert all(b.position == b.events[-1].position for b in batches[:-1])
    interactions = events[1:]
    assert interactions[0].payload.count("spindle units") == 80, "summaries arrive whole"
    assert all(e.payload.find(f'"summary":"{n:06d} ') >= 0 for n, e in enumerate(interactions))


def test_a_stalled_history_reader_costs_the_server_a_batch_not_the_history(
    seeded: Seeded,
) -> None:
    def open_stream(client: Client, first: int) -> Iterator[Any]:
        return client.audit.GetAggregateHistory(
            audit_pb2.GetAggregateHistoryRequest(
                aggregate_id=seeded.customer_id, from_version=first, batch_size=5000
            ),
            timeout=180,
        )

    growth, batches = stall_then_drain(seeded.served, open_stream)

    assert growth < GROWTH_BOUND_MB, f"the server grew {growth:.1f} MB while the reader stalled"
    _assert_bounded_batches(batches)
    events = [e for b in batches for e in b.events]
    assert [e.version for e in events] == list(range(1, EVENTS + 2))
    assert [e.position for e in events] == list(range(1, seeded.head + 1))


# ------------------------------------------------------------------ the limit


def stream_limit_info(error: grpc.RpcError) -> dict[str, str]:
    """RESOURCE_EXHAUSTED's ErrorInfo: reason and metadata."""
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status details"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return {"reason": info.reason, "domain": info.domain, **info.metadata}
    raise AssertionError(f"no ErrorInfo in {status}")


def follow(client: Client, head: int) -> Any:
    """A following ReadEvents stream, known to be open (its first batch has arrived)."""
    stream = client.audit.ReadEvents(
        audit_pb2.ReadEventsRequest(from_position=head + 1, follow=True), timeout=60
    )
    first = next(stream)
    assert first.caught_up
    return stream


def when_a_slot_is_free(open_stream: Callable[[], Any], seconds: float = 5) -> Any:
    """``open_stream()`` once a slot is free: a closed stream's slot is free within ~1 s.

    A follower notices its client left at its next poll of the trail (every second).
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            return open_stream()
        except grpc.RpcError as error:
            refused = error
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
        assert time.monotonic() < deadline, "closed streams did not free their slots"
        time.sleep(0.1)


def assert_unary_calls_answer_promptly(client: Client, customer_id: str) -> None:
    started = time.monotonic()
    got = client.customers.GetCustomer(
        customer_pb2.GetCustomerRequest(customer_id=customer_id), timeout=TIMEOUT
    )
    assert got.customer.customer_id == customer_id
    assert len(client.audit.GetDigest(audit_pb2.GetDigestRequest(), timeout=TIMEOUT).hash) == 64
    assert register_customer(client).version == 1
    assert time.monotonic() - started < 2.0


def check_the_limit(served: Served, limit: int, customer_id: str) -> None:
    """``limit`` followers open, the next refused, unary calls served, a closed one frees a slot."""
    client = served.client("admin")
    head = client.audit.GetDigest(audit_pb2.GetDigestRequest(), timeout=TIMEOUT).position
    streams = [when_a_slot_is_free(lambda: follow(client, head)) for _ in range(limit)]
    try:
        refused = rpc_error(lambda: follow(client, head), "a stream beyond the limit")
        info = stream_limit_info(refused)
        assert (info["reason"], info["domain"], info["limit"]) == (
            "STREAM_LIMIT",
            "accord",
            str(limit),
        )
        assert "too many concurrent streams" in (refused.details() or "")
        history = client.audit.GetAggregateHistory(
            audit_pb2.GetAggregateHistoryRequest(aggregate_id=customer_id), timeout=TIMEOUT
        )
        assert rpc_error(lambda: next(history)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        assert_unary_calls_answer_promptly(client, customer_id)

        streams.pop(0).cancel()
        streams.append(when_a_slot_is_free(lambda: follow(client, head)))
        again = rpc_error(lambda: follow(client, head), "a stream beyond the limit")
        assert again.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for stream in streams:
            stream.cancel()


def test_streams_beyond_the_default_limit_are_refused_while_unary_calls_are_served(
    seeded: Seeded,
) -> None:
    # The server runs on this machine, so its default is the one computed here.
    check_the_limit(seeded.served, default_max_streams(), seeded.customer_id)


def test_the_stream_limit_is_set_by_flag_over_environment(
    tmp_path: Path,
) -> None:
    for limit, args, env in [
        (2, ["--max-streams", "2"], {"ACCORD_MAX_STREAMS": "5"}),
        (3, [], {"ACCORD_MAX_STREAMS": "3"}),
    ]:
        workdir = tmp_path / str(limit)
        workdir.mkdir()
        served = serve(sqlite_store(workdir), workdir, *args, env=env)
        try:
            customer_id = register_customer(served.client("admin")).customer_id
            check_the_limit(served, limit, customer_id)
        finally:
            served.stop()


@pytest.mark.parametrize(
    ("args", "env", "complaint"),
    [
        (["--max-streams", "0"], {}, "at least 1"),
        (["--max-streams", "many"], {}, "not a whole number"),
        ([], {"ACCORD_MAX_STREAMS": "-3"}, "at least 1"),
    ],
)
def test_a_bad_stream_limit_is_refused_at_start(
    tmp_path: Path, args: list[str], env: dict[str, str], complaint: str
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "--database-url",
            sqlite_store(tmp_path).url,
            "serve",
            "--port",
            "0",
            *args,
        ],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ACCORD_MASTER_KEY": MasterKey.generate().to_base64(),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_stalled_readers_leave_unary_calls_served(seeded: Seeded) -> None:
    """Every slot held by a reader that does not read: the workers left still answer."""
    client = seeded.served.client("admin")
    limit = default_max_streams()
    streams: list[Any] = []

    def stalled() -> Any:
        stream = client.audit.ReadEvents(audit_pb2.ReadEventsRequest(), timeout=60)
        next(stream)
        return stream

    try:
        for _ in range(limit):
            streams.append(when_a_slot_is_free(stalled))
        results: list[float] = []

        def unary() -> None:
            started = time.monotonic()
            client.audit.GetDigest(audit_pb2.GetDigestRequest(), timeout=TIMEOUT)
            results.append(time.monotonic() - started)

        threads = [threading.Thread(target=unary) for _ in range(limit)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        assert len(results) == limit
        assert max(results) < 2.0, results
    finally:
        for stream in streams:
            stream.cancel()
