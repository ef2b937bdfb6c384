"""``accord rebuild``: read models rebuilt in one pass over the log, on several cores.

One process can rebuild every read model in one pass (``ProjectionRunner.
rebuild_many``: each event read and decoded once), but that pass is bound to
one core, and decoding is most of it. So the read models are split in two
groups that cost about the same and share no work: those that need events
decoded (folded in this process, which decodes each event once for all of
them), and those that fold events as stored (the audit trail: hashing and
summarising stored bytes, no decode), rebuilt by a worker process at the same
time. Each group is an ordinary ``rebuild_many`` with its own tracking, so
exactly-once, switching over at the head and resuming after an interruption
work per read model as they do in one process; the result equals a rebuild
in one process (a test compares them).

Only PostgreSQL takes concurrent writers; on SQLite everything runs here. The
worker is spawned (never forked: this process has pool threads), opens its
own connections, stops after the batch in hand when this process is asked
to stop (or dies), and reports its peak memory so callers can account for it.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as ProcessEvent

import structlog

from adapters.logging import configure_logging
from adapters.store import StoreConfig, store_config
from adapters.wiring import build_accord, build_read_models
from application.personal_data import MasterKey
from application.service import Accord
from projections.projection import Projection, StoredProjection
from projections.read_models import ReadModels
from projections.runner import Progress

logger = structlog.get_logger(__name__)

REPORT_SECONDS = 0.2
"""How often a worker publishes its progress (and checks whether it should stop)."""
REBUILD_BATCH = 5000
"""Events a rebuild reads, folds and commits at a time (``accord rebuild --batch-size``).

A batch carries fixed costs in each rebuilding process: several round trips
to commit it (the tracking move, the documents, the audit trail's entries,
the commit), a read of the log's head, a load of the batch's documents. At
a million events, 5,000 a batch rebuilt 19% faster than 2,000 for 20 MB
more (docs/performance.md, "Notes on target 4"); a follower keeps small
batches (``accord project``, 500), which make its read models current
sooner."""
BULK_GC_THRESHOLD = 200_000
"""Allocations (net of frees) between the collector's youngest-generation runs."""


def plan(projections: Sequence[Projection], workers: int) -> list[list[str]]:
    """The read models each process rebuilds: the decoding ones here, the others beside.

    Read models that need decoded events stay together (the decode is shared
    by all of them); read models that fold stored events go to a worker.
    One group when there is one worker, or nothing to split.
    """
    decoding = [p.name for p in projections if not isinstance(p, StoredProjection)]
    stored = [p.name for p in projections if isinstance(p, StoredProjection)]
    groups = [group for group in (decoding, stored) if group]
    if workers < 2 or len(groups) < 2:
        return [[p.name for p in projections]]
    return groups


def default_workers() -> int:
    return min(2, os.cpu_count() or 1)


@dataclass
class Rebuilt:
    """What a rebuild did: the new generations, and the workers' peak memory."""

    generations: dict[str, int]
    worker_peak_rss_kb: list[int]


def rebuild(
    app: Accord,
    config: StoreConfig,
    read_models: ReadModels,
    names: Sequence[str],
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Rebuilt | None:
    """Rebuild ``names`` beside their serving copies; None if stopped part way.

    A stopped rebuild leaves every read model resumable: running it again
    carries on from where each one stopped.
    """
    with _bulk_collection():
        return _rebuild(app, config, read_models, names, workers, progress, stop)


@contextmanager
def _bulk_collection() -> Iterator[None]:
    """The garbage collector tuned for a long pass that frees almost all it allocates.

    With the default thresholds the collector ran every few hundred events and
    kept rescanning the documents the runner holds from batch to batch: a
    sixth of a rebuild's time at a million events. Objects alive at the start
    (modules, the application) are set aside for the duration; collections
    still run (each after 200,000 allocations net of frees: a batch's worth
    or so, which made a twentieth of the pass's CPU at 20,000), so memory
    stays bounded.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(BULK_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _rebuild(
    app: Accord,
    config: StoreConfig,
    read_models: ReadModels,
    names: Sequence[str],
    workers: int | None,
    progress: Progress | None,
    stop: threading.Event | None,
) -> Rebuilt | None:
    runner = read_models.runner
    progress = progress or Progress(", ".join(names))
    stop = stop or threading.Event()
    if config.kind != "postgres":
        workers = 1
    groups = plan([runner.projections[n] for n in names], workers or default_workers())
    if len(groups) == 1:
        done = runner.rebuild_many(groups[0], progress, stop)
        return None if done is None else Rebuilt(done, [])
    context = multiprocessing.get_context("spawn")
    halt = context.Event()
    children = [
        _Child.start(context, app, config, runner.batch_size, group, halt) for group in groups[1:]
    ]
    own = Progress(progress.name)
    watching = threading.Event()
    watching.set()
    watcher = threading.Thread(
        target=_watch, args=(own, children, progress, stop, halt, watching), daemon=True
    )
    watcher.start()
    try:
        done = runner.rebuild_many(groups[0], own, stop)
        for child in children:
            while not child.collect():
                time.sleep(REPORT_SECONDS / 4)
    finally:
        halt.set()  # a worker still going (this process failed) stops after its batch
        watching.clear()
        watcher.join()
        for child in children:
            child.close()
    _merge(own, children, progress)
    for child in children:
        if child.failure is not None:
            raise RuntimeError(child.failure)
    if done is None or any(child.done is None for child in children):
        return None
    generations = dict(done)
    peaks = []
    for child in children:
        assert child.done is not None
        generations.update(child.done[0])
        peaks.append(child.done[1])
    return Rebuilt(generations, peaks)


def _watch(
    own: Progress,
    children: list[_Child],
    progress: Progress,
    stop: threading.Event,
    halt: ProcessEvent,
    watching: threading.Event,
) -> None:
    """Pass a stop on to the workers, hear how they ended, keep ``progress`` everyone's.

    A worker that fails stops the others and this process too (after the
    batch in hand), rather than letting them finish work the failure voids.
    """
    while watching.is_set():
        if stop.is_set():
            halt.set()
        for child in children:
            if child.collect() and child.failure is not None:
                stop.set()
                halt.set()
        _merge(own, children, progress)
        time.sleep(REPORT_SECONDS)


def _merge(own: Progress, children: list[_Child], progress: Progress) -> None:
    progress.head = max([own.head, *(c.head.value for c in children)])
    progress.position = min([own.position, *(c.position.value for c in children)])
    progress.events = own.events + sum(c.events.value for c in children)


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    results: Connection
    head: Synchronized[int]
    position: Synchronized[int]
    events: Synchronized[int]
    ended: threading.Event = field(default_factory=threading.Event)
    done: tuple[dict[str, int], int] | None = None
    """Its generations and peak RSS (KiB); None if it stopped part way or failed."""
    failure: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(
        cls,
        context: multiprocessing.context.SpawnContext,
        app: Accord,
        config: StoreConfig,
        batch_size: int,
        names: list[str],
        halt: ProcessEvent,
    ) -> _Child:
        receive, send = context.Pipe(duplex=False)
        head, position, events = (context.Value("q", 0) for _ in range(3))
        process = context.Process(
            target=_work,
            args=(
                config.url,
                app.log.vault.master.to_base64(),
                names,
                batch_size,
                halt,
                os.getpid(),
                send,
                (head, position, events),
            ),
            name=f"accord-rebuild-{'-'.join(names)}",
            daemon=True,
        )
        process.start()
        send.close()
        return cls(process, receive, head, position, events)

    def collect(self) -> bool:
        """Take the worker's outcome if it has ended; whether it has."""
        with self.lock:
            return self._collect()

    def _collect(self) -> bool:
        if self.ended.is_set():
            return True
        try:
            if not self.results.poll():
                if self.process.is_alive() or self.results.poll():
                    return False
                raise EOFError
            outcome = self.results.recv()
        except EOFError:
            outcome = ("error", f"died (exit code {self.process.exitcode})")
        if outcome[0] == "error":
            self.failure = f"the rebuild worker {self.process.name} failed: {outcome[1]}"
        else:
            self.done = outcome[1]
        self.ended.set()
        return True

    def close(self) -> None:
        self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.results.close()


def _peak_rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _work(
    url: str,
    master_key: str,
    names: list[str],
    batch_size: int,
    halt: ProcessEvent,
    parent: int,
    results: Connection,
    shared: tuple[Synchronized[int], Synchronized[int], Synchronized[int]],
) -> None:
    """The worker: rebuild ``names`` as the parent would, reporting progress as it goes."""
    # The parent decides when to stop (a Ctrl-C reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging()
    try:
        config = store_config(url)
        with build_accord(config, master_key=MasterKey.from_base64(master_key)) as app:
            read_models = build_read_models(app, config, batch_size=batch_size)
            progress = Progress(", ".join(names))
            stop = threading.Event()
            reporter = threading.Thread(
                target=_report, args=(progress, shared, halt, parent, stop), daemon=True
            )
            reporter.start()
            try:
                with _bulk_collection():
                    done = read_models.runner.rebuild_many(names, progress, stop)
            finally:
                stop.set()
                reporter.join()
        results.send(("done", None if done is None else (done, _peak_rss_kb())))
    except Exception as error:
        logger.exception("projection_rebuild_worker_failed", projections=names)
        results.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        results.close()


def _report(
    progress: Progress,
    shared: tuple[Synchronized[int], Synchronized[int], Synchronized[int]],
    halt: ProcessEvent,
    parent: int,
    stop: threading.Event,
) -> None:
    head, position, events = shared
    while True:
        head.value, position.value, events.value = progress.head, progress.position, progress.events
        if halt.is_set() or os.getppid() != parent:
            stop.set()  # asked to stop, or orphaned: finish the batch in hand and stop
        if stop.wait(REPORT_SECONDS):
            head.value, position.value, events.value = (
                progress.head,
                progress.position,
                progress.events,
            )
            return
