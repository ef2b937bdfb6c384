"""A retry racing its own first attempt returns the first result, never a refusal.

A creation looks its request id up first; when the first attempt commits just
after that look-up, the retry is refused by the state the first attempt left
(the external reference it claimed is "taken"). An update does not look up
first: it decides and saves, and the first attempt may commit in between, or
before the decision, which is then refused (the tier it set is "unchanged").
Found by ``bench/soak.py`` (two sends of one request at once); here each
interleaving is forced, so it happens every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from application import commands as c
from application.journal import StoredRequest
from application.results import CommandResult
from application.service import Accord
from application.settings import Settings
from tests.builders import CTX, log_position, new_customer, register_customer
from tests.conftest import AccordFactory


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


def race_save(
    accord: Accord, monkeypatch: pytest.MonkeyPatch, first_attempt: Callable[[], CommandResult]
) -> list[CommandResult]:
    """Run ``first_attempt`` to completion between the next decision and its save."""
    log = accord.log
    real = log.save
    done: list[CommandResult] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not done and not racing.busy:  # type: ignore[attr-defined]
            racing.busy = True  # type: ignore[attr-defined]
            done.append(first_attempt())
        return real(*args, **kwargs)

    racing.busy = False  # type: ignore[attr-defined]
    monkeypatch.setattr(log, "save", racing)
    return done


def test_an_update_retry_whose_first_attempt_commits_before_its_save_returns_the_first_result(
    accord: Accord, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer_id = new_customer(accord)
    command = c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="x", request_id="r-1")
    first = race_save(accord, monkeypatch, lambda: accord.customers.change_tier(command, CTX))

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


@pytest.mark.parametrize("cache_size", [0, 100])
def test_an_update_retry_refused_by_its_first_attempts_state_returns_the_first_result(
    make_accord: AccordFactory, cache_size: int
) -> None:
    accord = make_accord(settings=Settings(aggregate_cache_size=cache_size))
    customer_id = new_customer(accord)
    command = c.ChangeTier(customer_id=customer_id, to_tier="KEY", reason="x", request_id="r-1")
    recorded = accord.customers.change_tier(command, CTX)

    retry = accord.customers.change_tier(command, CTX)  # decided on KEY: "unchanged"

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
