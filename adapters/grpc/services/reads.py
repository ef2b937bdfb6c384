"""What every read RPC shares: read-your-writes on the log, within the call's deadline."""

from __future__ import annotations

import time

from adapters.grpc.errors import RpcError, invalid_field
from adapters.grpc.interceptor import current_call
from application.event_log import EventLog
from projections.read_models import NotCaughtUpError

MAX_WAIT_SECONDS = 10.0
"""However long the deadline, a read waits at most this long for a position."""


def log_position(log: EventLog) -> int:
    return log.recorder.max_notification_id() or 0


def await_log(log: EventLog, min_position: int) -> int:
    """Wait until the log holds ``min_position`` (reads served from the aggregates).

    A position is acknowledged only after its transaction commits, so for a
    position this server returned the wait is immediate; it bounds the wait for
    a position from another server or one that was never written.
    """
    if min_position < 0:
        raise RpcError(invalid_field("min_position", "must not be negative"))
    reached = log_position(log)
    if min_position <= reached:
        return reached
    deadline = time.monotonic() + current_call().time_left(MAX_WAIT_SECONDS)
    while time.monotonic() < deadline:
        time.sleep(0.02)
        reached = log_position(log)
        if min_position <= reached:
            return reached
    raise NotCaughtUpError("the log", min_position, reached)


def read_wait(cap: float = MAX_WAIT_SECONDS) -> float:
    """Seconds a read-model read may wait for its ``min_position``."""
    return current_call().time_left(cap)
