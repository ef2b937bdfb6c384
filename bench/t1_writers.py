"""Target 1: commands in-process, 8 concurrent writers on distinct customers, on PostgreSQL.

Three measurements, each on a fresh schema, each for the same wall time after
a warm-up, with 8 threads in this process:

(a) raw psycopg: each thread has its own connection and commits one-row
    transactions (an event-sized row: uuid, version, 320-byte body) back to back;
(b) the plain ``eventsourcing`` library: ``Application.save`` of a small
    aggregate (one event of a 320-character note) per thread, pool of 8;
(c) Accord: ``customers.record_interaction`` on a distinct customer per
    thread: the whole command path (idempotency journal, load from snapshot,
    domain decision, sealed personal data, one transaction, INFO logs
    rendered as JSON to /dev/null).

The series are interleaved in rounds (a, b, c, a, b, c) and each reports its
best round, so a burst of load from elsewhere does not favour one side.
Target: (c) >= 1.0x (a) and >= 4x (b).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql

from adapters.store import store_config
from adapters.wiring import build_accord
from application import commands as c
from application.personal_data import MasterKey
from bench.common import (
    POSTGRES_URL,
    Check,
    Options,
    Result,
    fresh_schema,
    quiet_stderr,
    rate,
    store_url,
)
from bench.data import CTX, register_customer

THREADS = 8
PAYLOAD = b"x" * 320
"""About the size of a stored InteractionRecorded body."""

Op = Callable[[], None]


def run_threads(threads: int, seconds: float, make: Callable[[int], Op]) -> float:
    """Operations per second: every thread calls its op back to back until time is up."""
    ops = [make(i) for i in range(threads)]
    for op in ops:  # warm-up: connections, prepared statements, caches
        op()
    counts = [0] * threads
    started = [0.0]

    def begin() -> None:
        started[0] = time.perf_counter()

    barrier = threading.Barrier(threads, action=begin)

    def work(i: int) -> None:
        barrier.wait(timeout=60)
        deadline = started[0] + seconds
        while time.perf_counter() < deadline:
            ops[i]()
            counts[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started[0])


def raw_psycopg(threads: int, seconds: float) -> float:
    with fresh_schema("t1_raw") as name:
        table = sql.Identifier(name, "rows")
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigserial PRIMARY KEY, "
                    "originator uuid NOT NULL, version int NOT NULL, body bytea NOT NULL)"
                ).format(table)
            )
        insert = sql.SQL("INSERT INTO {} (originator, version, body) VALUES (%s, %s, %s)").format(
            table
        )
        connections = [psycopg.connect(POSTGRES_URL) for _ in range(threads)]

        def make(i: int) -> Op:
            conn, originator, version = connections[i], uuid4(), [0]

            def op() -> None:
                version[0] += 1
                with conn.transaction():
                    conn.execute(insert, (originator, version[0], PAYLOAD))

            return op

        try:
            return run_threads(threads, seconds, make)
        finally:
            for conn in connections:
                conn.close()


class Counter(Aggregate):
    """The smallest aggregate that records something, for the library baseline."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @event("Noted")
    def note(self, text: str) -> None:
        self.notes.append(text)


def plain_library(threads: int, seconds: float) -> float:
    with fresh_schema("t1_lib") as name:
        # The library's defaults, but for where the database is and the pool size.
        where = store_config(store_url(name)).env
        keep = ("DBNAME", "HOST", "PORT", "USER", "PASSWORD", "SCHEMA")
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            **{f"POSTGRES_{k}": where[f"POSTGRES_{k}"] for k in keep},
            "POSTGRES_POOL_SIZE": str(threads),
            "POSTGRES_MAX_OVERFLOW": "0",
            "CREATE_TABLE": "y",
        }
        app: Application[UUID] = Application(env=env)
        try:

            def make(_: int) -> Op:
                counter = Counter()
                app.save(counter)
                text = PAYLOAD.decode()

                def op() -> None:
                    counter.note(text)
                    app.save(counter)

                return op

            return run_threads(threads, seconds, make)
        finally:
            app.close()


def accord(threads: int, seconds: float, shared: list[str] | None = None) -> float:
    """``shared``, when given, gets a line on how the commands were batched (a note)."""
    with fresh_schema("t1_accord") as name:
        config = store_config(store_url(name, pool_size=threads, max_overflow=4))
        with build_accord(config, master_key=MasterKey.generate()) as app, quiet_stderr():

            def make(_: int) -> Op:
                customer_id = register_customer(app)

                def op() -> None:
                    app.customers.record_interaction(
                        c.RecordInteraction(
                            customer_id=customer_id,
                            kind="PURCHASE",
                            channel="WEB",
                            direction="INBOUND",
                            occurred_at=datetime.now(UTC),
                            summary="bought the annual plan after a demo call",
                            amount=Decimal("120.00"),
                            currency="CNY",
                        ),
                        CTX,
                    )

                return op

            measured = run_threads(threads, seconds, make)
            if shared is not None:
                shared.append(
                    ", ".join(
                        f"{co.name} {co.items / max(co.batches, 1):.1f} per batch"
                        for co in app.coalescers()
                    )
                )
            return measured


def run(options: Options) -> Result:
    rounds = 1 if options.quick else 2
    raw: list[float] = []
    plain: list[float] = []
    ours: list[float] = []
    batching: list[str] = []
    for _ in range(rounds):
        raw.append(raw_psycopg(THREADS, options.seconds))
        plain.append(plain_library(THREADS, options.seconds))
        ours.append(accord(THREADS, options.seconds, batching))
    best_raw, best_plain, best_ours = max(raw), max(plain), max(ours)

    def series(values: list[float]) -> str:
        return ", ".join(rate(v) for v in values)

    return Result(
        number=1,
        name=f"commands in-process, {THREADS} writers on distinct customers",
        measured=f"Accord record_interaction {rate(best_ours)}",
        baselines=(
            f"raw psycopg ({THREADS} connections, 1 row/transaction) {rate(best_raw)}; "
            f"plain eventsourcing Application.save ({THREADS} threads) {rate(best_plain)}"
        ),
        checks=[
            Check("vs raw psycopg", best_ours / best_raw, 1.0),
            Check("vs plain library", best_ours / best_plain, 4.0),
        ],
        notes=[
            f"best of {rounds} interleaved round(s) of {options.seconds:g} s each; rounds: "
            f"raw [{series(raw)}], library [{series(plain)}], Accord [{series(ours)}]",
            "Accord's batches (mean items, warm-up and set-up included), by round: "
            + "; ".join(batching),
        ],
    )
