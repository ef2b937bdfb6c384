"""Target 5: ``ReadEvents`` replay to a client in another process, >= 50,000 events/s.

Set-up (not timed): a fresh PostgreSQL schema with 200,000 events (``--quick``:
50,000) generated like target 4's (customers with 99 interactions each, a few
partners and consents); the audit trail (which ``ReadEvents`` serves events
up to, each with its chain hash) is built beforehand in this process. Then
``accord serve --no-projections`` serves it (the read models are complete
for this purpose, and nothing is written during the replay).

Measured: one client in another process opens ``ReadEvents`` from the start
(``batch_size`` 5,000, the maximum; the server also ends a batch at 1 MiB)
and decodes every batch until caught up; events/s from the call to the last
batch, after a one-batch warm-up call. The target is absolute: 50,000 events/s.
"""

from __future__ import annotations

import time

from adapters.store import store_config
from adapters.wiring import build_accord, build_read_models
from application.personal_data import MasterKey
from bench import data
from bench.common import (
    Check,
    Options,
    Result,
    accord_server,
    fresh_schema,
    in_other_process,
    quiet_stderr,
    rate,
    store_url,
)
from bench.load import replay
from projections.audit_trail import AuditTrail

TARGET = 50_000
BATCH = 5000
REPLAY_TIMEOUT = 120.0


def run(options: Options) -> Result:
    customers = 500 if options.quick else 2000
    key = MasterKey.generate()
    with fresh_schema("t5") as schema:
        url = store_url(schema)
        started = time.perf_counter()
        with quiet_stderr():
            events = data.generate(url, key, customers, 99, partners=5)
            config = store_config(url)
            with build_accord(config, master_key=key) as app:
                views = build_read_models(app, config, [AuditTrail()], batch_size=2000)
                views.runner.catch_up()
        setup = time.perf_counter() - started
        with accord_server(url, key, "--no-projections") as server:
            report = in_other_process(replay, server.address, BATCH, 10_000_000, REPLAY_TIMEOUT)
    complete = report.events >= events
    notes = [
        f"{report.events:,} events (positions {report.first_position:,}..{report.last_position:,})"
        f" in {report.batches:,} batches, {report.seconds:.1f} s; set-up (generate "
        f"{events:,} events, build the audit trail) {setup:.0f} s",
    ]
    if not complete:
        notes.append(f"the replay stopped short of the {events:,} events recorded")
    return Result(
        number=5,
        name="ReadEvents replay to a client in another process",
        measured=f"{rate(report.rate, ' events/s')}",
        baselines="none (absolute target)",
        checks=[Check("events/s", report.rate, TARGET, unit="events/s")],
        notes=notes,
        fails_because=None if complete else "incomplete replay",
    )
