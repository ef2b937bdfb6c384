"""Crypto-shredding: personal data is sealed at rest and unreadable once erased."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql

from adapters.store import StoreConfig
from application import commands as c
from application.errors import DomainError, Reason
from application.personal_data import MasterKey, PersonalDataVault, WrappedKey, _cipher
from application.service import Accord
from application.settings import Settings
from domain.customer import ContactAdded, CustomerRegistered, InteractionRecorded
from domain.personal import ERASED
from projections import customer_summary
from tests.builders import CTX, purchase, register_customer
from tests.conftest import AccordFactory, ReadModelsFactory
from tests.support import POSTGRES_URL, FakeClock, InMemoryKeyStore

NAME = "Sun Lihua Boutique"
CONTACT = "Zhou Minghao"
EMAIL = "zhou.minghao@lihua.example.cn"
PHONE = "+86 21 6666 1234"
SUMMARY = "Zhou Minghao asked about delivery to Pudong"
KNOWN = (NAME, CONTACT, EMAIL, PHONE, SUMMARY, "zhou.minghao", "6666 1234")


def _customer_with_personal_data(app: Accord, clock: FakeClock) -> UUID:
    customer_id = app.customers.register(register_customer(display_name=NAME), CTX).aggregate_id
    contact = app.customers.add_contact(
        c.AddContact(
            customer_id=customer_id,
            name=CONTACT,
            email=EMAIL,
            phone=PHONE,
            layer="MANAGEMENT",
            function="PROCUREMENT",
        ),
        CTX,
    )
    assert contact.entity_id is not None
    app.customers.record_interaction(
        c.RecordInteraction(
            customer_id=customer_id,
            kind="CALL",
            channel="PHONE",
            direction="INBOUND",
            occurred_at=clock.now() - timedelta(hours=1),
            summary=SUMMARY,
            contact_ids=[contact.entity_id],
        ),
        CTX,
    )
    app.customers.record_interaction(purchase(customer_id, "880", clock.now()), CTX)
    return customer_id


def _plaintext_found(store: StoreConfig, values: tuple[str, ...] = KNOWN) -> set[str]:
    """Every one of ``values`` found anywhere in the raw stored bytes."""
    if store.kind == "sqlite":
        assert store.sqlite_path is not None
        blobs = [
            p.read_bytes()
            for p in store.sqlite_path.parent.iterdir()
            if p.name.startswith(store.sqlite_path.name)
        ]
    else:
        blobs = _postgres_rows(store.env["POSTGRES_SCHEMA"])
    return {value for value in values for blob in blobs if value.encode() in blob}


def _postgres_rows(schema: str) -> list[bytes]:
    blobs: list[bytes] = []
    with psycopg.connect(POSTGRES_URL) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        assert "accord_events" in tables
        for table in tables:
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            for row in conn.execute(query):
                blobs.extend(_as_bytes(value) for value in row)
    return blobs


def _as_bytes(value: Any) -> bytes:
    return bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()


def test_personal_data_is_readable_through_accord_but_never_stored_in_plaintext(
    make_accord: AccordFactory,
    make_read_models: ReadModelsFactory,
    store: StoreConfig,
    clock: FakeClock,
) -> None:
    app = make_accord(settings=Settings(snapshot_interval=2), clock=clock)
    customer_id = _customer_with_personal_data(app, clock)
    views = make_read_models(app)
    views.runner.catch_up()
    with views.read("customer_summary") as reader:
        shown = customer_summary.get(reader, str(customer_id), views.reveal)
    assert shown is not None
    assert shown["display_name"] == NAME

    customer = app.queries.customer(customer_id)
    [contact] = customer.contacts.values()
    assert (customer.display_name, contact.name, contact.email, contact.phone) == (
        NAME,
        CONTACT,
        EMAIL,
        PHONE,
    )
    summaries = [
        e.summary for e in app.log.history(customer_id) if isinstance(e, InteractionRecorded)
    ]
    assert SUMMARY in summaries
    assert _plaintext_found(store) == set()
    # The scan does see what is stored in the clear (non-personal fields).
    assert _plaintext_found(store, (customer.external_ref, "PROCUREMENT")) == {
        customer.external_ref,
        "PROCUREMENT",
    }


def test_after_erasure_every_personal_field_reads_as_erased_and_the_store_holds_none(
    make_accord: AccordFactory,
    make_read_models: ReadModelsFactory,
    store: StoreConfig,
    clock: FakeClock,
) -> None:
    app = make_accord(settings=Settings(snapshot_interval=2), clock=clock)
    customer_id = _customer_with_personal_data(app, clock)
    views = make_read_models(app)
    views.runner.catch_up()  # the views hold their copies before the erasure
    before_erasure = clock.now()
    clock.advance(minutes=5)

    erased = app.customers.erase(
        c.EraseCustomerData(customer_id=customer_id, reason="GDPR art. 17"), CTX
    )

    for reader in (app, make_accord(clock=clock)):  # this process, and a fresh one
        now = reader.queries.customer(customer_id)
        then = reader.queries.customer(customer_id, as_of_time=before_erasure)
        at_v2 = reader.queries.customer(customer_id, as_of_version=2)
        for state in (now, then, at_v2):
            assert state.display_name == ERASED
            for contact in state.contacts.values():
                assert (contact.name, contact.email, contact.phone) == (ERASED, ERASED, ERASED)
        assert now.erased
        assert not then.erased
        assert now.purchase_count == 1  # non-personal history stays
        history = list(reader.log.history(customer_id))
        assert len(history) == erased.version  # every event still replays
        for event in history:
            if isinstance(event, CustomerRegistered):
                assert event.display_name == ERASED
            if isinstance(event, ContactAdded):
                assert (event.name, event.email, event.phone) == (ERASED, ERASED, ERASED)
            if isinstance(event, InteractionRecorded) and event.kind.value == "CALL":
                assert event.summary == ERASED

    views.runner.catch_up()
    with views.read("customer_summary") as view:
        summary = view.get("customer", str(customer_id))
    assert summary is not None
    assert summary["display_name"] == ERASED
    found = _plaintext_found(store)
    assert found == set()
    key = app.log.vault.store.get_data_key(customer_id)
    assert key is not None
    assert key.wrapped is None


def test_after_erasure_no_command_adds_personal_data(accord: Accord, clock: FakeClock) -> None:
    customer_id = _customer_with_personal_data(accord, clock)
    accord.customers.erase(c.EraseCustomerData(customer_id=customer_id, reason="request"), CTX)

    refusals: list[Callable[[], object]] = [
        lambda: accord.customers.update_profile(
            c.UpdateCustomerProfile(customer_id=customer_id, display_name="New Name"), CTX
        ),
        lambda: accord.customers.add_contact(
            c.AddContact(customer_id=customer_id, name="X", layer="DECISION", function="USER"), CTX
        ),
        lambda: accord.customers.record_interaction(
            c.RecordInteraction(
                customer_id=customer_id,
                kind="CALL",
                channel="PHONE",
                direction="OUTBOUND",
                occurred_at=clock.now(),
                summary="called again",
            ),
            CTX,
        ),
        lambda: accord.customers.erase(
            c.EraseCustomerData(customer_id=customer_id, reason="again"), CTX
        ),
    ]
    for refused in refusals:
        with pytest.raises(DomainError) as error:
            refused()
        assert error.value.reason is Reason.CUSTOMER_ERASED

    accord.customers.record_interaction(purchase(customer_id, "12", clock.now()), CTX)
    accord.customers.update_profile(
        c.UpdateCustomerProfile(customer_id=customer_id, region="NORTH"), CTX
    )
    assert accord.queries.customer(customer_id).purchase_count == 2


def test_erasing_one_customer_leaves_the_others_readable(accord: Accord, clock: FakeClock) -> None:
    erased_id = _customer_with_personal_data(accord, clock)
    kept_id = accord.customers.register(
        register_customer(display_name="Kept Co."), CTX
    ).aggregate_id
    accord.customers.erase(c.EraseCustomerData(customer_id=erased_id, reason="request"), CTX)
    assert accord.queries.customer(kept_id).display_name == "Kept Co."


class _PausingKeyStore(InMemoryKeyStore):
    """A data-key table whose next read can be held in flight (a read racing an erasure)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.reading = threading.Event()
        self.release = threading.Event()

    def get_data_key(self, customer_id: UUID) -> WrappedKey | None:
        found = self.keys.get(customer_id)
        if self.hold.is_set():
            self.hold.clear()
            self.reading.set()
            assert self.release.wait(10)
        return found


def test_a_read_in_flight_during_an_erasure_does_not_cache_the_destroyed_key() -> None:
    """The key a read fetched before the erasure committed must not outlive the erasure.

    The read itself overlapped the erasure and may see the data; a read that starts
    after the erasure returned must not, even within the key cache's lifetime.
    """
    store = _PausingKeyStore()
    vault = PersonalDataVault(store, MasterKey.generate(), ttl=60)
    customer_id = uuid4()
    sealed = vault.seal(customer_id, "customer.registered|display_name", NAME)
    vault.forget(customer_id)  # start cold: the next read goes to the store

    store.hold.set()
    seen: list[object] = []
    reader = threading.Thread(
        target=lambda: seen.append(
            vault.open(customer_id, "customer.registered|display_name", sealed)
        )
    )
    reader.start()
    assert store.reading.wait(10)
    # The erasure commits (the key is destroyed) and evicts the key, as the executor does.
    store.keys[customer_id] = WrappedKey(None, vault.master.key_id)
    vault.forget(customer_id)
    store.release.set()
    reader.join(10)
    assert seen == [NAME]

    assert vault.open(customer_id, "customer.registered|display_name", sealed) == ERASED


def test_an_erasure_leaves_no_cipher_of_the_key_in_memory(accord: Accord) -> None:
    customer_id = accord.customers.register(register_customer(), CTX).aggregate_id
    accord.log.vault.seal(customer_id, "test|field", "a personal note")
    assert _cipher.cache_info().currsize > 0

    accord.customers.erase(c.EraseCustomerData(customer_id=customer_id, reason="asked"), CTX)

    assert _cipher.cache_info().currsize == 0
