"""A real `accord serve` subprocess on a free port, and clients that talk to it.

Each role gets its own token (added with the same code as `accord tokens
add`); a client carries one token on every call, as a real caller would.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_status import rpc_status
from psycopg import sql

from adapters.grpc.errors import error_details_pb2
from adapters.grpc.generated.accord.v1 import (
    audit_pb2_grpc,
    compliance_pb2_grpc,
    customer_pb2_grpc,
    insight_pb2_grpc,
    partner_pb2_grpc,
)
from adapters.grpc.tokens import ROLES, add_token
from adapters.store import StoreConfig
from application.personal_data import MasterKey

ROOT = Path(__file__).parents[2]


class _Metadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds fixed metadata (the bearer token) to every call."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.metadata = tuple(metadata)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self.metadata))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@dataclass
class Client:
    """Stubs for every service, all calling with one identity."""

    channel: grpc.Channel
    customers: customer_pb2_grpc.CustomerServiceStub = field(init=False)
    partners: partner_pb2_grpc.PartnerServiceStub = field(init=False)
    compliance: compliance_pb2_grpc.ComplianceServiceStub = field(init=False)
    insight: insight_pb2_grpc.InsightServiceStub = field(init=False)
    audit: audit_pb2_grpc.AuditServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.customers = customer_pb2_grpc.CustomerServiceStub(self.channel)
        self.partners = partner_pb2_grpc.PartnerServiceStub(self.channel)
        self.compliance = compliance_pb2_grpc.ComplianceServiceStub(self.channel)
        self.insight = insight_pb2_grpc.InsightServiceStub(self.channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


@dataclass
class Served:
    """A running server and the tokens it accepts, one per role."""

    process: subprocess.Popen[str]
    port: int
    store: StoreConfig
    tokens: dict[str, str]
    stderr_path: Path
    tokens_file: Path | None
    metrics_port: int | None = None
    """Where ``/metrics`` is served (started with ``--metrics-port``), else ``None``."""
    _clients: list[Client] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, role: str | None = "admin", *, token: str | None = None) -> Client:
        """A client holding ``role``'s token (``None``: no token at all)."""
        channel = grpc.insecure_channel(self.address)
        bearer = token if token is not None else (self.tokens[role] if role else None)
        if bearer is not None:
            channel = grpc.intercept_channel(
                channel, _Metadata([("authorization", f"Bearer {bearer}")])
            )
        client = Client(channel)
        self._clients.append(client)
        return client

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str]:
        for client in self._clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        out, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, out

    def log_lines(self) -> list[str]:
        return self.stderr_path.read_text(encoding="utf-8").splitlines()

    def log_records(self) -> list[dict[str, Any]]:
        """The server's JSON log lines, parsed (banners and other plain lines left out)."""
        return [json.loads(line) for line in self.log_lines() if line.startswith("{")]


def write_tokens(path: Path, roles: Sequence[str] = ROLES) -> dict[str, str]:
    return {role: add_token(path, f"test-{role}", [role]) for role in roles}


def serve(
    store: StoreConfig,
    workdir: Path,
    *args: str,
    tokens: bool = True,
    master_key: MasterKey | None = None,
    env: dict[str, str] | None = None,
) -> Served:
    """Start `accord serve --port 0` and wait for the line that says where it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    issued: dict[str, str] = {}
    extra = list(args)
    tokens_file: Path | None = None
    if tokens:
        tokens_file = workdir / "tokens.toml"
        issued = write_tokens(tokens_file)
        extra += ["--tokens-file", str(tokens_file)]
    stderr_path = workdir / f"server-{len(list(workdir.glob('server-*.log')))}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "--database-url",
            store.url,
            "serve",
            "--port",
            "0",
            *extra,
        ],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ACCORD_MASTER_KEY": (master_key or MasterKey.generate()).to_base64(),
            "ACCORD_LOG_FORMAT": "json",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("w", encoding="utf-8"),
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    if not banner.startswith("Accord listening on 127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"server did not start: {banner!r}\n{stderr_path.read_text()}")
    port = int(banner.split("127.0.0.1:")[1].split(" ")[0])
    metrics_port: int | None = None
    if "--metrics-port" in extra:  # the line after the banner says where metrics are served
        line = process.stdout.readline()
        if not line.startswith("Accord metrics on http://127.0.0.1:"):
            process.kill()
            raise RuntimeError(f"no metrics line: {line!r}\n{stderr_path.read_text()}")
        metrics_port = int(line.split("127.0.0.1:")[1].split("/")[0])
    return Served(process, port, store, issued, stderr_path, tokens_file, metrics_port)


def rpc_error(call: Callable[[], Any], what: object = "") -> grpc.RpcError:
    """The error a call fails with (the test fails if it succeeds)."""
    try:
        result = call()
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"the call succeeded: {what} -> {result}")


def stored_event_count(store: StoreConfig) -> int:
    """How many events the store holds, read behind the server's back (nothing recorded?)."""
    env = store.env
    if store.kind == "sqlite":
        with closing(sqlite3.connect(env["SQLITE_DBNAME"])) as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM stored_events").fetchone()
            return int(count)
    with psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        dbname=env["POSTGRES_DBNAME"],
        user=env["POSTGRES_USER"],
    ) as conn:
        query = sql.SQL("SELECT COUNT(*) FROM {}.accord_events").format(
            sql.Identifier(env["POSTGRES_SCHEMA"])
        )
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """INVALID_ARGUMENT's google.rpc.BadRequest, as field -> description."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            return {v.field: v.description for v in bad_request.field_violations}
    raise AssertionError(f"no BadRequest detail in {status}")


def pages(fetch: Callable[[str], Any]) -> Iterator[Any]:
    """Every page of a listing, following next_page_token until it is empty."""
    token = ""
    for _ in range(100):
        response = fetch(token)
        yield response
        token = response.next_page_token
        if not token:
            return
    raise AssertionError("paging did not end")
