"""PostgreSQL specifics of following the log: LISTEN/NOTIFY wake-ups, one active worker each."""

from __future__ import annotations

import threading
import time

from adapters.store import StoreConfig
from adapters.wiring import build_accord, build_read_models
from application.personal_data import MasterKey
from tests.builders import CTX, register_customer


def test_a_waiting_worker_is_woken_by_the_next_recorded_event(
    postgres: StoreConfig, master_key: MasterKey
) -> None:
    with build_accord(postgres, master_key=master_key) as app:
        views = build_read_models(app, postgres)
        views.views.wait_for_events(0.1)  # connects and LISTENs
        woken = threading.Event()

        def wait() -> None:
            views.views.wait_for_events(60.0)
            woken.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        app.customers.register(register_customer(), CTX)

        assert woken.wait(20.0), "the NOTIFY of the insert did not wake the listener"


def test_only_one_worker_at_a_time_holds_a_read_model(
    postgres: StoreConfig, master_key: MasterKey
) -> None:
    with (
        build_accord(postgres, master_key=master_key) as first_app,
        build_accord(postgres, master_key=master_key) as second_app,
    ):
        first = build_read_models(first_app, postgres)
        second = build_read_models(second_app, postgres)

        with first.views.exclusive("segments") as held:
            assert held
            with second.views.exclusive("segments") as also:
                assert not also
            with second.views.exclusive("lifecycle") as other:
                assert other  # locks are per read model
        with second.views.exclusive("segments") as now_free:
            assert now_free


def test_a_follower_whose_postgres_refuses_connections_waits_instead_of_spinning(
    postgres: StoreConfig, master_key: MasterKey
) -> None:
    # A refused connection fails at once; a follower with nothing to do would loop on it.
    with build_accord(postgres, master_key=master_key) as app:
        views = build_read_models(app, postgres)
        views.views.conninfo = "host=127.0.0.1 port=1 dbname=none connect_timeout=1"  # type: ignore[attr-defined]

        started = time.monotonic()
        views.views.wait_for_events(0.5)

        assert time.monotonic() - started >= 0.45
