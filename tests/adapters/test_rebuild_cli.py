"""`accord rebuild` stopped by SIGINT and run again ends where an uninterrupted rebuild does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from adapters.store import StoreConfig
from adapters.wiring import build_accord, build_read_models
from application.personal_data import MasterKey
from projections.catalog import all_projections
from projections.read_models import ReadModels
from projections.store import Doc
from tests.builders import bulk_purchases
from tests.conftest import AccordFactory

ROOT = Path(__file__).parents[2]
NAME = "customer_summary"


def _command(store: StoreConfig, key: MasterKey, *args: str) -> list[str]:
    return [sys.executable, "-m", "adapters.cli", "--database-url", store.url, *args]


def _rebuild(
    store: StoreConfig, key: MasterKey, cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``accord rebuild ARGS`` to completion."""
    return subprocess.run(
        _command(store, key, "rebuild", *args),
        cwd=cwd,
        env=_env(key),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _started(store: StoreConfig, key: MasterKey, cwd: Path, *args: str) -> subprocess.Popen[str]:
    """``accord rebuild ARGS`` started, to be interrupted."""
    return subprocess.Popen(
        _command(store, key, "rebuild", *args),
        cwd=cwd,
        env=_env(key),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _env(key: MasterKey) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "ACCORD_MASTER_KEY": key.to_base64(),
        "ACCORD_LOG_FORMAT": "json",
    }


def test_an_interrupted_rebuild_resumes_and_ends_equal_to_an_uninterrupted_one(
    store: StoreConfig, make_accord: AccordFactory, master_key: MasterKey, tmp_path: Path
) -> None:
    app = make_accord()
    bulk_purchases(app, customers=40, per_customer=30, now=datetime.now(UTC))
    views = build_read_models(app, store)
    views.runner.catch_up()
    serving, _ = views.views.state(NAME) or (0, 0)

    process = _started(store, master_key, tmp_path, NAME, "--batch-size", "5")
    deadline = time.monotonic() + 60
    while (views.views.position(NAME, serving + 1) or 0) < 100:
        assert process.poll() is None, "the rebuild ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "resume" in err
    paused_at = views.views.position(NAME, serving + 1) or 0
    head = app.log.recorder.max_notification_id() or 0
    assert 0 < paused_at < head
    assert views.views.state(NAME) == (serving, 1), "the serving copy stays in place"

    resumed = _rebuild(store, master_key, tmp_path, NAME, "--batch-size", "500")
    assert resumed.returncode == 0, resumed.stderr
    generation = json.loads(resumed.stdout)["generation"]
    assert generation == serving + 1
    after_resume = views.views.dump(NAME, generation)

    again = views.runner.rebuild(NAME)
    assert again is not None
    assert again == generation + 1
    assert views.views.dump(NAME, again) == after_resume


def _dumps(views: ReadModels) -> dict[str, dict[tuple[str, str], tuple[str | None, Doc]]]:
    out = {}
    for name in views.runner.projections:
        generation, _ = views.views.state(name) or (0, 0)
        out[name] = views.views.dump(name, generation)
    return out


def test_rebuilding_every_read_model_in_one_command_ends_where_following_the_log_does(
    store: StoreConfig, make_accord: AccordFactory, master_key: MasterKey, tmp_path: Path
) -> None:
    app = make_accord()
    bulk_purchases(app, customers=12, per_customer=20, now=datetime.now(UTC))
    views = build_read_models(app, store)
    views.runner.catch_up()
    followed = _dumps(views)

    done = _rebuild(store, master_key, tmp_path, "--all", "--batch-size", "50")

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["name"] for line in lines] == [p.name for p in all_projections()]
    assert all(line["generation"] == 2 for line in lines)
    assert _dumps(views) == followed


def test_an_interrupted_rebuild_of_every_read_model_resumes_to_the_same_views(
    postgres: StoreConfig, master_key: MasterKey, tmp_path: Path
) -> None:
    with build_accord(postgres, master_key=master_key) as app:
        bulk_purchases(app, customers=40, per_customer=30, now=datetime.now(UTC))
        views = build_read_models(app, postgres)
        views.runner.catch_up()
        followed = _dumps(views)
        serving = {name: views.views.state(name) for name in followed}

        process = _started(postgres, master_key, tmp_path, "--all", "--batch-size", "5")
        deadline = time.monotonic() + 60
        while (views.views.position(NAME, 2) or 0) < 100:
            assert process.poll() is None, "the rebuild ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)  # to the command only: it stops its worker
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "resume" in err
        assert views.views.state(NAME) == serving[NAME], "the serving copy stays in place"

        resumed = _rebuild(postgres, master_key, tmp_path, "--all", "--batch-size", "500")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout.splitlines()[0])["generation"] == 2  # resumed, not anew
        assert _dumps(views) == followed
