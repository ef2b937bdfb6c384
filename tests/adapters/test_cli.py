"""The accord command as an operator runs it: a subprocess, real stores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from adapters.store import StoreConfig


def _accord(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def test_init_prepares_the_store_and_says_where(store: StoreConfig, tmp_path: Path) -> None:
    done = _accord("--database-url", store.url, "init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Accord store ready" in done.stdout
    assert store.kind in done.stdout


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    done = _accord(
        "--database-url",
        "postgresql://crm:hunter2@127.0.0.1:1/accord?connect_timeout=1",
        "init",
        cwd=tmp_path,
    )
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert "event store" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_a_malformed_database_url_is_refused_clearly(tmp_path: Path) -> None:
    done = _accord("--database-url", "mongodb://x", "init", cwd=tmp_path)
    assert done.returncode == 2
    assert "must start with sqlite:/// or postgresql://" in done.stderr
