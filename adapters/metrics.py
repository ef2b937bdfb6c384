"""Prometheus metrics: how fast calls are, how commands end, how far behind the read models are,
and how much concurrent work was shared.

Only this adapter knows about prometheus_client. The application reports
command outcomes through the neutral ``CommandObserver`` port; the gRPC
interceptor reports each call's duration; projection positions and lag are
read from the store at scrape time, so they are right even when another
process (``accord project``) advances the read models. Batching counts are
the coalescers' own counters, read at scrape time: nothing is added to the
path of a command.

Each ``Metrics`` owns its own ``CollectorRegistry`` rather than the library's
global one: two servers in one test process, or a test and the code it
tests, then never share (or double-register) series. Labels are bounded sets
(RPC method names, command type names, status codes, reason codes): never
ids or request content, so nothing personal can reach the metrics store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from application.coalescing import Coalescer
from application.commands import Command
from application.mapper import EventMapper
from domain.events import DomainEvent
from projections.read_models import ReadModels

logger = structlog.get_logger(__name__)

OUTCOMES = ("recorded", "replayed", "refused", "failed")


class CommandCounters:
    """The ``CommandObserver`` that counts: one counter per question an operator asks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "accord_commands",
            "Commands run, by command type and outcome (recorded, replayed, refused, failed)",
            ["command", "outcome"],
            registry=registry,
        )
        self.refusals = Counter(
            "accord_command_refusals",
            "Commands refused, by command type and reason code (or application error)",
            ["command", "reason"],
            registry=registry,
        )
        self.conflicts = Counter(
            "accord_command_conflicts",
            "Optimistic-concurrency conflicts: another writer committed first",
            ["command"],
            registry=registry,
        )
        self.retries = Counter(
            "accord_command_retries",
            "Commands decided again after a conflict",
            ["command"],
            registry=registry,
        )
        self.events_appended = Counter(
            "accord_events_appended", "Events appended to the log", registry=registry
        )

    @staticmethod
    def _name(command: Command) -> str:
        return type(command).__name__

    def recorded(self, command: Command, events: int) -> None:
        self.commands.labels(self._name(command), "recorded").inc()
        self.events_appended.inc(events)

    def replayed(self, command: Command) -> None:
        self.commands.labels(self._name(command), "replayed").inc()

    def refused(self, command: Command, reason: str) -> None:
        self.commands.labels(self._name(command), "refused").inc()
        self.refusals.labels(self._name(command), reason).inc()

    def failed(self, command: Command, error: str) -> None:
        self.commands.labels(self._name(command), "failed").inc()

    def conflict(self, command: Command) -> None:
        self.conflicts.labels(self._name(command)).inc()

    def retry(self, command: Command) -> None:
        self.retries.labels(self._name(command)).inc()


class ProjectionCollector(Collector):
    """Read-model positions and lag, read from the store when Prometheus scrapes.

    Lag in seconds is the age of the oldest event a read model has not yet
    applied (0 when it is caught up): unlike a count of positions it says
    how stale an answer can be, whatever the write rate.
    """

    def __init__(self, read_models: ReadModels, now: Callable[[], datetime]) -> None:
        self.read_models = read_models
        self.now = now
        # Its own decoder, with sealed references: no keys are opened, and the
        # runner's decode counter is left to the runner.
        self.mapper = EventMapper(references=True)

    def describe(self) -> Iterable[Metric]:
        """The names without touching the store (the registry asks at registration)."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        head_gauge, position, lag_positions, lag_seconds = families = self._families()
        runner = self.read_models.runner
        try:
            positions = {name: runner.active_position(name) for name in sorted(runner.projections)}
            head = runner.log.recorder.max_notification_id() or 0
            now = self.now()
            ages: dict[int, float] = {}
            for name, at in positions.items():
                behind = max(0, head - at)
                if behind and at not in ages:
                    ages[at] = self._age_of_next(at, now)
                position.add_metric([name], at)
                lag_positions.add_metric([name], behind)
                lag_seconds.add_metric([name], ages[at] if behind else 0.0)
            head_gauge.add_metric([], head)
        except Exception as error:  # a scrape must not fail because the store is away
            logger.warning("metrics_projection_scrape_failed", error_type=type(error).__name__)
            return []
        return families

    def _age_of_next(self, position: int, now: datetime) -> float:
        """Seconds since the first event after ``position`` was recorded."""
        notifications = self.read_models.log.recorder.select_notifications(
            start=position, limit=1, inclusive_of_start=False
        )
        if not notifications:
            return 0.0
        event = self.mapper.to_domain_event(notifications[0])
        if not isinstance(event, DomainEvent):
            return 0.0
        return max(0.0, (now - event.timestamp).total_seconds())

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("accord_log_head_position", "Position of the last event in the log"),
            GaugeMetricFamily(
                "accord_projection_position",
                "Last log position applied by the read model's active generation",
                labels=["projection"],
            ),
            GaugeMetricFamily(
                "accord_projection_lag_positions",
                "Events recorded but not yet applied by the read model",
                labels=["projection"],
            ),
            GaugeMetricFamily(
                "accord_projection_lag_seconds",
                "Age of the oldest event not yet applied by the read model (0 when caught up)",
                labels=["projection"],
            ),
        )


class BatchCollector(Collector):
    """How many batches each coalescer handled, and how many items they carried.

    ``accord_batched_items_total / accord_batches_total`` is the mean batch
    size: near one, group commit and command coalescing are doing nothing
    (calls arrive one at a time, or the batches alternate between full and
    one); near the number of concurrent callers, they are doing their job.
    ``accord_batches_lingered_total`` counts batches whose leader waited for
    more items (``ACCORD_COMMAND_LINGER_US``).
    """

    def __init__(self, coalescers: Sequence[Coalescer[Any, Any]]) -> None:
        self.coalescers = tuple(coalescers)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        batches, items, lingered = families = self._families()
        for coalescer in self.coalescers:
            # Items before batches: a batch counted in between adds to batches alone,
            # so a scrape may understate the mean size, never overstate it.
            items.add_metric([coalescer.name], coalescer.items)
            batches.add_metric([coalescer.name], coalescer.batches)
            lingered.add_metric([coalescer.name], coalescer.lingered)
        return families

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, ...]:
        return (
            CounterMetricFamily(
                "accord_batches",
                "Batches handled by the coalescer (shared, or one item alone)",
                labels=["coalescer"],
            ),
            CounterMetricFamily(
                "accord_batched_items",
                "Items handled in the coalescer's batches (over accord_batches: the mean size)",
                labels=["coalescer"],
            ),
            CounterMetricFamily(
                "accord_batches_lingered",
                "Batches whose leader waited for more items before writing",
                labels=["coalescer"],
            ),
        )


class Metrics:
    """Every Accord metric, in a registry of its own."""

    def __init__(self, *, process: bool = True) -> None:
        """``process``: also export the process, platform and GC collectors (CPU, memory...)."""
        self.registry = CollectorRegistry()
        if process:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)
        self.rpc_duration = Histogram(
            "accord_rpc_duration_seconds",
            "Time to serve each RPC, by full method name and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.commands = CommandCounters(self.registry)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_duration.labels(method, code).observe(seconds)

    def watch(self, read_models: ReadModels, now: Callable[[], datetime]) -> ProjectionCollector:
        """Report these read models' positions and lag (``now`` is the application's clock)."""
        collector = ProjectionCollector(read_models, now)
        self.registry.register(collector)
        return collector

    def watch_batches(self, coalescers: Sequence[Coalescer[Any, Any]]) -> BatchCollector:
        """Report these coalescers' batches and items (``Accord.coalescers()``)."""
        collector = BatchCollector(coalescers)
        self.registry.register(collector)
        return collector


@dataclass
class MetricsServer:
    """The ``/metrics`` HTTP endpoint, running in a daemon thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (the one the OS picked when asked for port 0)."""
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_metrics_server(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` on ``http://host:port/metrics`` (port 0 picks a free port)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
