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

A caller may also wait, briefly, for a copy that is lent out: a consent
check on a customer another check holds for a millisecond is far cheaper
waiting for it than loading the customer again, and under load those
loads were most of what concurrent checks cost. A copy never given back
(its command failed) is waited for only until its holder ``settle``s, or
once until the wait runs out.
"""

from __future__ import annotations

import threading
import time
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
        self._lent: dict[UUID, threading.Event | None] = {}
        """Ids of copies taken and not yet given back, with an event once someone waits."""
        self._lock = threading.Lock()

    def take(self, aggregate_id: UUID, *, wait: float = 0.0) -> Aggregate | None:
        """The cached aggregate, removed from the cache: the caller owns it now.

        When it is lent out, waits up to ``wait`` seconds for it to come back
        (or be given up); None when it is not here by then.
        """
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                aggregate = self._items.pop(aggregate_id, None)
                if aggregate is not None:
                    self._lent[aggregate_id] = None
                    return aggregate
                if aggregate_id not in self._lent:
                    return None
                returned = self._lent[aggregate_id]
                if returned is None:
                    returned = self._lent[aggregate_id] = threading.Event()
            left = deadline - time.monotonic()
            if left <= 0 or not returned.wait(left):
                with self._lock:  # never came back: nobody waits for it again
                    if self._lent.get(aggregate_id) is returned:
                        del self._lent[aggregate_id]
                return None

    def settle(self, aggregate_id: UUID) -> None:
        """The caller holds no copy of it any more (given back, dropped or never taken)."""
        with self._lock:
            returned = self._lent.pop(aggregate_id, None)
        if returned is not None:
            returned.set()

    def give_back(self, aggregate: Aggregate) -> None:
        """Keep ``aggregate`` (its changes are saved) for the next command on it.

        An erased customer is never kept: no plaintext is left behind in memory.
        """
        if self.max_size == 0 or getattr(aggregate, "erased", False):
            self.discard(aggregate.id)
            return
        with self._lock:
            returned = self._lent.pop(aggregate.id, None)
            held = self._items.get(aggregate.id)
            if held is None or held.version <= aggregate.version:
                # (else a concurrent command already left a newer state)
                self._items[aggregate.id] = aggregate
                self._items.move_to_end(aggregate.id)
                while len(self._items) > self.max_size:
                    self._items.popitem(last=False)
        if returned is not None:
            returned.set()

    def discard(self, aggregate_id: UUID) -> None:
        with self._lock:
            self._items.pop(aggregate_id, None)
        self.settle(aggregate_id)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            lent, self._lent = self._lent, {}
        for returned in lent.values():
            if returned is not None:
                returned.set()

    def __len__(self) -> int:
        return len(self._items)
