"""On PostgreSQL `accord serve` keeps its read models current in a child `accord project`.

The child is started with the server, started again if it dies, stopped with
the server, and stops by itself when the server is killed; reads that wait
for a position keep working throughout. On SQLite the follower stays a thread.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.grpc.generated.accord.v1 import insight_pb2
from tests.conftest import _require_postgres
from tests.e2e.harness import Served, serve
from tests.e2e.wire import TIMEOUT, purchase, register_customer
from tests.support import postgres_schema, postgres_store, sqlite_store

pytestmark = pytest.mark.xdist_group("projection-worker")


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def until(condition: Callable[[], object], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def reads_follow(served: Served) -> None:
    """A purchase, then a read model read that waits for its position: answered."""
    client = served.client("writer")
    customer_id = register_customer(client).customer_id
    position = purchase(client, customer_id).position
    answer = served.client("reader").insight.GetCustomerInsight(
        insight_pb2.GetCustomerInsightRequest(customer_id=customer_id, min_position=position),
        timeout=TIMEOUT,
    )
    assert answer.position >= position


@pytest.fixture
def on_postgres(tmp_path: Path) -> Iterator[Served]:
    _require_postgres()
    with postgres_schema() as schema:
        served = serve(postgres_store(schema), tmp_path)
        try:
            yield served
        finally:
            if served.process.poll() is None:
                served.stop()


def test_the_worker_follows_is_restarted_and_stops_with_the_server(on_postgres: Served) -> None:
    server = on_postgres.process.pid
    until(lambda: len(children(server)) == 1)
    [worker] = children(server)
    reads_follow(on_postgres)

    os.kill(worker, signal.SIGKILL)
    until(lambda: children(server) and children(server) != [worker])
    reads_follow(on_postgres)
    [restarted] = children(server)

    code, _ = on_postgres.stop()
    assert code == 0
    until(lambda: not alive(restarted))


def test_a_worker_stopped_on_purpose_is_not_restarted(on_postgres: Served) -> None:
    """SIGTERM (or a Ctrl-C reaching the process group): a clean exit, left stopped."""
    server = on_postgres.process.pid
    until(lambda: len(children(server)) == 1)
    [worker] = children(server)
    reads_follow(on_postgres)  # up and following: its signal handlers are in place

    os.kill(worker, signal.SIGTERM)
    until(lambda: not alive(worker))
    time.sleep(2)  # twice the restart delay

    assert children(server) == []
    assert on_postgres.process.poll() is None  # the server carries on


def test_the_worker_stops_by_itself_when_the_server_is_killed(on_postgres: Served) -> None:
    server = on_postgres.process.pid
    until(lambda: len(children(server)) == 1)
    [worker] = children(server)

    on_postgres.process.kill()
    on_postgres.process.wait(10)

    until(lambda: not alive(worker), seconds=10)


def test_on_sqlite_the_follower_is_a_thread_of_the_server(tmp_path: Path) -> None:
    served = serve(sqlite_store(tmp_path), tmp_path)
    try:
        reads_follow(served)
        assert children(served.process.pid) == []
    finally:
        served.stop()
