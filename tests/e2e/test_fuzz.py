"""Hostile input against every RPC of every accord.v1 service, on a real `accord serve`.

The RPCs are enumerated from the generated descriptors (``services_by_name`` of
each ``*_pb2`` module), so an RPC added to the contract is fuzzed without
touching this file. Requests go out as raw bytes on a generic call
(``request_serializer=None``), so they can be anything: well-typed messages
with random values, out-of-range Timestamps, enum numbers the contract
lacks, ids that are not UUIDs, oversized strings, huge repeated fields, and
bytes that are not a valid message at all (truncated, invalid UTF-8 inside a
string field, deeply nested junk, bad tags). Every call uses an admin token.

After every call the fuzzer checks that:

- the status is one a client can act on: never UNKNOWN or INTERNAL; UNAVAILABLE
  only as NOT_CAUGHT_UP for a ``min_position`` the log has not reached, and
  DEADLINE_EXCEEDED only for a stream or for such a wait;
- INVALID_ARGUMENT carries a ``google.rpc.BadRequest`` whose violations name a field
  (and, for the hand-made cases below, the field that was broken);
- the server process is alive and answers a health check;
- a failed call recorded nothing (the log's head, read from the store behind the
  server's back, did not move); a read recorded nothing either; a command that
  succeeded moved the head to the position it answered (or not at all, if replayed).

Per RPC: ``test_random_requests`` (hypothesis: typed messages, some laid over a
valid request so they reach the aggregates, some broken on the wire, some junk),
``test_hand_made_hostile_requests`` (one hostile field at a time on top of a valid
request aimed at real aggregates, so the violation must name that field: invalid
UTF-8, oversized and non-UUID strings, out-of-range Timestamps, unknown enum
numbers, extreme ints, 100k-item repeated fields; plus malformed wire bytes) and,
last, ``test_after_the_fuzzing_every_read_still_answers`` (over what the fuzzing
recorded). The limits have tests of their own: a request over 4 MiB (the first
RPC of each service), page sizes (capped as docs/api.md promises; negative ones
refused), tampered and forged page tokens.

Seed policy: hypothesis runs with ``derandomize=True`` and ``database=None``:
the examples are a function of the test code alone, so every run (CI or laptop)
sends the same requests and nothing is written into the repository. The budget
is ``ACCORD_FUZZ_EXAMPLES`` examples per RPC and store (default 12, which keeps
the file well under a minute for both stores); raise it locally to explore more.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import domain.customer
import domain.partner
from adapters.grpc.errors import error_details_pb2
from adapters.grpc.generated.accord.v1 import (
    audit_pb2,
    common_pb2,
    compliance_pb2,
    customer_pb2,
    insight_pb2,
    partner_pb2,
)
from adapters.grpc.server import MAX_MESSAGE_BYTES
from adapters.grpc.services.catalog import SERVICE_NAMES
from adapters.grpc.translate import MAX_PAGE_SIZE
from adapters.store import StoreConfig
from domain.events import DomainEvent
from tests.e2e.harness import Served
from tests.e2e.wire import active_partner, grant, register_customer, share

EVENT_MODULES = (domain.customer, domain.partner)
"""Imported for their events, which fill ``DomainEvent.registry`` (the known event types)."""
Code = grpc.StatusCode
MODULES = (customer_pb2, partner_pb2, compliance_pb2, insight_pb2, audit_pb2)
ALWAYS_ALLOWED = frozenset(
    {
        Code.OK,
        Code.INVALID_ARGUMENT,
        Code.NOT_FOUND,
        Code.ALREADY_EXISTS,
        Code.FAILED_PRECONDITION,
        Code.ABORTED,
        Code.RESOURCE_EXHAUSTED,
        Code.OUT_OF_RANGE,
    }
)
EXAMPLES = int(os.environ.get("ACCORD_FUZZ_EXAMPLES", "12"))

UNARY_TIMEOUT = 10.0
STREAM_TIMEOUT = 10.0
FOLLOW_TIMEOUT = 1.0
"""A following ReadEvents ends (OK) half a second before its deadline."""
WAIT_TIMEOUT = 0.2
"""For a request whose min_position the log has not reached: the server waits this long."""
HUGE = 100_000
"""Elements in a huge repeated field."""
OVERSIZED = 100_000
"""Characters in an oversized string (every string field has a far lower bound)."""
SLOW = 3.0
"""A refusal of a huge repeated field must take less than this (seconds)."""

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
MIN_SECONDS = -62135596800
"""0001-01-01T00:00:00Z, the first second a Timestamp may hold."""
MAX_SECONDS = 253402300799
"""9999-12-31T23:59:59Z, the last."""


# ------------------------------------------------------------ the contract


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    input: Descriptor
    output: Descriptor
    streaming: bool
    client_streaming: bool = False

    def __repr__(self) -> str:
        return self.name

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def mutating(self) -> bool:
        commands = ("accord.v1.CustomerService", "accord.v1.PartnerService")
        return self.service in commands and not self.name.startswith("Get")

    def request(self, **values: Any) -> Message:
        return message_factory.GetMessageClass(self.input)(**values)

    def parse(self, payload: bytes) -> Message | None:
        try:
            return message_factory.GetMessageClass(self.input).FromString(payload)
        except DecodeError:
            return None

    def response(self, payload: bytes) -> Message:
        return message_factory.GetMessageClass(self.output).FromString(payload)


def _enumerate() -> list[Rpc]:
    return [
        Rpc(
            service.full_name,
            method.name,
            method.input_type,
            method.output_type,
            method.server_streaming,
            method.client_streaming,
        )
        for module in MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


RPCS = _enumerate()


def _fields(descriptor: Descriptor) -> list[Any]:
    """``FieldDescriptor``s (typed Any: the C implementation's type differs from the stubs')."""
    return list(descriptor.fields)


def _is_timestamp(f: Any) -> bool:
    return bool(
        f.type == FieldDescriptor.TYPE_MESSAGE
        and f.message_type.full_name == Timestamp.DESCRIPTOR.full_name
    )


def _is_id(name: str) -> bool:
    """A UUID field, by its (dotted) name; a request id is free text."""
    last = name.rsplit(".", 1)[-1]
    return last != "request_id" and (last.endswith("_id") or last.endswith("_ids"))


def string_paths(descriptor: Descriptor, prefix: str = "") -> Iterator[tuple[str, list[Any]]]:
    """Every string field, nested ones too: (dotted path, the chain of fields to it)."""
    for f in _fields(descriptor):
        if f.type == FieldDescriptor.TYPE_STRING:
            yield prefix + f.name, [f]
        elif f.type == FieldDescriptor.TYPE_MESSAGE and not _is_timestamp(f):
            for path, chain in string_paths(f.message_type, f"{prefix}{f.name}."):
                yield path, [f, *chain]


# -------------------------------------------------------------- wire bytes


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negatives travel as ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def nested(chain: Sequence[Any], payload: bytes) -> bytes:
    """``payload`` as the bytes of the last field of ``chain``, wrapped in the ones before."""
    out = delimited(chain[-1].number, payload)
    for outer in reversed(chain[:-1]):
        out = delimited(outer.number, out)
    return out


BAD_UTF8 = b"\xff\xfe"


# ------------------------------------------------------------- strategies

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\u202e\u200b",
        "\U0001f600" * 300,
        "x" * 5000,
        "' OR 1=1 --",
        "../../etc/passwd",
        "%s%n",
        "{}",
        "null",
    ]
)
ANY_TEXT = st.one_of(TEXT, NASTY_TEXT)
NOT_UUIDS = st.sampled_from(
    ["customer-42", "00000000-0000-0000-0000-00000000000g", "' OR 1=1 --", "\x00", "x" * 300]
)
DECIMALS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["10", "0", "-5", "1e400", "1E-400", "NaN", "-0", "1" * 40, "0.00001", "8"]),
    ANY_TEXT,
)


def _ints(f: Any) -> st.SearchStrategy[int]:
    low, high = INT_RANGES[f.type]
    if f.name == "min_position":  # beyond the log: a bounded wait (kept rare: it costs time)
        return st.one_of(st.integers(-2, 4), st.sampled_from([low, high]))
    return st.one_of(
        st.integers(-2, 12), st.sampled_from([low, high, low + 1, high - 1]), st.integers(low, high)
    )


TIMESTAMPS = st.builds(
    Timestamp,
    seconds=st.one_of(
        st.integers(1_500_000_000, 1_900_000_000),
        st.sampled_from(
            [MIN_SECONDS, MIN_SECONDS - 1, MAX_SECONDS, MAX_SECONDS + 1, 2**63 - 1, -(2**63)]
        ),
        st.integers(-(2**63), 2**63 - 1),
    ),
    nanos=st.one_of(
        st.just(0),
        st.integers(0, 999_999_999),
        st.sampled_from([-1, 10**9, 2**31 - 1, -(2**31)]),
    ),
)


def _strings(f: Any, ids: Sequence[str]) -> st.SearchStrategy[str]:
    name: str = f.name
    if _is_id(name):
        return st.one_of(st.sampled_from(ids), st.uuids().map(str), NOT_UUIDS)
    special: dict[str, st.SearchStrategy[str]] = {
        "request_id": st.sampled_from(["fuzz-1", "fuzz-2", "r" * 129]),
        "hash": st.one_of(st.just("0" * 64), st.text("0123456789abcdefABCDEF", max_size=65)),
        "document_sha256": st.just("ab" * 32),
        "types": st.sampled_from(sorted(DomainEvent.registry)),
        "aggregate_type": st.sampled_from(["customer", "partner", "Customer"]),
        "period": st.sampled_from(["2025-Q1", "2025-13", "2025-01", "99999-Q9"]),
        "amount": DECIMALS,
        "satisfaction": DECIMALS,
        "currency": st.sampled_from(["CNY", "USD", "cny", ""]),
        "email": st.sampled_from(["a@b.cn", "not-an-email", "x" * 250 + "@b.cn"]),
        "phone": st.sampled_from(["+86 21 5555 0100", "12", "call me"]),
        "page_token": st.one_of(
            TEXT, st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode())
        ),
    }
    return st.one_of(special[name], ANY_TEXT) if name in special else ANY_TEXT


def _value(f: Any, ids: Sequence[str], depth: int) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_STRING:
        return _strings(f, ids)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if f.type == FieldDescriptor.TYPE_BOOL:
        if f.name == "follow":  # a following stream costs its whole deadline
            return st.sampled_from([False, False, False, True])
        return st.booleans()
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if f.type == FieldDescriptor.TYPE_FLOAT else 64)
    if f.type == FieldDescriptor.TYPE_ENUM:
        return st.one_of(
            st.sampled_from(sorted(f.enum_type.values_by_number)),
            st.sampled_from([-1, 999, 2**31 - 1, -(2**31)]),
            st.integers(-(2**31), 2**31 - 1),
        )
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        if _is_timestamp(f):
            return TIMESTAMPS
        return messages(f.message_type, ids, depth + 1)
    return _ints(f)


def messages(
    descriptor: Descriptor,
    ids: Sequence[str],
    depth: int = 0,
    base: dict[str, Any] | None = None,
) -> st.SearchStrategy[Message]:
    """Well-typed messages of ``descriptor`` with random, mostly hostile, values.

    ``base``: values the random ones are laid over (a valid request: so that some
    of them get past validation to the aggregates and read models).
    """
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in _fields(descriptor):
        value = _value(f, ids, depth)
        optional[f.name] = st.lists(value, max_size=4) if f.is_repeated else value
    under = base or {}
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda values: cls(**{**under, **values})
    )


def _wire_field(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """One field's worth of wire bytes: any number, any wire type, often lying."""
    numbers = [f.number for f in _fields(descriptor)]
    number = st.one_of(st.sampled_from(numbers), st.integers(0, 2**29 - 1))
    payloads: list[st.SearchStrategy[bytes]] = [
        st.integers(0, 2**70).map(lambda n: varint(n % 2**64) if n < 2**64 else b"\xff" * 11),
        st.binary(min_size=8, max_size=8),
        st.binary(min_size=4, max_size=4),
        st.binary(max_size=32).map(lambda b: varint(len(b)) + b),
        st.tuples(st.integers(0, 2**32), st.binary(max_size=8)).map(lambda t: varint(t[0]) + t[1]),
        st.just(BAD_UTF8).map(lambda b: varint(len(b)) + b),
    ]
    return st.tuples(number, st.integers(0, 7), st.one_of(*payloads)).map(
        lambda t: tag(t[0], t[1]) + t[2]
    )


def payloads(rpc: Rpc, targets: Targets) -> st.SearchStrategy[bytes]:
    """What goes on the wire: mostly messages, some broken, some no message at all."""
    base = _baselines(targets).get(rpc.name, {})
    near_valid = messages(rpc.input, targets.ids, base=base).map(lambda m: m.SerializeToString())
    serialized = messages(rpc.input, targets.ids).map(lambda m: m.SerializeToString())
    strings = list(string_paths(rpc.input))
    broken: list[st.SearchStrategy[bytes]] = [
        st.tuples(serialized, st.floats(0, 1)).map(lambda t: t[0][: int(len(t[0]) * t[1])]),
        st.tuples(serialized, st.binary(min_size=1, max_size=16)).map(lambda t: t[0] + t[1]),
        st.lists(_wire_field(rpc.input), max_size=6).map(b"".join),
        st.binary(max_size=64),
    ]
    if strings:
        broken.append(
            st.tuples(serialized, st.sampled_from([chain for _, chain in strings])).map(
                lambda t: t[0] + nested(t[1], BAD_UTF8)
            )
        )
    return st.one_of(near_valid, near_valid, serialized, serialized, *broken)


# --------------------------------------------------------------- the server


class LogHead:
    """The log's last position, read from the store behind the server's back."""

    def __init__(self, store: StoreConfig) -> None:
        env = store.env
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: psycopg.Connection[Any] | None = None
        if store.kind == "sqlite":
            self._sqlite = sqlite3.connect(env["SQLITE_DBNAME"], isolation_level=None)
            self._query = "SELECT MAX(rowid) FROM stored_events"
        else:
            self._postgres = psycopg.connect(
                host=env["POSTGRES_HOST"],
                port=env["POSTGRES_PORT"],
                dbname=env["POSTGRES_DBNAME"],
                user=env["POSTGRES_USER"],
                autocommit=True,
            )
            self._pg_query = sql.SQL("SELECT MAX(notification_id) FROM {}.accord_events").format(
                sql.Identifier(env["POSTGRES_SCHEMA"])
            )

    def __call__(self) -> int:
        if self._sqlite is not None:
            row = self._sqlite.execute(self._query).fetchone()
        else:
            assert self._postgres is not None
            row = self._postgres.execute(self._pg_query).fetchone()
        return int(row[0] or 0) if row is not None else 0

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._postgres is not None:
            self._postgres.close()


@dataclass(frozen=True)
class Targets:
    """Real aggregates for the requests to aim at."""

    customer: str
    partner: str
    agreement: str
    consent: str
    share: str

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.customer, self.partner, self.agreement, self.consent, self.share)


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    responses: list[bytes]
    error: grpc.RpcError | None
    seconds: float


@dataclass
class Fuzz:
    served: Served
    channel: grpc.Channel
    head: LogHead
    targets: Targets
    metadata: tuple[tuple[str, str], ...]
    position: int = 0
    """The log's head after the last call judged."""
    recorded: list[tuple[str, int]] = field(default_factory=list)
    """(rpc, events) of every command that succeeded with new events."""

    def __repr__(self) -> str:
        return f"Fuzz({self.served.store.kind} at {self.served.address})"

    def call(self, rpc: Rpc, payload: bytes, timeout: float | None = None) -> Outcome:
        request = rpc.parse(payload)
        if timeout is None:
            timeout = STREAM_TIMEOUT if rpc.streaming else UNARY_TIMEOUT
            if request is not None and getattr(request, "follow", False):
                timeout = FOLLOW_TIMEOUT
            if self.waits(request):
                timeout = WAIT_TIMEOUT
        started = time.perf_counter()
        try:
            if rpc.client_streaming:  # the fuzzed payload as a stream of one message
                both: grpc.StreamStreamMultiCallable[bytes, bytes] = self.channel.stream_stream(
                    rpc.path, request_serializer=None, response_deserializer=None
                )
                responses = list(both(iter([payload]), timeout=timeout, metadata=self.metadata))
            elif rpc.streaming:
                stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = self.channel.unary_stream(
                    rpc.path, request_serializer=None, response_deserializer=None
                )
                responses = list(stream(payload, timeout=timeout, metadata=self.metadata))
            else:
                unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
                    rpc.path, request_serializer=None, response_deserializer=None
                )
                responses = [unary(payload, timeout=timeout, metadata=self.metadata)]
        except grpc.RpcError as error:
            return Outcome(error.code(), [], error, time.perf_counter() - started)
        return Outcome(Code.OK, responses, None, time.perf_counter() - started)

    def waits(self, request: Message | None) -> bool:
        """Whether the request asks for a position the log has not reached (a bounded wait)."""
        return self.waits_for(request, self.position)

    def judge(self, rpc: Rpc, payload: bytes, outcome: Outcome) -> dict[str, str]:
        """Check everything the module docstring promises; the violations, if INVALID_ARGUMENT."""
        before = self.position
        what = f"{rpc.name} {payload[:120]!r}"
        assert self.served.process.poll() is None, f"the server died on {what}"
        checker: Any = health_pb2_grpc.HealthStub(self.channel)  # the stub's stubs lack Check
        health = checker.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING, what
        after = self.head()
        self.position = after
        code = outcome.code
        request = rpc.parse(payload)
        details = outcome.error.details() if outcome.error is not None else ""
        if code not in ALWAYS_ALLOWED:
            if code == Code.UNAVAILABLE:
                assert self.waits_for(request, before), (code, details, what)
                assert _error_reason(outcome.error) == "NOT_CAUGHT_UP", (details, what)
            elif code == Code.DEADLINE_EXCEEDED:
                assert rpc.streaming or self.waits_for(request, before), (code, what)
            else:
                raise AssertionError(f"{code.name} ({details}) for {what}")
        if request is None and len(payload) <= MAX_MESSAGE_BYTES:
            assert code == Code.INVALID_ARGUMENT, f"{code.name} for an unparsable {what}"
        violations: dict[str, str] = {}
        if code == Code.INVALID_ARGUMENT:
            violations = _violations(outcome.error)
            assert violations, f"no field violation for {what}"
            for name, description in violations.items():
                assert name, (violations, what)
                assert description, (violations, what)
        if code != Code.OK or not rpc.mutating:
            assert after == before, f"{code.name} {what} moved the log {before} -> {after}"
            return violations
        if rpc.client_streaming:
            self._judge_items(outcome, before, after, what)
            return violations
        response = rpc.response(outcome.responses[0])
        if getattr(response, "replayed", False):
            assert after == before, f"a replay recorded {before} -> {after}: {what}"
        else:
            assert after > before, f"OK without an event: {what}"
            assert getattr(response, "position", None) == after, (response, after, what)
            self.recorded.append((rpc.name, after - before))
        return violations

    def _judge_items(self, outcome: Outcome, before: int, after: int, what: str) -> None:
        """A bulk batch: each item recorded once (between the heads) or refused as a unary call."""
        results = _item_results(outcome)
        fresh = [
            r.recorded.position
            for r in results
            if r.WhichOneof("outcome") == "recorded" and not r.recorded.replayed
        ]
        assert all(before < p <= after for p in fresh), (fresh, before, after, what)
        assert len(set(fresh)) == len(fresh), what
        if not fresh:
            assert after == before, f"a batch recorded nothing yet moved the log: {what}"
        else:
            self.recorded.append(("IngestInteractions", len(fresh)))
        for r in results:
            if r.WhichOneof("outcome") != "error":
                continue
            code = getattr(Code, r.error.code)
            assert code in ALWAYS_ALLOWED - {Code.OK}, (r.error, what)
            if r.error.code == "INVALID_ARGUMENT":
                assert r.error.field_violations, (r.error, what)
                assert all(v.field and v.description for v in r.error.field_violations), what

    @staticmethod
    def waits_for(request: Message | None, head: int) -> bool:
        wanted = getattr(request, "min_position", 0) if request is not None else 0
        return bool(wanted > head)

    def send(self, rpc: Rpc, payload: bytes, timeout: float | None = None) -> Outcome:
        outcome = self.call(rpc, payload, timeout)
        self.judge(rpc, payload, outcome)
        return outcome


def _status(error: grpc.RpcError | None) -> Any:
    assert isinstance(error, grpc.Call)
    return rpc_status.from_call(error)


def _violations(error: grpc.RpcError | None) -> dict[str, str]:
    status = _status(error)
    assert status is not None, "INVALID_ARGUMENT without details"
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            return {v.field: v.description for v in bad_request.field_violations}
    return {}


def _error_reason(error: grpc.RpcError | None) -> str | None:
    status = _status(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return None


@pytest.fixture(scope="module")
def fuzz(served: Served) -> Iterator[Fuzz]:
    writer = served.client("admin")
    partner_id, agreement_id = active_partner(writer)
    customer_id = register_customer(writer).customer_id
    consent_id = grant(writer, customer_id, partner_id).consent_id
    share_id = share(writer, customer_id, partner_id).share_id
    targets = Targets(customer_id, partner_id, agreement_id, consent_id, share_id)
    channel = grpc.insecure_channel(
        served.address, options=[("grpc.max_receive_message_length", 2 * MAX_MESSAGE_BYTES)]
    )
    head = LogHead(served.store)
    state = Fuzz(
        served, channel, head, targets, (("authorization", f"Bearer {served.tokens['admin']}"),)
    )
    state.position = head()
    yield state
    channel.close()
    head.close()


# ------------------------------------------------------------------ tests


def test_the_descriptors_name_every_service_and_rpc() -> None:
    services = {rpc.service for rpc in RPCS}
    assert services == set(SERVICE_NAMES)
    assert len(services) == 5
    per_service = {s: sum(1 for r in RPCS if r.service == s) for s in services}
    assert per_service == {
        "accord.v1.CustomerService": 12,
        "accord.v1.PartnerService": 13,
        "accord.v1.ComplianceService": 4,
        "accord.v1.InsightService": 5,
        "accord.v1.AuditService": 5,
    }
    assert {r.name for r in RPCS if r.streaming} == {
        "ReadEvents",
        "GetAggregateHistory",
        "IngestInteractions",
    }
    assert {r.name for r in RPCS if r.client_streaming} == {"IngestInteractions"}


@pytest.mark.parametrize("rpc", RPCS, ids=lambda rpc: rpc.name)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(data=st.data())
def test_random_requests(fuzz: Fuzz, rpc: Rpc, data: st.DataObject) -> None:
    payload = data.draw(payloads(rpc, fuzz.targets), label="payload")
    fuzz.send(rpc, payload)


# ------------------------------------------------- one hostile field at a time


def _baselines(t: Targets) -> dict[str, dict[str, Any]]:
    """A valid request per RPC, aimed at real aggregates (never sent as it is)."""
    capture = common_pb2.ConsentCapture(
        method="WEB_FORM", source="portal", evidence_ref="doc-1", notice_version="v3"
    )
    yesterday = Timestamp(seconds=int(time.time()) - 86_400)
    money = common_pb2.Money(amount="10", currency="CNY")
    c, p = t.customer, t.partner
    share_fields = {
        "customer_id": c,
        "partner_id": p,
        "purpose": common_pb2.PURPOSE_MARKETING,
        "data_categories": [common_pb2.DATA_CATEGORY_CONTACT],
    }
    return {
        "RegisterCustomer": {
            "external_ref": "F-1",
            "display_name": "Li",
            "kind": common_pb2.CUSTOMER_KIND_PERSON,
            "industry": "retail",
            "region": "CN",
            "source": "web",
        },
        "UpdateCustomerProfile": {"customer_id": c, "industry": "retail"},
        "AddContact": {
            "customer_id": c,
            "name": "Zhao",
            "layer": common_pb2.CONTACT_LAYER_DECISION,
            "function": common_pb2.CONTACT_FUNCTION_FINANCE,
        },
        "RemoveContact": {"customer_id": c, "contact_id": t.consent},
        "RecordInteraction": {
            "customer_id": c,
            "kind": common_pb2.INTERACTION_KIND_CALL,
            "channel": common_pb2.CHANNEL_PHONE,
            "direction": common_pb2.DIRECTION_INBOUND,
            "occurred_at": yesterday,
        },
        "ChangeTier": {"customer_id": c, "to_tier": common_pb2.TIER_KEY, "reason": "growth"},
        "GrantConsent": {**share_fields, "capture": capture},
        "WithdrawConsent": {"customer_id": c, "consent_id": t.consent, "channel": "LETTER"},
        "ShareData": share_fields,
        "EraseCustomerData": {"customer_id": c, "reason": "asked"},
        "GetCustomer": {"customer_id": c},
        "RegisterPartner": {
            "external_ref": "FP-1",
            "name": "Acme",
            "kind": common_pb2.PARTNER_KIND_REFERRAL,
        },
        "EvaluatePartner": {
            "partner_id": p,
            "strength": 1,
            "reputation": 1,
            "business_fit": 1,
            "data_protection": 1,
        },
        "SignAgreement": {
            "partner_id": p,
            "kind": common_pb2.AGREEMENT_KIND_REFERRAL,
            "effective_from": yesterday,
            "confidentiality": True,
            "permitted_purposes": [common_pb2.PURPOSE_MARKETING],
            "permitted_data_categories": [common_pb2.DATA_CATEGORY_CONTACT],
            "document_sha256": "ab" * 32,
        },
        "TerminateAgreement": {"partner_id": p, "agreement_id": t.agreement, "reason": "ended"},
        "ActivatePartner": {"partner_id": p},
        "SuspendPartner": {"partner_id": p, "reason": "audit"},
        "ReinstatePartner": {"partner_id": p, "reason": "cleared"},
        "TerminatePartner": {"partner_id": p, "reason": "ended"},
        "ReviewPartnerPerformance": {
            "partner_id": p,
            "period": "2025-Q1",
            "revenue": money,
            "satisfaction": "8",
        },
        "ChangePartnerTier": {"partner_id": p, "to_tier": common_pb2.TIER_KEY, "reason": "growth"},
        "LinkCustomer": {"partner_id": p, "customer_id": c, "role": common_pb2.LINK_ROLE_RESALE},
        "UnlinkCustomer": {"partner_id": p, "customer_id": c},
        "GetPartner": {"partner_id": p},
        "CheckConsent": share_fields,
        "ListConsents": {"customer_id": c},
        "ListDataShares": {"customer_id": c},
        "ListLateWithdrawalShares": {},
        "GetCustomerInsight": {"customer_id": c},
        "ListCustomers": {},
        "GetSegmentSummary": {},
        "GetLifecycleFunnel": {},
        "GetPartnerScorecard": {"partner_id": p},
        "IngestInteractions": {
            "interactions": [
                {
                    "customer_id": c,
                    "kind": common_pb2.INTERACTION_KIND_CALL,
                    "channel": common_pb2.CHANNEL_PHONE,
                    "direction": common_pb2.DIRECTION_INBOUND,
                    "occurred_at": yesterday,
                }
            ]
        },
        "ReadEvents": {},
        "GetAggregateHistory": {"aggregate_id": c},
        "GetAggregateAt": {"aggregate_id": c},
        "GetDigest": {},
        "VerifyLog": {"position": 1, "hash": "0" * 64},
    }


def test_every_rpc_has_a_valid_baseline() -> None:
    assert set(_baselines(Targets("c", "p", "a", "s", "x"))) == {rpc.name for rpc in RPCS}


@dataclass(frozen=True)
class Case:
    label: str
    payload: bytes
    field: str | None
    """The field the violation must name (a prefix: ``data_categories`` for ``.0``); None:
    any allowed status will do (the value may be valid, e.g. a huge count)."""


BAD_TIMESTAMPS = (
    ("year 10000", Timestamp(seconds=MAX_SECONDS + 1)),
    ("before year 1", Timestamp(seconds=MIN_SECONDS - 1)),
    ("int64 max seconds", Timestamp(seconds=2**63 - 1)),
    ("nanos 1e9", Timestamp(seconds=1_700_000_000, nanos=10**9)),
    ("negative nanos", Timestamp(seconds=1_700_000_000, nanos=-1)),
)
EDGE_TIMESTAMPS = (
    ("the first instant", Timestamp(seconds=MIN_SECONDS)),
    ("the last instant", Timestamp(seconds=MAX_SECONDS, nanos=999_999_999)),
)
STRUCTURAL = (
    ("a lone tag", b"\x0a"),
    ("a length past the end", b"\x0a\x64ab"),
    ("a varint of eleven bytes", b"\x08" + b"\xff" * 10 + b"\x01"),
    ("field number 0", b"\x00\x01"),
    ("wire type 6", b"\x0e"),
    ("wire type 7", b"\x0f"),
    ("an end group without a start", b"\x0c"),
    ("groups nested 200 deep", b"\x0b" * 200 + b"\x0c" * 200),
    ("an unterminated group", b"\x0b\x08\x01"),
    ("a negative length", b"\x0a" + varint(-1)),
    ("junk", bytes(range(256))),
)


def _deep_junk(depth: int) -> bytes:
    """Length-delimited junk nested ``depth`` deep under an unknown field number."""
    out = BAD_UTF8
    for _ in range(depth):
        out = delimited(15_000, out)
    return out


def hostile_cases(rpc: Rpc, targets: Targets) -> Iterator[Case]:
    """A valid request with one field broken; and bytes that are no message at all."""
    base_values = _baselines(targets).get(rpc.name, {})
    base = rpc.request(**base_values).SerializeToString()

    def replaced(**values: Any) -> bytes:
        return rpc.request(**{**base_values, **values}).SerializeToString()

    for path, chain in string_paths(rpc.input):
        yield Case(f"invalid UTF-8 in {path}", base + nested(chain, BAD_UTF8), path)
        named = _validated_name(chain)
        for text in ("a\x00b", " \t\n", "\u202e\U0001f600"):
            yield Case(f"{text!r} in {path}", base + nested(chain, text.encode()), None)
        yield Case(f"{path} oversized", base + nested(chain, b"x" * OVERSIZED), named)
        if _is_id(path):
            for text in ("customer-42", "00000000-0000-0000-0000-00000000000g", "\x00"):
                yield Case(f"{path} = {text!r}", base + nested(chain, text.encode()), named)
    for f in _fields(rpc.input):
        if _is_timestamp(f):
            for label, value in BAD_TIMESTAMPS:
                yield Case(f"{f.name}: {label}", replaced(**{f.name: value}), f.name)
            for label, value in EDGE_TIMESTAMPS:
                yield Case(f"{f.name}: {label}", replaced(**{f.name: value}), None)
        elif f.type == FieldDescriptor.TYPE_ENUM:
            for number in (999, -1):
                unknown = [number] if f.is_repeated else number
                yield Case(f"{f.name} = {number}", replaced(**{f.name: unknown}), f.name)
        elif f.type in INT_RANGES and not f.is_repeated:
            for number in INT_RANGES[f.type]:
                yield Case(f"{f.name} = {number}", replaced(**{f.name: number}), None)
        if f.is_repeated and f.type == FieldDescriptor.TYPE_MESSAGE:
            continue  # a batch of messages: its size limit is tested in test_ingest_api
        if f.is_repeated:
            yield Case(f"{HUGE} valid {f.name}", replaced(**{f.name: _huge(f, targets)}), f.name)
            junk: list[Any] = [999] if f.type == FieldDescriptor.TYPE_ENUM else ["x"]
            yield Case(f"{HUGE} invalid {f.name}", replaced(**{f.name: junk * HUGE}), f.name)
    for label, payload in STRUCTURAL:
        yield Case(label, payload, None)
    yield Case("length-delimited junk nested 1000 deep", _deep_junk(1000), None)


def _validated_name(chain: Sequence[Any]) -> str:
    """The name validation gives a string field: Money is flattened into its amount and currency.

    (``revenue.amount`` is validated as ``revenue``, ``revenue.currency`` as ``currency``.)
    """
    money = common_pb2.Money.DESCRIPTOR.full_name
    if len(chain) >= 2 and chain[-2].message_type.full_name == money:
        inner = str(chain[-2].name if chain[-1].name == "amount" else chain[-1].name)
        return ".".join([*(f.name for f in chain[:-2]), inner])
    return ".".join(f.name for f in chain)


def _huge(f: Any, targets: Targets) -> list[Any]:
    """``HUGE`` elements, each of them valid on its own."""
    if f.type == FieldDescriptor.TYPE_ENUM:
        return [max(f.enum_type.values_by_number)] * HUGE
    if _is_id(f.name):
        return [targets.customer] * HUGE
    if f.name == "types":
        return [sorted(DomainEvent.registry)[0]] * HUGE
    return ["CN"] * HUGE


@pytest.mark.parametrize("rpc", RPCS, ids=lambda rpc: rpc.name)
def test_hand_made_hostile_requests(fuzz: Fuzz, rpc: Rpc) -> None:
    for case in hostile_cases(rpc, fuzz.targets):
        outcome = fuzz.call(rpc, case.payload)
        violations = fuzz.judge(rpc, case.payload, outcome)
        if case.field is None:
            continue
        what = (rpc.name, case.label, outcome.code, violations)
        if rpc.client_streaming and outcome.code == Code.OK:
            # A bad item is that item's INVALID_ARGUMENT, naming the field within the item.
            _assert_items_refused(outcome, case.field.removeprefix("interactions."), what)
            continue
        assert outcome.code == Code.INVALID_ARGUMENT, what
        assert any(v.startswith(case.field) for v in violations), what
        if case.label.startswith(str(HUGE)):
            assert outcome.seconds < SLOW, what


def _item_results(outcome: Outcome) -> list[Any]:
    """Every item's result across the responses of an IngestInteractions call."""
    return [
        result
        for payload in outcome.responses
        for result in customer_pb2.IngestInteractionsResponse.FromString(payload).results
    ]


def _assert_items_refused(outcome: Outcome, field: str, what: object) -> None:
    results = _item_results(outcome)
    assert results, what
    result = results[-1]  # the broken field arrives as an item of its own, after the valid one
    assert result.WhichOneof("outcome") == "error", what
    assert result.error.code == "INVALID_ARGUMENT", (result.error, what)
    assert any(v.field.startswith(field) for v in result.error.field_violations), (
        result.error,
        what,
    )


# ------------------------------------------------------------------- limits


SIZE_PROBES = [next(rpc for rpc in RPCS if rpc.service == service) for service in SERVICE_NAMES]
"""The first RPC of each service (a command, a stream among them): 4 MiB each takes a while."""


@pytest.mark.parametrize("rpc", SIZE_PROBES, ids=lambda rpc: rpc.name)
def test_a_request_over_the_size_limit_is_refused_and_records_nothing(fuzz: Fuzz, rpc: Rpc) -> None:
    valid = rpc.request(**_baselines(fuzz.targets)[rpc.name]).SerializeToString()
    oversized = valid + delimited(15_000, b"x" * MAX_MESSAGE_BYTES)
    outcome = fuzz.send(rpc, oversized)
    assert outcome.code == Code.RESOURCE_EXHAUSTED, (rpc.name, outcome.code)


PAGED = [rpc for rpc in RPCS if "page_size" in rpc.input.fields_by_name]


def test_the_paged_rpcs_are_the_four_lists() -> None:
    assert {rpc.name for rpc in PAGED} == {
        "ListConsents",
        "ListDataShares",
        "ListLateWithdrawalShares",
        "ListCustomers",
    }


@pytest.mark.parametrize("rpc", PAGED, ids=lambda rpc: rpc.name)
def test_page_sizes_are_capped_as_documented_and_negative_ones_refused(
    fuzz: Fuzz, rpc: Rpc
) -> None:
    """docs/api.md: "`page_size` (0: 100; capped at 1000)": larger ones are served, capped."""
    base = _baselines(fuzz.targets)[rpc.name]
    for size in (MAX_PAGE_SIZE + 1, 2**31 - 1):
        outcome = fuzz.send(rpc, rpc.request(**base, page_size=size).SerializeToString())
        assert outcome.code == Code.OK, (rpc.name, size, outcome.code)
        response = rpc.response(outcome.responses[0])
        listed = next(f for f in _fields(rpc.output) if f.is_repeated)
        assert len(getattr(response, listed.name)) <= MAX_PAGE_SIZE
    for size in (-1, -(2**31)):
        payload = rpc.request(**base, page_size=size).SerializeToString()
        outcome = fuzz.call(rpc, payload)
        violations = fuzz.judge(rpc, payload, outcome)
        assert outcome.code == Code.INVALID_ARGUMENT, (rpc.name, size, outcome.code)
        assert "page_size" in violations, violations


@pytest.fixture(scope="module")
def two_of_each(fuzz: Fuzz) -> dict[str, dict[str, Any]]:
    """Two items for each list (so a first page of one has a token): per RPC, its filters.

    A customer with two consents and two shares, one consent withdrawn late (expressed
    before the shares, recorded after them), so the shares are late-withdrawal shares too.
    """
    client = fuzz.served.client("admin")
    partner, _ = active_partner(client)  # the fuzzing may have suspended the targets' partner
    customer = register_customer(client).customer_id
    withdrawn = grant(client, customer, partner).consent_id
    grant(client, customer, partner, purpose=common_pb2.PURPOSE_ANALYTICS)
    expressed = Timestamp()
    expressed.GetCurrentTime()
    time.sleep(0.01)
    assert share(client, customer, partner).shared
    assert share(client, customer, partner).shared
    client.customers.WithdrawConsent(
        customer_pb2.WithdrawConsentRequest(
            customer_id=customer, consent_id=withdrawn, expressed_at=expressed, channel="LETTER"
        ),
        timeout=UNARY_TIMEOUT,
    )
    fuzz.position = fuzz.head()
    return {
        "ListConsents": {"customer_id": customer},
        "ListDataShares": {"customer_id": customer},
        "ListLateWithdrawalShares": {"customer_id": customer},
        "ListCustomers": {},
    }


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


TAMPERED_AFTER: tuple[Any, ...] = (
    "a\x00b",
    "\x00",
    "x" * OVERSIZED,
    "\uffff\U0010ffff",
    "",
    "0" * 25,
    "zzzz",
    5,
    None,
    {"a": [1]},
)
FORGED_TOKENS = (
    _token(b"[" * 100_000),
    _token(b'{"q":' * 50_000),
    _token(b"9" * 100_000),
    _token(b"\xff\xfe"),
    "not base64 \U0001f600",
    "=" * 1000,
)


@pytest.mark.parametrize("rpc", PAGED, ids=lambda rpc: rpc.name)
def test_tampered_and_forged_page_tokens_are_refused_or_served(
    fuzz: Fuzz, two_of_each: dict[str, dict[str, Any]], rpc: Rpc
) -> None:
    """Tokens are not signed: whatever a client makes of one, the answer is a status it can use."""
    filters = {**two_of_each[rpc.name], "min_position": fuzz.position}
    first = fuzz.send(rpc, rpc.request(**filters, page_size=1).SerializeToString())
    assert first.code == Code.OK, (rpc.name, first.code)
    token = getattr(rpc.response(first.responses[0]), "next_page_token", "")
    assert token, f"{rpc.name}: a first page of one item out of two has a next_page_token"
    genuine = json.loads(base64.urlsafe_b64decode(token))
    tokens = [_token(json.dumps({**genuine, "after": after}).encode()) for after in TAMPERED_AFTER]
    tokens += [_token(json.dumps({**genuine, "q": {"a\x00": "\x00"}}).encode()), *FORGED_TOKENS]
    for tampered in tokens:
        payload = rpc.request(**filters, page_size=1, page_token=tampered).SerializeToString()
        outcome = fuzz.call(rpc, payload)
        violations = fuzz.judge(rpc, payload, outcome)
        if outcome.code != Code.OK:
            assert outcome.code == Code.INVALID_ARGUMENT, (rpc.name, tampered[:80], outcome.code)
            assert "page_token" in violations, (rpc.name, tampered[:80], violations)


def test_after_the_fuzzing_the_read_models_still_follow_the_log(fuzz: Fuzz) -> None:
    """Whatever was recorded on the way, every view reaches the log's head."""
    head = fuzz.head()
    client = fuzz.served.client("admin")
    digest = client.audit.GetDigest(audit_pb2.GetDigestRequest(min_position=head), timeout=15)
    assert digest.position >= head
    listed = client.insight.ListCustomers(
        insight_pb2.ListCustomersRequest(min_position=head), timeout=15
    )
    assert listed.position >= head
    consents = client.compliance.ListConsents(
        compliance_pb2.ListConsentsRequest(customer_id=fuzz.targets.customer, min_position=head),
        timeout=15,
    )
    assert consents.position >= head
    scorecard = client.insight.GetPartnerScorecard(
        insight_pb2.GetPartnerScorecardRequest(partner_id=fuzz.targets.partner, min_position=head),
        timeout=15,
    )
    assert scorecard.position >= head
    assert fuzz.head() == head, "reads recorded something"


READS = [rpc for rpc in RPCS if not rpc.mutating]


@pytest.mark.parametrize("rpc", READS, ids=lambda rpc: rpc.name)
def test_after_the_fuzzing_every_read_still_answers(fuzz: Fuzz, rpc: Rpc) -> None:
    """Over whatever the fuzzing recorded (first-instant interactions, odd names, ...), each
    read answers at the log's head, also as of the first and the last representable instant."""
    base = _baselines(fuzz.targets)[rpc.name]
    if "min_position" in rpc.input.fields_by_name:
        base = {**base, "min_position": fuzz.head()}
    requests = [rpc.request(**base)]
    for f in _fields(rpc.input):
        if _is_timestamp(f):
            requests += [rpc.request(**base, **{f.name: value}) for _, value in EDGE_TIMESTAMPS]
    for request in requests:
        fuzz.send(rpc, request.SerializeToString())
