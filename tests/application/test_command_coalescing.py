"""Concurrent ``RecordInteraction`` calls are recorded in shared batches.

Each call still gets exactly the outcome it would have had alone (its result
or its error, raised in its own thread), its events carry its own caller's
actor and correlation id, and a call alone takes the one-command path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import structlog

from adapters.logging import configure_logging
from application import commands as c
from application.coalescing import Coalescer
from application.context import CallContext
from application.errors import IdempotencyKeyReusedError, InvalidCommandError, NotFoundError
from application.results import CommandResult
from application.service import Accord
from application.settings import Settings
from domain.customer import InteractionRecorded
from domain.errors import DomainError, Reason
from tests.builders import CTX, log_position, new_customer, purchase
from tests.conftest import AccordFactory
from tests.support import FakeClock, gated

Call = tuple[c.RecordInteraction, CallContext]


def _batches(app: Accord) -> Coalescer[Any, Any]:
    batches = app.customers.interaction_batches
    assert batches is not None
    return batches


def _concurrently(app: Accord, calls: Sequence[Call]) -> list[CommandResult | Exception]:
    """Make the first call; send the rest while it is in progress, so they share a batch."""
    batches = _batches(app)
    gated(batches, len(calls) - 1)

    def call(item: Call) -> CommandResult | Exception:
        try:
            return app.customers.record_interaction(*item)
        except Exception as error:  # the outcome under test
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        first = pool.submit(call, calls[0])
        while not batches._leading:
            time.sleep(0.001)
        rest = list(pool.map(call, calls[1:]))
    return [first.result(), *rest]


def _shared(app: Accord, before: tuple[int, int]) -> tuple[int, int]:
    batches = _batches(app)
    return batches.batches - before[0], batches.items - before[1]


def _counters(app: Accord) -> tuple[int, int]:
    batches = _batches(app)
    return batches.batches, batches.items


def test_concurrent_calls_share_a_batch_and_each_gets_its_own_result(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    customers = [new_customer(app) for _ in range(3)]
    callers = [CallContext(actor=f"svc-{i}", correlation_id=f"corr-{i}") for i in range(7)]
    calls = [
        (purchase(customers[i % 3], str(10 + i), clock.now(), request_id=f"r-{i}"), ctx)
        for i, ctx in enumerate(callers)
    ]
    before, start = _counters(app), log_position(app)

    results = _concurrently(app, calls)

    assert _shared(app, before) == (2, 7)  # the first alone, the six that queued together
    assert all(isinstance(r, CommandResult) for r in results)
    recorded = [r for r in results if isinstance(r, CommandResult)]
    assert sorted(r.position for r in recorded) == list(range(start + 1, start + 8))
    for customer_id in customers:
        mine = [r for r in recorded if r.aggregate_id == customer_id]
        assert sorted(r.version for r in mine) == list(range(2, 2 + len(mine)))
    # Each event carries its own caller, and each request id its own result.
    by_request = {e.request_id: e for e in _interactions(app, customers)}
    for i, (result, ctx) in enumerate(zip(recorded, callers, strict=True)):
        event = by_request[f"r-{i}"]
        assert (event.actor, event.correlation_id) == (ctx.actor, ctx.correlation_id)
        assert (event.originator_id, event.originator_version) == (
            result.aggregate_id,
            result.version,
        )
        stored = app.log.journal.find_request(f"r-{i}")
        assert stored is not None
        assert stored.position == result.position


def _interactions(app: Accord, customers: Sequence[UUID]) -> list[InteractionRecorded]:
    return [
        event
        for customer_id in customers
        for event in app.log.history(customer_id)
        if isinstance(event, InteractionRecorded)
    ]


def test_each_call_in_a_batch_gets_the_error_it_would_have_had_alone(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    ann, bob = new_customer(app), new_customer(app)
    now = clock.now()
    earlier = app.customers.record_interaction(purchase(ann, "5", now, request_id="old"), CTX)
    other = CallContext(actor="another-service", correlation_id="corr-9")
    start = log_position(app)

    results = _concurrently(
        app,
        [
            (purchase(bob, "1", now), CTX),  # leads, alone
            (purchase(ann, "10", now, request_id="a-1"), CTX),
            (purchase(uuid4(), "30", now), CTX),  # no such customer
            (purchase(ann, "40", now + timedelta(days=2)), CTX),  # in the future
            (purchase(bob, "50", now, currency="EUR"), CTX),  # not the base currency
            (purchase(ann, "60", now, request_id="a-1"), CTX),  # a-1 again, other payload
            (purchase(ann, "10", now, request_id="a-1"), CTX),  # a-1 again, same payload
            (purchase(ann, "10", now, request_id="a-1"), other),  # a-1 from someone else
            (purchase(ann, "5", now, request_id="old"), CTX),  # recorded by an earlier call
        ],
    )

    lone, recorded, unknown, future, euros, reused, again, stranger, old = results
    assert isinstance(lone, CommandResult)
    assert isinstance(recorded, CommandResult)
    assert isinstance(unknown, NotFoundError)
    assert isinstance(future, DomainError)
    assert future.reason is Reason.OCCURRED_IN_FUTURE
    assert isinstance(euros, InvalidCommandError)
    assert isinstance(reused, IdempotencyKeyReusedError)
    assert again == CommandResult(ann, 3, recorded.position, recorded.entity_id, replayed=True)
    assert isinstance(stranger, IdempotencyKeyReusedError)  # the actor is part of the print
    assert old == CommandResult(ann, 2, earlier.position, earlier.entity_id, replayed=True)
    assert log_position(app) == start + 2  # only the two recorded calls wrote anything


def test_a_batch_that_fails_as_a_whole_is_recorded_call_by_call(
    make_accord: AccordFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_accord(clock=clock)
    customers = [new_customer(app) for _ in range(4)]
    update_many: Callable[..., Any] = app.executor.update_many
    failures: list[int] = []

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise ConnectionError("the store went away mid-batch")
        return update_many(*args, **kwargs)

    monkeypatch.setattr(app.executor, "update_many", failing_once)
    before = _counters(app)

    results = _concurrently(
        app, [(purchase(customer_id, "10", clock.now()), CTX) for customer_id in customers]
    )

    assert failures == [1]
    assert _shared(app, before) == (2, 4)
    assert [r.version for r in results if isinstance(r, CommandResult)] == [2, 2, 2, 2]
    assert len(_interactions(app, customers)) == 4


def test_a_call_alone_takes_the_one_command_path(
    make_accord: AccordFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_accord(clock=clock)
    customer_id = new_customer(app)

    def no_bulk(*_: Any, **__: Any) -> Any:
        raise AssertionError("a lone call went through the bulk path")

    monkeypatch.setattr(app.executor, "update_many", no_bulk)
    before = _counters(app)
    results = [
        app.customers.record_interaction(purchase(customer_id, str(n), clock.now()), CTX)
        for n in range(1, 4)
    ]

    assert [r.version for r in results] == [2, 3, 4]
    assert _shared(app, before) == (3, 3)


def test_a_batch_size_of_one_turns_coalescing_off(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(Settings(command_batch=1), clock=clock)
    customer_id = new_customer(app)

    assert app.customers.interaction_batches is None
    result = app.customers.record_interaction(purchase(customer_id, "10", clock.now()), CTX)
    assert result.version == 2


def test_the_linger_setting_reaches_the_interaction_batches(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    assert _batches(make_accord(clock=clock)).linger == 0.001
    assert _batches(make_accord(Settings(command_linger_us=2_500), clock=clock)).linger == 0.0025


def test_each_call_of_a_shared_batch_logs_its_own_line_with_its_correlation_id(
    make_accord: AccordFactory, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_accord(clock=clock)
    customers = [new_customer(app) for _ in range(2)]
    callers = [CallContext(actor="svc", correlation_id=f"corr-{i}") for i in range(5)]
    configure_logging("json", "INFO")
    capsys.readouterr()
    try:
        results = _concurrently(
            app,
            [
                (purchase(customers[i % 2], str(i + 1), clock.now()), ctx)
                for i, ctx in enumerate(callers)
            ],
        )
        records = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    finally:
        structlog.reset_defaults()

    # The first call, alone, logged as every lone command does (in a server, the call's
    # correlation id is bound to its thread); the four that shared a batch, each its own.
    recorded = [r for r in records if r["event"] == "command_recorded"]
    assert len(recorded) == 5
    shared = [r["correlation_id"] for r in recorded if "correlation_id" in r]
    assert sorted(shared) == [c.correlation_id for c in callers[1:]]
    for result, ctx in zip(results[1:], callers[1:], strict=True):
        assert isinstance(result, CommandResult)
        [line] = [r for r in recorded if r.get("correlation_id") == ctx.correlation_id]
        assert (line["aggregate_id"], line["version"], line["position"]) == (
            str(result.aggregate_id),
            result.version,
            result.position,
        )
    assert not [r for r in records if r["event"] == "commands_recorded"]
