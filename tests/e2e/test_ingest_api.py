"""IngestInteractions over the wire: batches in, per-item results out, in order."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2
from tests.e2e.harness import Served, rpc_error, stored_event_count
from tests.e2e.wire import TIMEOUT, ago, register_customer


def interaction(customer_id: str, amount: str = "10.00", **fields: object) -> object:
    values: dict[str, object] = {
        "customer_id": customer_id,
        "kind": common_pb2.INTERACTION_KIND_PURCHASE,
        "channel": common_pb2.CHANNEL_WEB,
        "direction": common_pb2.DIRECTION_INBOUND,
        "occurred_at": ago(days=1),
        "amount": common_pb2.Money(amount=amount, currency="CNY"),
    }
    values.update(fields)
    return customer_pb2.RecordInteractionRequest(**values)  # type: ignore[arg-type]


def batches(*groups: list[object]) -> Iterator[customer_pb2.IngestInteractionsRequest]:
    for group in groups:
        yield customer_pb2.IngestInteractionsRequest(interactions=group)  # type: ignore[arg-type]


def test_each_batch_is_answered_in_order_with_a_result_per_item(served: Served) -> None:
    client = served.client("writer")
    ann = register_customer(client).customer_id
    bob = register_customer(client).customer_id
    before = stored_event_count(served.store)
    retried = interaction(ann, request_id=f"in-{ann}")

    responses = list(
        client.customers.IngestInteractions(
            batches(
                [
                    retried,
                    interaction(bob),
                    interaction(str(uuid.uuid4())),  # unknown customer
                    interaction(ann, amount="-3.00"),  # invalid amount
                    interaction(bob, occurred_at=ago(days=-3)),  # in the future
                ],
                [retried, interaction(ann)],
            ),
            timeout=TIMEOUT,
        )
    )

    assert [len(r.results) for r in responses] == [5, 2]
    first, second = responses
    recorded_ann, recorded_bob, unknown, invalid, future = first.results
    assert recorded_ann.recorded.customer_id == ann
    assert recorded_ann.recorded.version == 2
    assert recorded_ann.recorded.interaction_id
    assert recorded_bob.recorded.version == 2
    assert (unknown.error.code, unknown.error.reason) == ("NOT_FOUND", "NOT_FOUND")
    assert invalid.error.code == "INVALID_ARGUMENT"
    assert [v.field for v in invalid.error.field_violations] == ["amount"]
    assert (future.error.code, future.error.reason) == (
        "FAILED_PRECONDITION",
        "OCCURRED_IN_FUTURE",
    )
    replayed, later = second.results
    assert replayed.recorded.replayed
    assert replayed.recorded.position == recorded_ann.recorded.position
    assert later.recorded.version == 3
    assert stored_event_count(served.store) == before + 3


def test_an_empty_or_oversized_batch_ends_the_stream_with_invalid_argument(
    served: Served,
) -> None:
    client = served.client("writer")
    customer_id = register_customer(client).customer_id
    before = stored_event_count(served.store)

    for group in ([], [interaction(customer_id)] * 1001):

        def send(group: list[object] = group) -> object:
            return list(client.customers.IngestInteractions(batches(group), timeout=TIMEOUT))

        error = rpc_error(send)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "1 to 1000 interactions" in (error.details() or "")
    assert stored_event_count(served.store) == before


@pytest.mark.parametrize("role", ["reader", "auditor", "compliance"])
def test_only_writers_may_ingest(served: Served, role: str) -> None:
    writer = served.client("writer")
    customer_id = register_customer(writer).customer_id
    before = stored_event_count(served.store)

    error = rpc_error(
        lambda: list(
            served.client(role).customers.IngestInteractions(
                batches([interaction(customer_id)]), timeout=TIMEOUT
            )
        )
    )

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert stored_event_count(served.store) == before


def test_many_batches_for_many_customers_all_land(served: Served) -> None:
    client = served.client("writer")
    customers = [register_customer(client).customer_id for _ in range(20)]
    before = stored_event_count(served.store)

    responses = list(
        client.customers.IngestInteractions(
            batches(*[[interaction(c) for c in customers] * 5 for _ in range(4)]),
            timeout=TIMEOUT,
        )
    )

    results = [r for response in responses for r in response.results]
    assert len(results) == 400
    assert all(r.WhichOneof("outcome") == "recorded" for r in results)
    versions: dict[str, list[int]] = {}
    for r in results:
        versions.setdefault(r.recorded.customer_id, []).append(r.recorded.version)
    assert all(v == list(range(2, 22)) for v in versions.values())
    positions = [r.recorded.position for r in results]
    assert len(set(positions)) == 400
    assert stored_event_count(served.store) == before + 400


def test_an_items_free_text_never_comes_back_in_its_error_nor_reaches_the_log(
    served: Served,
) -> None:
    client = served.client("writer")
    customer_id = register_customer(client).customer_id
    marker = f"secret-{uuid.uuid4().hex}"

    [response] = client.customers.IngestInteractions(
        batches(
            [
                interaction(customer_id, summary=marker * 200),  # too long
                interaction(str(uuid.uuid4()), summary=marker),  # unknown customer
                interaction(customer_id, summary=marker, occurred_at=ago(days=-3)),  # future
                interaction("not-a-uuid", summary=marker),
                interaction(customer_id, summary=marker),  # recorded
            ]
        ),
        timeout=TIMEOUT,
    )

    outcomes = [r.WhichOneof("outcome") for r in response.results]
    assert outcomes == ["error", "error", "error", "error", "recorded"]
    assert marker not in str(response)
    deadline = time.monotonic() + 10
    while not any("IngestInteractions" in line for line in served.log_lines()):
        assert time.monotonic() < deadline, "the call was never logged"
        time.sleep(0.05)
    assert marker not in served.stderr_path.read_text(encoding="utf-8")
