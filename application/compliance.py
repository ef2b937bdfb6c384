"""Compliance questions answered from the event history of one customer.

"May partner P receive categories C of customer X for purpose U at time T?"
has two honest answers. *As recorded* replays only what had been recorded by
T: what Accord knew, and enforced, then. *As known now* uses everything
recorded since, judged at T: a withdrawal the customer expressed before T but
that reached us later makes the answer "no". Both come with the consent
events (ids and log positions) that justify them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.event_log import EventLog
from application.queries import AggregateQueries
from domain.aggregate import Aggregate
from domain.customer import Customer, DataShared, DataShareRefused
from domain.partner import Partner
from domain.sharing import Consent, ShareDecision, ShareReason, decide_share
from domain.values import DataCategory, Purpose

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True)
class ConsentEvidence:
    consent: Consent
    granted_position: int
    withdrawn_position: int | None
    status_at: ShareReason | None
    """None when in effect at the time asked about, else why not."""


@dataclass(frozen=True)
class ConsentCheck:
    customer_id: UUID
    at: datetime
    as_known_now: bool
    decision: ShareDecision
    evidence: tuple[ConsentEvidence, ...]
    position: int
    """The log position this answer reflects."""

    @property
    def allowed(self) -> bool:
        return self.decision.allowed


@dataclass(frozen=True)
class ShareRecord:
    share_id: UUID
    partner_id: UUID
    purpose: Purpose
    data_categories: tuple[DataCategory, ...]
    shared: bool
    reasons: tuple[ShareReason, ...]
    relied_on_consent_ids: tuple[UUID, ...]
    recorded_at: datetime
    position: int


@dataclass(frozen=True)
class LateWithdrawalShare:
    """A share made while a consent was, as we learned later, already withdrawn."""

    share: ShareRecord
    consent_id: UUID
    expressed_at: datetime
    withdrawal_recorded_at: datetime
    withdrawal_position: int


class ComplianceQueries:
    def __init__(self, log: EventLog, queries: AggregateQueries) -> None:
        self.log = log
        self.queries = queries

    def check_consent(
        self,
        customer_id: UUID,
        partner_id: UUID,
        purpose: Purpose,
        categories: tuple[DataCategory, ...],
        *,
        at: datetime | None = None,
        as_known_now: bool = False,
    ) -> ConsentCheck:
        executor = self.queries.executor
        # NotFound for an unknown customer or partner. Both read through the aggregate
        # cache, with the head and the consents' positions: one round trip when cached.
        with executor.reading_current(
            ((Customer, customer_id), (Partner, partner_id)),
            lambda held: (customer_id, _cited_versions(_consents_of(held[0]))),
        ) as read:
            now_state, now_partner = read.aggregates
            assert isinstance(now_state, Customer)
            assert isinstance(now_partner, Partner)
            return self._check(
                now_state,
                now_partner,
                partner_id,
                purpose,
                categories,
                at,
                as_known_now,
                read.positions,
                read.head,
            )

    def _check(
        self,
        now_state: Customer,
        now_partner: Partner,
        partner_id: UUID,
        purpose: Purpose,
        categories: tuple[DataCategory, ...],
        at: datetime | None,
        as_known_now: bool,
        positions: dict[int, int],
        position: int,
    ) -> ConsentCheck:
        customer_id = now_state.id
        at = at or self.log.clock.now()
        if as_known_now:
            state: Customer | None = now_state
            erased = now_state.erased_at is not None and now_state.erased_at <= at
        else:
            state = self._as_recorded(Customer, now_state, at)
            erased = state.erased if state is not None else False
        partner = self._as_recorded(Partner, now_partner, at)
        consents = state.consents if state is not None else {}
        decision = decide_share(
            consents=consents,
            erased=erased,
            partner=partner,
            partner_id=partner_id,
            purpose=purpose,
            categories=categories,
            at=at,
        )
        considered = dict.fromkeys(cid for d in decision.categories for cid in d.consent_ids)
        if not set(_cited_versions(consents[cid] for cid in considered)) <= positions.keys():
            # A consent the read did not know to ask about (recorded since the cached
            # copy was taken): read them all.
            positions = self.log.journal.positions(customer_id)
        evidence = tuple(
            ConsentEvidence(
                consent=consents[cid],
                granted_position=positions[consents[cid].granted_version],
                withdrawn_position=positions.get(consents[cid].withdrawal_version or 0),
                status_at=consents[cid].status(at),
            )
            for cid in considered
        )
        return ConsentCheck(customer_id, at, as_known_now, decision, evidence, position)

    def consents(self, customer_id: UUID) -> list[Consent]:
        return list(self.queries.customer(customer_id).consents.values())

    def shares(self, customer_id: UUID) -> list[ShareRecord]:
        self.queries.customer(customer_id)
        positions = self.log.journal.positions(customer_id)
        records = []
        for event in self.log.history(customer_id):
            if isinstance(event, DataShared | DataShareRefused):
                shared = isinstance(event, DataShared)
                records.append(
                    ShareRecord(
                        share_id=event.share_id,
                        partner_id=event.partner_id,
                        purpose=event.purpose,
                        data_categories=event.data_categories,
                        shared=shared,
                        reasons=event.reasons if isinstance(event, DataShareRefused) else (),
                        relied_on_consent_ids=(
                            event.relied_on_consent_ids if isinstance(event, DataShared) else ()
                        ),
                        recorded_at=event.timestamp,
                        position=positions[event.originator_version],
                    )
                )
        return records

    def late_withdrawal_shares(self, customer_id: UUID) -> list[LateWithdrawalShare]:
        """Shares recorded in [expressed_at, recorded) of a late withdrawal they relied on."""
        customer = self.queries.customer(customer_id)
        late = [c for c in customer.consents.values() if c.withdrawn_late]
        if not late:
            return []
        positions = self.log.journal.positions(customer_id)
        found = []
        for share in self.shares(customer_id):
            for consent in late:
                assert consent.withdrawn_at is not None
                assert consent.withdrawal_recorded_at is not None
                assert consent.withdrawal_version is not None
                if (
                    share.shared
                    and consent.consent_id in share.relied_on_consent_ids
                    and consent.withdrawn_at <= share.recorded_at < consent.withdrawal_recorded_at
                ):
                    found.append(
                        LateWithdrawalShare(
                            share=share,
                            consent_id=consent.consent_id,
                            expressed_at=consent.withdrawn_at,
                            withdrawal_recorded_at=consent.withdrawal_recorded_at,
                            withdrawal_position=positions[consent.withdrawal_version],
                        )
                    )
        return found

    def _as_recorded(self, kind: type[A], current: A, at: datetime) -> A | None:
        """The aggregate as recorded by ``at``; None if it did not exist yet.

        Nothing recorded after ``at`` (a check "now", the common case): that is
        the current state, without replaying the aggregate's whole history.
        """
        if current.modified_on <= at:
            return current
        try:
            state = self.log.load_as_of_time(current.id, at)
        except AggregateNotFoundError:
            return None
        return state if isinstance(state, kind) else None


def _consents_of(customer: Aggregate) -> Iterable[Consent]:
    assert isinstance(customer, Customer)
    return customer.consents.values()


def _cited_versions(consents: Iterable[Consent]) -> list[int]:
    """The versions that granted or withdrew ``consents``: what a check's evidence cites."""
    return [
        version
        for consent in consents
        for version in (consent.granted_version, consent.withdrawal_version)
        if version is not None
    ]
