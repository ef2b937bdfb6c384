"""SIGTERM during a burst of commands: every acknowledged command survives, exactly once."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import grpc

from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2
from adapters.store import StoreConfig
from application.personal_data import MasterKey
from tests.e2e.harness import serve, stored_event_count

WRITERS = 8


def request(request_id: str) -> customer_pb2.RegisterCustomerRequest:
    return customer_pb2.RegisterCustomerRequest(
        request_id=request_id,
        external_ref=request_id,
        display_name="Burst Customer",
        kind=common_pb2.CUSTOMER_KIND_PERSON,
        industry="retail",
        region="CN-north",
        source="burst",
    )


def test_sigterm_during_a_burst_loses_no_acknowledged_command(
    store: StoreConfig, tmp_path: Path
) -> None:
    key = MasterKey.generate()
    server = serve(store, tmp_path / "first", master_key=key)
    writer = server.client("writer")
    attempted: list[str] = []
    acknowledged: dict[str, customer_pb2.RegisterCustomerResponse] = {}
    refused: list[grpc.StatusCode] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst() -> None:
        while not stop.is_set():
            request_id = f"burst-{uuid.uuid4()}"
            with lock:
                attempted.append(request_id)
            try:
                response = writer.customers.RegisterCustomer(request(request_id), timeout=10)
            except grpc.RpcError as error:
                with lock:
                    refused.append(error.code())
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    return
                continue
            with lock:
                acknowledged[request_id] = response

    threads = [threading.Thread(target=burst) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.process.send_signal(signal.SIGTERM)
    out, _ = server.process.communicate(timeout=60)
    code = server.process.returncode
    stop.set()
    for thread in threads:
        thread.join(30)
    server.stop()

    assert code == 0
    assert "Accord stopped" in out
    assert len(acknowledged) >= 40
    # Calls cut off by the shutdown are refused as unavailable, never as a server fault.
    assert set(refused) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}

    stored = stored_event_count(store)
    assert len(acknowledged) <= stored <= len(attempted)

    again = serve(store, tmp_path / "second", master_key=key)
    try:
        retry = again.client("writer")
        for request_id in attempted:
            response = retry.customers.RegisterCustomer(request(request_id), timeout=10)
            first = acknowledged.get(request_id)
            if first is not None:
                assert response.replayed, request_id
                assert (response.customer_id, response.position) == (
                    first.customer_id,
                    first.position,
                )
        # Every attempted command is now in the log exactly once.
        assert stored_event_count(store) == len(attempted)
    finally:
        again.stop()
