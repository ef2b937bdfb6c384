"""PostgreSQL down: fail fast with "unavailable"; PostgreSQL back: recover promptly, unaided.

Left to itself, psycopg's pool makes a caller wait out its whole timeout when
the server is gone (a connection that fails its pre-ping is followed by back-off
sleeps, an empty pool waits for a reconnection that cannot succeed), and the
library retries most reads ten times on top of that: a call hung for many
seconds, past its deadline, instead of failing with UNAVAILABLE. The pool's own
reconnection backs off exponentially for five minutes, so after a long outage
it could stay empty long after the server was back.

Here the pool hands out connections in short slices of its timeout. When a
slice passes without one, a direct connection attempt (the probe) tells a busy
pool (keep waiting) from an unreachable server: then ``StoreDownError`` is
raised at once, and so is every call for the next moment without touching the
network; after that one caller probes again. The error is not one of the
library's retried ones, so nothing retries against a server known to be down.
Background reconnection gives up after a few seconds instead of minutes; the
pool then grows back on demand as soon as the probe finds the server again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import structlog
from eventsourcing.persistence import PersistenceError
from eventsourcing.postgres import PostgresDatastore
from psycopg_pool import PoolTimeout

from application.errors import StoreUnavailableError

logger = structlog.get_logger(__name__)

SLICE_SECONDS = 0.5
"""How long a caller waits for a pooled connection before asking whether the server is there."""
RECHECK_SECONDS = 0.5
"""How long a failed probe's verdict stands: calls meanwhile fail without touching the network."""
PROBE_TIMEOUT_SECONDS = 2
"""A probe's connect timeout (libpq's minimum); a refused connection fails at once."""
RECONNECT_SECONDS = 5.0
"""How long the pool keeps reconnecting a lost connection in the background before it gives up."""
FRESH_SECONDS = 1.0
"""A connection given back this recently is handed out again without a pre-ping."""


class StoreDownError(StoreUnavailableError, PersistenceError):
    """PostgreSQL does not accept connections (down, starting, or refusing more clients).

    A ``StoreUnavailableError`` (UNAVAILABLE to callers) and a persistence
    error (what a health check reads as "the store does not answer"), but
    not one of the operational errors the library retries ten times.
    """


class Availability:
    """Watches one datastore's pool: installed once, by the recorder that owns the datastore."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.pool = datastore.pool
        self._getconn = self.pool.getconn
        kwargs = self.pool.kwargs
        given: dict[str, Any] = dict((kwargs() if callable(kwargs) else kwargs) or {})
        wanted = ("dbname", "host", "port", "user", "password")
        self._probe_kwargs = {key: given[key] for key in wanted if key in given}
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._down = False

    @classmethod
    def install(cls, datastore: PostgresDatastore) -> Availability:
        existing = getattr(datastore, "accord_availability", None)
        if isinstance(existing, Availability):
            return existing
        availability = cls(datastore)
        datastore.accord_availability = availability  # type: ignore[attr-defined]
        availability.pool.getconn = availability.getconn  # type: ignore[method-assign]
        availability.pool.reconnect_timeout = min(
            availability.pool.reconnect_timeout, RECONNECT_SECONDS
        )
        availability.install_pre_ping()
        return availability

    def install_pre_ping(self) -> None:
        """Pre-ping only connections idle for a while, not one just used successfully.

        A pre-ping is a round trip on every checkout, and a command checks
        out a connection several times: it cost more than the statements.
        A connection given back less than ``FRESH_SECONDS`` ago worked then;
        if the server went away since, the statement fails (reads are retried
        by the library, a write is reported unavailable and may be retried by
        its caller under the same request id) and the probe above takes over.
        """
        check = self.pool._check
        if check is None:
            return
        returned: dict[int, float] = {}
        putconn = self.pool.putconn

        def stamped_putconn(conn: Any) -> None:
            returned[id(conn)] = time.monotonic()
            putconn(conn)

        def check_if_idle(conn: Any) -> None:
            last = returned.pop(id(conn), None)
            if last is None or time.monotonic() - last >= FRESH_SECONDS:
                check(conn)

        self.pool.putconn = stamped_putconn  # type: ignore[method-assign]
        self.pool._check = check_if_idle

    def getconn(self, timeout: float | None = None) -> Any:
        """The pool's ``getconn``, failing fast when the server is unreachable."""
        if self._down and not self.reachable():
            raise StoreDownError("PostgreSQL does not accept connections")
        total = self.pool.timeout if timeout is None else timeout
        deadline = time.monotonic() + total
        while True:
            remaining = deadline - time.monotonic()
            try:
                return self._getconn(timeout=max(min(SLICE_SECONDS, remaining), 0.001))
            except PoolTimeout:
                if remaining <= SLICE_SECONDS:
                    raise PoolTimeout(f"couldn't get a connection after {total:.2f} sec") from None
                if not self.reachable():
                    raise StoreDownError("PostgreSQL does not accept connections") from None

    def reachable(self) -> bool:
        """Whether the server accepts a connection (one probe at a time; a recent answer stands)."""
        with self._lock:
            now = time.monotonic()
            if self._checked_at is not None and now - self._checked_at < RECHECK_SECONDS:
                return not self._down
            try:
                psycopg.connect(**self._probe_kwargs, connect_timeout=PROBE_TIMEOUT_SECONDS).close()
            except psycopg.Error as error:
                if not self._down:
                    logger.warning("store_unreachable", error=type(error).__name__)
                    # The idle connections are dead too: close them now, so that no
                    # caller has to find that out one failed pre-ping at a time.
                    self.pool.drain()
                self._down = True
            else:
                if self._down:
                    logger.info("store_reachable_again")
                self._down = False
            self._checked_at = time.monotonic()
            return not self._down
