"""Target 3: bulk ingestion, >= 20,000 interactions/s end to end through the gRPC streaming path.

``accord serve`` (its defaults: read models followed in-process, JSON access
logs, no tokens file) on a fresh PostgreSQL schema, 128 customers registered
over gRPC first. The load generator, in another process, opens ``STREAMS``
``IngestInteractions`` streams (own channel each) and sends batches of
``BATCH`` purchases back to back, every item with its own request id, spread
over all the customers. Counted: items the server answered as recorded (so
committed), from the first send to the last response. The target is
absolute (no baseline): 20,000 interactions/s.
"""

from __future__ import annotations

from application.personal_data import MasterKey
from bench.common import (
    Check,
    Options,
    Result,
    accord_server,
    fresh_schema,
    in_other_process,
    rate,
    store_url,
)
from bench.load import ingest_streams
from bench.wire import register_customer, stubs

TARGET = 20_000
CUSTOMERS = 128
STREAMS = 4
BATCH = 500
MAX_ITEMS = 1_200_000
"""Bounds the items prepared (and sent): well above what the run's seconds allow."""


def run(options: Options) -> Result:
    seconds = options.seconds
    key = MasterKey.generate()
    with fresh_schema("t3") as schema, accord_server(store_url(schema), key) as server:
        with stubs(server.address) as s:
            customers = [register_customer(s) for _ in range(CUSTOMERS)]
        most = min(MAX_ITEMS, int(seconds * TARGET * 3))
        done = in_other_process(
            ingest_streams, server.address, customers, STREAMS, BATCH, seconds, most
        )
    note = (
        f"{done.recorded:,} interactions recorded in {done.seconds:.1f} s: {done.batches} batches "
        f"of {BATCH} over {STREAMS} IngestInteractions streams from another process, "
        f"{CUSTOMERS} customers"
    )
    if done.refused or done.first_error:
        note += f"; {done.refused} refused, first: {done.first_error}"
    return Result(
        number=3,
        name="bulk ingestion over gRPC",
        measured=f"{rate(done.rate)} interactions",
        baselines="none (absolute target)",
        checks=[Check("interactions/s", done.rate, TARGET, unit="/s")],
        notes=[note],
        fails_because="some items were refused or a stream failed" if done.first_error else None,
    )
