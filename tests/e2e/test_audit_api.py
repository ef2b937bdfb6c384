"""AuditService over the wire: the log in batches, following it, replays and the hash chain.

The server is shared by the whole module, so every test writes its own fresh
aggregates and asserts on those (filtering by aggregate id, or reading from
the position of its own first write), never on "the first event".
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import grpc
import pytest
from grpc_status import rpc_status

from adapters.grpc.errors import error_details_pb2
from adapters.grpc.generated.accord.v1 import audit_pb2, customer_pb2
from tests.e2e.harness import Client, Served, rpc_error
from tests.e2e.wire import (
    TIMEOUT,
    active_partner,
    grant,
    purchase,
    register_customer,
    register_partner,
    share,
    ts,
)

A = audit_pb2
HASH = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def admin(served: Served) -> Client:
    """Writes, and reads the log with personal data revealed."""
    return served.client("admin")


@pytest.fixture
def auditor(served: Served) -> Client:
    """Reads the log, but may not see personal data."""
    return served.client("auditor")


def read(client: Client, **fields: Any) -> list[audit_pb2.ReadEventsResponse]:
    return list(client.audit.ReadEvents(A.ReadEventsRequest(**fields), timeout=TIMEOUT))


def events_of(batches: Iterable[Any]) -> list[audit_pb2.Event]:
    return [event for batch in batches for event in batch.events]


def history(client: Client, **fields: Any) -> list[audit_pb2.GetAggregateHistoryResponse]:
    return list(
        client.audit.GetAggregateHistory(A.GetAggregateHistoryRequest(**fields), timeout=TIMEOUT)
    )


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status details"
    found: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update({v.field: v.description for v in bad_request.field_violations})
    return found


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    return rpc_error(call).code()


# -------------------------------------------------------------------- ReadEvents


def test_read_events_from_a_position_returns_my_events_in_order_with_payloads_and_hashes(
    admin: Client, auditor: Client
) -> None:
    registered = register_customer(admin, "Chen Jing")
    customer_id = registered.customer_id
    bought = purchase(admin, customer_id, "1200.50")

    batches = read(auditor, from_position=registered.position, min_position=bought.position)

    assert batches[-1].caught_up
    assert batches[-1].position >= bought.position
    every = events_of(batches)
    assert every[0].position == registered.position, "from_position is inclusive"
    assert [e.position for e in every] == sorted({e.position for e in every})
    mine = [e for e in every if e.aggregate_id == customer_id]
    assert [(e.position, e.version, e.type) for e in mine] == [
        (registered.position, 1, "customer.registered"),
        (bought.position, 2, "customer.interaction_recorded"),
    ]
    first, second = mine
    for event in mine:
        assert event.aggregate_type == "customer"
        assert event.actor == "test-admin"
        assert event.request_id
        assert event.correlation_id
        assert HASH.fullmatch(event.hash)
    assert first.hash != second.hash
    assert first.recorded_at.ToDatetime() <= second.recorded_at.ToDatetime()

    created = json.loads(first.payload)
    assert created["external_ref"].startswith("C-")
    assert created["kind"] == "ORGANISATION"
    assert created["industry"] == "manufacturing"
    for envelope in ("originator_id", "originator_version", "timestamp", "actor", "request_id"):
        assert envelope not in created, "envelope fields travel as the message's own fields"
    interaction = json.loads(second.payload)
    assert interaction["kind"] == "PURCHASE"
    assert interaction["amount"] == "1200.50"
    assert interaction["currency"] == "CNY"
    assert datetime.fromisoformat(interaction["occurred_at"]).utcoffset() == timedelta(0)
    assert "amount=1200.50" in second.summary
    assert "Chen Jing" not in first.summary

    # The hash is the chain's at that position: a digest an auditor can verify.
    assert auditor.audit.VerifyLog(
        A.VerifyLogRequest(position=second.position, hash=second.hash), timeout=TIMEOUT
    ).ok


def test_read_events_in_batches_that_say_where_to_resume(admin: Client, auditor: Client) -> None:
    registered = register_customer(admin)
    customer_id = registered.customer_id
    last = [purchase(admin, customer_id, f"{n}00.00") for n in range(1, 5)][-1]

    batches = read(auditor, aggregate_id=customer_id, batch_size=2, min_position=last.position)

    assert [len(b.events) for b in batches] == [2, 2, 1]
    assert [e.version for e in events_of(batches)] == [1, 2, 3, 4, 5]
    assert [b.caught_up for b in batches] == [False, False, True]
    assert [b.position for b in batches[:2]] == [b.events[-1].position for b in batches[:2]]
    resumed = read(
        auditor, aggregate_id=customer_id, batch_size=2, from_position=batches[0].position + 1
    )
    assert [e.version for e in events_of(resumed)] == [3, 4, 5]

    unfiltered = read(auditor, from_position=registered.position, batch_size=2)
    assert all(len(b.events) <= 2 for b in unfiltered)
    assert all(len(b.events) == 2 and not b.caught_up for b in unfiltered[:-1])
    assert unfiltered[-1].caught_up
    assert [b.position for b in unfiltered] == sorted({b.position for b in unfiltered})
    mine = [e for e in events_of(unfiltered) if e.aggregate_id == customer_id]
    assert [e.version for e in mine] == [1, 2, 3, 4, 5]

    # Far above any batch anyone needs: capped by the server, not refused.
    [whole] = read(auditor, aggregate_id=customer_id, batch_size=10**6)
    assert len(whole.events) == 5
    assert whole.caught_up


def test_read_events_filters_by_aggregate_id_type_and_event_type(
    admin: Client, auditor: Client
) -> None:
    registered = register_customer(admin)
    customer_id = registered.customer_id
    partner_id, _ = active_partner(admin)
    grant(admin, customer_id, partner_id)
    shared = share(admin, customer_id, partner_id)
    assert shared.shared
    since = {"from_position": registered.position, "min_position": shared.position}

    partners = events_of(read(auditor, aggregate_type="partner", **since))
    assert partners
    assert {e.aggregate_type for e in partners} == {"partner"}
    assert [e.type for e in partners if e.aggregate_id == partner_id][:4] == [
        "partner.registered",
        "partner.evaluated",
        "partner.agreement_signed",
        "partner.activated",
    ]

    wanted = ["customer.consent_granted", "customer.data_shared"]
    typed = events_of(read(auditor, types=wanted, **since))
    assert [(e.aggregate_id, e.type) for e in typed] == [(customer_id, t) for t in wanted]

    one = events_of(read(auditor, aggregate_id=partner_id))
    assert {e.aggregate_id for e in one} == {partner_id}
    assert [e.version for e in one] == list(range(1, len(one) + 1))

    [shared_event] = events_of(
        read(auditor, aggregate_id=customer_id, types=["customer.data_shared"])
    )
    payload = json.loads(shared_event.payload)
    assert payload["partner_id"] == partner_id
    assert payload["purpose"] == "MARKETING"
    assert shared_event.position == shared.position

    assert events_of(read(auditor, aggregate_id=partner_id, aggregate_type="customer")) == []


def test_following_delivers_an_event_written_after_the_stream_opened(
    admin: Client, auditor: Client
) -> None:
    registered = register_customer(admin)
    customer_id = registered.customer_id
    stream = auditor.audit.ReadEvents(
        A.ReadEventsRequest(from_position=registered.position + 1, follow=True), timeout=30
    )
    try:
        caught_up = next(stream)
        assert caught_up.caught_up
        assert customer_id not in {e.aggregate_id for e in caught_up.events}

        later = purchase(admin, customer_id)

        delivered: list[audit_pb2.Event] = []
        while not delivered:
            batch = next(stream)  # heartbeats are empty; the event comes within the deadline
            delivered = [e for e in batch.events if e.aggregate_id == customer_id]
        assert [(e.position, e.version) for e in delivered] == [(later.position, 2)]
    finally:
        stream.cancel()
    assert code_of(lambda: next(stream)) == grpc.StatusCode.CANCELLED


def test_an_idle_follower_gets_heartbeats_and_the_stream_ends_ok_before_its_deadline(
    admin: Client, auditor: Client
) -> None:
    registered = register_customer(admin)
    started = time.monotonic()
    batches = list(
        auditor.audit.ReadEvents(
            A.ReadEventsRequest(
                aggregate_id=registered.customer_id,
                from_position=registered.position + 1,
                follow=True,
            ),
            timeout=7,
        )
    )
    assert time.monotonic() - started < 7
    assert len(batches) >= 2, "the catch-up batch, then at least one heartbeat"
    assert all(b.caught_up and not b.events for b in batches)
    assert all(b.position >= registered.position for b in batches)


def test_personal_fields_are_redacted_for_auditors_and_erased_for_everyone(
    served: Served, admin: Client, auditor: Client
) -> None:
    name = f"Zhao Min {uuid4().hex[:8]}"
    registered = register_customer(admin, name)
    customer_id = registered.customer_id

    def registered_payload(client: Client) -> str:
        [event] = events_of(
            read(
                client,
                aggregate_id=customer_id,
                types=["customer.registered"],
                min_position=registered.position,
            )
        )
        return event.payload

    redacted = registered_payload(auditor)
    assert json.loads(redacted)["display_name"] == "[redacted]"
    assert name not in redacted
    assert "sealed:" not in redacted
    assert json.loads(registered_payload(admin))["display_name"] == name

    erased = admin.customers.EraseCustomerData(
        customer_pb2.EraseCustomerDataRequest(customer_id=customer_id, reason="data subject asked"),
        timeout=TIMEOUT,
    )
    assert json.loads(registered_payload(admin))["display_name"] == "[erased]"
    assert json.loads(registered_payload(auditor))["display_name"] == "[erased]"
    [first, *_, last] = events_of(history(admin, aggregate_id=customer_id))
    assert json.loads(first.payload)["display_name"] == "[erased]"
    assert (last.type, last.position) == ("customer.personal_data_erased", erased.position)


# ------------------------------------------------------------ GetAggregateHistory


def test_aggregate_history_in_version_order_bounded_and_batched(
    admin: Client, auditor: Client
) -> None:
    registered = register_customer(admin)
    customer_id = registered.customer_id
    positions = [
        registered.position,
        purchase(admin, customer_id).position,
        purchase(admin, customer_id, "80.00").position,
    ]

    batches = history(auditor, aggregate_id=customer_id, min_position=positions[-1])
    full = events_of(batches)
    assert [(e.version, e.position) for e in full] == list(enumerate(positions, start=1))
    logged = events_of(read(auditor, aggregate_id=customer_id))
    assert [e.hash for e in full] == [e.hash for e in logged]
    assert [e.payload for e in full] == [e.payload for e in logged]

    bounded = events_of(history(auditor, aggregate_id=customer_id, from_version=2, to_version=2))
    assert [e.version for e in bounded] == [2]
    beyond = events_of(history(auditor, aggregate_id=customer_id, from_version=2, to_version=99))
    assert [e.version for e in beyond] == [2, 3]
    paged = history(auditor, aggregate_id=customer_id, batch_size=2)
    assert [[e.version for e in b.events] for b in paged] == [[1, 2], [3]]


def test_aggregate_history_of_an_unknown_aggregate_is_not_found(auditor: Client) -> None:
    assert code_of(lambda: history(auditor, aggregate_id=str(uuid4()))) == grpc.StatusCode.NOT_FOUND


# ----------------------------------------------------------------- GetAggregateAt


def test_aggregate_at_a_version_and_at_a_time_before_a_later_change(
    admin: Client, auditor: Client
) -> None:
    name = f"Sun Li {uuid4().hex[:8]}"
    registered = register_customer(admin, name, industry="manufacturing")
    customer_id = registered.customer_id
    updated = admin.customers.UpdateCustomerProfile(
        customer_pb2.UpdateCustomerProfileRequest(customer_id=customer_id, industry="logistics"),
        timeout=TIMEOUT,
    )

    def at(client: Client, **fields: Any) -> audit_pb2.GetAggregateAtResponse:
        return client.audit.GetAggregateAt(
            A.GetAggregateAtRequest(aggregate_id=customer_id, **fields), timeout=TIMEOUT
        )

    first = at(auditor, as_of_version=1)
    assert (first.aggregate_type, first.WhichOneof("state")) == ("customer", "customer")
    assert (first.version, first.position) == (1, registered.position)
    assert first.customer.industry == "manufacturing"
    assert first.customer.display_name == "[redacted]"

    now = at(admin, min_position=updated.position)
    assert (now.version, now.position) == (2, updated.position)
    assert now.customer.industry == "logistics"
    assert now.customer.display_name == name

    [created, _] = events_of(history(auditor, aggregate_id=customer_id))
    then = at(auditor, as_of_time=created.recorded_at)
    assert (then.version, then.customer.industry) == (1, "manufacturing")
    before = ts(created.recorded_at.ToDatetime() - timedelta(seconds=1))
    assert code_of(lambda: at(auditor, as_of_time=before)) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: at(auditor, as_of_version=3)) == grpc.StatusCode.NOT_FOUND

    both = rpc_error(lambda: at(auditor, as_of_version=1, as_of_time=created.recorded_at))
    assert both.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "as_of_version" in field_violations(both)


def test_aggregate_at_answers_for_partners_and_not_for_unknown_ids(
    admin: Client, auditor: Client
) -> None:
    partner_id = register_partner(admin, "Harbour Logistics").partner_id
    found = auditor.audit.GetAggregateAt(
        A.GetAggregateAtRequest(aggregate_id=partner_id), timeout=TIMEOUT
    )
    assert (found.aggregate_type, found.WhichOneof("state")) == ("partner", "partner")
    assert (found.partner.partner_id, found.partner.name) == (partner_id, "Harbour Logistics")
    assert found.version == 1
    assert found.position > 0

    unknown = A.GetAggregateAtRequest(aggregate_id=str(uuid4()))
    assert (
        code_of(lambda: auditor.audit.GetAggregateAt(unknown, timeout=TIMEOUT))
        == grpc.StatusCode.NOT_FOUND
    )


# ------------------------------------------------------------ GetDigest, VerifyLog


def test_a_digest_verifies_now_and_after_more_writes_and_a_wrong_hash_does_not(
    admin: Client, auditor: Client
) -> None:
    written = register_customer(admin)
    digest = auditor.audit.GetDigest(
        A.GetDigestRequest(min_position=written.position), timeout=TIMEOUT
    )
    assert digest.position >= written.position
    assert HASH.fullmatch(digest.hash)

    def verify(position: int, digest_hash: str) -> audit_pb2.VerifyLogResponse:
        return auditor.audit.VerifyLog(
            A.VerifyLogRequest(position=position, hash=digest_hash), timeout=TIMEOUT
        )

    purchase(admin, written.customer_id)
    good = verify(digest.position, digest.hash)
    assert good.ok
    assert not good.HasField("first_mismatch_position")
    assert (good.position, good.hash) == (digest.position, digest.hash)
    assert verify(digest.position, digest.hash.upper()).ok

    wrong = verify(digest.position, "0" * 64)
    assert not wrong.ok
    # The log itself is intact: only the digest's own position can differ.
    assert wrong.first_mismatch_position == digest.position
    assert wrong.hash == digest.hash

    far = verify(digest.position + 10**9, digest.hash)
    assert not far.ok
    assert digest.position < far.position < digest.position + 10**9


# ------------------------------------------------------------------- bad input

STREAMING = {"ReadEvents", "GetAggregateHistory"}
SOME_ID = str(uuid4())
BAD_INPUT: list[tuple[str, Any, str]] = [
    ("ReadEvents", A.ReadEventsRequest(batch_size=-1), "batch_size"),
    ("ReadEvents", A.ReadEventsRequest(from_position=-1), "from_position"),
    ("ReadEvents", A.ReadEventsRequest(min_position=-1), "min_position"),
    ("ReadEvents", A.ReadEventsRequest(aggregate_type="order"), "aggregate_type"),
    ("ReadEvents", A.ReadEventsRequest(aggregate_id="customer-42"), "aggregate_id"),
    ("ReadEvents", A.ReadEventsRequest(types=["customer.registered", "order.x"]), "types[1]"),
    ("GetAggregateHistory", A.GetAggregateHistoryRequest(), "aggregate_id"),
    ("GetAggregateHistory", A.GetAggregateHistoryRequest(aggregate_id="c-42"), "aggregate_id"),
    (
        "GetAggregateHistory",
        A.GetAggregateHistoryRequest(aggregate_id=SOME_ID, from_version=3, to_version=2),
        "to_version",
    ),
    (
        "GetAggregateHistory",
        A.GetAggregateHistoryRequest(aggregate_id=SOME_ID, batch_size=-5),
        "batch_size",
    ),
    ("GetAggregateAt", A.GetAggregateAtRequest(), "aggregate_id"),
    (
        "GetAggregateAt",
        A.GetAggregateAtRequest(
            aggregate_id=SOME_ID, as_of_version=1, as_of_time=ts(datetime.now(UTC))
        ),
        "as_of_version",
    ),
    ("GetDigest", A.GetDigestRequest(min_position=-1), "min_position"),
    ("VerifyLog", A.VerifyLogRequest(position=0, hash="0" * 64), "position"),
    ("VerifyLog", A.VerifyLogRequest(position=1, hash="abc"), "hash"),
    ("VerifyLog", A.VerifyLogRequest(position=1, hash="g" * 64), "hash"),
]


@pytest.mark.parametrize(
    ("rpc", "request_", "field"), BAD_INPUT, ids=[f"{r}-{f}" for r, _, f in BAD_INPUT]
)
def test_bad_input_is_invalid_argument_naming_the_field(
    auditor: Client, rpc: str, request_: Any, field: str
) -> None:
    def call() -> Any:
        result = getattr(auditor.audit, rpc)(request_, timeout=TIMEOUT)
        return list(result) if rpc in STREAMING else result

    error = rpc_error(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(error)


def test_only_auditors_and_admins_read_the_log(served: Served) -> None:
    reader = served.client("reader")
    assert code_of(lambda: read(reader)) == grpc.StatusCode.PERMISSION_DENIED
