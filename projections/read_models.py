"""The read side, assembled: the runner that keeps views current and reads with read-your-writes.

``read(name, min_position)`` waits (bounded) until the view has applied the
caller's position, then yields a consistent reader of it; every answer built
from that reader can say which position it reflects.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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

    # ------------------------------------------------------------ in-process

    def start(self) -> None:
        """Follow the log in a background thread (the server's default)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.runner.follow, args=(self._stop,), name="accord-projections", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
