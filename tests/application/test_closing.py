"""The event log is closed by its owner, never by the garbage collector."""

from __future__ import annotations

import warnings

import pytest

from tests.builders import new_customer
from tests.conftest import AccordFactory


def test_a_forgotten_log_is_reported_and_left_open_by_its_finalizer(
    make_accord: AccordFactory,
) -> None:
    # Closing from a finalizer joins the connection pool's threads, which fails
    # when the collector runs on one of them: the finalizer only warns.
    app = make_accord()

    with pytest.warns(ResourceWarning, match="unclosed"):
        app.log.__del__()

    new_customer(app)  # the store is still open and writable


def test_closing_twice_is_harmless_and_a_closed_log_is_not_reported(
    make_accord: AccordFactory,
) -> None:
    app = make_accord()
    app.close()
    app.close()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.log.__del__()
