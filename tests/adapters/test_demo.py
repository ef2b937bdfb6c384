"""`accord demo`: deterministic, realistic, resumable, on a SQLite file and on PostgreSQL.

The full default data set is loaded once, through the real command on a
SQLite file as `make run` does, and the coverage tests read it (the story does
not depend on the store). The tests of determinism and resuming load a small
world, whole, on both stores, so every kind of command also runs on
PostgreSQL; the file stays fast.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from adapters.demo import DemoError, DemoOptions, run_demo
from adapters.demo.story import SHOWCASE, SHOWCASE_PARTNER, Story, stable_id
from adapters.store import StoreConfig
from adapters.wiring import build_accord, build_read_models
from application.commands import GrantConsent, RecordInteraction, WithdrawConsent
from application.personal_data import MasterKey
from application.service import Accord
from application.settings import Settings
from domain.customer import (
    CLOCK_TOLERANCE,
    ConsentWithdrawn,
    ContactAdded,
    DataShared,
    DataShareRefused,
    InteractionRecorded,
    PersonalDataErased,
    TierChanged,
)
from domain.events import DomainEvent
from domain.partner import (
    PartnerActivated,
    PartnerEvaluated,
    PartnerPerformanceReviewed,
    PartnerRegistered,
    PartnerReinstated,
    PartnerSuspended,
    PartnerTerminated,
    PartnerTierChanged,
)
from domain.values import ContactFunction, ContactLayer, InteractionKind, PartnerKind
from projections import lifecycle, segments
from tests.builders import CTX, register_customer
from tests.support import postgres_schema, postgres_store, sqlite_store

ROOT = Path(__file__).parents[2]
END = datetime(2026, 3, 1, tzinfo=UTC)
SMALL = 12
"""Customers in the small world of the determinism and resume tests."""

LogEntry = tuple[str, UUID, int]


def _open(config: StoreConfig, key: MasterKey) -> Accord:
    return build_accord(config, Settings(), None, key)


def _log(config: StoreConfig, key: MasterKey) -> list[LogEntry]:
    with _open(config, key) as app:
        notifications = app.log.recorder.select_notifications(start=1, limit=10**7)
    return [(n.topic, UUID(str(n.originator_id)), n.originator_version) for n in notifications]


def _events(app: Accord) -> list[DomainEvent]:
    notifications = app.log.recorder.select_notifications(start=1, limit=10**7)
    events: list[DomainEvent] = []
    for notification in notifications:
        event = app.log.mapper.to_domain_event(notification)
        assert isinstance(event, DomainEvent)
        events.append(event)
    return events


@contextmanager
def _another_store(kind: str, directory: Path) -> Iterator[StoreConfig]:
    """A second empty store of the same kind as the test's."""
    if kind == "sqlite":
        directory.mkdir()
        yield sqlite_store(directory)
        return
    with postgres_schema() as schema:
        yield postgres_store(schema)


def _small(**options: object) -> DemoOptions:
    return DemoOptions(end=END, customers=SMALL, progress=False, **options)  # type: ignore[arg-type]


# --------------------------------------------------------------- the story


def test_the_same_seed_tells_the_same_story_and_another_seed_another() -> None:
    def commands(seed: int) -> list[str]:
        return [
            s.at.isoformat() + s.actor + s.command.model_dump_json()
            for s in Story(seed, 1, END, "CNY", SMALL).steps()
        ]

    first = commands(7)
    assert first == commands(7)
    assert first != commands(8)


def test_the_story_runs_in_time_order_over_three_years_and_ends_before_its_end() -> None:
    steps = list(Story(7, 1, END, "CNY").steps())
    times = [s.at for s in steps]
    assert times == sorted(times)
    assert times[0] == END - timedelta(days=1096)
    assert END - timedelta(days=30) < times[-1] < END


# ------------------------------------------------ determinism and resuming


def test_an_interrupted_load_resumed_gives_the_same_log_as_an_uninterrupted_one(
    store: StoreConfig, master_key: MasterKey, tmp_path: Path
) -> None:
    whole = run_demo(store, _small(), master_key=master_key)
    assert whole.complete
    assert whole.recorded == whole.steps
    expected = _log(store, master_key)
    assert len(expected) == whole.log_position == whole.steps

    with _another_store(store.kind, tmp_path / "other") as other:
        stopped = run_demo(other, _small(limit=150), master_key=master_key)
        assert not stopped.complete
        assert stopped.recorded == 150
        assert _log(other, master_key) == expected[:150]

        resumed = run_demo(other, _small(), master_key=master_key)
        assert resumed.complete
        assert resumed.replayed == 150
        assert resumed.recorded == whole.steps - 150
        assert _log(other, master_key) == expected  # same topics, ids, versions, in order


def test_if_empty_finishes_an_interrupted_demo_and_then_does_nothing(
    store: StoreConfig, master_key: MasterKey
) -> None:
    run_demo(store, _small(limit=5), master_key=master_key)
    finished = run_demo(store, _small(if_empty=True), master_key=master_key)
    assert finished.complete
    assert not finished.skipped
    assert finished.replayed == 5
    events = len(_log(store, master_key))

    again = run_demo(store, _small(if_empty=True), master_key=master_key)
    assert again.skipped
    assert again.recorded == again.replayed == 0
    assert len(_log(store, master_key)) == events


def test_if_empty_leaves_a_store_with_other_data_alone(
    store: StoreConfig, master_key: MasterKey
) -> None:
    with _open(store, master_key) as app:
        app.customers.register(register_customer(), CTX)
    skipped = run_demo(store, _small(if_empty=True), master_key=master_key)
    assert skipped.skipped
    assert len(_log(store, master_key)) == 1


def test_the_demo_refuses_a_store_that_holds_other_data(
    store: StoreConfig, master_key: MasterKey
) -> None:
    with _open(store, master_key) as app:
        app.customers.register(register_customer(), CTX)
    with pytest.raises(DemoError, match="not this demo"):
        run_demo(store, _small(), master_key=master_key)
    assert len(_log(store, master_key)) == 1


# ------------------------------------------------ the full default data set


@dataclass(frozen=True)
class Loaded:
    config: StoreConfig
    key: MasterKey
    output: str


def _accord(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """The default data set (scale 1), loaded by `accord demo` in a subprocess."""
    key = MasterKey.generate()
    directory = tmp_path_factory.mktemp("demo")
    config = sqlite_store(directory)
    done = _accord(
        "--database-url",
        config.url,
        "demo",
        "--scale",
        "1",
        cwd=directory,
        ACCORD_MASTER_KEY=key.to_base64(),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return Loaded(config, key, done.stdout)


def test_the_command_loads_the_default_data_set_and_sums_it_up(loaded: Loaded) -> None:
    assert "Accord demo loaded into" in loaded.output
    assert "60 customers, 8 partners" in loaded.output
    with _open(loaded.config, loaded.key) as app:
        events = app.log.recorder.max_notification_id() or 0
    assert events > 2000
    assert f"{events} events" in loaded.output


def test_the_command_with_if_empty_leaves_a_loaded_store_alone(loaded: Loaded) -> None:
    with _open(loaded.config, loaded.key) as app:
        before = app.log.recorder.max_notification_id()
    done = _accord(
        "--database-url",
        loaded.config.url,
        "demo",
        "--if-empty",
        cwd=ROOT,
        ACCORD_MASTER_KEY=loaded.key.to_base64(),
    )
    assert done.returncode == 0, done.stderr
    assert "nothing loaded" in done.stdout
    with _open(loaded.config, loaded.key) as app:
        assert app.log.recorder.max_notification_id() == before


def test_the_data_set_covers_what_a_real_business_records(loaded: Loaded) -> None:
    with _open(loaded.config, loaded.key) as app:
        events = _events(app)
    kinds = Counter(type(e).__name__ for e in events)
    assert {e.kind for e in events if isinstance(e, PartnerRegistered)} == set(PartnerKind)
    contacts = [e for e in events if isinstance(e, ContactAdded)]
    assert {c.layer for c in contacts} == set(ContactLayer)
    assert {c.function for c in contacts} == set(ContactFunction)
    interactions = [e for e in events if isinstance(e, InteractionRecorded)]
    assert {i.kind for i in interactions} == set(InteractionKind)
    assert all(i.occurred_at <= i.timestamp + CLOCK_TOLERANCE for i in interactions)
    for name in (
        "PartnerEvaluated",
        "AgreementSigned",
        "PartnerActivated",
        "PartnerPerformanceReviewed",
        "PartnerSuspended",
        "PartnerReinstated",
        "PartnerTerminated",
        "PartnerTierChanged",
        "CustomerLinked",
        "ConsentGranted",
        "ConsentWithdrawn",
        "DataShared",
        "DataShareRefused",
        "TierChanged",
        "CustomerProfileUpdated",
        "ContactRemoved",
        "PersonalDataErased",
    ):
        assert kinds[name] >= 1, name
    assert kinds["DataShared"] > kinds["DataShareRefused"] > 0
    late = [e for e in events if isinstance(e, ConsentWithdrawn) and e.expressed_at < e.timestamp]
    assert late, "at least one withdrawal that reached us after the customer expressed it"
    assert kinds["PartnerEvaluated"] > kinds["PartnerRegistered"]  # re-evaluations too
    assert {PartnerEvaluated, PartnerActivated, PartnerPerformanceReviewed} <= {
        type(e) for e in events
    }
    assert {PartnerSuspended, PartnerReinstated, PartnerTerminated, PartnerTierChanged} <= {
        type(e) for e in events
    }
    assert any(isinstance(e, TierChanged) for e in events)
    assert any(isinstance(e, PersonalDataErased) for e in events)
    times = [e.timestamp for e in events]
    assert max(times) - min(times) >= timedelta(days=int(2.5 * 365))
    assert max(times) <= datetime.now(UTC)


def test_the_data_set_answers_the_readme_questions(loaded: Loaded) -> None:
    """Segments with Champions, lifecycle histories, consent checks allowed and refused."""
    with _open(loaded.config, loaded.key) as app:
        views = build_read_models(app, loaded.config)
        try:
            views.runner.catch_up()
            today = datetime.now(UTC).date()
            with views.read(segments.NAME) as reader:
                counts = segments.summary(reader, today)
            with views.read(lifecycle.NAME) as reader:
                funnel = lifecycle.funnel(reader, today)
                histories = [
                    lifecycle.history(reader, key, today) for key, _ in reader.scan(lifecycle.KIND)
                ]
        finally:
            views.stop()
        events = _events(app)
        shared = next(e for e in reversed(events) if isinstance(e, DataShared))
        refused = next(e for e in reversed(events) if isinstance(e, DataShareRefused))
        allowed = app.compliance.check_consent(
            shared.originator_id,
            shared.partner_id,
            shared.purpose,
            shared.data_categories,
            at=shared.timestamp,
        )
        denied = app.compliance.check_consent(
            refused.originator_id,
            refused.partner_id,
            refused.purpose,
            refused.data_categories,
            at=refused.timestamp,
        )
    assert counts["Champions"] >= 1
    assert sum(1 for n in counts.values() if n) >= 5
    assert sum(1 for n in funnel.values() if n) >= 5
    assert max(len({stage for _, stage in h}) for h in histories) >= 4
    assert allowed.allowed
    assert allowed.evidence
    assert not denied.allowed


@pytest.mark.parametrize("days_later", [0, 45, 137, 290])
def test_the_readme_customer_buys_lately_and_consents_to_marketing_whatever_the_day(
    days_later: int,
) -> None:
    """The README's commands name fixed ids; the story keeps them meaningful on any day."""
    end = datetime(2026, 11, 30, 12, tzinfo=UTC) + timedelta(days=days_later)
    customer_id = stable_id(7, "customer", SHOWCASE)
    partner_id = stable_id(7, "partner", SHOWCASE_PARTNER)
    purchases: list[datetime] = []
    grants: list[UUID] = []
    withdrawn: set[UUID] = set()
    for step in Story(7, 1, end, "CNY").steps():
        command = step.command
        if getattr(command, "customer_id", None) != customer_id:
            continue
        if isinstance(command, RecordInteraction) and command.kind == "PURCHASE":
            purchases.append(command.occurred_at)
        if isinstance(command, GrantConsent) and command.partner_id == partner_id:
            assert command.purpose == "MARKETING"
            assert "CONTACT" in command.data_categories
            assert command.consent_id is not None  # the story chooses every id
            if command.expires_at is None or command.expires_at > end:
                grants.append(command.consent_id)
        if isinstance(command, WithdrawConsent):
            withdrawn.add(command.consent_id)

    assert max(purchases) > end - timedelta(days=4)
    assert len([p for p in purchases if p > end - timedelta(days=21)]) >= 3
    assert set(grants) - withdrawn, "a MARKETING consent to the showcase partner stays in effect"
