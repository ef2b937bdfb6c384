"""Coalescing: concurrent calls handled in shared batches, each answered with its own outcome.

Some work costs far less per item done in batches than one at a time: a
PostgreSQL commit (a round trip, a WAL flush, a turn at the table lock that
keeps notification ids in commit order), or a whole command (the bulk path
decides and saves many commands with one journal query and one transaction).
Here concurrent callers queue their items; one of them, the leader, handles
everything queued as one batch while the others wait, then hands the lead to
the next caller still waiting. Nobody is answered before the batch holding
their item is done (for the event log: committed).

When a batch fails as a whole (one save conflicts, or its input is refused),
every item in it is handled again on its own, so each gets its own outcome:
one caller's failure never fails another's item. There is no extra thread, no
timer and no waiting for a batch to fill: a caller alone is handled at once,
on the one-item path, and batches grow only while one is already in progress.

Used for group commit (the PostgreSQL recorder's saves) and for coalescing
concurrent ``RecordInteraction`` commands into the bulk path.
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


class Coalescer(Generic[T, R]):
    """Handles concurrent items in shared batches (leader/follower).

    ``write_batch`` handles several items together (for a store, atomically)
    and returns one result per item, or raises; ``write_one`` handles one item
    on its own. Both are called by whichever caller's thread leads, never by
    two threads at once.
    """

    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], Sequence[R]],
        write_one: Callable[[T], R],
        *,
        max_batch: int = 500,
        name: str = "batch",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.name = name
        """What the log calls this coalescer's batches."""
        self._write_batch = write_batch
        self._write_one = write_one
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Pending[T, R]] = []
        self._leading = False
        self.batches = 0
        """Batches handled (shared or alone): with ``items``, how much sharing happened."""
        self.items = 0

    def submit(self, item: T) -> R:
        """Handle ``item`` (perhaps with others); its result once its batch is done."""
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
                logger.info(
                    "batch_split", batches=self.name, items=len(batch), error=type(error).__name__
                )
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
