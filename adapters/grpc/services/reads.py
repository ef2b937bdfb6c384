"""What every read RPC shares: read-your-writes on the log, within the call's deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from google.protobuf.descriptor import EnumDescriptor

from adapters.grpc.errors import RpcError, invalid_field
from adapters.grpc.interceptor import current_call
from adapters.grpc.translate import enum_in
from application.event_log import EventLog
from projections.read_models import NotCaughtUpError, ReadModels
from projections.store import Doc, DocReader

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
    if min_position == 0:
        return 0  # nothing to wait for: no round trip (the answer carries its own position)
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


@contextmanager
def read_view(read_models: ReadModels, name: str, min_position: int) -> Iterator[DocReader]:
    """A reader of one read model once it has applied ``min_position`` (within the deadline)."""
    if min_position < 0:
        raise RpcError(invalid_field("min_position", "must not be negative"))
    with read_models.read(name, min_position=min_position, timeout=read_wait()) as reader:
        yield reader


def enum_filter(field: str, descriptor: EnumDescriptor, number: int) -> str | None:
    """An optional enum filter: None for UNSPECIFIED (any); a number the contract lacks is bad.

    ``enum_in`` maps an unknown number to None, which for a filter would
    silently widen it to "any"; a caller that sent a value meant a value.
    """
    if number and number not in descriptor.values_by_number:
        raise RpcError(invalid_field(field, "unknown value"))
    return enum_in(descriptor, number)


def after_key(items: Iterable[Doc], after: str | None, key: Callable[[Doc], str]) -> Iterator[Doc]:
    """The items whose sort key lies after the page token's key (all of them on page 1).

    Comparing keys rather than counting an offset keeps the pages right when
    items before the cursor appear or disappear between calls.
    """
    return (item for item in items if after is None or key(item) > after)
