"""Rebuild rate of every read model against the plain read-and-decode rate of the same events.

Run: .venv/bin/python bench/rebuild_rate.py [sqlite|postgres] [customers] [purchases-each]
Prints events/s for (a) select_notifications + decode (the baseline, same run) and
(b) rebuilding all read models, and their ratio.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

import psycopg

from adapters.store import store_config
from adapters.wiring import build_accord, build_read_models
from application.personal_data import MasterKey
from tests.builders import bulk_purchases
from tests.support import POSTGRES_URL, FakeClock


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    customers = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    each = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    if kind == "sqlite":
        config = store_config(f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}")
    else:
        schema = f"bench_{uuid4().hex[:8]}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        config = store_config(f"{POSTGRES_URL}?schema={schema}")
    app = build_accord(config, master_key=MasterKey.generate())
    bulk_purchases(app, customers, each, FakeClock().now())
    head = app.log.recorder.max_notification_id() or 0

    started = time.perf_counter()
    position = 0
    while True:
        batch = app.log.recorder.select_notifications(position, 2000, inclusive_of_start=False)
        if not batch:
            break
        for notification in batch:
            app.log.mapper.to_domain_event(notification)
        position = batch[-1].id
    baseline = head / (time.perf_counter() - started)

    views = build_read_models(app, config, batch_size=2000)
    started = time.perf_counter()
    views.runner.catch_up()
    rebuild = head / (time.perf_counter() - started)
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    print(f"machine: {machine}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"store: {kind}; events: {head}; read models: {len(views.runner.projections)}")
    print(f"baseline read+decode: {baseline:,.0f} events/s")
    print(f"build all read models: {rebuild:,.0f} events/s (ratio {rebuild / baseline:.2f}x)")


if __name__ == "__main__":
    main()
