"""Commands on one aggregate take turns within a process.

Optimistic concurrency keeps the log right whatever happens, but two
commands of one process deciding on the same aggregate at once means one of
them conflicts and is decided again, and a bulk batch that conflicts is
expensive to redo. A striped lock per aggregate id makes them queue instead.
Other processes are still handled by the version check at save time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from uuid import UUID


class AggregateLocks:
    """A fixed set of reentrant locks; an aggregate id picks one (unrelated ids may share)."""

    def __init__(self, stripes: int = 1024) -> None:
        if stripes < 1:
            raise ValueError("stripes must be at least 1")
        self._locks = [threading.RLock() for _ in range(stripes)]

    @contextmanager
    def holding(self, aggregate_ids: Iterable[UUID]) -> Iterator[None]:
        """Hold the locks of ``aggregate_ids``, taken in one global order (no deadlock)."""
        stripes = sorted({aggregate_id.int % len(self._locks) for aggregate_id in aggregate_ids})
        taken: list[threading.RLock] = []
        try:
            for stripe in stripes:
                lock = self._locks[stripe]
                lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()
