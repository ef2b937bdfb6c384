"""A short soak in the suite: concurrent clients, mixed commands, random retries; then the checks.

``bench/soak.py`` is the same soak for minutes (and says what each check
means). Here it runs 15 seconds per store: enough for a few thousand
commands, hundreds of retries of every kind, and the races between a retry
and its own first attempt that a single caller never meets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import Report, soak
from tests.conftest import _require_postgres

CLIENTS = 6
SECONDS = 15.0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_soak_keeps_every_promise(kind: str, tmp_path: Path) -> None:
    if kind == "postgres":
        _require_postgres()

    report: Report = soak(kind, CLIENTS, SECONDS, tmp_path)

    print("\n".join(report.lines()))
    failed = [f"{v.check}: {v.detail}" for v in report.verdicts if not v.ok]
    assert not failed, "\n".join(failed)
    assert len(report.verdicts) == 9
    # The checks had something to check: the mix ran, and every kind of retry happened.
    tally = report.tally
    assert len(tally.acknowledged) >= 300, len(tally.acknowledged)
    assert len({tally.sent[r] for r in tally.acknowledged}) >= 12
    assert tally.refused, "refusals (a tier unchanged, ...) were provoked"
    assert min(tally.concurrent, tally.resends, tally.hasty, tally.other_payload) > 0
    assert tally.replayed > 0
    assert tally.reads > 0
    assert report.events >= len(tally.acknowledged)
