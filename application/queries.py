"""Reading one aggregate now, at a version, or as it was known at a time."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.errors import InvalidCommandError, NotFoundError
from application.event_log import EventLog
from application.executor import CommandExecutor, guarded
from domain.aggregate import Aggregate
from domain.customer import Customer
from domain.partner import Partner

A = TypeVar("A", bound=Aggregate)


class AggregateQueries:
    def __init__(self, log: EventLog, executor: CommandExecutor) -> None:
        self.log = log
        self.executor = executor

    def customer(
        self,
        customer_id: UUID,
        *,
        as_of_version: int | None = None,
        as_of_time: datetime | None = None,
    ) -> Customer:
        return self._get(Customer, customer_id, as_of_version, as_of_time)

    def partner(
        self,
        partner_id: UUID,
        *,
        as_of_version: int | None = None,
        as_of_time: datetime | None = None,
    ) -> Partner:
        return self._get(Partner, partner_id, as_of_version, as_of_time)

    def _get(
        self,
        kind: type[A],
        aggregate_id: UUID,
        as_of_version: int | None,
        as_of_time: datetime | None,
    ) -> A:
        if as_of_version is not None and as_of_time is not None:
            raise InvalidCommandError.single(
                "as_of_version", "give as_of_version or as_of_time, not both"
            )
        if as_of_version is not None and as_of_version < 1:
            raise InvalidCommandError.single("as_of_version", "versions start at 1")
        if as_of_time is not None and as_of_time.utcoffset() is None:
            raise InvalidCommandError.single("as_of_time", "must carry a time zone (UTC offset)")
        if as_of_version is None and as_of_time is None:
            return self.executor.load(kind, aggregate_id)
        try:
            if as_of_time is not None:
                aggregate = guarded(lambda: self.log.load_as_of_time(aggregate_id, as_of_time))
            else:
                aggregate = guarded(lambda: self.log.load(aggregate_id, version=as_of_version))
        except AggregateNotFoundError:
            raise NotFoundError(kind.type_name, aggregate_id) from None
        if not isinstance(aggregate, kind):
            raise NotFoundError(kind.type_name, aggregate_id)
        if as_of_version is not None and aggregate.version < as_of_version:
            raise NotFoundError(f"{kind.type_name} version", f"{aggregate_id}@{as_of_version}")
        return aggregate
