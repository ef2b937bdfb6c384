"""Aggregates kept in memory between commands, lent to one command at a time.

Loading an aggregate is most of a command's cost: a snapshot and the events
since, read, decrypted, validated and applied. A command that just saved an
aggregate already holds its new state, so it leaves it here and the next
command on that aggregate starts from it.

A cached aggregate is *taken* out, never shared: two concurrent commands on
one aggregate never touch the same object (the second loads from the store),
and a command that fails simply does not give it back, so a half-applied
decision can never leak into the next one. The copy may be stale when another
process wrote since; that is safe because every save is checked against the
stored version (a stale decision conflicts and is decided again from a fresh
load), and the executor decides every refusal again from the store before
reporting it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from uuid import UUID

from domain.aggregate import Aggregate


class AggregateCache:
    """A bounded LRU of aggregates by id, with take/give-back semantics."""

    def __init__(self, max_size: int) -> None:
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        self.max_size = max_size
        self._items: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, aggregate_id: UUID) -> Aggregate | None:
        """The cached aggregate, removed from the cache: the caller owns it now."""
        with self._lock:
            return self._items.pop(aggregate_id, None)

    def give_back(self, aggregate: Aggregate) -> None:
        """Keep ``aggregate`` (its changes are saved) for the next command on it.

        An erased customer is never kept: no plaintext is left behind in memory.
        """
        if self.max_size == 0 or getattr(aggregate, "erased", False):
            self.discard(aggregate.id)
            return
        with self._lock:
            held = self._items.get(aggregate.id)
            if held is not None and held.version > aggregate.version:
                return  # a concurrent command already left a newer state
            self._items[aggregate.id] = aggregate
            self._items.move_to_end(aggregate.id)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)

    def discard(self, aggregate_id: UUID) -> None:
        with self._lock:
            self._items.pop(aggregate_id, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
