"""A projection worker killed mid-batch and restarted loses and double-counts nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from adapters.store import StoreConfig
from application.personal_data import MasterKey
from application.service import Accord
from projections.catalog import all_projections
from tests.builders import bulk_purchases, log_position
from tests.conftest import ReadModelsFactory
from tests.support import FakeClock

ROOT = Path(__file__).parents[2]


def _worker(store: StoreConfig, key: MasterKey, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ACCORD_MASTER_KEY": key.to_base64(),
        "ACCORD_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "--database-url", store.url, "project", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_killed_worker_resumes_and_the_views_equal_a_rebuild(
    accord: Accord,
    clock: FakeClock,
    store: StoreConfig,
    master_key: MasterKey,
    make_read_models: ReadModelsFactory,
) -> None:
    bulk_purchases(accord, customers=100, per_customer=200, now=clock.now())
    head = log_position(accord)
    views = make_read_models(accord)
    views.views.create_tables()
    names = [p.name for p in all_projections()]
    rng = random.Random(7)
    interrupted = 0

    for _ in range(6):
        before = [views.runner.active_position(name) for name in names]
        worker = _worker(store, master_key, "--batch-size", "400")
        # Kill once the worker is seen making progress (its start-up time varies with the
        # machine's load), a random moment into its work.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.poll() is None:
            if [views.runner.active_position(name) for name in names] != before:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        positions = [views.runner.active_position(name) for name in names]
        if any(0 < p < head for p in positions):
            interrupted += 1
        if all(p == head for p in positions):
            break

    finished = _worker(store, master_key, "--once")
    _, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err
    assert interrupted > 0, "no kill landed while the worker was part way through"

    for name in names:
        generation, _ = views.views.state(name) or (0, 0)
        assert views.runner.active_position(name) == head
        live = views.views.dump(name, generation)
        rebuilt_generation = views.runner.rebuild(name)
        assert rebuilt_generation is not None
        assert views.views.dump(name, rebuilt_generation) == live, name
