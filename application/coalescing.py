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
one caller's failure never fails another's item. There is no extra thread and
a caller alone is handled at once, on the one-item path: batches grow while
one is in progress.

Callers answered together come back together, though, and the first one back
would lead a batch of one while the rest queue behind it: batches alternate
between full and one, and the one-item path costs several times an item in a
batch. So a coalescer may ``linger``: after a shared batch of n items, the
next leader waits (at most ``linger`` seconds) until n items are queued. This
is PostgreSQL's ``commit_delay``/``commit_siblings`` idea with the siblings
counted from the last batch: after a batch of one nothing waits, so a steady
lone caller is never delayed, and when the load drops one batch waits once.

Used for group commit (the PostgreSQL recorder's saves) and for coalescing
concurrent ``RecordInteraction`` commands into the bulk path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import structlog

logger = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class _Latch:
    """A one-shot wake-up: ``wait`` returns once ``open`` has been called (once or more).

    What a waiting caller needs from ``threading.Event``, on one lock made
    locked: opening releases it, waiting acquires it. An ``Event`` is a
    condition variable in Python (a lock, a list of waiters, a lock made for
    each wait); with eight writers coalesced, making, setting and waiting on
    them was a seventh of a command's time holding the interpreter lock.
    ``open`` is called by one thread at a time (the leader, or the caller
    handing it the lead), so the flag needs no lock of its own.
    """

    __slots__ = ("_lock", "_opened")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._opened = False

    def open(self) -> None:
        if not self._opened:
            self._opened = True
            self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()  # held from here on: a later ``open`` does nothing; nobody waits twice


class _Pending(Generic[T, R]):
    __slots__ = ("error", "finished", "item", "result", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.wake = _Latch()
        """Opened when the item is written, or when its writer is handed the lead."""
        self.finished = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def finish(self, result: R | None, error: BaseException | None) -> None:
        self.result, self.error = result, error
        self.finished = True
        self.wake.open()


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
        linger: float = 0.0,
        name: str = "batch",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if linger < 0:
            raise ValueError("linger must not be negative")
        self.name = name
        """What the log calls this coalescer's batches."""
        self._write_batch = write_batch
        self._write_one = write_one
        self.max_batch = max_batch
        self.linger = linger
        self._lock = threading.Lock()
        self._gathered = threading.Condition(self._lock)
        self._queue: list[_Pending[T, R]] = []
        self._leading = False
        self._lingering = False
        self._last = 1
        """How many items the last batch held: how many the next may wait for."""
        self.batches = 0
        """Batches handled (shared or alone): with ``items``, how much sharing happened."""
        self.items = 0
        self.lingered = 0
        """Batches whose leader waited for more items (however long)."""

    def submit(self, item: T) -> R:
        """Handle ``item`` (perhaps with others); its result once its batch is done."""
        pending: _Pending[T, R] = _Pending(item)
        with self._lock:
            self._queue.append(pending)
            lead = not self._leading
            self._leading = True
            if self._lingering and len(self._queue) >= self._last:
                self._gathered.notify()
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
                    self._gather()
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                    self._last = len(batch)
                self._write(batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].wake.open()  # not finished: its writer now leads
                else:
                    self._leading = False

    def _gather(self) -> None:
        """Wait (at most ``linger``) until the queue holds as many items as the last batch.

        Called holding the lock; waiting lets it go, so callers can queue.
        """
        if self.linger <= 0 or len(self._queue) >= self._last:
            return
        self.lingered += 1
        deadline = time.monotonic() + self.linger
        self._lingering = True
        try:
            while len(self._queue) < self._last:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._gathered.wait(remaining)
        finally:
            self._lingering = False

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
