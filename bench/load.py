"""Load generators: gRPC clients that run in a process of their own (see ``in_other_process``).

They speak raw bytes (requests serialised by the caller, responses left
undecoded), so the very same client code measures Accord and the no-op
baseline; only ``replay`` decodes what it receives, as a replaying client must.
Every generator is bounded in time and in count.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc

from bench.stats import median, percentile

CALL_TIMEOUT = 30.0
WARMUP_CALLS = 5
"""Calls each client makes before the clock starts (connections, caches, JIT-less warm paths)."""


def _channel(address: str) -> grpc.Channel:
    """A channel with its own connection (not shared with the process's other channels)."""
    return grpc.insecure_channel(
        address,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ],
    )


def _describe(error: grpc.RpcError) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return repr(error)


@dataclass(frozen=True)
class ClosedLoopReport:
    clients: int
    calls: int
    errors: int
    seconds: float
    p50: float
    p99: float
    first_error: str | None

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def closed_loop(
    address: str,
    method: str,
    payloads: list[list[bytes]],
    seconds: float,
    max_calls: int = 10_000_000,
) -> ClosedLoopReport:
    """``len(payloads)`` clients, each on its own channel and thread, calling back to back.

    Client ``i`` cycles through ``payloads[i]``. Counts successful calls in
    ``seconds`` (after ``WARMUP_CALLS`` each), stopping early at ``max_calls``.
    """
    clients = len(payloads)
    channels = [_channel(address) for _ in range(clients)]
    calls: list[Any] = [channel.unary_unary(method) for channel in channels]
    counts = [0] * clients
    errors = [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    first_error: list[str] = []
    started = [0.0]

    def begin() -> None:
        started[0] = time.perf_counter()

    barrier = threading.Barrier(clients, action=begin)

    def client(i: int) -> None:
        mine = payloads[i]
        for n in range(WARMUP_CALLS):
            try:
                calls[i](mine[n % len(mine)], timeout=CALL_TIMEOUT)
            except grpc.RpcError as error:
                first_error.append(_describe(error))
        barrier.wait(timeout=120)
        deadline = started[0] + seconds
        n = 0
        while True:
            now = time.perf_counter()
            if now >= deadline or sum(counts) >= max_calls:
                return
            try:
                calls[i](mine[n % len(mine)], timeout=CALL_TIMEOUT)
            except grpc.RpcError as error:
                errors[i] += 1
                first_error.append(_describe(error))
            else:
                counts[i] += 1
                latencies[i].append(time.perf_counter() - now)
            n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started[0]
    finally:
        for channel in channels:
            channel.close()
    everything = [x for per_client in latencies for x in per_client]
    return ClosedLoopReport(
        clients=clients,
        calls=sum(counts),
        errors=sum(errors),
        seconds=elapsed,
        p50=median(everything),
        p99=percentile(everything, 0.99),
        first_error=first_error[0] if first_error else None,
    )


@dataclass(frozen=True)
class OpenLoopReport:
    rate: float
    sent: int
    completed: int
    errors: int
    seconds: float
    p50: float
    p90: float
    p99: float
    max: float
    max_send_lag: float
    """How far behind its schedule the generator ever sent (it should stay near 0)."""
    first_error: str | None


def _fixed_rate(
    call: Any, payload: bytes, rate: float, count: int
) -> tuple[list[float], int, float, float, list[str]]:
    """Send ``count`` calls at ``rate``/s on schedule, whatever the responses do.

    Latency runs from each call's *scheduled* send time to its completion, so a
    generator that falls behind (or a server that makes it wait) cannot hide
    the delay (no coordinated omission).
    """
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    finished = threading.Semaphore(0)
    start = time.perf_counter() + 0.05
    max_lag = 0.0

    def done(future: Any, scheduled: float) -> None:
        now = time.perf_counter()
        error = future.exception()
        with lock:
            if error is None:
                latencies.append(now - scheduled)
            else:
                failures.append(
                    _describe(error) if isinstance(error, grpc.RpcError) else repr(error)
                )
        finished.release()

    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        future = call.future(payload, timeout=CALL_TIMEOUT)
        future.add_done_callback(lambda f, s=scheduled: done(f, s))
    sending = time.perf_counter() - start
    for _ in range(count):
        if not finished.acquire(timeout=CALL_TIMEOUT + 5):
            break
    return latencies, len(failures), sending, max_lag, failures


def open_loop(
    address: str, method: str, payload: bytes, rate: float, seconds: float
) -> OpenLoopReport:
    """Calls at a fixed ``rate`` for ``seconds`` on one channel, after a one-second warm-up."""
    channel = _channel(address)
    try:
        call: Any = channel.unary_unary(method)
        _fixed_rate(call, payload, rate, int(rate))  # warm-up, not recorded
        count = int(rate * seconds)
        latencies, errors, sending, max_lag, failures = _fixed_rate(call, payload, rate, count)
    finally:
        channel.close()
    return OpenLoopReport(
        rate=rate,
        sent=count,
        completed=len(latencies),
        errors=errors,
        seconds=sending,
        p50=median(latencies),
        p90=percentile(latencies, 0.90),
        p99=percentile(latencies, 0.99),
        max=max(latencies, default=float("nan")),
        max_send_lag=max_lag,
        first_error=failures[0] if failures else None,
    )


@dataclass(frozen=True)
class ReplayReport:
    events: int
    batches: int
    seconds: float
    first_position: int
    last_position: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def replay(address: str, batch_size: int, max_events: int, timeout: float) -> ReplayReport:
    """``ReadEvents`` from the start, decoding every batch, until caught up or ``max_events``."""
    from adapters.grpc.generated.accord.v1 import audit_pb2

    channel = _channel(address)
    try:
        read = channel.unary_stream(
            "/accord.v1.AuditService/ReadEvents",
            request_serializer=audit_pb2.ReadEventsRequest.SerializeToString,
            response_deserializer=audit_pb2.ReadEventsResponse.FromString,
        )
        for _ in read(audit_pb2.ReadEventsRequest(batch_size=100), timeout=timeout):
            break  # warm-up: connection, first batch
        events = batches = 0
        first = last = 0
        started = time.perf_counter()
        stream = read(audit_pb2.ReadEventsRequest(batch_size=batch_size), timeout=timeout)
        for response in stream:
            batches += 1
            if response.events:
                first = first or response.events[0].position
                last = response.events[-1].position
                events += len(response.events)
            if events >= max_events:
                stream.cancel()
                break
        elapsed = time.perf_counter() - started
    finally:
        channel.close()
    return ReplayReport(events, batches, elapsed, first, last)


IN_FLIGHT = 3
"""Batches a stream keeps sent but not yet answered (so the server never waits for the next)."""


@dataclass(frozen=True)
class IngestReport:
    streams: int
    recorded: int
    refused: int
    batches: int
    seconds: float
    first_error: str | None

    @property
    def rate(self) -> float:
        return self.recorded / self.seconds if self.seconds else 0.0


def ingest_streams(
    address: str,
    customers: list[str],
    streams: int,
    batch_size: int,
    seconds: float,
    max_items: int,
) -> IngestReport:
    """``streams`` IngestInteractions streams (own channel each), sending batches back to back.

    Every item is a purchase with its own ``request_id`` (as a careful client
    sends them), spread round-robin over ``customers``; the batches are built
    and serialised before the clock starts. A stream sends until ``seconds``
    have passed (or ``max_items`` are sent), then the clock stops when its
    last response has arrived: only items the server answered as recorded,
    hence committed, are counted.
    """
    from uuid import uuid4

    from adapters.grpc.generated.accord.v1 import customer_pb2
    from bench.wire import INGEST_INTERACTIONS, record_interaction

    template = [record_interaction(c) for c in customers]
    per_stream = max_items // streams // batch_size
    prepared: list[list[bytes]] = []
    n = 0
    for _ in range(streams):
        mine: list[bytes] = []
        for _ in range(per_stream):
            items = []
            for _ in range(batch_size):
                item = customer_pb2.RecordInteractionRequest()
                item.CopyFrom(template[n % len(template)])
                item.request_id = uuid4().hex
                items.append(item)
                n += 1
            mine.append(
                customer_pb2.IngestInteractionsRequest(interactions=items).SerializeToString()
            )
        prepared.append(mine)
    channels = [_channel(address) for _ in range(streams)]
    recorded = [0] * streams
    refused = [0] * streams
    answered = [0] * streams
    first_error: list[str] = []
    started = [0.0]

    def begin() -> None:
        started[0] = time.perf_counter()

    barrier = threading.Barrier(streams, action=begin)

    def stream(i: int) -> None:
        window = threading.Semaphore(IN_FLIGHT)
        call: Any = channels[i].stream_stream(
            INGEST_INTERACTIONS,
            response_deserializer=customer_pb2.IngestInteractionsResponse.FromString,
        )
        barrier.wait(timeout=120)
        deadline = started[0] + seconds

        def requests() -> Any:
            for batch in prepared[i]:
                # grpc pulls requests as fast as it can send them: keep a few in flight only,
                # so the clock stops soon after ``seconds`` rather than when everything is in.
                if not window.acquire(timeout=seconds + 60) or time.perf_counter() >= deadline:
                    return
                yield batch

        try:
            for response in call(requests(), timeout=seconds + 120):
                window.release()
                answered[i] += 1
                for result in response.results:
                    if result.WhichOneof("outcome") == "recorded":
                        recorded[i] += 1
                    else:
                        refused[i] += 1
                        if not first_error:
                            first_error.append(f"{result.error.code}: {result.error.message}")
        except grpc.RpcError as error:
            first_error.append(_describe(error))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started[0]
    finally:
        for channel in channels:
            channel.close()
    return IngestReport(
        streams=streams,
        recorded=sum(recorded),
        refused=sum(refused),
        batches=sum(answered),
        seconds=elapsed,
        first_error=first_error[0] if first_error else None,
    )
