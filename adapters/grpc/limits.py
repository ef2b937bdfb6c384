"""How many long-lived streams may be open at once, server-wide.

gRPC's synchronous server runs a streaming call on one worker thread from its
first message to its last; a follower or a slow reader holds that thread for
minutes. Streams therefore take a slot, and when every slot is held a new
stream is refused at once with RESOURCE_EXHAUSTED (reason ``STREAM_LIMIT``)
rather than queue behind the others, so unary calls always find a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from adapters.grpc.errors import RpcError, stream_limit_reached


class StreamSlots:
    """A counter of open streams with a ceiling; taking a slot never waits."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the stream limit must be at least 1")
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        with self._lock:
            return self._open

    def try_acquire(self) -> bool:
        with self._lock:
            if self._open >= self.limit:
                return False
            self._open += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._open <= 0:
                raise RuntimeError("released a stream slot that was not held")
            self._open -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the block; RpcError (RESOURCE_EXHAUSTED) when none is free."""
        if not self.try_acquire():
            raise RpcError(stream_limit_reached(self.limit))
        try:
            yield
        finally:
            self.release()
