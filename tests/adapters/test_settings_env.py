"""Settings read from the environment (the composition root's only source besides defaults)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.wiring import settings_from_env


def test_defaults_when_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACCORD_SNAPSHOT_INTERVAL", "ACCORD_BASE_CURRENCY", "ACCORD_AGGREGATE_CACHE"):
        monkeypatch.delenv(name, raising=False)
    settings = settings_from_env()
    assert (settings.snapshot_interval, settings.aggregate_cache_size) == (20, 10_000)


def test_the_aggregate_cache_can_be_sized_or_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCORD_AGGREGATE_CACHE", "0")
    assert settings_from_env().aggregate_cache_size == 0
    monkeypatch.setenv("ACCORD_AGGREGATE_CACHE", "-1")
    with pytest.raises(ValidationError, match="aggregate_cache_size"):
        settings_from_env()


def test_the_command_linger_can_be_set_or_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCORD_COMMAND_LINGER_US", raising=False)
    assert settings_from_env().command_linger_us == 1_000
    monkeypatch.setenv("ACCORD_COMMAND_LINGER_US", "0")
    assert settings_from_env().command_linger_us == 0
    monkeypatch.setenv("ACCORD_COMMAND_LINGER_US", "100001")
    with pytest.raises(ValidationError, match="command_linger_us"):
        settings_from_env()
