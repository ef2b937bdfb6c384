"""The accord command as an operator runs it: a subprocess, real stores."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from adapters.store import StoreConfig
from application.personal_data import MasterKey
from tests.support import POSTGRES_URL


def _accord(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]), **env},
    )


def test_init_prepares_the_store_and_says_where(store: StoreConfig, tmp_path: Path) -> None:
    key = MasterKey.generate().to_base64()
    done = _accord("--database-url", store.url, "init", cwd=tmp_path, ACCORD_MASTER_KEY=key)
    assert done.returncode == 0, done.stderr
    assert "Accord store ready" in done.stdout
    assert store.kind in done.stdout
    assert {
        "accord_requests",
        "accord_claims",
        "accord_data_keys",
        "accord_view_docs",
        "accord_view_tracking",
        "accord_view_state",
    } <= _tables(store)


def _tables(store: StoreConfig) -> set[str]:
    if store.sqlite_path is not None:
        with sqlite3.connect(store.sqlite_path) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {name for (name,) in rows}
    with psycopg.connect(POSTGRES_URL) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (store.env["POSTGRES_SCHEMA"],),
        ).fetchall()
    return {name for (name,) in rows}


def test_on_sqlite_a_master_key_file_is_made_on_first_run_for_the_owner_only(
    tmp_path: Path,
) -> None:
    done = _accord("--database-url", f"sqlite:///{tmp_path}/a.db", "init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key_file = tmp_path / "accord.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_text()

    again = _accord("--database-url", f"sqlite:///{tmp_path}/a.db", "init", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert key_file.read_text() == first


def test_postgres_without_a_master_key_refuses_to_start_and_says_why(
    postgres: StoreConfig, tmp_path: Path
) -> None:
    done = _accord("--database-url", postgres.url, "init", cwd=tmp_path)
    assert done.returncode == 2
    assert "ACCORD_MASTER_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_master_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "accord.key"
    key_file.write_text(MasterKey.generate().to_base64())
    key_file.chmod(0o644)
    done = _accord("--database-url", f"sqlite:///{tmp_path}/a.db", "init", cwd=tmp_path)
    assert done.returncode == 2
    assert "chmod 600" in done.stderr


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    done = _accord(
        "--database-url",
        "postgresql://crm:hunter2@127.0.0.1:1/accord?connect_timeout=1",
        "init",
        cwd=tmp_path,
        ACCORD_MASTER_KEY=MasterKey.generate().to_base64(),
    )
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert "event store" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_a_malformed_database_url_is_refused_clearly(tmp_path: Path) -> None:
    done = _accord("--database-url", "mongodb://x", "init", cwd=tmp_path)
    assert done.returncode == 2
    assert "must start with sqlite:/// or postgresql://" in done.stderr


def test_rebuilding_an_unknown_read_model_names_the_choices(tmp_path: Path) -> None:
    done = _accord("--database-url", f"sqlite:///{tmp_path}/a.db", "rebuild", "nope", cwd=tmp_path)
    assert done.returncode == 2
    assert "no read model 'nope'" in done.stderr
    assert "segments" in done.stderr
    assert not (tmp_path / "a.db").exists()  # refused before the store was opened


@pytest.mark.parametrize(
    "command",
    [["rebuild", "--all"], ["project", "--once"], ["export", "--output", "out.jsonl"]],
    ids=["rebuild", "project", "export"],
)
@pytest.mark.parametrize("size", ["0", "-3"])
def test_a_batch_size_below_one_is_refused_before_the_store_is_opened(
    tmp_path: Path, command: list[str], size: str
) -> None:
    """A rebuild in batches of none never reached the head; a negative size read the
    whole log at once."""
    database = tmp_path / "a.db"
    done = _accord(
        "--database-url", f"sqlite:///{database}", *command, "--batch-size", size, cwd=tmp_path
    )
    assert done.returncode == 2
    assert "--batch-size: must be at least 1" in done.stderr
    assert not database.exists()


def test_a_rebuild_reads_and_commits_in_batches_of_the_rebuild_size_unless_told() -> None:
    from adapters.cli import build_parser
    from adapters.rebuild import REBUILD_BATCH

    assert build_parser().parse_args(["rebuild", "--all"]).batch_size == REBUILD_BATCH
    assert build_parser().parse_args(["rebuild", "--all", "--batch-size", "7"]).batch_size == 7
    assert build_parser().parse_args(["project"]).batch_size == 500


def test_tokens_add_takes_roles_in_one_flag_or_repeated() -> None:
    from adapters.cli import build_parser

    base = ["tokens", "add", "--tokens-file", "t.toml", "--principal", "p", "--role"]
    assert build_parser().parse_args([*base, "writer", "reader"]).role == ["writer", "reader"]
    repeated = build_parser().parse_args([*base, "writer", "--role", "auditor"])
    assert repeated.role == ["writer", "auditor"]


def test_verify_takes_the_hash_in_either_case() -> None:
    from adapters.cli import build_parser

    upper = build_parser().parse_args(["verify", "--position", "3", "--hash", "AB" * 32])
    assert upper.hash == "ab" * 32


def test_verify_refuses_a_hash_that_is_not_64_hex_digits(tmp_path: Path) -> None:
    done = _accord("verify", "--position", "3", "--hash", "xyz", cwd=tmp_path)
    assert done.returncode == 2
    assert "64 hex digits" in done.stderr
