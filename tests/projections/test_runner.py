"""The projection runner on real stores: exactly once, blue/green, read-your-writes."""

from __future__ import annotations

import threading
from typing import ClassVar
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification

from application import commands as c
from application.service import Accord
from domain.events import DomainEvent
from domain.personal import ERASED
from projections import audit_trail, customer_summary
from projections.catalog import all_projections
from projections.customer_summary import CustomerSummary
from projections.projection import (
    BatchProjection,
    BodyProjection,
    StoredProjection,
    folds_batches,
    folds_bodies,
    folds_stored,
)
from projections.read_models import NotCaughtUpError
from projections.store import Docs
from tests.builders import CTX, log_position, new_customer, purchase
from tests.conftest import ReadModelsFactory
from tests.support import FakeClock


def _busy_customer(accord: Accord, clock: FakeClock, purchases: int = 5) -> str:
    customer_id = new_customer(accord, display_name="Lakeside Trading")
    for i in range(purchases):
        accord.customers.record_interaction(purchase(customer_id, f"{10 + i}", clock.now()), CTX)
    return str(customer_id)


def test_catching_up_applies_every_event_once(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    customer_id = _busy_customer(accord, clock)
    views = make_read_models(accord, batch_size=2)

    applied = views.runner.catch_up()

    assert applied > 0
    assert views.runner.catch_up() == 0
    with views.read("customer_summary") as reader:
        doc = customer_summary.get(reader, customer_id, views.reveal)
        assert reader.position == log_position(accord)
    assert doc is not None
    assert (doc["purchases"], doc["net_purchases"]) == (5, "60")
    assert doc["display_name"] == "Lakeside Trading"


def test_two_workers_racing_never_apply_a_batch_twice(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    customer_id = _busy_customer(accord, clock, purchases=30)
    workers = [make_read_models(accord, batch_size=3) for _ in range(2)]
    start = threading.Barrier(2)

    def work(index: int) -> None:
        start.wait()
        workers[index].runner.catch_up()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with workers[0].read("customer_summary") as reader:
        doc = customer_summary.get(reader, customer_id, workers[0].reveal)
    assert doc is not None
    assert doc["purchases"] == 30
    assert doc["interactions"] == 30


def test_the_views_hold_personal_data_only_sealed_and_wipe_it_on_erasure(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    customer_id = _busy_customer(accord, clock, purchases=1)
    views = make_read_models(accord)
    views.runner.catch_up()
    with views.read("customer_summary") as reader:
        raw = reader.get("customer", customer_id)
    assert raw is not None
    assert raw["display_name"].startswith("sealed:v1:")

    accord.customers.erase(c.EraseCustomerData(customer_id=customer_id, reason="request"), CTX)
    views.runner.catch_up()
    with views.read("customer_summary") as reader:
        erased = reader.get("customer", customer_id)
        revealed = customer_summary.get(reader, customer_id, views.reveal)
    assert erased is not None
    assert revealed is not None
    assert (erased["display_name"], revealed["display_name"], erased["erased"]) == (
        ERASED,
        ERASED,
        True,
    )

    views.runner.rebuild("customer_summary")
    with views.read("customer_summary") as reader:
        rebuilt = reader.get("customer", customer_id)
    assert rebuilt is not None
    assert rebuilt["display_name"] == ERASED


def test_a_rebuild_is_built_beside_the_serving_copy_and_takes_over_at_the_head(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    customer_id = _busy_customer(accord, clock, purchases=6)
    views = make_read_models(accord, batch_size=2)
    views.runner.catch_up()
    with views.read("customer_summary") as reader:
        before = reader.get("customer", customer_id)
    seen_during: list[int | None] = []

    class Observed(CustomerSummary):
        """The same fold, reporting what the serving copy answers mid-rebuild."""

        def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
            with views.read("customer_summary") as serving:
                doc = serving.get("customer", customer_id)
                seen_during.append(doc["purchases"] if doc else None)
            super().apply(event, notification, docs)

    views.runner.projections["customer_summary"] = Observed()
    generation = views.runner.rebuild("customer_summary")

    assert generation == 2
    assert set(seen_during) == {6}  # the old copy served, complete, all along
    with views.read("customer_summary") as reader:
        assert reader.get("customer", customer_id) == before
        assert reader.position == log_position(accord)
    assert views.views.state("customer_summary") == (2, CustomerSummary.version)
    assert views.views.position("customer_summary", 1) is None  # the old copy is dropped


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "one-by-one"])
def test_events_recorded_during_a_rebuild_are_in_it_when_it_switches_over(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory, pipelined: bool
) -> None:
    customer_id = _busy_customer(accord, clock, purchases=6)
    views = make_read_models(accord, batch_size=2)
    views.runner.catch_up()
    views.runner.pipelined = pipelined
    recorded: list[int] = []

    class Busy(CustomerSummary):
        """The same fold; while it rebuilds, three more purchases are recorded."""

        def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
            if not recorded:
                for amount in ("1", "2", "3"):
                    accord.customers.record_interaction(
                        purchase(UUID(customer_id), amount, clock.now()), CTX
                    )
                recorded.append(log_position(accord))
            super().apply(event, notification, docs)

    views.runner.projections["customer_summary"] = Busy()
    assert views.runner.rebuild("customer_summary") == 2

    with views.read("customer_summary") as reader:
        summary = reader.get("customer", customer_id)
        assert reader.position == log_position(accord) == recorded[0]
    assert summary is not None
    assert summary["purchases"] == 9


def test_a_new_projection_version_is_rebuilt_on_start(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _busy_customer(accord, clock)
    views = make_read_models(accord)
    views.runner.catch_up()

    class NextVersion(CustomerSummary):
        version: ClassVar[int] = CustomerSummary.version + 1

    upgraded = make_read_models(accord, [NextVersion(), audit_trail.AuditTrail()])
    assert upgraded.runner.rebuild_outdated() == ["customer_summary"]
    assert upgraded.views.state("customer_summary") == (2, NextVersion.version)


def test_reads_wait_for_the_callers_position_within_a_bound(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    views = make_read_models(accord)
    customer_id = new_customer(accord)
    written = accord.customers.record_interaction(purchase(customer_id, "5", clock.now()), CTX)

    with (
        pytest.raises(NotCaughtUpError) as late,
        views.read("customer_summary", min_position=written.position, timeout=0.2),
    ):
        pass
    assert late.value.wanted == written.position

    views.start()
    with views.read("customer_summary", min_position=written.position, timeout=10) as reader:
        doc = customer_summary.get(reader, str(customer_id), views.reveal)
        assert reader.position >= written.position
    assert doc is not None
    assert doc["purchases"] == 1


def test_a_follower_whose_store_fails_at_start_keeps_trying_and_then_follows(
    accord: Accord,
    clock: FakeClock,
    make_read_models: ReadModelsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer_id = _busy_customer(accord, clock)
    views = make_read_models(accord)
    real = views.runner.rebuild_outdated
    failures = [OSError("the store is down")]

    def flaky(names: object = None) -> list[str]:
        if failures:
            raise failures.pop()
        return real(names)  # type: ignore[arg-type]

    monkeypatch.setattr(views.runner, "rebuild_outdated", flaky)
    stop = threading.Event()
    follower = threading.Thread(target=views.runner.follow, args=(stop,), kwargs={"idle_wait": 0.1})
    follower.start()
    try:
        caught_up = views.runner.wait_for("customer_summary", log_position(accord), 15.0)
    finally:
        stop.set()
        follower.join(timeout=15)

    assert not failures  # the failing start was tried ...
    assert caught_up  # ... and the worker carried on to follow the log
    with views.read("customer_summary") as reader:
        assert customer_summary.get(reader, customer_id, views.reveal) is not None


def test_the_runners_kind_checks_agree_with_the_protocols() -> None:
    """Worked out once per class, they must say what ``isinstance`` says of every read model."""
    projections = list(all_projections())
    for _ in range(2):  # the second time from what the first worked out
        for projection in projections:
            assert folds_stored(projection) == isinstance(projection, StoredProjection)
            assert folds_batches(projection) == isinstance(projection, BatchProjection)
            assert folds_bodies(projection) == isinstance(projection, BodyProjection)
    assert any(folds_batches(p) for p in projections)
    assert any(folds_bodies(p) for p in projections)
    assert not all(folds_stored(p) for p in projections)
