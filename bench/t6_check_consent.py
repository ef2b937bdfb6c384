"""Target 6: ``CheckConsent`` at 200 requests/s over gRPC, p99 against a no-op call's p99.

Layout as target 2: ``accord serve`` (defaults) on a fresh schema, the no-op
baseline server, and the load generator in another process. Set-up over
gRPC: an active partner whose agreement permits MARKETING, a customer with 20
interactions and a MARKETING consent for IDENTITY and CONTACT to that partner.

Measured: an open loop at a fixed 200 requests/s for 10 s (``--quick``: 4 s),
after a one-second warm-up, on one channel: each call is sent on schedule
whatever the earlier ones do, and its latency runs from its scheduled send
time to its response (no coordinated omission). The no-op method and then
``CheckConsent`` (as recorded, now), by the same client code, same rate, same run.
Target: p99(CheckConsent) <= 3x p99(no-op), every call answered. The p99s are of the
answered calls; failed calls are counted and fail the target. For context only,
the result also notes CheckConsent's closed-loop capacity (16 clients, 3 s).
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
from bench.load import OpenLoopReport, closed_loop, open_loop
from bench.noop_server import METHOD as NOOP
from bench.wire import (
    CHECK_CONSENT,
    TIMEOUT,
    active_partner,
    check_consent,
    grant_consent,
    record_interaction,
    register_customer,
    stubs,
)

RATE = 200.0
INTERACTIONS = 20
CAPACITY_CLIENTS = 16


def _describe(report: OpenLoopReport) -> str:
    text = (
        f"p99 {ms(report.p99)} (p50 {ms(report.p50)}, p90 {ms(report.p90)}, max {ms(report.max)}; "
        f"{report.completed:,}/{report.sent:,} ok"
    )
    if report.errors:
        text += f", {report.errors} errors, first: {report.first_error}"
    return text + ")"


def run(options: Options) -> Result:
    key = MasterKey.generate()
    with fresh_schema("t6") as schema, accord_server(store_url(schema), key) as server:
        with stubs(server.address) as s:
            partner_id = active_partner(s)
            customer_id = register_customer(s)
            for _ in range(INTERACTIONS):
                s.customers.RecordInteraction(record_interaction(customer_id), timeout=TIMEOUT)
            grant_consent(s, customer_id, partner_id)
            request = check_consent(customer_id, partner_id)
            answer = s.compliance.CheckConsent(request, timeout=TIMEOUT)
        payload = request.SerializeToString()
        with noop_server() as baseline:
            noop = in_other_process(
                open_loop, baseline.address, NOOP, payload, RATE, options.rate_seconds
            )
        ours = in_other_process(
            open_loop, server.address, CHECK_CONSENT, payload, RATE, options.rate_seconds
        )
        # Context, not part of the target: how many CheckConsent/s the server can answer at all.
        capacity = in_other_process(
            closed_loop, server.address, CHECK_CONSENT, [[payload]] * CAPACITY_CLIENTS, 3.0
        )
    notes = [
        f"{RATE:g} requests/s for {options.rate_seconds:g} s each, open loop; the generator "
        f"fell behind its schedule by at most {ms(noop.max_send_lag)} (no-op) and "
        f"{ms(ours.max_send_lag)} (CheckConsent)",
        f"for context, CheckConsent capacity with {CAPACITY_CLIENTS} closed-loop clients: "
        f"{rate(capacity.rate)} (p50 {ms(capacity.p50)}); errors: {capacity.errors}",
    ]
    if not answer.allowed:
        notes.append("the consent check answered 'not allowed': the set-up is not what was meant")
    failed = ours.errors or noop.errors or ours.completed < ours.sent or noop.completed < noop.sent
    return Result(
        number=6,
        name=f"CheckConsent at {RATE:g} requests/s over gRPC",
        measured=f"CheckConsent {_describe(ours)}",
        baselines=f"no-op grpcio unary {_describe(noop)}",
        checks=[Check("p99 vs no-op p99", ours.p99 / noop.p99, 3.0, at_least=False)],
        notes=notes,
        fails_because="calls failed or went unanswered" if failed else None,
    )
