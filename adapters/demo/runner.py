"""Loading the demo: the story's commands sent through the use cases, on a simulated clock.

Why a simulated clock: the story spans three years, and the domain stamps
every event with the time it is recorded (and refuses consent back-dated
before it, or an interaction that occurs after it). The runner moves the
clock to each step's moment before sending it, so recorded times spread over
the three years the story tells and every time-based invariant holds as it
would have in real life. The story ends before the real now.

Why resuming is safe: every command carries a ``request_id`` made of the
seed, the scale and its step number. A rerun with the same seed and scale
sends the same commands with the same ids; the executor recognises those
already recorded and returns them as replayed without writing anything, so
an interrupted load continues where it stopped. Each command is one
transaction, so an interruption (SIGINT between commands, or even a kill)
never leaves half a command behind.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from adapters.demo.story import SPAN, Step, Story
from adapters.store import StoreConfig
from adapters.wiring import build_accord, settings_from_env
from application import commands as c
from application.context import CallContext
from application.errors import (
    ApplicationError,
    IdempotencyKeyReusedError,
    StoreUnavailableError,
)
from application.personal_data import MasterKey
from application.results import CommandResult, ShareOutcome
from application.service import Accord
from domain.errors import DomainError

DEMO_SNAPSHOT_INTERVAL = 10
"""Snapshot every 10 events while loading, unless ACCORD_SNAPSHOT_INTERVAL says otherwise.

Every command reloads its aggregate, and replaying up to 100 events (the
default interval) per command is most of a load's time; snapshots are only a
cache, so taking them more often changes no answer and halves the load time.
"""


class DemoError(Exception):
    """The demo cannot be loaded into this store; the message says why."""


class SimulatedClock:
    """The application's clock during the load: wherever the story says it is."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment


@dataclass(frozen=True)
class DemoOptions:
    seed: int = 7
    scale: int = 1
    end: datetime | None = None
    """The story's last moment (exclusive); default: the start of today (UTC)."""
    if_empty: bool = False
    """Leave a store alone that holds other events or this demo complete (``make run``)."""
    limit: int | None = None
    """Stop after this many steps, as an interruption would (tests of resuming)."""
    progress: bool = True
    customers: int | None = None
    """Overrides 60 x scale: a small world for tests (at least 9, one per persona)."""


@dataclass(frozen=True)
class DemoSummary:
    customers: int
    partners: int
    steps: int
    """Steps of the story sent in this run (recorded and replayed)."""
    recorded: int
    replayed: int
    shares: int
    refused_shares: int
    log_position: int
    """The log's last position after the run: with one writer, the number of events."""
    elapsed: float
    start: datetime
    end: datetime
    complete: bool
    """False when stopped early (interrupted, or ``limit``); rerun to resume."""
    skipped: bool = False
    """True when ``if_empty`` found events and nothing was loaded."""


def request_id(seed: int, scale: int, step: int) -> str:
    return f"demo-{seed}-{scale}-{step:09d}"


def default_end(now: datetime | None = None) -> datetime:
    """The start of today in UTC: the story ends before the real now, the same all day."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


Handler = Callable[[Any, CallContext], CommandResult | ShareOutcome]


def _handlers(app: Accord) -> dict[type[c.Command], Handler]:
    cu, pa = app.customers, app.partners
    return {
        c.RegisterCustomer: cu.register,
        c.UpdateCustomerProfile: cu.update_profile,
        c.AddContact: cu.add_contact,
        c.RemoveContact: cu.remove_contact,
        c.RecordInteraction: cu.record_interaction,
        c.ChangeTier: cu.change_tier,
        c.GrantConsent: cu.grant_consent,
        c.WithdrawConsent: cu.withdraw_consent,
        c.ShareData: cu.share_data,
        c.EraseCustomerData: cu.erase,
        c.RegisterPartner: pa.register,
        c.EvaluatePartner: pa.evaluate,
        c.SignAgreement: pa.sign_agreement,
        c.TerminateAgreement: pa.terminate_agreement,
        c.ActivatePartner: pa.activate,
        c.SuspendPartner: pa.suspend,
        c.ReinstatePartner: pa.reinstate,
        c.TerminatePartner: pa.terminate,
        c.ReviewPartnerPerformance: pa.review_performance,
        c.ChangePartnerTier: pa.change_tier,
        c.LinkCustomer: pa.link_customer,
        c.UnlinkCustomer: pa.unlink_customer,
    }


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} cmd/s" if speed else "- cmd/s", style="progress.data.speed")


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]accord demo[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


class _SkipError(Exception):
    """``if_empty`` and the store holds something else, or this demo complete: do nothing."""


def _anchor(app: Accord, options: DemoOptions) -> datetime:
    """The story's end: from the first run's first step if resuming, else from the options.

    The story's times (and so the commands' fingerprints) follow from its end,
    so a resumed load must reuse the end of the run it resumes, even days later.
    """
    first = app.log.journal.find_request(request_id(options.seed, options.scale, 0))
    if first is not None:
        return app.log.load(first.record.aggregate_id).created_on + SPAN
    if (app.log.recorder.max_notification_id() or 0) > 0:
        if options.if_empty:
            raise _SkipError
        raise DemoError(
            "the store already holds events that are not this demo (seed "
            f"{options.seed}, scale {options.scale}); load the demo into an empty store"
        )
    return options.end or default_end()


def run_demo(
    config: StoreConfig,
    options: DemoOptions,
    *,
    master_key: MasterKey | None = None,
    stop: threading.Event | None = None,
) -> DemoSummary:
    """Load (or resume loading) the demo data set into the store; see the module docstring.

    With ``if_empty``, a store holding other events, or this demo complete, is
    left alone, while this demo's interrupted load is finished: a ``make run``
    stopped during its first load completes it on the next start.
    """
    started = time.monotonic()
    clock = SimulatedClock(datetime.now(UTC))
    settings = settings_from_env()
    if "ACCORD_SNAPSHOT_INTERVAL" not in os.environ:
        settings = settings.model_copy(update={"snapshot_interval": DEMO_SNAPSHOT_INTERVAL})
    with build_accord(config, settings, clock, master_key) as app:
        try:
            end = _anchor(app, options)
            story = Story(
                options.seed, options.scale, end, app.settings.base_currency, options.customers
            )
            if options.progress:
                print(
                    f"accord demo: planning {len(story.world.customers)} customers and "
                    f"{len(story.world.partners)} partners over three years",
                    file=sys.stderr,
                    flush=True,
                )
            total = sum(1 for _ in Story(*story.args).steps())
            last = app.log.journal.find_request(request_id(options.seed, options.scale, total - 1))
            if options.if_empty and last is not None:
                raise _SkipError
        except _SkipError:
            position = app.log.recorder.max_notification_id() or 0
            return DemoSummary(
                customers=0,
                partners=0,
                steps=0,
                recorded=0,
                replayed=0,
                shares=0,
                refused_shares=0,
                log_position=position,
                elapsed=time.monotonic() - started,
                start=clock.now(),
                end=clock.now(),
                complete=True,
                skipped=True,
            )
        if options.limit is not None:
            total = min(total, options.limit)
        handlers = _handlers(app)
        counts = {"recorded": 0, "replayed": 0, "shares": 0, "refused": 0}
        sent = 0
        complete = True
        with _progress(options.progress) as bar:
            task = bar.add_task("load", total=total)
            for number, step in enumerate(story.steps()):
                if (options.limit is not None and number >= options.limit) or (
                    stop is not None and stop.is_set()
                ):
                    complete = False
                    break
                _send(handlers, clock, step, options, number, counts)
                sent += 1
                bar.advance(task)
        return DemoSummary(
            customers=len(story.world.customers),
            partners=len(story.world.partners),
            steps=sent,
            recorded=counts["recorded"],
            replayed=counts["replayed"],
            shares=counts["shares"],
            refused_shares=counts["refused"],
            log_position=app.log.recorder.max_notification_id() or 0,
            elapsed=time.monotonic() - started,
            start=story.start,
            end=end,
            complete=complete,
        )


def _send(
    handlers: dict[type[c.Command], Handler],
    clock: SimulatedClock,
    step: Step,
    options: DemoOptions,
    number: int,
    counts: dict[str, int],
) -> None:
    """Send one step at its moment; a refusal is a bug in the story, reported as such."""
    key = request_id(options.seed, options.scale, number)
    command = step.command.model_copy(update={"request_id": key})
    ctx = CallContext(actor=step.actor, correlation_id=key)
    clock.set(step.at)
    try:
        outcome = handlers[type(command)](command, ctx)
    except StoreUnavailableError:
        raise
    except IdempotencyKeyReusedError as error:
        raise DemoError(
            f"step {number} was recorded earlier with different content: the store holds a "
            "demo written by another version of the generator; load into an empty store"
        ) from error
    except (DomainError, ApplicationError) as error:
        raise DemoError(
            f"step {number} ({type(command).__name__} at {step.at.isoformat()}) was refused: "
            f"{error}; the story broke an invariant (seed {options.seed}, scale {options.scale})"
        ) from error
    result = outcome.result if isinstance(outcome, ShareOutcome) else outcome
    counts["replayed" if result.replayed else "recorded"] += 1
    if isinstance(outcome, ShareOutcome):
        counts["shares" if outcome.shared else "refused"] += 1
