"""Logs are structured, and personal data never reaches them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import structlog

from adapters.logging import configure_logging
from application import commands as c
from application.service import Accord
from tests.builders import CTX, purchase, register_customer
from tests.support import FakeClock

NAME = "Zhao Xiaoming Trading"
CONTACT = "Qian Wei"
EMAIL = "qian.wei@example.cn"
PHONE = "+86 10 5555 0101"
SUMMARY = "discussed the renewal with Qian Wei"


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    configure_logging("json", "DEBUG")
    yield capsys
    structlog.reset_defaults()


def test_a_full_customer_story_logs_json_lines_without_personal_data(
    accord: Accord, clock: FakeClock, json_logs: pytest.CaptureFixture[str]
) -> None:
    customer_id = accord.customers.register(register_customer(display_name=NAME), CTX).aggregate_id
    contact = accord.customers.add_contact(
        c.AddContact(
            customer_id=customer_id,
            name=CONTACT,
            email=EMAIL,
            phone=PHONE,
            layer="DECISION",
            function="FINANCE",
        ),
        CTX,
    )
    accord.customers.record_interaction(
        purchase(
            customer_id, "10", clock.now() - timedelta(days=1), kind="PURCHASE", summary=SUMMARY
        ),
        CTX,
    )
    accord.customers.update_profile(
        c.UpdateCustomerProfile(customer_id=customer_id, display_name=NAME + " Ltd"), CTX
    )
    assert contact.entity_id is not None
    structlog.get_logger().info("probe", email=EMAIL, display_name=NAME, amount=str(Decimal(1)))

    lines = [line for line in json_logs.readouterr().err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records].count("command_recorded") == 4
    assert all("timestamp" in r and "level" in r for r in records)
    everything = "\n".join(lines)
    for secret in (NAME, CONTACT, EMAIL, PHONE, SUMMARY, "qian.wei"):
        assert secret not in everything


def test_a_json_line_carries_values_json_cannot_hold_as_text(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    structlog.get_logger().info(
        "probe", thing=Opaque(), by_number={1: "one"}, huge=2**70, city="杭州"
    )

    (line,) = [line for line in json_logs.readouterr().err.splitlines() if line.strip()]
    record = json.loads(line)
    assert record["thing"] == "<opaque>"
    assert record["by_number"] == {"1": "one"}
    assert record["huge"] == 2**70
    assert record["city"] == "杭州"


class _Writes:
    """A stream that keeps each ``write`` call apart, as a pipe or file receives them."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_each_log_line_reaches_stderr_in_one_write_with_its_newline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server and its read-model worker share stderr: a line written in two parts
    # (text, then newline) could have the other process's line land in between.
    stream = _Writes()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("json", "INFO")
    try:
        structlog.get_logger("test").info("command_recorded", position=7)
    finally:
        structlog.reset_defaults()

    (line,) = stream.writes
    assert line.endswith("\n")
    assert json.loads(line)["position"] == 7
