"""Target 7: loading a customer with 100,000 interactions vs one with 10 (snapshots).

In-process, on a fresh PostgreSQL schema with Accord's default snapshot
interval (100). The long history is built like target 4's data: decided by
the domain and saved 10,000 events at a time, so snapshots land at the
versions one command at a time would have left (the last at version
100,000; the customer is at 100,001). The short one has 10 interactions
(version 11, no snapshot).

Measured: ``app.executor.load(Customer, id)`` (what every command and
``GetCustomer`` does), alternating between the two customers, after two
warm-up loads each; medians of 20 loads each (``--quick``: 10). Also how
many stored events (snapshot included) each load decoded.
Target: median(100,000) <= 2x median(10).
"""

from __future__ import annotations

import time
from uuid import UUID

from adapters.store import store_config
from adapters.wiring import build_accord
from application.personal_data import MasterKey
from application.service import Accord
from bench import data
from bench.common import Check, Options, Result, fresh_schema, ms, quiet_stderr, store_url
from bench.stats import median
from domain.customer import Customer

LONG = 100_000
SHORT = 10


def _load(app: Accord, customer_id: UUID) -> tuple[float, int]:
    """Seconds to load, and stored events decoded doing it."""
    decoded = app.log.event_mapper.decoded
    started = time.perf_counter()
    customer = app.executor.load(Customer, customer_id)
    seconds = time.perf_counter() - started
    assert customer.id == customer_id
    return seconds, app.log.event_mapper.decoded - decoded


def run(options: Options) -> Result:
    repeats = 10 if options.quick else 20
    key = MasterKey.generate()
    with (
        fresh_schema("t7") as schema,
        quiet_stderr(),
        build_accord(store_config(store_url(schema)), master_key=key) as app,
    ):
        started = time.perf_counter()
        long_id = data.register_customer(app)
        data.add_interactions(app, long_id, LONG)
        short_id = data.register_customer(app)
        data.add_interactions(app, short_id, SHORT)
        setup = time.perf_counter() - started
        long_version = app.executor.load(Customer, long_id).version
        for _ in range(2):
            _load(app, long_id)
            _load(app, short_id)
        long_times: list[float] = []
        short_times: list[float] = []
        decoded: dict[str, int] = {}
        for _ in range(repeats):
            seconds, decoded["long"] = _load(app, long_id)
            long_times.append(seconds)
            seconds, decoded["short"] = _load(app, short_id)
            short_times.append(seconds)
    long_median, short_median = median(long_times), median(short_times)
    return Result(
        number=7,
        name=f"load a customer with {LONG:,} interactions vs {SHORT}",
        measured=(
            f"{LONG:,} interactions (v{long_version:,}): median {ms(long_median)} "
            f"({decoded['long']} stored events decoded per load)"
        ),
        baselines=(
            f"{SHORT} interactions: median {ms(short_median)} "
            f"({decoded['short']} stored events decoded per load)"
        ),
        checks=[
            Check("time vs 10-interaction load", long_median / short_median, 2.0, at_least=False)
        ],
        notes=[
            f"medians of {repeats} alternating loads each (min {ms(min(long_times))} / "
            f"{ms(min(short_times))}, max {ms(max(long_times))} / {ms(max(short_times))}); "
            f"building the {LONG:,}-interaction history took {setup:.0f} s"
        ],
    )
