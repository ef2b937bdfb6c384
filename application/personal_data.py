"""Personal data at rest: per-customer data keys, wrapped by a master key (DESIGN §4).

Each customer gets a random 256-bit data key; every personal field of its
events (and its snapshots) is sealed with AES-256-GCM under that key, bound to
the customer, the event topic and the field, so a ciphertext cannot be moved
elsewhere and still open. Data keys are stored only wrapped by the master key,
which never enters the database. Erasure destroys the wrapped data key in the
same transaction as ``PersonalDataErased``: from then on the ciphertexts in
the log are noise, the log itself (and its hash chain) untouched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from application.randomness import random_bytes
from domain.personal import ERASED

SEALED = "$enc"
"""JSON key marking a sealed value in a stored event body: {"$enc": "<base64>"}."""

NONCE_BYTES = 12


class MasterKeyError(ValueError):
    """The master key is missing, malformed or not the one the data keys were wrapped with."""


@dataclass(frozen=True)
class MasterKey:
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise MasterKeyError("the master key must be 32 bytes (256 bits)")

    @property
    def key_id(self) -> str:
        """A public fingerprint: which master key wrapped a data key (not the key)."""
        return hashlib.sha256(b"accord-master-key-id:" + self.secret).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(32))

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError("the master key is not valid base64") from None
        return cls(secret)

    def to_base64(self) -> str:
        return base64.b64encode(self.secret).decode()

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id})"


@dataclass(frozen=True)
class WrappedKey:
    wrapped: bytes | None
    """None once destroyed (the customer's personal data is erased)."""
    master_key_id: str


@runtime_checkable
class DataKeyStore(Protocol):
    """Where wrapped data keys live: their own table, beside the events (a store adapter)."""

    def get_data_key(self, customer_id: UUID) -> WrappedKey | None: ...

    def get_data_keys(self, customer_ids: Sequence[UUID]) -> dict[UUID, WrappedKey]:
        """``get_data_key`` of each, in one read: the customers with a key (destroyed or not)."""
        ...

    def create_data_key(self, customer_id: UUID, key: WrappedKey) -> WrappedKey:
        """Insert, or return the key already there (first writer wins)."""
        ...

    def all_data_keys(self) -> list[tuple[UUID, WrappedKey]]: ...

    def master_key_ids(self) -> set[str]:
        """The ids of the master keys wrapping the live (not destroyed) data keys."""
        ...

    def replace_data_keys(self, keys: list[tuple[UUID, WrappedKey]], previous_id: str) -> int:
        """Swap wrapped keys in one transaction, only rows still wrapped by ``previous_id``."""
        ...


@lru_cache(maxsize=4096)
def _cipher(key: bytes) -> AESGCM:
    """One cipher object per data key: building one (the key schedule) cost more than sealing."""
    return AESGCM(key)


def _aad(customer_id: UUID, context: str) -> bytes:
    return b"accord:" + customer_id.bytes + b":" + context.encode()


def wrap(master: MasterKey, customer_id: UUID, data_key: bytes) -> bytes:
    nonce = random_bytes(NONCE_BYTES)
    return nonce + AESGCM(master.secret).encrypt(nonce, data_key, _aad(customer_id, "data-key"))


def unwrap(master: MasterKey, customer_id: UUID, key: WrappedKey) -> bytes:
    if key.wrapped is None:
        raise LookupError("destroyed")
    if key.master_key_id != master.key_id:
        raise MasterKeyError(
            f"a data key is wrapped by master key {key.master_key_id}, "
            f"but the configured master key is {master.key_id}"
        )
    nonce, sealed = key.wrapped[:NONCE_BYTES], key.wrapped[NONCE_BYTES:]
    try:
        return AESGCM(master.secret).decrypt(nonce, sealed, _aad(customer_id, "data-key"))
    except InvalidTag:
        raise MasterKeyError("the master key does not open the stored data keys") from None


class PersonalDataVault:
    """Seals and opens personal values for the event mapper.

    Unwrapped data keys are cached for ``ttl`` seconds: an erasure made by this
    process evicts at once; one made by another server is seen within ``ttl``.
    """

    def __init__(self, store: DataKeyStore, master: MasterKey, *, ttl: float = 2.0) -> None:
        self.store = store
        self.master = master
        self.ttl = ttl
        self._cache: dict[UUID, tuple[bytes | None, float]] = {}
        self._lock = threading.Lock()
        self._evictions = 0
        """Counts ``forget``s: a key read from the store before one is not cached after it."""

    def _key(self, customer_id: UUID, *, create: bool) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(customer_id)
            evictions = self._evictions
        if cached is not None and now - cached[1] < self.ttl:
            return cached[0]
        stored = self.store.get_data_key(customer_id)
        if stored is None and create:
            fresh = os.urandom(32)
            stored = self.store.create_data_key(
                customer_id, WrappedKey(wrap(self.master, customer_id, fresh), self.master.key_id)
            )
        key = (
            None
            if stored is None or stored.wrapped is None
            else unwrap(self.master, customer_id, stored)
        )
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            # An erasure that committed (and evicted) while this read was in flight: the key
            # may be one it destroyed, so it serves this read only and is not cached.
            if self._evictions == evictions:
                self._cache[customer_id] = (key, now)
        return key

    def prefetch(self, customer_ids: Iterable[UUID]) -> None:
        """Cache the keys of ``customer_ids`` not cached (or expired) now, in one read of the store.

        What ``open`` would have fetched one by one: the same keys, destroyed
        ones as none. A customer without a key is not cached: its first
        ``seal`` makes one, and must not find "none" cached instead.
        """
        now = time.monotonic()
        with self._lock:
            wanted = [
                customer_id
                for customer_id in set(customer_ids)
                if (cached := self._cache.get(customer_id)) is None or now - cached[1] >= self.ttl
            ]
            evictions = self._evictions
        if not wanted:
            return
        stored = self.store.get_data_keys(wanted)
        keys = {
            customer_id: None if found.wrapped is None else unwrap(self.master, customer_id, found)
            for customer_id, found in stored.items()
        }
        with self._lock:
            if len(self._cache) + len(keys) > 100_000:
                self._cache.clear()
            # As in ``_key``: nothing read before an eviction is cached after it.
            if self._evictions == evictions:
                for customer_id, key in keys.items():
                    self._cache[customer_id] = (key, now)

    def seal(self, customer_id: UUID, context: str, plaintext: str) -> dict[str, str]:
        key = self._key(customer_id, create=True)
        if key is None:
            raise PermissionError(f"customer {customer_id}'s personal data has been erased")
        nonce = random_bytes(NONCE_BYTES)
        sealed = nonce + _cipher(key).encrypt(nonce, plaintext.encode(), _aad(customer_id, context))
        return {SEALED: base64.b64encode(sealed).decode()}

    def open(self, customer_id: UUID, context: str, value: Any) -> Any:
        """The plaintext of a sealed value, ``ERASED`` if its key is gone; others pass through."""
        if not is_sealed(value):
            return value
        key = self._key(customer_id, create=False)
        if key is None:
            return ERASED
        raw = base64.b64decode(value[SEALED])
        return (
            _cipher(key)
            .decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(customer_id, context))
            .decode()
        )

    def reveal(self, value: Any) -> Any:
        """The plaintext behind a sealed reference (``ERASED`` once its key is gone)."""
        if not is_reference(value):
            return value
        customer_hex, context, token = value[len(REFERENCE) :].split(":", 2)
        return self.open(UUID(hex=customer_hex), context, {SEALED: token})

    def check_master_key(self) -> None:
        """Refuse a master key that did not wrap the stored data keys, before any call.

        Otherwise a wrong key (a restore without its key file, a typo in the
        environment) is found only when personal data is first read, as a
        failure of that call instead of a refusal to start.
        """
        others = self.store.master_key_ids() - {self.master.key_id}
        if others:
            raise MasterKeyError(
                f"the store's data keys are wrapped by master key {', '.join(sorted(others))}, "
                f"but the configured master key is {self.master.key_id}: configure the key the "
                "store was written with (ACCORD_MASTER_KEY or ACCORD_MASTER_KEY_FILE)"
            )

    def forget(self, customer_id: UUID) -> None:
        with self._lock:
            self._cache.pop(customer_id, None)
            self._evictions += 1
            _cipher.cache_clear()  # no cipher of an erased key outlives the erasure here

    def rotate(self, new_master: MasterKey) -> int:
        """Re-wrap every live data key under ``new_master``; events are not touched."""
        rewrapped: list[tuple[UUID, WrappedKey]] = []
        for customer_id, stored in self.store.all_data_keys():
            if stored.wrapped is None:
                continue
            data_key = unwrap(self.master, customer_id, stored)
            rewrapped.append(
                (
                    customer_id,
                    WrappedKey(wrap(new_master, customer_id, data_key), new_master.key_id),
                )
            )
        count = self.store.replace_data_keys(rewrapped, self.master.key_id)
        self.master = new_master
        with self._lock:
            self._cache.clear()
        return count


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {SEALED}


REFERENCE = "sealed:v1:"
"""Prefix of a sealed reference: a personal value a read model keeps without reading it."""


def sealed_reference(customer_id: UUID, context: str, value: dict[str, str]) -> str:
    """An opaque string that stands for a sealed value; only the vault can reveal it."""
    return f"{REFERENCE}{customer_id.hex}:{context}:{value[SEALED]}"


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(REFERENCE)
