"""The hash chain: digests verify, tampering is located, erasure changes nothing stored."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from psycopg import sql

from adapters.store import StoreConfig
from application import commands as c
from application.service import Accord
from projections import audit_trail
from tests.builders import CTX, log_position, new_customer, purchase
from tests.conftest import ReadModelsFactory
from tests.support import POSTGRES_URL, FakeClock


def _history(accord: Accord, clock: FakeClock, customers: int = 3) -> list[str]:
    ids = []
    for _ in range(customers):
        customer_id = new_customer(accord)
        accord.customers.record_interaction(purchase(customer_id, "42", clock.now()), CTX)
        ids.append(str(customer_id))
    return ids


def _tamper(store: StoreConfig, position: int) -> None:
    """Change one stored event's bytes behind Accord's back, as an attacker with DB access would."""
    if store.kind == "sqlite":
        assert store.sqlite_path is not None
        with sqlite3.connect(store.sqlite_path) as db:
            db.execute(
                "UPDATE stored_events SET state = CAST(replace(state, '\"42\"', '\"41\"') AS BLOB) "
                "WHERE rowid = ?",
                (position,),
            )
        return
    schema = store.env["POSTGRES_SCHEMA"]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {}.accord_events SET state = convert_to("
                "replace(convert_from(state, 'UTF8'), '\"42\"', '\"41\"'), 'UTF8') "
                "WHERE notification_id = %s"
            ).format(sql.Identifier(schema)),
            (position,),
        )


def test_every_event_is_in_the_trail_in_log_order_without_personal_data(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _history(accord, clock)
    views = make_read_models(accord)
    views.runner.catch_up()

    with views.read("audit_trail") as reader:
        trail = list(audit_trail.events(reader))
    assert [e["position"] for e in trail] == list(range(1, log_position(accord) + 1))
    assert {e["actor"] for e in trail} == {"crm-sync"}
    assert all(e["correlation_id"] == "corr-1" for e in trail)
    assert all("Hangzhou" not in e["summary"] for e in trail)  # the default display name
    assert "amount=42" in trail[1]["summary"]


def test_a_digest_verifies_until_a_stored_event_is_edited(
    accord: Accord, clock: FakeClock, store: StoreConfig, make_read_models: ReadModelsFactory
) -> None:
    _history(accord, clock)
    views = make_read_models(accord)
    views.runner.catch_up()
    with views.read("audit_trail") as reader:
        position, digest = audit_trail.digest(reader)
        assert audit_trail.verify(accord.log.recorder, reader, position, digest).ok

    _tamper(store, 4)

    with views.read("audit_trail") as reader:
        result = audit_trail.verify(accord.log.recorder, reader, position, digest)
    assert not result.ok
    assert result.first_mismatch_position == 4


def test_an_earlier_digest_still_verifies_after_more_events(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _history(accord, clock, customers=1)
    views = make_read_models(accord)
    views.runner.catch_up()
    with views.read("audit_trail") as reader:
        position, digest = audit_trail.digest(reader)
    _history(accord, clock, customers=2)
    views.runner.catch_up()

    with views.read("audit_trail") as reader:
        assert audit_trail.verify(accord.log.recorder, reader, position, digest).ok
        assert not audit_trail.verify(accord.log.recorder, reader, position, "0" * 64).ok


def test_erasure_does_not_break_the_chain(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    [customer_id, *_] = _history(accord, clock)
    views = make_read_models(accord)
    views.runner.catch_up()
    with views.read("audit_trail") as reader:
        position, digest = audit_trail.digest(reader)

    accord.customers.erase(c.EraseCustomerData(customer_id=customer_id, reason="request"), CTX)
    views.runner.catch_up()
    views.runner.rebuild("audit_trail")

    with views.read("audit_trail") as reader:
        assert audit_trail.verify(accord.log.recorder, reader, position, digest).ok
        head, head_hash = audit_trail.digest(reader)
        assert audit_trail.verify(accord.log.recorder, reader, head, head_hash).ok


def test_verification_reports_its_progress_and_stops_between_batches_without_a_verdict(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _history(accord, clock, customers=4)  # 8 events
    views = make_read_models(accord)
    views.runner.catch_up()
    reached: list[int] = []

    with views.read("audit_trail") as reader:
        position, digest = audit_trail.digest(reader)
        result = audit_trail.verify(
            accord.log.recorder, reader, position, digest, batch=3, progress=reached.append
        )
        assert result.ok
        assert reached == [3, 6, 8]

        seen: list[int] = []
        with pytest.raises(audit_trail.VerificationStopped) as stopped:
            audit_trail.verify(
                accord.log.recorder,
                reader,
                position,
                digest,
                batch=3,
                progress=seen.append,
                stop=lambda: len(seen) == 1,  # asked to stop once the first batch is read
            )
    assert stopped.value.position == 3
