"""Group commit: concurrent saves share one transaction, each acknowledged after it commits.

A PostgreSQL commit costs a round trip, a WAL flush and, for the event log, a
turn at the table lock that keeps notification ids in commit order. Paid once
per command, that caps throughput well below what the database can write.
Here concurrent writers queue their saves; one of them, the leader, writes
everything queued in one transaction while the others wait, and then hands the
lead to the next writer still waiting. Nobody is acknowledged before the
transaction holding their save has committed.

When a shared transaction fails (one save conflicts, or its input is refused),
every save in it is written again on its own, so each gets its own outcome:
one writer's conflict never fails another's save. There is no extra thread,
no timer and no waiting for a batch to fill: a writer alone is written at once,
and batches grow only while a transaction is already in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import structlog

logger = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class _Pending(Generic[T, R]):
    __slots__ = ("error", "finished", "item", "result", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.wake = threading.Event()
        """Set when the item is written, or when its writer is handed the lead."""
        self.finished = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def finish(self, result: R | None, error: BaseException | None) -> None:
        self.result, self.error = result, error
        self.finished = True
        self.wake.set()


class GroupCommit(Generic[T, R]):
    """Writes concurrent items in shared batches (leader/follower).

    ``write_batch`` writes several items atomically and returns one result per
    item, or raises; ``write_one`` writes one item on its own. Both are called
    by whichever writer thread leads, never by two threads at once.
    """

    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], Sequence[R]],
        write_one: Callable[[T], R],
        *,
        max_batch: int = 500,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write_batch = write_batch
        self._write_one = write_one
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Pending[T, R]] = []
        self._leading = False
        self.batches = 0
        """Transactions written (shared or alone): with ``items``, how much sharing happened."""
        self.items = 0

    def submit(self, item: T) -> R:
        """Write ``item`` (perhaps with others); its result once its transaction committed."""
        pending: _Pending[T, R] = _Pending(item)
        with self._lock:
            self._queue.append(pending)
            lead = not self._leading
            self._leading = True
        if not lead:
            pending.wake.wait()
        if not pending.finished:
            self._lead(pending)
        return self._outcome(pending)

    def _lead(self, own: _Pending[T, R]) -> None:
        """Write batches until our own item is written, then pass the lead on."""
        try:
            while not own.finished:
                with self._lock:
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                self._write(batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].wake.set()  # not finished: its writer now leads
                else:
                    self._leading = False

    def _write(self, batch: list[_Pending[T, R]]) -> None:
        self.batches += 1
        self.items += len(batch)
        if len(batch) > 1:
            try:
                results = self._write_batch([p.item for p in batch])
            except Exception as error:
                # Written again one by one below, so each gets its own outcome.
                logger.info("group_commit_split", items=len(batch), error=type(error).__name__)
            except BaseException as error:  # interrupted: nobody may wait for ever
                for pending in batch:
                    pending.finish(None, error)
                raise
            else:
                for pending, result in zip(batch, results, strict=True):
                    pending.finish(result, None)
                return
        for pending in batch:
            try:
                result = self._write_one(pending.item)
            except BaseException as error:
                pending.finish(None, error)
            else:
                pending.finish(result, None)

    @staticmethod
    def _outcome(pending: _Pending[T, R]) -> R:
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]
