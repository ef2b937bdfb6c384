"""Metrics: the command observer counts outcomes, the projection collector reports lag,
the batch collector shows how much concurrent work was shared.

Each test builds its own ``Metrics`` (its own registry), so counts start at
zero and the tests can assert exact values.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.metrics import Metrics, start_metrics_server
from adapters.postgres.recorder import AccordPostgresRecorder
from adapters.store import StoreConfig
from adapters.wiring import build_accord
from application import commands as c
from application.errors import ConcurrencyConflictError, DomainError
from application.personal_data import MasterKey
from application.service import Accord
from application.settings import Settings
from domain.aggregate import EventMeta
from domain.customer import Customer
from domain.values import Tier
from projections.catalog import all_projections
from tests.builders import CTX, new_customer, purchase, register_customer
from tests.conftest import AccordFactory, ReadModelsFactory
from tests.support import FakeClock, gated


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process=False)


@pytest.fixture
def watched(
    store: StoreConfig, master_key: MasterKey, clock: FakeClock, metrics: Metrics
) -> Iterator[Accord]:
    """An application whose commands ``metrics`` counts (as ``accord serve`` wires it)."""
    with build_accord(
        store, Settings(max_attempts=3), clock, master_key, observer=metrics.commands
    ) as app:
        yield app


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _commands(metrics: Metrics, command: str, outcome: str) -> float:
    return _value(metrics, "accord_commands_total", command=command, outcome=outcome)


def test_recorded_replayed_and_refused_commands_are_counted(
    watched: Accord, metrics: Metrics
) -> None:
    register = register_customer(request_id="req-1")
    customer_id = watched.customers.register(register, CTX).aggregate_id
    assert watched.customers.register(register, CTX).replayed
    with pytest.raises(DomainError):
        watched.customers.change_tier(
            c.ChangeTier(customer_id=customer_id, to_tier="STANDARD", reason="r"), CTX
        )

    assert _commands(metrics, "RegisterCustomer", "recorded") == 1
    assert _commands(metrics, "RegisterCustomer", "replayed") == 1
    assert _commands(metrics, "ChangeTier", "refused") == 1
    assert _commands(metrics, "ChangeTier", "recorded") == 0
    refusals = {"command": "ChangeTier", "reason": "TIER_UNCHANGED"}
    assert _value(metrics, "accord_command_refusals_total", **refusals) == 1
    assert _value(metrics, "accord_events_appended_total") == 1  # the replay appended nothing


def test_a_command_that_breaks_unexpectedly_is_counted_as_failed(
    watched: Accord, metrics: Metrics
) -> None:
    customer_id = new_customer(watched)

    def act(customer: Customer, meta: EventMeta) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        watched.executor.update(
            c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="r"),
            CTX,
            kind=Customer,
            aggregate_id=customer_id,
            act=act,
        )
    assert _commands(metrics, "ChangeTier", "failed") == 1
    assert _commands(metrics, "ChangeTier", "refused") == 0


def _losing_act(rival: Accord, customer_id: UUID, times: int):  # type: ignore[no-untyped-def]
    """An act that lets a rival writer commit first, ``times`` times."""
    calls: list[int] = []

    def act(customer: Customer, meta: EventMeta) -> None:
        calls.append(customer.version)
        if len(calls) <= times:
            rival.customers.update_profile(
                c.UpdateCustomerProfile(customer_id=customer_id, source=f"rival-{len(calls)}"), CTX
            )
        customer.change_tier(Tier.KEY, reason="review", effective_from=meta.recorded_at, meta=meta)

    return act


def test_a_lost_race_counts_one_conflict_and_one_retry(
    watched: Accord, metrics: Metrics, make_accord: AccordFactory
) -> None:
    rival = make_accord()
    customer_id = new_customer(watched)

    watched.executor.update(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="r"),
        CTX,
        kind=Customer,
        aggregate_id=customer_id,
        act=_losing_act(rival, customer_id, times=1),
    )

    assert _value(metrics, "accord_command_conflicts_total", command="ChangeTier") == 1
    assert _value(metrics, "accord_command_retries_total", command="ChangeTier") == 1
    assert _commands(metrics, "ChangeTier", "recorded") == 1
    # The rival's write went through its own (unwatched) application.
    assert _commands(metrics, "UpdateCustomerProfile", "recorded") == 0


def test_giving_up_after_conflicts_counts_every_conflict_but_no_retry_after_the_last(
    watched: Accord, metrics: Metrics, make_accord: AccordFactory
) -> None:
    rival = make_accord()
    customer_id = new_customer(watched)

    with pytest.raises(ConcurrencyConflictError):
        watched.executor.update(
            c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="r"),
            CTX,
            kind=Customer,
            aggregate_id=customer_id,
            act=_losing_act(rival, customer_id, times=99),
        )

    assert _value(metrics, "accord_command_conflicts_total", command="ChangeTier") == 3
    assert _value(metrics, "accord_command_retries_total", command="ChangeTier") == 2
    refusals = {"command": "ChangeTier", "reason": "ConcurrencyConflictError"}
    assert _value(metrics, "accord_command_refusals_total", **refusals) == 1


def _gauges(metrics: Metrics, name: str) -> dict[str, float]:
    return {
        sample.labels["projection"]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def _batching(metrics: Metrics, coalescer: str) -> tuple[float, float]:
    return (
        _value(metrics, "accord_batches_total", coalescer=coalescer),
        _value(metrics, "accord_batched_items_total", coalescer=coalescer),
    )


def test_interactions_recorded_together_show_as_fewer_batches_than_items(
    watched: Accord, metrics: Metrics, clock: FakeClock
) -> None:
    metrics.watch_batches(watched.coalescers())
    customers = [new_customer(watched) for _ in range(4)]
    saves_before = _batching(metrics, "group_commit")
    interactions = watched.customers.interaction_batches
    assert interactions is not None
    gated(interactions, 3)  # the first call is held until the other three queue behind it
    now = clock.now()

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(
            watched.customers.record_interaction, purchase(customers[0], "10", now), CTX
        )
        while not interactions._leading:
            threading.Event().wait(0.001)
        rest = [
            pool.submit(watched.customers.record_interaction, purchase(cid, "10", now), CTX)
            for cid in customers[1:]
        ]
        recorded = [future.result() for future in (first, *rest)]

    assert {result.aggregate_id for result in recorded} == set(customers)
    # One alone, then three in one shared batch: a mean of two per batch.
    assert _batching(metrics, "record_interaction") == (2, 4)
    assert _value(metrics, "accord_batches_lingered_total", coalescer="record_interaction") == 0
    if isinstance(watched.log.recorder, AccordPostgresRecorder):
        # Each of those batches was one save, and one transaction, in the store's group commit.
        batches, items = _batching(metrics, "group_commit")
        assert (batches - saves_before[0], items - saves_before[1]) == (2, 2)
    else:  # SQLite has one writer and no group commit to report
        assert [co.name for co in watched.coalescers()] == ["record_interaction"]
        assert _batching(metrics, "group_commit") == (0, 0)


def test_without_command_batches_only_the_stores_group_commit_is_reported(
    store: StoreConfig, master_key: MasterKey, clock: FakeClock, metrics: Metrics
) -> None:
    with build_accord(store, Settings(command_batch=1), clock, master_key) as app:
        metrics.watch_batches(app.coalescers())
        customer_id = new_customer(app)
        app.customers.record_interaction(purchase(customer_id, "10", clock.now()), CTX)

    assert _batching(metrics, "record_interaction") == (0, 0)
    postgres = store.kind == "postgres"
    assert _batching(metrics, "group_commit") == ((2, 2) if postgres else (0, 0))


def test_projection_lag_is_positive_before_catch_up_and_zero_after(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory, metrics: Metrics
) -> None:
    views = make_read_models(accord)
    metrics.watch(views, clock.now)
    for _ in range(3):
        new_customer(accord)
        clock.advance(seconds=10)
    head = accord.log.recorder.max_notification_id()
    assert head is not None

    names = {p.name for p in all_projections()}
    assert _value(metrics, "accord_log_head_position") == head
    assert _gauges(metrics, "accord_projection_position") == dict.fromkeys(names, 0)
    assert _gauges(metrics, "accord_projection_lag_positions") == dict.fromkeys(names, head)
    # The oldest unapplied event is the first customer, recorded 30 s ago by the clock.
    assert _gauges(metrics, "accord_projection_lag_seconds") == dict.fromkeys(names, 30.0)

    views.runner.catch_up()

    assert _gauges(metrics, "accord_projection_position") == dict.fromkeys(names, head)
    assert _gauges(metrics, "accord_projection_lag_positions") == dict.fromkeys(names, 0)
    assert _gauges(metrics, "accord_projection_lag_seconds") == dict.fromkeys(names, 0.0)


def test_the_endpoint_serves_the_registry_on_a_port_the_os_picked(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory, metrics: Metrics
) -> None:
    metrics.watch(make_read_models(accord), clock.now)
    new_customer(accord)
    metrics.observe_rpc("/accord.v1.CustomerService/RegisterCustomer", "OK", 0.01)

    exporter = start_metrics_server("127.0.0.1", 0, metrics.registry)
    try:
        assert exporter.port > 0
        with urllib.request.urlopen(exporter.url, timeout=10) as response:
            text = response.read().decode()
    finally:
        exporter.stop()

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    method = "/accord.v1.CustomerService/RegisterCustomer"
    key = ("accord_rpc_duration_seconds_count", (("code", "OK"), ("method", method)))
    assert samples[key] == 1
    assert samples[("accord_log_head_position", ())] == 1
