"""Target 2: commands over gRPC, 16 concurrent clients in another process.

Layout: ``accord serve`` in a subprocess on a fresh PostgreSQL schema (its
defaults: read models followed in-process, JSON access logs, no tokens file:
loopback, local admin); the no-op baseline server (``bench.noop_server``)
in another subprocess; the load generator in a third process: 16 client
threads, each on its own channel (own connection), calling back to back.

Accord: ``RecordInteraction`` (a purchase), each client on its own customer
(registered over gRPC before the clock starts). Baseline: the no-op unary
method, sent the very same request bytes by the very same client code.
Rounds alternate (no-op, Accord, ...) and each side reports its best round.
Target: Accord >= 0.7x the no-op rate.
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
    ms,
    noop_server,
    rate,
    store_url,
)
from bench.load import ClosedLoopReport, closed_loop
from bench.noop_server import METHOD as NOOP
from bench.wire import RECORD_INTERACTION, record_interaction, register_customer, stubs

CLIENTS = 16


def _describe(report: ClosedLoopReport) -> str:
    text = f"{rate(report.rate)} (p50 {ms(report.p50)}, p99 {ms(report.p99)}"
    if report.errors:
        text += f", {report.errors} errors, first: {report.first_error}"
    return text + ")"


def run(options: Options) -> Result:
    rounds = 1 if options.quick else 2
    ours: list[ClosedLoopReport] = []
    noop: list[ClosedLoopReport] = []
    key = MasterKey.generate()
    with fresh_schema("t2") as schema, accord_server(store_url(schema), key) as server:
        with stubs(server.address) as s:
            customers = [register_customer(s) for _ in range(CLIENTS)]
        payloads = [[record_interaction(c).SerializeToString()] for c in customers]
        with noop_server() as baseline:
            for _ in range(rounds):
                noop.append(
                    in_other_process(closed_loop, baseline.address, NOOP, payloads, options.seconds)
                )
                ours.append(
                    in_other_process(
                        closed_loop, server.address, RECORD_INTERACTION, payloads, options.seconds
                    )
                )
    best_ours = max(ours, key=lambda r: r.rate)
    best_noop = max(noop, key=lambda r: r.rate)
    notes = [
        f"best of {rounds} alternating round(s) of {options.seconds:g} s; rounds: "
        f"no-op [{', '.join(rate(r.rate) for r in noop)}], "
        f"Accord [{', '.join(rate(r.rate) for r in ours)}]"
    ]
    if any(r.errors for r in (*ours, *noop)):
        notes.append("calls failed during the run (see the figures): the rates count successes")
    return Result(
        number=2,
        name=f"commands over gRPC, {CLIENTS} clients in another process",
        measured=f"Accord RecordInteraction {_describe(best_ours)}",
        baselines=f"no-op grpcio unary, same client {_describe(best_noop)}",
        checks=[Check("vs no-op gRPC", best_ours.rate / best_noop.rate, 0.7)],
        notes=notes,
    )
