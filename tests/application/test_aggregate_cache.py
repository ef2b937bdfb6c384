"""The aggregate cache: commands skip the load, yet never decide on a state nobody saved.

Two applications over one store stand for two processes: each caches what it
saved, so each one's copy goes stale when the other writes.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from adapters.postgres.recorder import AccordPostgresRecorder
from application import commands as c
from application.aggregate_cache import AggregateCache
from application.errors import NotFoundError
from domain.aggregate import Aggregate
from domain.customer import Customer, PersonalDataErased, TierChanged
from domain.errors import DomainError
from domain.partner import Partner
from domain.values import DataCategory, Purpose
from tests.builders import CTX, active_partner, grant, log_position, new_customer, purchase
from tests.conftest import AccordFactory
from tests.support import FakeClock


def test_a_command_on_a_cached_customer_reads_nothing_from_the_store(
    make_accord: AccordFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_accord(clock=clock)
    customer_id = new_customer(app)

    def no_load(*_: object, **__: object) -> None:
        raise AssertionError("loaded from the store")

    monkeypatch.setattr(app.log, "load", no_load)
    result = app.customers.record_interaction(purchase(customer_id, "10", clock.now()), CTX)

    assert result.version == 2
    monkeypatch.undo()
    assert app.log.load(customer_id).version == 2


def test_a_stale_copy_is_decided_again_from_the_store(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    here, elsewhere = make_accord(clock=clock), make_accord(clock=clock)
    customer_id = new_customer(here)  # cached here at version 1
    elsewhere.customers.record_interaction(purchase(customer_id, "10", clock.now()), CTX)

    result = here.customers.record_interaction(purchase(customer_id, "20", clock.now()), CTX)

    assert result.version == 3
    customer = here.log.load(customer_id)
    assert isinstance(customer, Customer)
    assert [e.originator_version for e in here.log.history(customer_id)] == [1, 2, 3]


def test_a_refusal_decided_on_a_stale_copy_is_not_reported(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    """Here thinks the tier is KEY (so "unchanged"); elsewhere set it back: the change is made."""
    here, elsewhere = make_accord(clock=clock), make_accord(clock=clock)
    customer_id = new_customer(here)
    here.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="a"), CTX
    )
    elsewhere.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="STANDARD", reason="b"), CTX
    )

    result = here.customers.change_tier(
        c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="c"), CTX
    )

    assert result.version == 4
    tiers = [e.to_tier for e in here.log.history(customer_id) if isinstance(e, TierChanged)]
    assert [t.value for t in tiers] == ["KEY", "STANDARD", "KEY"]


def test_a_refusal_confirmed_by_the_store_is_reported_and_records_nothing(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    customer_id = new_customer(app)
    app.customers.change_tier(c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="a"), CTX)
    position = log_position(app)

    with pytest.raises(DomainError):
        app.customers.change_tier(
            c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="b"), CTX
        )

    assert log_position(app) == position
    # The refused decision's object was dropped; the next command still decides correctly.
    result = app.customers.record_interaction(purchase(customer_id, "5", clock.now()), CTX)
    assert result.version == 3


def test_an_expected_version_is_checked_against_the_store_not_a_stale_copy(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    here, elsewhere = make_accord(clock=clock), make_accord(clock=clock)
    customer_id = new_customer(here)
    elsewhere.customers.record_interaction(purchase(customer_id, "10", clock.now()), CTX)

    result = here.customers.record_interaction(
        purchase(customer_id, "20", clock.now(), expected_version=2), CTX
    )

    assert result.version == 3


def test_an_erased_customer_is_not_kept_in_memory(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    customer_id = new_customer(app)
    app.customers.record_interaction(purchase(customer_id, "10", clock.now()), CTX)
    assert app.executor.cache.take(customer_id) is not None  # cached (and now taken out)
    app.customers.record_interaction(purchase(customer_id, "10", clock.now()), CTX)

    app.customers.erase(c.EraseCustomerData(customer_id=customer_id, reason="asked"), CTX)

    assert app.executor.cache.take(customer_id) is None
    assert isinstance(list(app.log.history(customer_id))[-1], PersonalDataErased)


def test_a_command_for_the_wrong_kind_of_aggregate_leaves_the_cached_one_alone(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    customer_id = new_customer(app)

    with pytest.raises(NotFoundError):
        app.partners.suspend(c.SuspendPartner(partner_id=customer_id, reason="x"), CTX)

    cached = app.executor.cache.take(customer_id)
    assert isinstance(cached, Customer)
    assert not isinstance(cached, Partner)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_cache_is_bounded_and_keeps_the_newest_state() -> None:
    cache = AggregateCache(max_size=2)
    customers = [
        Customer.model_construct(created_on=NOW, modified_on=NOW, id=customer_id, version=version)
        for customer_id, version in [(uuid4(), 1), (uuid4(), 1), (uuid4(), 1)]
    ]
    for customer in customers:
        cache.give_back(customer)
    assert len(cache) == 2
    assert cache.take(customers[0].id) is None  # the least recently saved went first

    newer = Customer.model_construct(created_on=NOW, modified_on=NOW, id=customers[1].id, version=5)
    older = Customer.model_construct(created_on=NOW, modified_on=NOW, id=customers[1].id, version=4)
    cache.give_back(newer)
    cache.give_back(older)  # a slower command finishing after a faster one
    assert cache.take(customers[1].id) is newer


def test_a_consent_check_on_cached_aggregates_sees_what_another_process_recorded(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    """Reads bring a cached copy up to date: a withdrawal recorded elsewhere refuses at once."""
    here, elsewhere = make_accord(clock=clock), make_accord(clock=clock)
    partner_id = active_partner(here, clock.now())
    customer_id = new_customer(here)
    consent = here.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    assert consent.entity_id is not None
    categories = (DataCategory.IDENTITY,)
    allowed = here.compliance.check_consent(
        customer_id, partner_id, Purpose.JOINT_SERVICE, categories
    )
    assert allowed.allowed
    assert isinstance(here.executor.cache.take(customer_id), Customer)  # the read left it
    here.compliance.check_consent(customer_id, partner_id, Purpose.JOINT_SERVICE, categories)

    elsewhere.customers.withdraw_consent(
        c.WithdrawConsent(customer_id=customer_id, consent_id=consent.entity_id, channel="APP"),
        CTX,
    )
    clock.advance(seconds=1)
    refused = here.compliance.check_consent(
        customer_id, partner_id, Purpose.JOINT_SERVICE, categories
    )

    assert not refused.allowed
    assert refused.position > allowed.position


def test_a_read_of_an_unknown_or_wrong_kind_of_aggregate_is_not_found(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    app = make_accord(clock=clock)
    customer_id = new_customer(app)
    with (
        pytest.raises(NotFoundError),
        app.executor.reading_current([(Partner, customer_id)], lambda _: (customer_id, ())),
    ):
        pass
    with (
        pytest.raises(NotFoundError),
        app.executor.reading_current([(Customer, uuid4())], lambda _: (customer_id, ())),
    ):
        pass
    assert isinstance(app.executor.cache.take(customer_id), Customer)  # still cached


def _customer(version: int = 1) -> Customer:
    return Customer.model_construct(created_on=NOW, modified_on=NOW, id=uuid4(), version=version)


def _take_in_thread(
    cache: AggregateCache, aggregate_id: UUID, wait: float
) -> tuple[threading.Thread, list[Aggregate | None]]:
    got: list[Aggregate | None] = []

    def take() -> None:
        got.append(cache.take(aggregate_id, wait=wait))

    taker = threading.Thread(target=take)
    taker.start()
    return taker, got


def test_a_copy_lent_out_is_waited_for_and_handed_over_when_given_back() -> None:
    cache = AggregateCache(max_size=10)
    customer = _customer()
    cache.give_back(customer)
    assert cache.take(customer.id) is customer  # lent out

    taker, got = _take_in_thread(cache, customer.id, wait=60)
    taker.join(timeout=0.2)
    assert taker.is_alive()  # waiting for it, not loading it
    cache.give_back(customer)
    taker.join(timeout=30)

    assert got == [customer]


@pytest.mark.parametrize("give_up", ["settle", "discard", "clear"])
def test_a_copy_given_up_by_its_holder_wakes_whoever_waits_for_it(give_up: str) -> None:
    cache = AggregateCache(max_size=10)
    customer = _customer()
    cache.give_back(customer)
    assert cache.take(customer.id) is customer

    taker, got = _take_in_thread(cache, customer.id, wait=60)
    taker.join(timeout=0.2)
    assert taker.is_alive()
    if give_up == "clear":
        cache.clear()
    else:
        getattr(cache, give_up)(customer.id)
    taker.join(timeout=30)

    assert not taker.is_alive()
    assert got == [None]  # the caller loads it from the store


def test_a_copy_never_given_back_is_waited_for_only_once() -> None:
    cache = AggregateCache(max_size=10)
    customer = _customer()
    cache.give_back(customer)
    cache.take(customer.id)  # and never given back: its command failed

    assert cache.take(customer.id, wait=0.01) is None  # waited, gave up
    taker, got = _take_in_thread(cache, customer.id, wait=60)
    taker.join(timeout=30)

    assert not taker.is_alive()  # no second wait
    assert got == [None]


def test_an_aggregate_never_cached_is_not_waited_for() -> None:
    cache = AggregateCache(max_size=10)
    taker, got = _take_in_thread(cache, uuid4(), wait=60)
    taker.join(timeout=30)
    assert not taker.is_alive()
    assert got == [None]


def test_a_refused_command_leaves_nothing_for_a_read_to_wait_for(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    """A refusal drops the copy it decided on; the executor says so, so nobody waits for it."""
    app = make_accord(clock=clock)
    customer_id = new_customer(app)
    with pytest.raises(DomainError):
        app.customers.change_tier(
            c.ChangeTier(customer_id=customer_id, to_tier="STANDARD", reason="already"), CTX
        )

    taker, got = _take_in_thread(app.executor.cache, customer_id, wait=60)
    taker.join(timeout=30)

    assert not taker.is_alive()
    assert got == [None]


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_a_consent_check_on_cached_aggregates_is_one_read_of_the_store(
    make_accord: AccordFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both copies brought up to date, the head and the consent's position: one statement."""
    app = make_accord(clock=clock)
    partner_id = active_partner(app, clock.now())
    customer_id = new_customer(app)
    granted = app.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    categories = (DataCategory.IDENTITY,)
    app.compliance.check_consent(customer_id, partner_id, Purpose.JOINT_SERVICE, categories)
    recorder = app.log.recorder
    assert isinstance(recorder, AccordPostgresRecorder)
    datastore = recorder.datastore
    checkout = datastore.get_connection
    checkouts: list[None] = []

    def counted() -> object:
        checkouts.append(None)
        return checkout()

    monkeypatch.setattr(datastore, "get_connection", counted)
    check = app.compliance.check_consent(customer_id, partner_id, Purpose.JOINT_SERVICE, categories)
    monkeypatch.undo()

    assert check.allowed
    assert len(checkouts) == 1
    [evidence] = check.evidence
    assert evidence.granted_position == granted.position
    assert check.position == log_position(app)


def test_a_consent_recorded_elsewhere_since_the_copy_was_cached_is_cited_at_its_position(
    make_accord: AccordFactory, clock: FakeClock
) -> None:
    here, elsewhere = make_accord(clock=clock), make_accord(clock=clock)
    partner_id = active_partner(here, clock.now())
    customer_id = new_customer(here)
    categories = (DataCategory.IDENTITY,)
    before = here.compliance.check_consent(
        customer_id, partner_id, Purpose.JOINT_SERVICE, categories
    )
    assert not before.allowed  # and both copies are cached here now

    granted = elsewhere.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    clock.advance(seconds=1)
    check = here.compliance.check_consent(
        customer_id, partner_id, Purpose.JOINT_SERVICE, categories
    )

    assert check.allowed
    [evidence] = check.evidence
    assert evidence.consent.consent_id == granted.entity_id
    assert evidence.granted_position == granted.position
    assert check.position == log_position(here)


class _HeldRead:
    """The first read of the log waits until released: a round trip in flight, held open."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, journal: object) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.reads = 0
        real = journal.read_current  # type: ignore[attr-defined]

        def held(*args: object) -> object:
            self.reads += 1
            if self.reads == 1:
                self.started.set()
                assert self.release.wait(timeout=30)
            return real(*args)

        monkeypatch.setattr(journal, "read_current", held)


def test_a_check_holds_no_copy_while_its_read_is_in_flight(
    make_accord: AccordFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second check on the same partner takes its cached copy, not a load from the store."""
    app = make_accord(clock=clock)
    partner_id = active_partner(app, clock.now())
    first_customer, second_customer = new_customer(app), new_customer(app)
    for customer_id in (first_customer, second_customer):
        app.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    categories = (DataCategory.IDENTITY,)
    loads: list[UUID] = []
    load = app.log.load

    def counted(aggregate_id: UUID, **kwargs: object) -> Aggregate:
        loads.append(aggregate_id)
        return load(aggregate_id, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(app.log, "load", counted)
    read = _HeldRead(monkeypatch, app.log.journal)
    checks: list[bool] = []

    def check(customer_id: UUID) -> None:
        result = app.compliance.check_consent(
            customer_id, partner_id, Purpose.JOINT_SERVICE, categories
        )
        checks.append(result.allowed)

    first = threading.Thread(target=check, args=(first_customer,))
    first.start()
    assert read.started.wait(timeout=30)
    check(second_customer)  # while the first check's read is in flight
    read.release.set()
    first.join(timeout=30)

    assert checks == [True, True]
    assert loads == []  # the partner's copy was there to take, not lent to the first


def test_a_copy_changed_during_a_checks_read_is_read_again(
    make_accord: AccordFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A withdrawal recorded here while the check's read is in flight, on the copy the check
    gave back for it: the check answers from the changed copy and says it reflects the
    withdrawal's position (an answer and its position always agree)."""
    app = make_accord(clock=clock)
    partner_id = active_partner(app, clock.now())
    customer_id = new_customer(app)
    consent = app.customers.grant_consent(grant(customer_id, partner_id, clock.now()), CTX)
    assert consent.entity_id is not None
    categories = (DataCategory.IDENTITY,)
    read = _HeldRead(monkeypatch, app.log.journal)
    checks: list[Any] = []

    def check() -> None:
        checks.append(
            app.compliance.check_consent(customer_id, partner_id, Purpose.JOINT_SERVICE, categories)
        )

    checker = threading.Thread(target=check)
    checker.start()
    assert read.started.wait(timeout=30)
    clock.advance(seconds=1)
    withdrawn = app.customers.withdraw_consent(
        c.WithdrawConsent(customer_id=customer_id, consent_id=consent.entity_id, channel="APP"),
        CTX,
    )
    read.release.set()
    checker.join(timeout=30)

    [result] = checks
    assert not result.allowed
    assert result.position >= withdrawn.position  # the check reflects what it saw
    assert read.reads == 2  # read again, holding the copies this time
