"""The `accord` client subcommands, run as real processes against a real server.

Data is recorded over the wire with the harness's clients; every read the
command makes passes the last write's position as ``--min-position`` (or, for
`customers show`, the state's own position), so asserting right away is
legitimate. The module's server is shared and its tests run one after another,
so "the events from my first write on" are exactly this test's events.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.grpc.generated.accord.v1 import customer_pb2
from tests.e2e.harness import ROOT, Client, Served, serve
from tests.e2e.test_security import _issue, _key_pem, _pem
from tests.e2e.wire import (
    TIMEOUT,
    active_partner,
    grant,
    purchase,
    register_customer,
    register_partner,
)
from tests.support import sqlite_store

SEGMENTS = [
    "NEW",
    "PROMISING",
    "POTENTIAL_LOYALIST",
    "CHAMPIONS",
    "LOYAL",
    "NEED_ATTENTION",
    "ABOUT_TO_SLEEP",
    "HIBERNATING",
    "AT_RISK",
    "CANNOT_LOSE_THEM",
    "LOST",
]
STAGES = ["PROSPECT", "NEW", "ACTIVE", "LOYAL", "REACTIVATED", "AT_RISK", "CHURNED"]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines()]


def _env(token: str | None) -> dict[str, str]:
    """This process's environment without client settings (or COLUMNS: piped output is wide)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("ACCORD_TOKEN", "ACCORD_SERVER", "COLUMNS")
    }
    env["PYTHONPATH"] = str(ROOT)
    if token is not None:
        env["ACCORD_TOKEN"] = token
    return env


def _checked(done: Run, secrets: tuple[str, ...]) -> Run:
    """No stack trace ever, and no token in anything the command printed."""
    assert "Traceback" not in done.err, done.err
    for secret in secrets:
        assert secret not in done.out
        assert secret not in done.err
    return done


@dataclass(frozen=True)
class Command:
    """``accord ARGS --server SERVER``, ``token`` in $ACCORD_TOKEN (``flag``: in ``--token``)."""

    args: tuple[str, ...]
    server: str
    token: str | None = None
    flag: bool = False

    def start(self) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "adapters.cli", *self.args, "--server", self.server]
        if self.flag and self.token is not None:
            command += ["--token", self.token]
        return subprocess.Popen(
            command,
            env=_env(None if self.flag else self.token),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def run(*commands: Command) -> list[Run]:
    """The commands' outcomes; they run side by side (a process start costs about a second)."""
    started = [(command, command.start()) for command in commands]
    try:
        results = []
        for command, process in started:
            out, err = process.communicate(timeout=60)
            secrets = (command.token,) if command.token else ()
            results.append(_checked(Run(process.returncode, out, err), secrets))
        return results
    finally:
        for _, process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def accord(*args: str, server: str, token: str | None = None, flag: bool = False) -> Command:
    return Command(args, server, token, flag)


@pytest.fixture(scope="module")
def writer(served: Served) -> Client:
    return served.client("writer")


def cli(served: Served, *args: str, role: str = "admin", flag: bool = False) -> Command:
    return accord(*args, server=served.address, token=served.tokens[role], flag=flag)


# ------------------------------------------------------------- consent check


def test_consent_check_exits_0_with_evidence_then_1_once_the_consent_is_withdrawn(
    served: Served, writer: Client
) -> None:
    partner_id, agreement_id = active_partner(writer)
    customer_id = register_customer(writer).customer_id
    granted = grant(writer, customer_id, partner_id)
    words = (
        "consent",
        "check",
        f"--customer={customer_id}",
        f"--partner={partner_id}",
        "--purpose=marketing",
        "--category=IDENTITY",
        "--category=contact",
    )
    three_days_ago = datetime.now(UTC) - timedelta(days=3)

    allowed, table = run(
        cli(served, *words, "--json", role="compliance"), cli(served, *words, role="compliance")
    )
    withdrawn = writer.customers.WithdrawConsent(
        customer_pb2.WithdrawConsentRequest(
            customer_id=customer_id, consent_id=granted.consent_id, channel="LETTER"
        ),
        timeout=TIMEOUT,
    )
    refused, before = run(
        cli(served, *words, "--json", role="compliance"),
        cli(served, *words, "--json", f"--at={three_days_ago}", role="compliance"),
    )

    assert (allowed.code, allowed.err) == (0, "")
    answer = allowed.json()
    assert answer["allowed"] is True
    assert answer["reasons"] == []
    assert answer["agreement_id"] == agreement_id
    assert [d["category"] for d in answer["category_decisions"]] == ["IDENTITY", "CONTACT"]
    assert all(d["consent_ids"] == [granted.consent_id] for d in answer["category_decisions"])
    assert answer["evidence"] == [
        {
            "consent_id": granted.consent_id,
            "granted_position": granted.position,
            "withdrawn_position": None,
            "status": "IN_EFFECT",
        }
    ]

    assert table.code == 0
    assert table.out.startswith("ALLOWED")
    for text in ("Category", "Consents", "Granted at position", granted.consent_id, "IDENTITY"):
        assert text in table.out
    assert re.search(rf"{granted.consent_id}\s*│\s*IN_EFFECT\s*│\s*{granted.position}\b", table.out)

    assert (refused.code, refused.err) == (1, "")
    answer = refused.json()
    assert answer["allowed"] is False
    assert answer["reasons"] == ["CONSENT_WITHDRAWN"]
    [evidence] = answer["evidence"]
    assert evidence["granted_position"] == granted.position
    assert evidence["withdrawn_position"] == withdrawn.position
    assert evidence["status"] == "WITHDRAWN"

    assert before.code == 1, "three days ago nothing had been recorded: no consent, no partner"
    assert "NO_CONSENT" in before.json()["reasons"]
    assert before.json()["at"].startswith(str(three_days_ago.date()))


# ------------------------------------------------------------------ customers


def test_customers_show_and_list_give_the_stage_and_segment_of_a_buyer(
    served: Served, writer: Client
) -> None:
    name = f"Lost Buyer {uuid4().hex[:8]}"
    customer_id = register_customer(writer, name).customer_id
    bought = purchase(writer, customer_id, "300.00", days_ago=400)  # before the 365-day window
    last = f"--min-position={bought.position}"

    shown, table, first_version, listed, listed_table = run(
        cli(served, "customers", "show", customer_id, "--json", role="reader"),
        cli(served, "customers", "show", customer_id, role="reader"),
        cli(served, "customers", "show", customer_id, "--as-of-version=1", "--json", role="reader"),
        cli(
            served,
            "customers",
            "list",
            "--segment=lost",
            "--lifecycle-stage=CHURNED",
            "--limit=1000",
            "--json",
            last,
            role="reader",
        ),
        cli(served, "customers", "list", "--segment", "LOST", last, role="reader"),
    )

    assert (shown.code, shown.err) == (0, "")
    data = shown.json()
    assert data["customer"]["customer_id"] == customer_id
    assert data["customer"]["display_name"] == name
    assert data["customer"]["purchase_count"] == 1
    assert data["position"] == bought.position
    insight = data["insight"]
    assert insight["lifecycle_stage"] == "CHURNED"
    assert insight["segment"] == "LOST"
    assert insight["recency_days"] == 400
    assert insight["rfm"] is None
    assert insight["clv"] == "0.00"
    assert insight["position"] >= bought.position
    assert [change["stage"] for change in insight["stage_history"]] == [
        "NEW",
        "ACTIVE",
        "AT_RISK",
        "CHURNED",
    ]

    assert table.code == 0
    for text in (customer_id, name, "lifecycle stage", "CHURNED", "segment", "LOST", "CLV"):
        assert text in table.out
    assert "Lifecycle history" in table.out
    assert "AT_RISK" in table.out

    assert first_version.code == 0
    assert first_version.json()["customer"]["version"] == 1
    assert first_version.json()["customer"]["purchase_count"] == 0, "the state right after v1"

    assert (listed.code, listed.err) == (0, "")
    rows = {c["customer_id"]: c for c in listed.json()["customers"]}
    assert customer_id in rows
    assert rows[customer_id]["display_name"] == name
    assert rows[customer_id]["net_purchases"] == {"amount": "300.00", "currency": "CNY"}
    assert {(c["segment"], c["lifecycle_stage"]) for c in rows.values()} == {("LOST", "CHURNED")}
    assert listed.json()["position"] >= bought.position

    assert listed_table.code == 0
    for text in ("Customer", "Name", "Segment", "Stage", customer_id, name):
        assert text in listed_table.out
    assert re.search(
        rf"{customer_id}\s*│\s*{name}\s*│\s*STANDARD\s*│\s*CHURNED\s*│\s*LOST", listed_table.out
    )


def test_customers_list_stops_at_the_limit_and_says_there_is_more(
    served: Served, writer: Client
) -> None:
    last = 0
    for _ in range(3):
        last = register_customer(writer).position

    [limited] = run(
        cli(
            served,
            "customers",
            "list",
            "--limit=2",
            "--json",
            f"--min-position={last}",
            role="reader",
        )
    )

    assert limited.code == 0
    assert len(limited.json()["customers"]) == 2
    assert limited.json()["more"] is True


# ---------------------------------------------------------------- audit tail


def test_audit_tail_lists_exactly_my_events_as_json_lines_and_as_rows(
    served: Served, writer: Client
) -> None:
    registered = register_customer(writer)
    customer_id = registered.customer_id
    bought = purchase(writer, customer_id)
    partner = register_partner(writer)
    mine = [registered.position, bought.position, partner.position]
    since = (f"--from-position={registered.position}", f"--min-position={partner.position}")

    lines, rows, filtered = run(
        cli(served, "audit", "tail", "--json", *since, role="auditor"),
        cli(served, "audit", "tail", "--limit=2", *since, role="auditor"),
        cli(
            served,
            "audit",
            "tail",
            "--json",
            f"--aggregate-id={customer_id}",
            "--event-type=customer.interaction_recorded",
            since[1],
            role="auditor",
        ),
    )

    assert (lines.code, lines.err) == (0, "")
    events = lines.lines()
    assert [e["position"] for e in events] == mine
    assert [e["type"] for e in events] == [
        "customer.registered",
        "customer.interaction_recorded",
        "partner.registered",
    ]
    assert [e["aggregate_id"] for e in events] == [customer_id, customer_id, partner.partner_id]
    assert {e["actor"] for e in events} == {"test-writer"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", e["hash"]) for e in events)
    assert events[1]["payload"]["kind"] == "PURCHASE", "the payload is an object, not a string"

    assert rows.code == 0
    for text in ("Position", "Recorded at", "Type", "Aggregate", "Actor", "Hash"):
        assert text in rows.out
    assert re.search(
        rf"^{mine[0]}\s+\S+ \S+\s+customer\.registered\s+{customer_id}\s+test-writer\s+"
        rf"{events[0]['hash'][:12]}\s*$",
        rows.out,
        re.MULTILINE,
    )
    assert "interaction_recorded" in rows.out
    assert "partner.registered" not in rows.out, "--limit=2 stops after two"

    assert filtered.code == 0
    assert [e["position"] for e in filtered.lines()] == [bought.position]


WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('adapters.cli', run_name='__main__', alter_sys=True)"
)
"""`accord` with Ctrl-C live even if this test was started with SIGINT ignored (a background
shell does that). Set after exec, not in a ``preexec_fn``: forking this multi-threaded
process to run Python before exec let gRPC's fork handlers restart a poller whose file
descriptors the child then closed, and the child aborted now and then."""


def test_audit_tail_follows_new_events_until_interrupted(served: Served, writer: Client) -> None:
    start = register_customer(writer).position + 1
    token = served.tokens["auditor"]
    follower = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WITH_CTRL_C,
            "audit",
            "tail",
            "--follow",
            "--json",
            f"--from-position={start}",
            "--server",
            served.address,
        ],
        env=_env(token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    guard = threading.Timer(30, follower.kill)  # a hung follower fails the test, not the run
    guard.start()
    try:
        assert follower.stdout is not None
        recorded = purchase(writer, register_customer(writer).customer_id)

        def following() -> dict[str, Any]:
            assert follower.stdout is not None
            assert follower.stderr is not None
            line = follower.stdout.readline()
            if not line:  # the follower ended: say how, rather than fail to parse nothing
                follower.wait(timeout=10)
                raise AssertionError(
                    f"the follower ended (exit {follower.returncode}): {follower.stderr.read()}"
                )
            event: dict[str, Any] = json.loads(line)
            return event

        first, second = following(), None
        while first["position"] < recorded.position:  # the registration comes first
            first, second = following(), first
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=20)
    finally:
        guard.cancel()

    assert second is not None
    assert second["type"] == "customer.registered"
    assert first["position"] == recorded.position
    assert first["type"] == "customer.interaction_recorded"
    assert follower.returncode == 130
    _checked(Run(follower.returncode, out, err), (token,))


# ------------------------------------------------------------ roles and errors


def test_roles_tokens_and_server_errors_are_one_line_on_stderr(
    served: Served, writer: Client
) -> None:
    wrong = f"not-a-token-{uuid4().hex}"

    denied, unknown, anonymous, bad_type, missing = run(
        cli(served, "audit", "tail", "--from-position=1", role="reader", flag=True),
        accord("segments", server=served.address, token=wrong),
        accord("funnel", server=served.address),
        cli(
            served,
            "audit",
            "tail",
            "--from-position=1",
            "--event-type=no.such_type",
            role="auditor",
        ),
        cli(served, "partners", "scorecard", str(uuid4()), role="reader"),
    )

    assert (denied.code, denied.out) == (2, "")
    assert denied.err.count("\n") == 1
    assert denied.err.startswith("accord: PERMISSION_DENIED: ")
    assert "ReadEvents" in denied.err
    for refused in (unknown, anonymous):
        assert (refused.code, refused.out) == (2, "")
        assert refused.err.startswith("accord: UNAUTHENTICATED: ")
        assert refused.err.count("\n") == 1
    assert bad_type.code == 2
    assert bad_type.err == "accord: INVALID_ARGUMENT: types[0]: not a known event type\n"
    assert missing.code == 2
    assert missing.err.startswith("accord: NOT_FOUND: partner ")


def test_a_server_that_is_not_there_is_exit_3_in_one_line() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    secret = f"secret-{uuid4().hex}"

    [done] = run(accord("stats", "--timeout=5", server=address, token=secret, flag=True))

    assert (done.code, done.out) == (3, "")
    assert done.err.startswith(f"accord: the server is not reachable at {address} (UNAVAILABLE")
    assert done.err.count("\n") == 1


def test_bad_input_is_refused_before_any_call() -> None:
    nowhere = "127.0.0.1:1"  # any call would be "not reachable", exit 3

    bad_id, bad_date, bad_segment, no_category, bad_token = run(
        accord("customers", "show", "not-a-uuid", server=nowhere),
        accord("funnel", "--as-of=2025-02-30", server=nowhere),
        accord("customers", "list", "--segment=famous", server=nowhere),
        accord("consent", "check", f"--customer={uuid4()}", "--partner", str(uuid4()),
               "--purpose=support", server=nowhere),
        accord("segments", server=nowhere, token="t\u00f6ken"),
    )  # fmt: skip

    for refused in (bad_id, bad_date, bad_segment, no_category):
        assert (refused.code, refused.out) == (2, "")
        assert "usage: accord" in refused.err
        assert "not reachable" not in refused.err
    assert "not a UUID: 'not-a-uuid'" in bad_id.err
    assert "not an ISO 8601 date" in bad_date.err
    assert "choose from NEW, PROMISING" in bad_segment.err
    assert "--category" in no_category.err
    assert (bad_token.code, bad_token.out) == (2, "")
    assert bad_token.err == "accord: the token (--token or $ACCORD_TOKEN) is not printable ASCII\n"


# ------------------------------------------------- scorecard, segments, funnel


def test_partner_scorecard_segments_and_funnel(served: Served, writer: Client) -> None:
    partner_id, agreement_id = active_partner(writer)
    lost = register_customer(writer).customer_id
    last = purchase(writer, lost, "10.00", days_ago=400).position
    position = f"--min-position={last}"

    card, card_table, segments, funnel = run(
        cli(served, "partners", "scorecard", partner_id, "--json", position, role="reader"),
        cli(served, "partners", "scorecard", partner_id, position, role="reader"),
        cli(served, "segments", "--json", position, role="reader"),
        cli(served, "funnel", "--as-of=2001-01-01", role="reader"),
    )

    assert card.code == 0
    scorecard = card.json()["scorecard"]
    assert scorecard["partner_id"] == partner_id
    assert scorecard["name"] == "Partner Co"
    assert scorecard["status"] == "ACTIVE"
    assert scorecard["active_agreement_ids"] == [agreement_id]
    assert scorecard["evaluation"]["strength"] == 80
    assert scorecard["weighted_score"] is not None

    assert card_table.code == 0
    for text in ("Partner Co", "ACTIVE", "Agreements", agreement_id, "DATA_SHARING"):
        assert text in card_table.out

    assert segments.code == 0
    counts = segments.json()["segments"]
    assert [s["segment"] for s in counts] == SEGMENTS
    assert {s["segment"]: s["customers"] for s in counts}["LOST"] >= 1
    assert segments.json()["position"] >= last

    assert funnel.code == 0, funnel.err
    for stage in STAGES:  # the table names every stage; nobody was known in 2001
        assert re.search(rf"│ {stage}\s+│ 0\s+│", funnel.out), stage
    assert re.search(r"│ total\s+│ 0\s+│", funnel.out)
    assert "as of 2001-01-01" in funnel.out


def test_stats_counts_what_was_just_recorded(served: Served, writer: Client) -> None:
    earlier = register_partner(writer).position  # every write before this test's, too
    [before] = run(cli(served, "stats", "--json", f"--min-position={earlier}", role="auditor"))
    register_partner(writer)
    last = register_customer(writer).position

    [after] = run(cli(served, "stats", f"--min-position={last}", role="auditor"))

    assert before.code == 0
    was = before.json()
    assert was["customers"] == sum(was["funnel"].values())
    assert list(was["segments"]) == SEGMENTS
    assert after.code == 0, after.err
    for text in ("log position", "Segments as of", "Lifecycle funnel as of", "PROSPECT"):
        assert text in after.out
    numbers = {
        name: int(found.group(1))
        for name in ("log position", "customers", "partners")
        if (found := re.search(rf"│ {name}\s+│ (\d+)", after.out))
    }
    assert numbers["customers"] == was["customers"] + 1
    assert numbers["partners"] == was["partners"] + 1
    assert numbers["log position"] >= last > was["position"]


# ------------------------------------------------------------------------ TLS


def test_tls_with_the_servers_ca_works_and_plaintext_to_it_does_not(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Accord Test CA", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ca.pem").write_bytes(_pem(ca))
    (tmp_path / "server.pem").write_bytes(_pem(_issue("localhost", server_key, (ca, ca_key))))
    (tmp_path / "server.key").write_bytes(_key_pem(server_key))
    server = serve(
        sqlite_store(tmp_path),
        tmp_path / "srv",
        "--tls-cert",
        str(tmp_path / "server.pem"),
        "--tls-key",
        str(tmp_path / "server.key"),
    )
    try:
        token = server.tokens["reader"]
        secure, plain, no_ca = run(
            accord("funnel", "--json", f"--tls-ca={tmp_path / 'ca.pem'}", server=server.address,
                   token=token),
            accord("funnel", "--timeout=5", server=server.address, token=token),
            accord("funnel", f"--tls-ca={tmp_path / 'nope.pem'}", server=server.address),
        )  # fmt: skip
    finally:
        server.stop()

    assert secure.code == 0, secure.err
    assert [s["stage"] for s in secure.json()["stages"]] == STAGES
    assert plain.code == 3
    assert "not reachable" in plain.err
    assert no_ca.code == 2
    assert "cannot read" in no_ca.err
