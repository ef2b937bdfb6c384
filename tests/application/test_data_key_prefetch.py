"""Data keys read in bulk: the same keys as one at a time, and the vault's prefetch.

A replay reads the keys of a page's customers in one read (``get_data_keys``)
instead of one read per customer; what it finds must be exactly what
``get_data_key`` finds, destroyed keys included, and what the vault caches
from it must obey the same rules as a key it fetched itself.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from uuid import UUID, uuid4

from application import commands as c
from application.personal_data import DataKeyStore, MasterKey, PersonalDataVault, WrappedKey
from application.service import Accord
from domain.personal import ERASED
from tests.builders import CTX, register_customer
from tests.support import InMemoryKeyStore

CONTEXT = "customer.registered|display_name"


def test_the_bulk_read_finds_what_one_read_each_finds(accord: Accord) -> None:
    store = accord.log.vault.store
    kept = accord.customers.register(register_customer(display_name="Kept"), CTX).aggregate_id
    erased = accord.customers.register(register_customer(display_name="Gone"), CTX).aggregate_id
    accord.customers.erase(c.EraseCustomerData(customer_id=erased, reason="request"), CTX)
    unknown = uuid4()
    ids = [kept, erased, unknown, kept]

    found = store.get_data_keys(ids)

    assert found == {i: key for i in ids if (key := store.get_data_key(i)) is not None}
    assert set(found) == {kept, erased}
    assert found[erased].wrapped is None
    assert found[kept].wrapped is not None
    assert store.get_data_keys([]) == {}


def test_the_bulk_read_spans_more_customers_than_one_statement_takes(accord: Accord) -> None:
    store = accord.log.vault.store
    customer = accord.customers.register(register_customer(), CTX).aggregate_id
    ids = [uuid4() for _ in range(1200)] + [customer]
    assert set(store.get_data_keys(ids)) == {customer}


class _CountingStore(InMemoryKeyStore):
    """A data-key table that counts its reads; ``pause_bulk`` holds the next bulk read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.bulk_reads = 0
        self.pause_bulk = threading.Event()
        self.reading = threading.Event()
        self.release = threading.Event()

    def get_data_key(self, customer_id: UUID) -> WrappedKey | None:
        self.reads += 1
        return self.keys.get(customer_id)

    def get_data_keys(self, customer_ids: Sequence[UUID]) -> dict[UUID, WrappedKey]:
        self.bulk_reads += 1
        found = {i: self.keys[i] for i in customer_ids if i in self.keys}
        if self.pause_bulk.is_set():
            self.pause_bulk.clear()
            self.reading.set()
            assert self.release.wait(10)
        return found


def _sealed(
    vault: PersonalDataVault, store: _CountingStore, names: Sequence[str]
) -> list[tuple[UUID, dict[str, str]]]:
    sealed = []
    for name in names:
        customer_id = uuid4()
        sealed.append((customer_id, vault.seal(customer_id, CONTEXT, name)))
        vault.forget(customer_id)
    store.reads = 0
    return sealed


def test_a_prefetch_reads_once_what_opening_would_read_one_by_one() -> None:
    store = _CountingStore()
    assert isinstance(store, DataKeyStore)
    vault = PersonalDataVault(store, MasterKey.generate(), ttl=60)
    (alive, a), (erased, b) = _sealed(vault, store, ["Alive", "Erased"])
    store.keys[erased] = WrappedKey(None, vault.master.key_id)

    vault.prefetch([alive, erased, alive])

    assert store.bulk_reads == 1
    assert vault.open(alive, CONTEXT, a) == "Alive"
    assert vault.open(erased, CONTEXT, b) == ERASED
    assert store.reads == 0  # both served from the cache
    vault.prefetch([alive, erased])
    assert store.bulk_reads == 1  # nothing to fetch while they are cached


def test_a_customer_without_a_key_is_not_cached_as_erased() -> None:
    store = _CountingStore()
    vault = PersonalDataVault(store, MasterKey.generate(), ttl=60)
    newcomer = uuid4()
    vault.prefetch([newcomer])
    sealed = vault.seal(newcomer, CONTEXT, "First words")  # not refused as erased
    assert vault.open(newcomer, CONTEXT, sealed) == "First words"


def test_a_prefetch_in_flight_during_an_erasure_does_not_cache_the_destroyed_key() -> None:
    store = _CountingStore()
    vault = PersonalDataVault(store, MasterKey.generate(), ttl=60)
    [(customer_id, sealed)] = _sealed(vault, store, ["Racing"])
    store.pause_bulk.set()
    prefetching = threading.Thread(target=vault.prefetch, args=([customer_id],))
    prefetching.start()
    assert store.reading.wait(10)
    store.keys[customer_id] = WrappedKey(None, vault.master.key_id)
    vault.forget(customer_id)  # the erasure commits and evicts, as the executor does
    store.release.set()
    prefetching.join(10)
    assert vault.open(customer_id, CONTEXT, sealed) == ERASED


def test_an_expired_key_is_fetched_again() -> None:
    store = _CountingStore()
    vault = PersonalDataVault(store, MasterKey.generate(), ttl=0.0)
    [(customer_id, sealed)] = _sealed(vault, store, ["Fresh"])
    vault.prefetch([customer_id])
    vault.prefetch([customer_id])
    assert store.bulk_reads == 2
    store.keys[customer_id] = WrappedKey(None, vault.master.key_id)  # erased by another server
    vault.prefetch([customer_id])
    assert vault.open(customer_id, CONTEXT, sealed) == ERASED
