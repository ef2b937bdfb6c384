"""Faults under load, with real processes: PostgreSQL crashing, the server killed with SIGKILL.

PostgreSQL crashes (``pg_ctl stop -m immediate``) in the middle of a load:
while it is down every call fails fast with UNAVAILABLE (never a hang, never
UNKNOWN or INTERNAL); when it is back the server and the projection workers
recover by themselves, with no restart. The server killed with SIGKILL in the
middle of a load is restarted on the same store (SQLite and PostgreSQL). After
each fault: every acknowledged command is in the log exactly once, where its
response said; a retry of any command with its request_id gives the first
result and records nothing twice; the request journal and the events agree
(nothing half-written); the read models catch up and equal a rebuild from
position 0; the audit chain verifies.

A projection worker killed with SIGKILL part way through a catch-up is
``tests/projections/test_worker_crash.py`` (a real ``accord project``
process, killed repeatedly, its views compared with a rebuild).

The shared PostgreSQL serves tests running in parallel, so nothing here stops
it: the tests that crash PostgreSQL run a private cluster of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from adapters.grpc.generated.accord.v1 import (
    audit_pb2,
    common_pb2,
    compliance_pb2,
    customer_pb2,
    insight_pb2,
    partner_pb2,
)
from adapters.store import StoreConfig, store_config
from adapters.wiring import build_accord, build_read_models
from application.errors import StoreUnavailableError
from application.personal_data import MasterKey
from domain.customer import Customer
from projections.catalog import all_projections
from tests.builders import new_customer
from tests.e2e.harness import ROOT, Client, Served, serve
from tests.e2e.wire import ALL_CATEGORIES, ago

PG_BIN = Path(os.environ.get("ACCORD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))

CALL_TIMEOUT = 10.0
"""Every call's deadline; a store fault must surface well within it, as UNAVAILABLE."""
FAIL_FAST = 3.0
"""While PostgreSQL is down a call fails within this (generous for a loaded 2-core machine)."""
RECOVERY_BOUND = 15.0
"""When PostgreSQL is back, commands succeed (and views catch up) again within this."""
DOWN_SECONDS = 4.0
"""How long PostgreSQL stays down while the clients keep calling."""
ALLOWED = {None, grpc.StatusCode.UNAVAILABLE}
"""How any call in these tests may end: OK or UNAVAILABLE, nothing else."""


# ------------------------------------------------------ a private PostgreSQL


def _require_cluster_binaries() -> None:
    """Like ``_require_postgres``: missing binaries skip, but fail under CI=true."""
    missing = [name for name in ("initdb", "pg_ctl") if not (PG_BIN / name).is_file()]
    problem = None
    if missing:
        problem = f"no {', '.join(missing)} in {PG_BIN} (set ACCORD_TEST_PG_BIN)"
    elif os.geteuid() == 0 and shutil.which("runuser") is None:
        problem = "running as root without runuser (initdb refuses root)"
    if problem is None:
        return
    message = f"cannot run a private PostgreSQL cluster: {problem}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: PostgreSQL is required)", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster only this module uses, so a test may crash it at will."""

    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _pg(self, *command: str) -> None:
        """Run a PostgreSQL program as the ``postgres`` user (initdb and pg_ctl refuse root)."""
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*prefix, str(PG_BIN / command[0]), *command[1:]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=self.directory,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)}: {done.returncode}\n{done.stdout}{done.stderr}"
            )

    def init(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> None:
        # fsync=off: a crash here is PostgreSQL's, not the machine's, so the
        # page cache keeps every write; commits stay synchronous (a commit
        # acknowledged to the server must survive the crash).
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.directory} -c fsync=off -c max_connections=100"
        )
        log = str(self.directory / "postgres.log")
        self._pg("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def crash(self) -> None:
        """Every backend killed at once, no checkpoint: what a crash looks like to clients."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def new_store(self) -> StoreConfig:
        """A fresh schema on this cluster: a store of its own."""
        schema = f"f_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return store_config(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            f"?schema={schema}&pool_size=4&max_overflow=8"
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    """Started once for the module; stopped and removed afterwards, whatever happened.

    Its directory is a fresh one in the system's temporary directory (the
    ``postgres`` user cannot enter pytest's root-only ones), owned by that user.
    """
    _require_cluster_binaries()
    directory = Path(tempfile.mkdtemp(prefix="accord-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    running = PrivateCluster(directory, _free_port())
    try:
        running.init()
        running.start()
        yield running
    finally:
        try:
            if running.running:
                running.crash()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def crashed(cluster: PrivateCluster) -> Iterator[None]:
    """PostgreSQL down for the block; up again afterwards even if the block fails."""
    cluster.crash()
    try:
        yield
    finally:
        if not cluster.running:
            cluster.start()


# ---------------------------------------------------------------------- load


@dataclass
class Attempt:
    """One call: the request, and how it ended (a response, or a status) and how fast."""

    kind: str
    request: Message
    response: Any = None
    code: grpc.StatusCode | None = None
    started: float = 0.0
    elapsed: float = 0.0

    @property
    def request_id(self) -> str:
        return str(getattr(self.request, "request_id", ""))

    @property
    def acknowledged(self) -> bool:
        return self.response is not None

    def result(self, response: Any = None) -> tuple[str, int, int]:
        """What the command recorded: (aggregate id, version, position)."""
        response = response if response is not None else self.response
        aggregate = getattr(response, "customer_id", "") or getattr(response, "partner_id", "")
        return str(aggregate), int(response.version), int(response.position)


def _command_stubs(client: Client) -> dict[str, Callable[..., Any]]:
    return {
        "register": client.customers.RegisterCustomer,
        "purchase": client.customers.RecordInteraction,
        "contact": client.customers.AddContact,
        "profile": client.customers.UpdateCustomerProfile,
        "consent": client.customers.GrantConsent,
        "share": client.customers.ShareData,
    }


def _rid(kind: str) -> str:
    return f"{kind}-{uuid.uuid4()}"


def _call(stub: Callable[..., Any], attempt: Attempt) -> Attempt:
    attempt.started = time.monotonic()
    try:
        attempt.response = stub(attempt.request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        attempt.code = error.code()
    attempt.elapsed = time.monotonic() - attempt.started
    return attempt


@dataclass
class Load:
    """Writer threads sending a mix of commands, and a reader, until stopped.

    Every command carries its own request_id and is remembered with its
    outcome; a writer whose call fails pauses briefly (a client backing off).
    """

    client: Client
    partner_id: str
    writers: int = 6
    attempts: list[Attempt] = field(default_factory=list)
    reads: list[Attempt] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stubs = _command_stubs(self.client)

    def start(self) -> None:
        targets = [*(self._write for _ in range(self.writers)), self._read]
        for number, target in enumerate(targets):
            thread = threading.Thread(target=target, args=(number,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2 * CALL_TIMEOUT)
            assert not thread.is_alive(), "a client thread hung past its deadline"

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)

    def acknowledged_since(self, moment: float) -> list[Attempt]:
        return [a for a in self.snapshot() if a.acknowledged and a.started >= moment]

    def wait_for(self, count: int, since: float = 0.0, timeout: float = 30.0) -> None:
        """Until ``count`` commands sent after ``since`` are acknowledged (bounded)."""
        deadline = time.monotonic() + timeout
        while len(self.acknowledged_since(since)) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.acknowledged_since(since))} of {count} commands acknowledged "
                f"in {timeout} s"
            )
            time.sleep(0.05)

    def _write(self, number: int) -> None:
        rng = random.Random(number)
        mine: list[str] = []
        while not self._stop.is_set():
            if not mine or rng.random() < 0.2:
                attempt = self._register()
            else:
                attempt = self._change(rng, rng.choice(mine))
            with self._lock:
                self.attempts.append(attempt)
            _call(self.stubs[attempt.kind], attempt)
            if attempt.acknowledged and attempt.kind == "register":
                mine.append(attempt.response.customer_id)
            if not attempt.acknowledged:
                self._stop.wait(0.2)

    def _read(self, _: int) -> None:
        """Reads from the aggregates and from the read models, with read-your-writes."""
        while not self._stop.wait(0.05):
            done = [a for a in self.snapshot() if a.acknowledged]
            if not done:
                continue
            latest = max(done, key=lambda a: int(a.response.position))
            customer_id, _, position = latest.result()
            for kind, stub, request in (
                (
                    "GetCustomer",
                    self.client.customers.GetCustomer,
                    customer_pb2.GetCustomerRequest(customer_id=customer_id),
                ),
                (
                    "ListCustomers",
                    self.client.insight.ListCustomers,
                    insight_pb2.ListCustomersRequest(min_position=position, page_size=5),
                ),
            ):
                read = _call(stub, Attempt(kind, request))
                with self._lock:
                    self.reads.append(read)

    def _register(self) -> Attempt:
        return Attempt(
            "register",
            customer_pb2.RegisterCustomerRequest(
                request_id=_rid("register"),
                external_ref=f"C-{uuid.uuid4().hex[:16]}",
                display_name="Fault Tolerant Ltd",
                kind=common_pb2.CUSTOMER_KIND_ORGANISATION,
                industry="manufacturing",
                region="CN-east",
                source="fault-test",
                potential_value=common_pb2.POTENTIAL_VALUE_HIGH,
            ),
        )

    def _change(self, rng: random.Random, customer_id: str) -> Attempt:
        """A command that can be decided again later (a retry never meets a broken rule)."""
        kind = rng.choice(["purchase", "contact", "profile", "consent", "share"])
        request: Message
        if kind == "purchase":
            request = customer_pb2.RecordInteractionRequest(
                customer_id=customer_id,
                request_id=_rid(kind),
                kind=common_pb2.INTERACTION_KIND_PURCHASE,
                channel=common_pb2.CHANNEL_WEB,
                direction=common_pb2.DIRECTION_INBOUND,
                occurred_at=ago(days=rng.randint(1, 400)),
                amount=common_pb2.Money(amount=f"{rng.randint(1, 5000)}.00", currency="CNY"),
            )
        elif kind == "contact":
            request = customer_pb2.AddContactRequest(
                customer_id=customer_id,
                request_id=_rid(kind),
                name="Li Wei",
                email="li.wei@example.com",
                layer=common_pb2.CONTACT_LAYER_DECISION,
                function=common_pb2.CONTACT_FUNCTION_FINANCE,
            )
        elif kind == "profile":
            request = customer_pb2.UpdateCustomerProfileRequest(
                customer_id=customer_id,
                request_id=_rid(kind),
                industry=f"industry-{uuid.uuid4().hex[:8]}",  # always a change
            )
        elif kind == "consent":
            request = customer_pb2.GrantConsentRequest(
                customer_id=customer_id,
                request_id=_rid(kind),
                partner_id=self.partner_id,
                purpose=common_pb2.PURPOSE_MARKETING,
                data_categories=ALL_CATEGORIES,
                capture=common_pb2.ConsentCapture(
                    method="WEB_FORM", source="portal", evidence_ref="doc-1", notice_version="v3"
                ),
            )
        else:
            request = customer_pb2.ShareDataRequest(
                customer_id=customer_id,
                request_id=_rid(kind),
                partner_id=self.partner_id,
                purpose=common_pb2.PURPOSE_MARKETING,
                data_categories=ALL_CATEGORIES,
            )
        return Attempt(kind, request)


def active_partner(client: Client) -> str:
    """A partner that may receive data, so shares are decided against a live agreement."""
    partners = client.partners
    partner_id = partners.RegisterPartner(
        partner_pb2.RegisterPartnerRequest(
            request_id=_rid("partner"),
            external_ref=f"P-{uuid.uuid4().hex[:12]}",
            name="Resilient Partner",
            kind=common_pb2.PARTNER_KIND_RESELLER,
            regions=["CN-east"],
        ),
        timeout=CALL_TIMEOUT,
    ).partner_id
    partners.EvaluatePartner(
        partner_pb2.EvaluatePartnerRequest(
            partner_id=partner_id,
            request_id=_rid("evaluate"),
            strength=80,
            reputation=70,
            business_fit=90,
            data_protection=85,
        ),
        timeout=CALL_TIMEOUT,
    )
    partners.SignAgreement(
        partner_pb2.SignAgreementRequest(
            partner_id=partner_id,
            request_id=_rid("agreement"),
            kind=common_pb2.AGREEMENT_KIND_DATA_SHARING,
            effective_from=ago(days=1),
            confidentiality=True,
            permitted_purposes=[common_pb2.PURPOSE_MARKETING],
            permitted_data_categories=ALL_CATEGORIES,
            document_sha256="ab" * 32,
        ),
        timeout=CALL_TIMEOUT,
    )
    partners.ActivatePartner(
        partner_pb2.ActivatePartnerRequest(partner_id=partner_id, request_id=_rid("activate")),
        timeout=CALL_TIMEOUT,
    )
    return partner_id


# ------------------------------------------------------------ the log, read raw


@dataclass(frozen=True)
class StoredLog:
    """The events and the request journal, read behind the server's back."""

    events: list[tuple[int, str, int, str]]
    """(position, aggregate id, version, request_id), in log order."""
    journal: dict[str, tuple[str, int]]
    """request_id -> (aggregate id, version of the command's last event)."""

    def result(self, request_id: str) -> tuple[str, int, int] | None:
        """(aggregate id, version, position) a request was recorded as, if it was."""
        if request_id not in self.journal:
            return None
        aggregate, version = self.journal[request_id]
        [position] = [p for p, a, v, _ in self.events if (a, v) == (aggregate, version)]
        return str(uuid.UUID(aggregate)), version, position


def _hex(value: object) -> str:
    return uuid.UUID(str(value)).hex


def read_log(store: StoreConfig) -> StoredLog:
    env = store.env
    rows: list[tuple[Any, ...]]
    journal_rows: list[tuple[Any, ...]]
    if store.kind == "sqlite":
        with closing(sqlite3.connect(env["SQLITE_DBNAME"])) as conn:
            rows = conn.execute(
                "SELECT rowid, originator_id, originator_version, state FROM stored_events "
                "ORDER BY rowid"
            ).fetchall()
            journal_rows = conn.execute(
                "SELECT request_id, aggregate_id, version FROM accord_requests"
            ).fetchall()
    else:
        schema = sql.Identifier(env["POSTGRES_SCHEMA"])
        with psycopg.connect(
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            dbname=env["POSTGRES_DBNAME"],
            user=env["POSTGRES_USER"],
        ) as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT notification_id, originator_id, originator_version, state "
                    "FROM {}.accord_events ORDER BY notification_id"
                ).format(schema)
            ).fetchall()
            journal_rows = conn.execute(
                sql.SQL("SELECT request_id, aggregate_id, version FROM {}.accord_requests").format(
                    schema
                )
            ).fetchall()
    events = [
        (int(p), _hex(a), int(v), str(json.loads(bytes(s))["request_id"])) for p, a, v, s in rows
    ]
    return StoredLog(events, {str(r): (_hex(a), int(v)) for r, a, v in journal_rows})


def check_nothing_half_written(log: StoredLog) -> None:
    """Each command's events and its journal row were written together, and once.

    Every journal row names an event that exists and carries its request_id;
    every event's request_id has its journal row; a request's events are one
    unbroken run of versions of one aggregate, ending at the journalled one.
    """
    by_request: dict[str, list[tuple[str, int]]] = defaultdict(list)
    at: dict[tuple[str, int], str] = {}
    for _, aggregate, version, request_id in log.events:
        by_request[request_id].append((aggregate, version))
        at[(aggregate, version)] = request_id
    assert len(at) == len(log.events), "two events at one (aggregate, version)"
    orphans = sorted(set(by_request) - set(log.journal))
    assert not orphans, f"events without their journal row: {orphans[:5]}"
    for request_id, (aggregate, version) in log.journal.items():
        assert at.get((aggregate, version)) == request_id, (
            f"journal row {request_id} names {aggregate} v{version}, not one of its events"
        )
        written = sorted(by_request[request_id])
        run = [(aggregate, v) for v in range(version - len(written) + 1, version + 1)]
        assert written == run, f"{request_id} written as {written}"


def check_acknowledged(log: StoredLog, attempts: list[Attempt]) -> int:
    """Every acknowledged command is in the log, once, as its response said; how many."""
    acknowledged = [a for a in attempts if a.acknowledged]
    for attempt in acknowledged:
        assert log.result(attempt.request_id) == attempt.result(), (
            f"acknowledged {attempt.request_id} {attempt.result()} is stored as "
            f"{log.result(attempt.request_id)}"
        )
    return len(acknowledged)


def retry_everything(client: Client, attempts: list[Attempt]) -> int:
    """Send every command again with its own request_id; how many were recorded now.

    An acknowledged command comes back ``replayed`` with its first result. One
    that failed was either recorded all the same (replayed too) or not at all
    (recorded now). Replays are reads, sent in parallel; new decisions in order.
    """
    stubs = _command_stubs(client)

    def again(attempt: Attempt) -> Any:
        return stubs[attempt.kind](attempt.request, timeout=CALL_TIMEOUT)

    with ThreadPoolExecutor(8) as pool:
        replays = list(pool.map(again, [a for a in attempts if a.acknowledged]))
    for attempt, response in zip((a for a in attempts if a.acknowledged), replays, strict=True):
        assert response.replayed, attempt.request_id
        assert attempt.result(response) == attempt.result(), attempt.request_id
    recorded_now = 0
    for attempt in attempts:
        if not attempt.acknowledged:
            response = again(attempt)
            recorded_now += not response.replayed
            attempt.response = response  # acknowledged now: it must stay so, once
    return recorded_now


def check_retries_record_nothing(
    client: Client, store: StoreConfig, attempts: list[Attempt]
) -> None:
    """With every command recorded, a second round of retries changes nothing at all."""
    before = read_log(store)
    assert retry_everything(client, attempts) == 0
    assert read_log(store) == before


# ---------------------------------------------------------------- read models


def read_every_model(client: Client, partner_id: str, position: int) -> None:
    """One read per read model at ``min_position=position``: each waits for its model."""
    client.insight.ListCustomers(  # customer_summary, segments, lifecycle
        insight_pb2.ListCustomersRequest(min_position=position, page_size=10),
        timeout=CALL_TIMEOUT,
    )
    client.compliance.ListConsents(
        compliance_pb2.ListConsentsRequest(partner_id=partner_id, min_position=position),
        timeout=CALL_TIMEOUT,
    )
    client.insight.GetPartnerScorecard(
        insight_pb2.GetPartnerScorecardRequest(partner_id=partner_id, min_position=position),
        timeout=CALL_TIMEOUT,
    )
    digest = client.audit.GetDigest(
        audit_pb2.GetDigestRequest(min_position=position), timeout=CALL_TIMEOUT
    )
    assert digest.position >= position


def wait_until_caught_up(client: Client, partner_id: str, position: int, bound: float) -> float:
    """Seconds until every read model has reached ``position`` (asserted within ``bound``)."""
    started = time.monotonic()
    while True:
        try:
            read_every_model(client, partner_id, position)
        except grpc.RpcError as error:
            failure = error
        else:
            return time.monotonic() - started
        assert failure.code() == grpc.StatusCode.UNAVAILABLE, failure
        assert time.monotonic() - started < bound, f"views not at {position} in {bound} s"
        time.sleep(0.2)


def check_chain(client: Client) -> None:
    digest = client.audit.GetDigest(audit_pb2.GetDigestRequest(), timeout=CALL_TIMEOUT)
    verdict = client.audit.VerifyLog(
        audit_pb2.VerifyLogRequest(position=digest.position, hash=digest.hash),
        timeout=CALL_TIMEOUT,
    )
    assert verdict.ok, verdict


def check_views_equal_a_rebuild(store: StoreConfig, key: MasterKey, head: int) -> None:
    """Each read model, as the fault left it and caught up since, equals a rebuild from 0."""
    with build_accord(store, master_key=key) as app:
        models = build_read_models(app, store)
        try:
            for projection in all_projections():
                name = projection.name
                state = models.views.state(name)
                assert state is not None, name
                assert models.runner.active_position(name) == head, name
                live = models.views.dump(name, state[0])
                rebuilt = models.runner.rebuild(name)
                assert rebuilt is not None, name
                assert models.views.dump(name, rebuilt) == live, f"{name} differs from a rebuild"
        finally:
            models.stop()


def head_of(store: StoreConfig) -> int:
    return max((p for p, _, _, _ in read_log(store).events), default=0)


# ------------------------------------------------------ PostgreSQL crashes


@dataclass(frozen=True)
class Outage:
    """What the clients saw while PostgreSQL was down and when it came back."""

    failed: int
    """Calls that failed while it was down (all UNAVAILABLE, all fast)."""
    median_failure: float
    """How long such a call took to fail, in seconds (the median)."""
    slowest: float
    """The longest any call took, from the crash until PostgreSQL was back."""
    recovered_in: float
    """Seconds from PostgreSQL accepting connections to the first acknowledged command."""


def crash_under_load(cluster: PrivateCluster, load: Load) -> Outage:
    """Crash PostgreSQL in the middle of ``load``, keep calling, bring it back; what was seen."""
    load.wait_for(60)
    crash_at = time.monotonic()
    with crashed(cluster):
        down_at = time.monotonic()
        time.sleep(DOWN_SECONDS)
        up_at = time.monotonic()
    back_at = time.monotonic()
    load.wait_for(30, since=back_at, timeout=RECOVERY_BOUND + 15)
    load.stop()

    calls = load.snapshot() + load.reads
    bad = [(a.kind, a.code) for a in calls if a.code not in ALLOWED]
    assert not bad, f"calls failed with other statuses than UNAVAILABLE: {bad[:10]}"
    during = [a for a in calls if crash_at <= a.started < back_at]
    slow = [(a.kind, round(a.elapsed, 2)) for a in during if a.elapsed >= FAIL_FAST]
    assert not slow, f"calls hung while PostgreSQL was down: {slow[:10]}"
    failed = [a for a in during if a.started >= down_at and a.started + a.elapsed < up_at]
    assert failed, "no call was made while PostgreSQL was down"
    assert all(a.code == grpc.StatusCode.UNAVAILABLE for a in failed)
    assert {a.kind for a in failed} >= {"register", "GetCustomer", "ListCustomers"}
    first = min(a.started + a.elapsed for a in load.acknowledged_since(back_at))
    recovered_in = first - back_at
    assert recovered_in < RECOVERY_BOUND
    return Outage(
        len(failed),
        round(statistics.median(a.elapsed for a in failed), 3),
        round(max(a.elapsed for a in during), 3),
        round(recovered_in, 3),
    )


def _lock_ids(store: StoreConfig) -> set[int]:
    """The advisory lock of each read model's one active worker (as the view store takes it)."""
    schema = store.env["POSTGRES_SCHEMA"]
    return {
        int.from_bytes(
            hashlib.sha256(f"accord:{schema}:{p.name}".encode()).digest()[:8], "big", signed=True
        )
        for p in all_projections()
    }


def wait_for_worker_locks(cluster: PrivateCluster, store: StoreConfig) -> float:
    """Seconds until every read model's advisory lock is held again (a lost one is retaken)."""
    wanted = _lock_ids(store)
    started = time.monotonic()
    while True:
        with cluster.connect() as conn:
            rows = conn.execute(
                "SELECT ((classid::bigint << 32) | objid::bigint) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            ).fetchall()
        held = {int(r[0]) for r in rows}
        if wanted <= held:
            return time.monotonic() - started
        assert time.monotonic() - started < RECOVERY_BOUND, (
            f"{len(wanted - held)} read models have no active worker holding their lock"
        )
        time.sleep(0.2)


def report(name: str, **figures: object) -> None:
    """Measured figures, printed for ``pytest -s`` and kept in the log of a failing run."""
    print(f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def _start_worker(store: StoreConfig, key: MasterKey, log: Path) -> subprocess.Popen[str]:
    """``accord project``, once it says it is following the log."""
    with log.open("w", encoding="utf-8") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-m", "adapters.cli", "--database-url", store.url, "project"],
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "ACCORD_MASTER_KEY": key.to_base64(),
                "ACCORD_LOG_FORMAT": "json",
            },
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    deadline = time.monotonic() + 30
    while "accord project: following" not in log.read_text(encoding="utf-8"):
        assert worker.poll() is None, f"the worker did not start:\n{log.read_text()}"
        assert time.monotonic() < deadline, "the worker did not start within 30 s"
        time.sleep(0.05)
    return worker


def check_after_the_fault(
    served: Served, store: StoreConfig, key: MasterKey, partner_id: str, attempts: list[Attempt]
) -> dict[str, int]:
    """Everything a fault must not have broken; figures for the report."""
    client = served.client("admin")
    acknowledged = [a for a in attempts if a.acknowledged]
    last = max(int(a.response.position) for a in acknowledged)
    wait_until_caught_up(client, partner_id, last, RECOVERY_BOUND)

    log = read_log(store)
    check_nothing_half_written(log)
    checked = check_acknowledged(log, attempts)
    in_doubt = [a for a in attempts if not a.acknowledged and a.request_id in log.journal]

    recorded_now = retry_everything(client, attempts)
    log = read_log(store)
    check_nothing_half_written(log)
    assert check_acknowledged(log, attempts) == len(attempts)
    check_retries_record_nothing(client, store, attempts)

    head = head_of(store)
    wait_until_caught_up(client, partner_id, head, RECOVERY_BOUND)
    check_chain(client)
    check_views_equal_a_rebuild(store, key, head)
    return {
        "acknowledged_checked": checked,
        "failed_but_recorded": len(in_doubt),
        "recorded_on_retry": recorded_now,
        "events": len(log.events),
    }


@pytest.mark.postgres_only
def test_postgres_crash_under_load_fails_fast_and_the_server_recovers_by_itself(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    store = cluster.new_store()
    key = MasterKey.generate()
    served = serve(store, tmp_path, master_key=key)  # read models in-process
    try:
        client = served.client("admin")
        partner_id = active_partner(client)
        wait_for_worker_locks(cluster, store)
        load = Load(client, partner_id)
        load.start()
        try:
            outage = crash_under_load(cluster, load)
        finally:
            load.stop()
        assert served.process.poll() is None, "the server died with PostgreSQL"
        relocked_in = wait_for_worker_locks(cluster, store)
        figures = check_after_the_fault(served, store, key, partner_id, load.attempts)
        report(
            "postgres crash, in-process projections",
            **vars(outage),
            relocked_in=round(relocked_in, 2),
            **figures,
        )
    finally:
        code, _ = served.stop()
    assert code == 0


@pytest.mark.postgres_only
def test_postgres_crash_under_load_a_projection_worker_recovers_by_itself(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    store = cluster.new_store()
    key = MasterKey.generate()
    served = serve(store, tmp_path, "--no-projections", master_key=key)
    worker_log = tmp_path / "worker.log"
    worker = _start_worker(store, key, worker_log)
    try:
        client = served.client("admin")
        partner_id = active_partner(client)
        wait_for_worker_locks(cluster, store)
        load = Load(client, partner_id)
        load.start()
        try:
            outage = crash_under_load(cluster, load)
        finally:
            load.stop()
        assert worker.poll() is None, f"the worker died with PostgreSQL:\n{worker_log.read_text()}"
        last = max(int(a.response.position) for a in load.attempts if a.acknowledged)
        caught_up_in = wait_until_caught_up(client, partner_id, last, RECOVERY_BOUND)
        relocked_in = wait_for_worker_locks(cluster, store)
        figures = check_after_the_fault(served, store, key, partner_id, load.attempts)
        report(
            "postgres crash, separate worker",
            **vars(outage),
            worker_caught_up_in=round(caught_up_in, 2),
            relocked_in=round(relocked_in, 2),
            **figures,
        )
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(30)
        code, _ = served.stop()
    assert worker.returncode == 0, worker_log.read_text()
    assert code == 0


@pytest.mark.postgres_only
def test_a_store_whose_postgres_is_gone_fails_fast_and_recovers(cluster: PrivateCluster) -> None:
    """The defect in isolation: the pool waited out its timeout, the library retried reads.

    With PostgreSQL down, a command, a (library-retried) read of the log, an
    aggregate load and a read-model read each took five seconds or more to
    fail (or hung until PostgreSQL returned); now each fails at once with
    StoreUnavailableError, and the same application works again by itself
    once PostgreSQL is back.
    """
    store = cluster.new_store()
    with build_accord(store, master_key=MasterKey.generate()) as app:
        models = build_read_models(app, store)
        customer_id = new_customer(app)
        calls: dict[str, Callable[[], object]] = {
            "command": lambda: new_customer(app),
            "log head": app.log.recorder.max_notification_id,
            "aggregate": lambda: app.executor.load(Customer, customer_id),
            "read model": lambda: models.runner.active_position("customer_summary"),
        }
        with crashed(cluster):
            for _ in range(2):
                for what, call in calls.items():
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailableError):
                        call()
                    assert time.monotonic() - started < 1.5, what
        when_back(lambda: new_customer(app))
        for call in calls.values():
            call()


@pytest.mark.postgres_only
def test_health_says_not_serving_while_postgres_is_down(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    """A balancer asking the standard health service routes around a server without its store."""
    served = serve(cluster.new_store(), tmp_path)
    try:
        with grpc.insecure_channel(served.address) as channel:
            # The stub packages' types lag the generated code: used untyped.
            health: Any = health_pb2_grpc.HealthStub(channel)

            def status(service: str = "") -> int:
                request = health_pb2.HealthCheckRequest(service=service)
                return int(health.Check(request, timeout=5).status)

            def becomes(wanted: int, within: float) -> float:
                started = time.monotonic()
                while status() != wanted:
                    assert time.monotonic() - started < within, f"health never became {wanted}"
                    time.sleep(0.1)
                return time.monotonic() - started

            assert status() == health_pb2.HealthCheckResponse.SERVING
            with crashed(cluster):
                down_in = becomes(health_pb2.HealthCheckResponse.NOT_SERVING, 10.0)
                assert status("accord.v1.CustomerService") == (
                    health_pb2.HealthCheckResponse.NOT_SERVING
                )
            up_in = becomes(health_pb2.HealthCheckResponse.SERVING, RECOVERY_BOUND)
            report("health follows the store", down_in=round(down_in, 2), up_in=round(up_in, 2))
    finally:
        code, _ = served.stop()
    assert code == 0, "\n".join(served.log_lines()[-30:])


def when_back(call: Callable[[], object]) -> None:
    """``call`` once the store answers again (asserted within ``RECOVERY_BOUND``)."""
    deadline = time.monotonic() + RECOVERY_BOUND
    while True:
        try:
            call()
        except StoreUnavailableError:
            assert time.monotonic() < deadline, "the store did not come back"
            time.sleep(0.1)
        else:
            return


@pytest.mark.postgres_only
def test_a_worker_takes_back_the_locks_a_postgres_restart_released(
    cluster: PrivateCluster,
) -> None:
    """The defect in isolation: a restart ends the sessions holding the workers' locks.

    The worker went on as the active one of every read model without holding
    any lock (so a standby would have become active too), and on stopping it
    failed to release a lock on a dead connection: ``accord project`` exited
    with a traceback. Now it lets go of each lost lock and takes it again.
    """
    store = cluster.new_store()
    with build_accord(store, master_key=MasterKey.generate()) as app:
        models = build_read_models(app, store)
        stop = threading.Event()
        worker = threading.Thread(target=models.work, args=(stop,), daemon=True)
        worker.start()
        try:
            wait_for_worker_locks(cluster, store)
            with crashed(cluster):
                time.sleep(1)
            wait_for_worker_locks(cluster, store)
            when_back(lambda: new_customer(app))
            head = app.log.recorder.max_notification_id() or 0
            for projection in all_projections():
                assert models.runner.wait_for(projection.name, head, RECOVERY_BOUND)
        finally:
            stop.set()
            worker.join(30)
        assert not worker.is_alive()


# ------------------------------------------------------ the server, SIGKILLed


def test_server_killed_during_load_loses_no_acknowledged_command(
    store: StoreConfig, tmp_path: Path
) -> None:
    key = MasterKey.generate()
    first = serve(store, tmp_path / "first", master_key=key)
    try:
        client = first.client("admin")
        partner_id = active_partner(client)
        load = Load(client, partner_id)
        load.start()
        try:
            load.wait_for(80)
            killed_at = time.monotonic()
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(30)
        finally:
            load.stop()
    finally:
        first.stop()
    assert first.process.returncode == -signal.SIGKILL
    calls = load.snapshot() + load.reads
    assert {a.code for a in calls} <= ALLOWED
    assert any(a.started < killed_at and not a.acknowledged for a in load.attempts), (
        "the kill landed between commands, not in the middle of one"
    )

    again = serve(store, tmp_path / "second", master_key=key)
    try:
        figures = check_after_the_fault(again, store, key, partner_id, load.attempts)
        report(f"server SIGKILL ({store.kind})", **figures)
    finally:
        code, _ = again.stop()
    assert code == 0
