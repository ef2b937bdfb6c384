"""A retry racing its own first attempt returns the first result, never a refusal.

A retry looks its request id up first; when the first attempt commits just
after that look-up, the retry decides against the state the first attempt
left, and is refused by it (the tier it set is "unchanged", the external
reference it claimed is "taken"). Found by ``bench/soak.py`` (two sends of one
request at once); here the interleaving is forced, so it happens every time.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from application import commands as c
from application.journal import StoredRequest
from application.results import CommandResult
from application.service import Accord
from tests.builders import CTX, log_position, new_customer, register_customer


def race(
    accord: Accord, monkeypatch: pytest.MonkeyPatch, first_attempt: Callable[[], CommandResult]
) -> list[CommandResult]:
    """Make the next request look-up miss, then run ``first_attempt`` to completion."""
    journal = accord.log.journal
    real = journal.find_request
    done: list[CommandResult] = []

    def racing(request_id: str) -> StoredRequest | None:
        if done or racing.busy:  # type: ignore[attr-defined]
            return real(request_id)
        racing.busy = True  # type: ignore[attr-defined]
        missed = real(request_id)  # nothing recorded yet...
        done.append(first_attempt())  # ...and now the first attempt commits
        return missed

    racing.busy = False  # type: ignore[attr-defined]
    monkeypatch.setattr(journal, "find_request", racing)
    return done


def test_an_update_retry_refused_by_its_first_attempts_state_returns_the_first_result(
    accord: Accord, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer_id = new_customer(accord)
    command = c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="x", request_id="r-1")
    first = race(accord, monkeypatch, lambda: accord.customers.change_tier(command, CTX))

    retry = accord.customers.change_tier(command, CTX)

    [recorded] = first
    assert not recorded.replayed
    assert retry.replayed
    assert (retry.aggregate_id, retry.version, retry.position) == (
        recorded.aggregate_id,
        recorded.version,
        recorded.position,
    )
    assert log_position(accord) == recorded.position


def test_a_creation_retry_finding_its_own_claim_returns_the_first_result(
    accord: Accord, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = register_customer(request_id="r-2")
    first = race(accord, monkeypatch, lambda: accord.customers.register(command, CTX))

    retry = accord.customers.register(command, CTX)

    [recorded] = first
    assert retry.replayed
    assert (retry.aggregate_id, retry.position) == (recorded.aggregate_id, recorded.position)
    assert log_position(accord) == recorded.position


def test_a_refusal_of_a_request_never_recorded_is_still_a_refusal(accord: Accord) -> None:
    customer_id = new_customer(accord)
    unchanged = c.ChangeTier(
        customer_id=customer_id, to_tier="STANDARD", reason="x", request_id="r-3"
    )
    position = log_position(accord)
    with pytest.raises(Exception, match="already STANDARD"):
        accord.customers.change_tier(unchanged, CTX)
    assert log_position(accord) == position
