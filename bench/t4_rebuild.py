"""Target 4: rebuilding all projections from 1,000,000 events, against read-and-decode of the same.

The events: 10,000 customers, each registered through the use case and then
given 99 interactions (a mix of purchases, calls, e-mails, meetings, surveys,
some with a sealed personal summary) decided by the domain and saved in one
go; 10 active partners, and a consent for every tenth customer: 1,000,000
customer events plus about 1,040 more. ``--quick`` uses a tenth of that
(100,000 events) and says so. Generated once (two processes, a few minutes)
and cached in the PostgreSQL schema ``bench_rebuild_1m`` (``bench_rebuild_100k``),
under a fixed benchmark master key; ``--fresh`` regenerates it.

Both measurements run in a child process of their own, on the same events, in
batches of 5,000 (``accord rebuild``'s default), alternating in two rounds
(baseline, Accord, baseline, Accord; one round with ``--quick``); each reports
its best round, as targets 1 and 2 do, so a burst of load from elsewhere
favours neither side:

- baseline: the plain library's read path: ``recorder.select_notifications``
  page by page, each notification decoded by the mapper the projections use
  (Accord's ``EventMapper``, personal fields as sealed references), nothing else;
- Accord: every read model rebuilt from position 0 into empty view tables
  (dropped before the run) by what ``accord rebuild --all`` runs
  (``adapters.rebuild.rebuild``): one pass over the log, each batch
  committed with its tracking position, the read models that need decoded
  events in the child and the audit trail in a worker process of its own.

Peak RSS is the child's VmHWM at the end, plus the VmHWM of every rebuild
worker it started; the highest of the rounds is reported. Targets: rebuild
rate >= 1.0x the read-and-decode rate, and the rebuild's peak RSS < 500 MB.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from adapters.rebuild import REBUILD_BATCH, rebuild
from adapters.store import store_config
from adapters.wiring import build_accord, build_read_models
from application.mapper import EventMapper
from application.personal_data import MasterKey
from bench import data
from bench.common import (
    POSTGRES_URL,
    Check,
    Options,
    Result,
    create_schema,
    drop_schema,
    in_other_process,
    peak_rss_mb,
    quiet_stderr,
    rate,
    schema_exists,
    store_url,
)

DATASET_VERSION = "1"
"""Bump when the generator changes: a cached store of another version is regenerated."""
KEY = MasterKey(hashlib.sha256(b"accord benchmark data set key: not a secret").digest())
"""The cached store's master key: fixed, so a later run can open it (benchmark data only)."""
PARTNERS = 10
INTERACTIONS_EACH = 99
BATCH = REBUILD_BATCH
RSS_LIMIT_MB = 500


@dataclass(frozen=True)
class Size:
    customers: int
    schema: str
    label: str


FULL = Size(10_000, "bench_rebuild_1m", "1,000,000")
QUICK = Size(1_000, "bench_rebuild_100k", "100,000")


@dataclass(frozen=True)
class Pass:
    events: int
    seconds: float
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


# ------------------------------------------------------------------ the data


def _meta(schema: str) -> dict[str, str]:
    table = sql.Identifier(schema, "bench_dataset")
    try:
        with psycopg.connect(POSTGRES_URL) as conn:
            rows = conn.execute(sql.SQL("SELECT key, value FROM {}").format(table)).fetchall()
    except psycopg.errors.UndefinedTable:
        return {}
    return {str(k): str(v) for k, v in rows}


def generate(size: Size) -> tuple[int, float]:
    """Create the cached store from nothing; (events, seconds)."""
    started = time.perf_counter()
    drop_schema(size.schema)
    create_schema(size.schema)
    with quiet_stderr():
        data.generate(store_url(size.schema), KEY, size.customers, INTERACTIONS_EACH, PARTNERS)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        events_table = sql.Identifier(size.schema, "accord_events")
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(events_table))
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(events_table)).fetchone()
        events = int(row[0]) if row else 0
        seconds = time.perf_counter() - started
        table = sql.Identifier(size.schema, "bench_dataset")
        conn.execute(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, value text)").format(table))
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES ('version', %s), ('events', %s), ('seconds', %s)"
            ).format(table),
            (DATASET_VERSION, str(events), f"{seconds:.0f}"),
        )
    return events, seconds


def ensure_data(size: Size, fresh: bool) -> tuple[int, float | None]:
    """The cached store's event count, and the generation time when generated now."""
    meta = _meta(size.schema) if schema_exists(size.schema) else {}
    if not fresh and meta.get("version") == DATASET_VERSION and "events" in meta:
        return int(meta["events"]), None
    print(
        f"      generating the {size.label}-event store in schema {size.schema} "
        "(first run or --fresh; cached for later runs) ...",
        flush=True,
    )
    return generate(size)


def drop_views(schema: str) -> None:
    """Remove every read-model table, so the rebuild starts from nothing."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name LIKE 'accord\\_view%%'",
            (schema,),
        ).fetchall()
        for (name,) in tables:
            conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(schema, name)))


# --------------------------------------------------- the two passes (children)


def read_and_decode(url: str) -> Pass:
    with build_accord(store_config(url), master_key=KEY) as app:
        mapper = EventMapper(app.log.vault, references=True)  # as the projection runner decodes
        recorder = app.log.recorder
        events = position = 0
        started = time.perf_counter()
        while batch := recorder.select_notifications(position, BATCH, inclusive_of_start=False):
            for notification in batch:
                mapper.to_domain_event(notification)
            events += len(batch)
            position = batch[-1].id
        seconds = time.perf_counter() - started
    return Pass(events, seconds, peak_rss_mb())


@contextlib.contextmanager
def _quiet_workers() -> Iterator[None]:
    """Rebuild workers are processes of their own: their log lines go to /dev/null too."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def rebuild_all(url: str) -> Pass:
    config = store_config(url)
    with build_accord(config, master_key=KEY) as app:
        head = app.log.recorder.max_notification_id() or 0
        views = build_read_models(app, config, batch_size=BATCH)
        runner = views.runner
        for name in runner.projections:
            if runner.active_position(name):
                raise RuntimeError(f"read model {name} is not empty: the rebuild would be partial")
        started = time.perf_counter()
        with _quiet_workers():
            rebuilt = rebuild(app, config, views, list(runner.projections))
        seconds = time.perf_counter() - started
        if rebuilt is None:
            raise RuntimeError("the rebuild stopped part way")
        for name in runner.projections:
            if runner.active_position(name) != head:
                raise RuntimeError(f"read model {name} did not reach the head {head}")
    workers_mb = sum(rebuilt.worker_peak_rss_kb) / 1024
    return Pass(head, seconds, peak_rss_mb() + workers_mb)


def _rebuilt(url: str, schema: str) -> Pass:
    drop_views(schema)
    try:
        return in_other_process(rebuild_all, url)
    finally:
        drop_views(schema)


def run(options: Options) -> Result:
    size = QUICK if options.quick else FULL
    events, generated = ensure_data(size, options.fresh)
    url = store_url(size.schema)
    rounds = 1 if options.quick else 2
    baselines: list[Pass] = []
    passes: list[Pass] = []
    for _ in range(rounds):
        baselines.append(in_other_process(read_and_decode, url))
        passes.append(_rebuilt(url, size.schema))
    baseline = min(baselines, key=lambda p: p.seconds)
    ours = min(passes, key=lambda p: p.seconds)
    peak = max(p.peak_rss_mb for p in passes)  # memory: the worst round, not the best
    notes = [
        f"{ours.events:,} events in cached schema {size.schema}"
        + (" (--quick: 100,000 events, not the 1,000,000 of the target)" if options.quick else "")
        + (
            f"; generated in this run in {generated:.0f} s"
            if generated is not None
            else "; reused from an earlier run"
        ),
        f"best of {rounds} alternating round(s): read+decode {ours.events:,} events in "
        f"{baseline.seconds:.1f} s (child peak RSS {baseline.peak_rss_mb:.0f} MB); rebuild of "
        f"all read models in {ours.seconds:.1f} s; rounds: read+decode "
        f"[{', '.join(f'{p.seconds:.1f} s' for p in baselines)}], rebuild "
        f"[{', '.join(f'{p.seconds:.1f} s' for p in passes)}]",
    ]
    return Result(
        number=4,
        name=f"rebuild all projections from {events:,} events",
        measured=f"rebuild {rate(ours.rate, ' events/s')}, peak RSS {peak:.0f} MB",
        baselines=f"select_notifications + mapper decode {rate(baseline.rate, ' events/s')}",
        checks=[
            Check("vs read+decode", ours.rate / baseline.rate, 1.0),
            Check("rebuild peak RSS", peak, RSS_LIMIT_MB, unit="MB", at_least=False),
        ],
        notes=notes,
    )
