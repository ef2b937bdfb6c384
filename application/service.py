"""The application facade: one event log, the use cases and queries over it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError

from application.clock import Clock, SystemClock
from application.coalescing import Coalescer
from application.compliance import ComplianceQueries
from application.customers import CustomerUseCases
from application.errors import StoreUnavailableError
from application.event_log import EventLog
from application.executor import CommandExecutor, guarded
from application.keys import KeyManagement
from application.observer import CommandObserver
from application.partners import PartnerUseCases
from application.personal_data import MasterKey
from application.queries import AggregateQueries
from application.settings import Settings


class Accord:
    """Everything the adapters call. Built by the composition root in ``adapters``."""

    def __init__(
        self,
        store_env: Mapping[str, str],
        master_key: MasterKey,
        settings: Settings | None = None,
        clock: Clock | None = None,
        *,
        observer: CommandObserver | None = None,
    ) -> None:
        """``observer`` hears how each command ended (the metrics adapter counts them)."""
        self.settings = settings or Settings()
        self.clock = clock or SystemClock()
        try:
            self.log = EventLog(
                store_env,
                snapshot_interval=self.settings.snapshot_interval,
                clock=self.clock,
                master_key=master_key,
            )
        except (OperationalError, InterfaceError, StoreUnavailableError) as error:
            raise StoreUnavailableError(f"cannot open the event store: {error}") from error
        self.executor = CommandExecutor(
            self.log,
            max_attempts=self.settings.max_attempts,
            observer=observer,
            cache_size=self.settings.aggregate_cache_size,
        )
        self.customers = CustomerUseCases(
            self.executor,
            base_currency=self.settings.base_currency,
            command_batch=self.settings.command_batch,
            command_linger=self.settings.command_linger_us / 1_000_000,
        )
        self.partners = PartnerUseCases(self.executor, base_currency=self.settings.base_currency)
        self.queries = AggregateQueries(self.log, self.executor)
        self.compliance = ComplianceQueries(self.log, self.queries)
        self.keys = KeyManagement(self.log)

    def coalescers(self) -> list[Coalescer[Any, Any]]:
        """The places where concurrent calls share work, each with its running counts.

        Coalescing only pays when batches form: an operator (and the metrics)
        needs to see how many items each batch carried, not only that calls
        were fast. The interactions' coalescer exists when ``command_batch``
        is above one; the store's group commit when the store has one
        (PostgreSQL's recorder).
        """
        found: list[Coalescer[Any, Any]] = []
        if self.customers.interaction_batches is not None:
            found.append(self.customers.interaction_batches)
        group_commit = getattr(self.log.recorder, "group_commit", None)
        if isinstance(group_commit, Coalescer):
            found.append(group_commit)
        return found

    def store_answers(self) -> bool:
        """Whether the event store answers now (what the server's health reports)."""
        try:
            guarded(self.log.recorder.max_notification_id)
        except (StoreUnavailableError, PersistenceError):
            return False
        return True

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
