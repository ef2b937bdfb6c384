"""`accord serve --metrics-port`: Prometheus scrapes what the server did and how far behind it is.

A server of its own (the shared one runs without metrics, the secure
default), a few real calls over gRPC, then a scrape of ``/metrics`` parsed
as Prometheus would parse it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2
from adapters.store import StoreConfig
from application.personal_data import MasterKey
from projections.catalog import all_projections
from tests.e2e.harness import ROOT, Served, serve
from tests.e2e.wire import TIMEOUT, purchase, register_customer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
REGISTER = "/accord.v1.CustomerService/RegisterCustomer"
READ_MODELS = frozenset(p.name for p in all_projections())


@pytest.fixture
def served(store: StoreConfig, tmp_path: Path) -> Iterator[Served]:
    server = serve(store, tmp_path, "--metrics-port", "0")
    yield server
    server.stop()


def scrape(served: Served) -> Samples:
    assert served.metrics_port is not None
    return scrape_port(served.metrics_port)


def scrape_port(port: int) -> Samples:
    """``/metrics``, parsed as Prometheus parses it: (name, labels) -> value."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def per_read_model(samples: Samples, name: str) -> dict[str, float]:
    return {
        dict(labels)["projection"]: v for (n, labels), v in samples.items() if n == name and labels
    }


def test_metrics_show_calls_commands_events_and_projection_lag(served: Served) -> None:
    client = served.client("writer")
    correlation_id = f"corr-{uuid.uuid4()}"
    secret_name = f"Metrics Person {uuid.uuid4().hex[:8]}"
    request = customer_pb2.RegisterCustomerRequest(
        request_id=str(uuid.uuid4()),
        external_ref=f"C-{uuid.uuid4().hex[:12]}",
        display_name=secret_name,
        kind=common_pb2.CUSTOMER_KIND_ORGANISATION,
        industry="manufacturing",
        region="CN-east",
        source="trade-fair",
    )
    first = client.customers.RegisterCustomer(
        request, metadata=(("x-correlation-id", correlation_id),), timeout=TIMEOUT
    )
    again = client.customers.RegisterCustomer(request, timeout=TIMEOUT)
    assert again.customer_id == first.customer_id  # a replay: nothing new recorded
    customer_id = register_customer(client).customer_id
    purchase(client, customer_id)

    deadline = time.monotonic() + 30
    while True:  # the read models follow in the background; wait until they have caught up
        samples = scrape(served)
        lag = per_read_model(samples, "accord_projection_lag_positions")
        if (lag and not any(lag.values())) or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert value(samples, "accord_rpc_duration_seconds_count", method=REGISTER, code="OK") == 3
    assert value(samples, "accord_rpc_duration_seconds_sum", method=REGISTER, code="OK") > 0
    recorded = {"command": "RegisterCustomer", "outcome": "recorded"}
    assert value(samples, "accord_commands_total", **recorded) == 2
    replayed = {"command": "RegisterCustomer", "outcome": "replayed"}
    assert value(samples, "accord_commands_total", **replayed) == 1
    interaction = {"command": "RecordInteraction", "outcome": "recorded"}
    assert value(samples, "accord_commands_total", **interaction) == 1
    appended = value(samples, "accord_events_appended_total")
    assert appended >= 3
    head = value(samples, "accord_log_head_position")
    assert head == appended  # a fresh store: every event in the log came through this server
    assert per_read_model(samples, "accord_projection_position") == dict.fromkeys(READ_MODELS, head)
    assert per_read_model(samples, "accord_projection_lag_positions") == dict.fromkeys(
        READ_MODELS, 0
    )
    assert per_read_model(samples, "accord_projection_lag_seconds") == dict.fromkeys(READ_MODELS, 0)
    # The one interaction came alone: one batch of one (no concurrent callers to share with).
    interactions = {"coalescer": "record_interaction"}
    assert value(samples, "accord_batches_total", **interactions) == 1
    assert value(samples, "accord_batched_items_total", **interactions) == 1
    if served.store.kind == "postgres":  # three saves (two customers, the purchase), one by one
        commits = {"coalescer": "group_commit"}
        assert value(samples, "accord_batches_total", **commits) == 3
        assert value(samples, "accord_batched_items_total", **commits) == 3

    # The logs behind these numbers: correlated, and without the customer's name.
    lines = [json.loads(line) for line in served.log_lines() if line.startswith("{")]
    mine = {line["event"] for line in lines if line.get("correlation_id") == correlation_id}
    assert {"rpc", "command_recorded"} <= mine
    assert not any(secret_name in json.dumps(line) for line in lines)


def test_without_a_projection_worker_the_lag_shows_in_positions_and_seconds(
    store: StoreConfig, tmp_path: Path
) -> None:
    server = serve(store, tmp_path, "--metrics-port", "0", "--no-projections")
    try:
        customer_id = register_customer(server.client("writer")).customer_id
        purchase(server.client("writer"), customer_id)
        time.sleep(0.05)  # the oldest unapplied event is measurably old
        samples = scrape(server)
    finally:
        server.stop()

    head = value(samples, "accord_log_head_position")
    assert head >= 2
    assert per_read_model(samples, "accord_projection_position") == dict.fromkeys(READ_MODELS, 0)
    assert per_read_model(samples, "accord_projection_lag_positions") == dict.fromkeys(
        READ_MODELS, head
    )
    seconds = per_read_model(samples, "accord_projection_lag_seconds")
    assert set(seconds) == READ_MODELS
    assert all(age > 0 for age in seconds.values()), seconds


def test_metrics_are_off_unless_a_port_is_given(store: StoreConfig, tmp_path: Path) -> None:
    server = serve(store, tmp_path)
    register_customer(server.client("writer"))  # serving, past start-up, before it is stopped
    code, out = server.stop()
    assert code == 0
    assert server.metrics_port is None
    assert out.splitlines()[-1] == "Accord stopped"
    assert "metrics" not in out.lower()


def test_the_projection_worker_serves_its_read_models_positions(
    store: StoreConfig, tmp_path: Path
) -> None:
    key = MasterKey.generate()
    server = serve(store, tmp_path, "--no-projections", master_key=key)
    try:
        register_customer(server.client("writer"))
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adapters.cli",
                "--database-url",
                store.url,
                "project",
                "--metrics-port",
                "0",
            ],
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "ACCORD_LOG_FORMAT": "json",
                "ACCORD_MASTER_KEY": key.to_base64(),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stderr is not None
            said = []
            for _ in range(50):  # structured log lines may come first
                said.append(worker.stderr.readline())
                if said[-1].startswith("accord project: metrics on ") or not said[-1]:
                    break
            announced = said[-1]
            assert announced.startswith("accord project: metrics on http://127.0.0.1:"), said
            port = int(announced.split("127.0.0.1:")[1].split("/")[0])
            deadline = time.monotonic() + 30
            while True:
                samples = scrape_port(port)
                lag = per_read_model(samples, "accord_projection_lag_positions")
                if (lag and not any(lag.values())) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=60)
    finally:
        server.stop()

    head = value(samples, "accord_log_head_position")
    assert head >= 1
    assert per_read_model(samples, "accord_projection_position") == dict.fromkeys(READ_MODELS, head)
    assert worker.returncode == 0
