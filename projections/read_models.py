"""The read side, assembled: the runner that keeps views current and reads with read-your-writes.

``read(name, min_position)`` waits (bounded) until the view has applied the
caller's position, then yields a consistent reader of it; every answer built
from that reader can say which position it reflects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import structlog

from application.event_log import EventLog
from projections.projection import Projection
from projections.runner import ProjectionRunner
from projections.store import DocReader, ViewStore

logger = structlog.get_logger(__name__)


class NotCaughtUpError(TimeoutError):
    """The view did not reach the requested position within the wait allowed."""

    def __init__(self, name: str, wanted: int, reached: int) -> None:
        super().__init__(f"{name} is at position {reached}, not yet {wanted}")
        self.name = name
        self.wanted = wanted
        self.reached = reached


class ReadModels:
    def __init__(
        self,
        log: EventLog,
        views: ViewStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = 500,
    ) -> None:
        self.log = log
        self.views = views
        views.create_tables()
        self.runner = ProjectionRunner(log, views, projections, batch_size=batch_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reveal(self, value: Any) -> Any:
        """Sealed references in a view become plaintext (or the erased marker) only here."""
        return self.log.vault.reveal(value)

    @contextmanager
    def read(
        self, name: str, *, min_position: int = 0, timeout: float = 5.0
    ) -> Iterator[DocReader]:
        if min_position and not self.runner.wait_for(name, min_position, timeout):
            raise NotCaughtUpError(name, min_position, self.runner.active_position(name))
        with self.runner.reader(name) as reader:
            yield reader

    # ------------------------------------------------------------- following

    def work(self, stop: threading.Event, *, idle_wait: float = 1.0) -> None:
        """Keep the read models current until ``stop``: as the one active worker of each.

        On PostgreSQL each read model is advanced only by the process holding
        its advisory lock; the others stand by and take over when it goes. A
        lock the database lost (a restart ends the session that held it) is
        let go of and taken again, or left to the worker that took it first.
        """
        held: dict[str, AbstractContextManager[bool]] = {}
        last_try = 0.0

        def mine() -> set[str]:
            nonlocal last_try
            if time.monotonic() - last_try > 2:
                last_try = time.monotonic()
                for name in [n for n in held if not self.views.holds(n)]:
                    logger.warning("projection_worker_lock_lost", projection=name)
                    held.pop(name).__exit__(None, None, None)
                for name in self.runner.projections:
                    if name in held:
                        continue
                    lock = self.views.exclusive(name)
                    if lock.__enter__():
                        held[name] = lock
                        logger.info("projection_worker_active", projection=name)
                    else:
                        lock.__exit__(None, None, None)
            return set(held)

        try:
            self.runner.follow(stop, idle_wait=idle_wait, names=mine)
        finally:
            for lock in held.values():
                lock.__exit__(None, None, None)

    def start(self) -> None:
        """Follow the log in a background thread (the server's default)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.work, args=(self._stop,), name="accord-projections", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
