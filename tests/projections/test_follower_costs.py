"""What a follower pays per batch, which under a trickle of commands is per event.

A follower steps once per wake-up, and under a few hundred commands a second
each step holds an event or two: its fixed costs (finding where each read
model stands, committing each one's share) were most of its work. These
check that those costs stay one read and one statement per kind of write,
and that sharing a statement never lets one read model's failure or lead
change what another writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from adapters.store import StoreConfig
from adapters.wiring import build_accord, build_read_models
from application.personal_data import MasterKey
from application.service import Accord
from projections.store import ENTRY_KIND, Commit, entry_key
from tests.builders import CTX, log_position, new_customer, purchase
from tests.conftest import ReadModelsFactory
from tests.support import FakeClock


@contextmanager
def _counting(target: Any, name: str) -> Iterator[list[Any]]:
    """Calls of ``target.name`` while inside, as their first arguments."""
    calls: list[Any] = []
    original: Callable[..., Any] = getattr(target, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1] if isinstance(target, type) else args[:1])
        return original(*args, **kwargs)

    setattr(target, name, counted)
    try:
        yield calls
    finally:
        setattr(target, name, original)


def test_a_step_finds_where_every_read_model_stands_in_one_read(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    customer = new_customer(accord)
    models = make_read_models(accord)
    models.runner.catch_up()  # every read model started and at the head
    accord.customers.record_interaction(purchase(customer, "12.50", clock.now()), CTX)
    views = models.views

    with (
        _counting(views, "active") as active,
        _counting(views, "state") as state,
        _counting(views, "position") as position,
    ):
        applied = models.runner.step()

    assert applied == len(models.runner.projections)  # the one new event, for each
    assert len(active) == 1
    assert state == position == []
    for name in models.runner.projections:
        assert models.runner.active_position(name) == log_position(accord)


def test_where_read_models_stand_is_their_active_generations_position(
    accord: Accord, make_read_models: ReadModelsFactory
) -> None:
    views = make_read_models(accord).views
    assert views.active() == {}
    views.start("a", 1)
    views.set_active("a", 1, 3)
    views.start("b", 4)  # a generation being built does not count until active
    views.set_active("b", 2, 1)  # an active generation not tracked yet stands at 0
    assert views.commit_all([Commit("a", 1, 0, 9, []), Commit("b", 4, 0, 7, [])]) == [True, True]

    assert views.active() == {"a": (1, 9), "b": (2, 0)}


def test_a_read_model_another_worker_moved_on_writes_nothing_while_the_others_commit(
    accord: Accord, make_read_models: ReadModelsFactory
) -> None:
    views = make_read_models(accord).views
    for name in ("ahead", "stale", "also"):
        views.start(name, 1)
    views.commit_all([Commit("stale", 1, 0, 5, [("c", "kept", None, {"n": 0})])])
    one, two = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"

    outcomes = views.commit_all(
        [
            Commit("ahead", 1, 0, 8, [("c", "x", one, {"n": 1})], [(8, one, '{"e":1}')]),
            Commit(
                "stale",
                1,
                0,  # another worker already took it to 5
                8,
                [("c", "kept", None, None), ("c", "y", two, {"n": 2})],
                [(8, two, '{"e":2}')],
                activate_version=3,
            ),
            Commit("also", 1, 0, 8, [("c", "x", two, {"n": 3})]),
        ]
    )

    assert outcomes == [True, False, True]
    assert views.dump("ahead", 1) == {
        ("c", "x"): (one, {"n": 1}),
        (ENTRY_KIND, entry_key(8)): (one, {"e": 1}),
    }
    assert views.dump("stale", 1) == {("c", "kept"): (None, {"n": 0})}
    assert views.position("stale", 1) == 5
    assert views.state("stale") is None
    assert views.dump("also", 1) == {("c", "x"): (two, {"n": 3})}
    assert views.position("also", 1) == 8


def test_a_commit_for_several_read_models_is_one_statement_per_kind_of_write(
    postgres: StoreConfig, master_key: MasterKey
) -> None:
    with build_accord(postgres, master_key=master_key) as app:
        views = build_read_models(app, postgres).views
        names = [f"model_{i}" for i in range(5)]
        for name in names:
            views.start(name, 1)
            views.commit_all([Commit(name, 1, 0, 1, [("c", "old", None, {"n": 0})])])
        key = "00000000-0000-4000-8000-000000000001"
        commits = [
            Commit(
                name,
                1,
                1,
                2,
                [("c", "old", None, None), ("c", "new", key, {"n": i})],
                [(2, key, f'{{"e":{i}}}')],
            )
            for i, name in enumerate(names)
        ]

        with (
            _counting(psycopg.Cursor, "execute") as statements,
            _counting(psycopg.Cursor, "copy") as copies,
        ):
            assert views.commit_all(commits) == [True] * 5

        # the tracking moves, the documents written, those deleted; the entries
        assert len(statements) == 3
        assert len(copies) == 1
        for i, name in enumerate(names):
            assert views.dump(name, 1) == {
                ("c", "new"): (key, {"n": i}),
                (ENTRY_KIND, entry_key(2)): (key, {"e": i}),
            }
