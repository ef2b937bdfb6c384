"""`accord export` and `accord verify --export`: an auditor's copy that proves itself."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.export import verify_export
from adapters.store import StoreConfig
from application.personal_data import MasterKey
from application.service import Accord
from tests.builders import CTX, new_customer, purchase
from tests.conftest import AccordFactory

ROOT = Path(__file__).parents[2]


def accord(
    store: StoreConfig, key: MasterKey, *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", "--database-url", store.url, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "ACCORD_MASTER_KEY": key.to_base64(),
            "ACCORD_LOG_FORMAT": "json",
        },
    )


def history(app: Accord, customers: int = 3) -> None:
    for n in range(customers):
        customer_id = new_customer(app, display_name=f"Export Person {n}")
        for _ in range(4):
            app.customers.record_interaction(
                purchase(customer_id, "120.00", datetime(2025, 6, 1, tzinfo=UTC)), CTX
            )


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_export_verifies_offline_and_matches_the_live_digest(
    store: StoreConfig, make_accord: AccordFactory, master_key: MasterKey, tmp_path: Path
) -> None:
    app = make_accord()
    history(app)
    total = app.log.recorder.max_notification_id()
    out = tmp_path / "log.jsonl"

    done = accord(
        store, master_key, "export", "--output", str(out), "--batch-size", "5", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    exported = lines(out)
    assert [e["position"] for e in exported] == list(range(1, (total or 0) + 1))
    assert exported[0]["type"] == "customer.registered"
    assert exported[0]["payload"]["display_name"] == "[redacted]"  # type: ignore[index]
    assert "Export Person" not in out.read_text()  # the stored bodies are sealed too

    offline = accord(store, master_key, "verify", "--export", str(out), cwd=tmp_path)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert json.loads(offline.stdout)["ok"] is True

    digest = json.loads(accord(store, master_key, "digest", cwd=tmp_path).stdout)
    assert (digest["position"], digest["hash"]) == (exported[-1]["position"], exported[-1]["hash"])
    live = accord(
        store,
        master_key,
        "verify",
        "--position",
        str(digest["position"]),
        "--hash",
        digest["hash"],
        cwd=tmp_path,
    )
    assert live.returncode == 0, live.stdout + live.stderr
    assert f"{digest['position']}/{digest['position']}" in live.stderr  # the progress bar
    against = accord(
        store,
        master_key,
        "verify",
        "--export",
        str(out),
        "--position",
        str(digest["position"]),
        "--hash",
        digest["hash"],
        cwd=tmp_path,
    )
    assert json.loads(against.stdout)["ok"] is True


def test_an_edited_line_is_named_by_offline_verification(
    store: StoreConfig, make_accord: AccordFactory, master_key: MasterKey, tmp_path: Path
) -> None:
    history(make_accord(), customers=2)
    out = tmp_path / "log.jsonl"
    assert accord(store, master_key, "export", "--output", str(out), cwd=tmp_path).returncode == 0
    records = lines(out)
    victim = records[4]
    victim["stored"] = str(victim["stored"]).replace('"kind":"PURCHASE"', '"kind":"REFUND"')
    assert victim["stored"] != lines(out)[4]["stored"]
    out.write_text("\n".join(json.dumps(r) for r in records) + "\n")

    checked = accord(store, master_key, "verify", "--export", str(out), cwd=tmp_path)
    assert checked.returncode == 1
    assert json.loads(checked.stdout)["first_mismatch_position"] == victim["position"]

    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("\n".join(json.dumps(r) for r in lines(out)[:2] + lines(out)[3:]) + "\n")
    assert (
        accord(store, master_key, "verify", "--export", str(dropped), cwd=tmp_path).returncode == 1
    )


def test_personal_data_is_exported_only_when_asked(
    store: StoreConfig, make_accord: AccordFactory, master_key: MasterKey, tmp_path: Path
) -> None:
    history(make_accord(), customers=1)
    out = tmp_path / "pii.jsonl"
    done = accord(store, master_key, "export", "--output", str(out), "--include-pii", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert lines(out)[0]["payload"]["display_name"] == "Export Person 0"  # type: ignore[index]


def test_an_interrupted_export_resumes_to_the_same_file(
    store: StoreConfig, make_accord: AccordFactory, master_key: MasterKey, tmp_path: Path
) -> None:
    history(make_accord(), customers=4)
    whole = tmp_path / "whole.jsonl"
    assert accord(store, master_key, "export", "--output", str(whole), cwd=tmp_path).returncode == 0

    # An export cut off mid-line (power loss, kill -9), then run again.
    part = tmp_path / "part.jsonl"
    text = whole.read_text()
    cut = text.index("\n", len(text) // 2) + 25
    part.write_text(text[:cut])
    again = accord(store, master_key, "export", "--output", str(part), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert part.read_text() == text


def test_sigint_stops_an_export_between_batches_and_rerunning_completes_it(
    store: StoreConfig, make_accord: AccordFactory, master_key: MasterKey, tmp_path: Path
) -> None:
    history(make_accord(), customers=30)
    whole = tmp_path / "whole.jsonl"
    assert accord(store, master_key, "export", "--output", str(whole), cwd=tmp_path).returncode == 0

    part = tmp_path / "part.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "--database-url",
            store.url,
            "export",
            "--output",
            str(part),
            "--batch-size",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "ACCORD_MASTER_KEY": master_key.to_base64(),
            "ACCORD_LOG_FORMAT": "json",
        },
    )
    while not part.exists() or part.stat().st_size < 2000:
        assert process.poll() is None, "the export finished before it could be interrupted"
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "resume" in err
    assert part.read_text().endswith("\n")

    again = accord(store, master_key, "export", "--output", str(part), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert part.read_text() == whole.read_text()


def test_readable_fields_that_contradict_the_stored_body_are_named(
    store: StoreConfig, make_accord: AccordFactory, master_key: MasterKey, tmp_path: Path
) -> None:
    # Only the stored body is hashed; the readable copy beside it must agree with it.
    history(make_accord(), customers=1)
    out = tmp_path / "log.jsonl"
    assert accord(store, master_key, "export", "--output", str(out), cwd=tmp_path).returncode == 0
    records: list[Any] = lines(out)
    assert verify_export(out).ok
    assert verify_export(out, position=2).lines == 2

    edits: dict[str, Callable[[dict[str, Any]], None]] = {
        "actor": lambda r: r.update(actor="someone-else"),
        "request_id": lambda r: r.update(request_id="forged"),
        "recorded_at": lambda r: r.update(recorded_at="2020-01-01T00:00:00+00:00"),
        "payload": lambda r: r["payload"].update(amount="1000000"),
        "extra payload field": lambda r: r["payload"].update(note="added"),
        "sealed field replaced by a non-text value": lambda r: r["payload"].update(summary=7),
    }
    purchase_line = next(i for i, r in enumerate(records) if r["payload"].get("amount"))
    for name, edit in edits.items():
        edited = [json.loads(json.dumps(r)) for r in records]
        edit(edited[purchase_line])
        path = tmp_path / f"edited-{name.replace(' ', '-')}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in edited) + "\n")
        result = verify_export(path)
        assert not result.ok, name
        assert result.first_mismatch_position == records[purchase_line]["position"], name
