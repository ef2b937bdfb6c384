"""The README's "Try it" commands give meaningful answers on the demo that `make run` loads.

The commands are read from the README itself, so the page and the product
cannot drift apart: a changed id, flag or output fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing

import pytest

from application.personal_data import MasterKey
from tests.e2e.harness import ROOT, Served, serve
from tests.support import sqlite_store


def try_it_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the Try it section shows its commands in a ```sh block"
    lines = [line for line in block.group(1).splitlines() if line.startswith(".venv/bin/accord")]
    return [shlex.split(line)[1:] for line in lines]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The default demo (the one `make run` loads), served without a tokens file."""
    workdir = tmp_path_factory.mktemp("readme")
    store = sqlite_store(workdir)
    key = MasterKey.generate()
    loaded = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "--database-url", store.url, "demo", "--if-empty"],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ACCORD_MASTER_KEY": key.to_base64()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    server = serve(store, workdir, tokens=False, master_key=key)
    yield server
    server.stop()


def run(server: Served, args: list[str]) -> subprocess.CompletedProcess[str]:
    """The command as typed, once the read models have caught up with the whole demo."""
    assert server.store.sqlite_path is not None
    with closing(sqlite3.connect(server.store.sqlite_path)) as db:
        (head,) = db.execute("SELECT max(rowid) FROM stored_events").fetchone()
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args, "--min-position", str(head)],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ACCORD_SERVER": server.address,
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_readme_shows_a_segment_list_a_lifecycle_history_and_a_consent_check() -> None:
    commands = try_it_commands()
    assert [args[:2] for args in commands] == [
        ["customers", "list"],
        ["customers", "show"],
        ["consent", "check"],
    ]


def test_each_readme_command_answers_meaningfully_on_the_demo(demo_server: Served) -> None:
    listing, shown, checked = (run(demo_server, args) for args in try_it_commands())

    assert listing.returncode == 0, listing.stderr
    assert "CHAMPIONS" in listing.stdout
    customer_id = try_it_commands()[1][2]
    assert customer_id in listing.stdout  # the customer the next command shows is a Champion

    assert shown.returncode == 0, shown.stderr
    assert "Lifecycle history" in shown.stdout
    history = shown.stdout.split("Lifecycle history", 1)[1].split("Consents", 1)[0]
    stages = re.findall(r"\b(PROSPECT|NEW|ACTIVE|LOYAL|AT_RISK|CHURNED|REACTIVATED)\b", history)
    assert len(set(stages)) >= 2, "the history shows the customer moving between stages"

    assert checked.returncode == 0, checked.stderr  # allowed
    assert "ALLOWED" in checked.stdout
    assert "IN_EFFECT" in checked.stdout  # the evidence: the consent in effect ...
    assert re.search(r"│ \d+\s+│", checked.stdout), "... and the log position of its grant"
