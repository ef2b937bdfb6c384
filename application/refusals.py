"""A refused request keeps its answer: a retry of it is refused the same way.

A refusal records nothing in the log, so without a memory of it a retry of
the same request is decided afresh. When the state changed in between (a
third party's command took the aggregate's lock between the two sends), the
retry may be accepted, and a client that saw the refusal first walks away
believing nothing happened while the log holds its command. AIP-155 asks for
the first result; this keeps it for refusals as the journal keeps it for
acceptances.

The memory is bounded and per process: a retry long after the refusal, or
to another server process, is decided again. A different payload under the
same request id is a new request (a refused id stays free for it), so only
an exact retry (same fingerprint) is answered from here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from domain.errors import DomainError


class RefusalMemo:
    """The last ``capacity`` refusals by request id, with the fingerprint they answered."""

    def __init__(self, capacity: int = 50_000) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self._refusals: OrderedDict[str, tuple[str, DomainError]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, request_id: str, fingerprint: str, refusal: DomainError) -> None:
        if not self.capacity:
            return
        with self._lock:
            self._refusals[request_id] = (fingerprint, refusal)
            self._refusals.move_to_end(request_id)
            while len(self._refusals) > self.capacity:
                self._refusals.popitem(last=False)

    def forget(self, request_ids: list[str]) -> None:
        """Requests now recorded under these ids: the journal answers for them from here on."""
        if not self._refusals:  # the common case: nothing refused lately, no lock taken
            return
        with self._lock:
            for request_id in request_ids:
                self._refusals.pop(request_id, None)

    def recall(self, request_id: str, fingerprint: str) -> DomainError | None:
        """A fresh copy of the refusal an exact retry of ``request_id`` gets, if any."""
        with self._lock:
            found = self._refusals.get(request_id)
        if found is None or found[0] != fingerprint:
            return None
        refusal = found[1]
        return DomainError(refusal.reason, refusal.message)
