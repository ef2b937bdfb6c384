"""The composition root: settings from the environment, the store, the application."""

from __future__ import annotations

import os

from adapters.master_key import load_master_key
from adapters.store import StoreConfig, store_config
from application.clock import Clock
from application.personal_data import MasterKey
from application.service import Accord
from application.settings import Settings


def settings_from_env() -> Settings:
    values: dict[str, object] = {}
    if "ACCORD_SNAPSHOT_INTERVAL" in os.environ:
        values["snapshot_interval"] = int(os.environ["ACCORD_SNAPSHOT_INTERVAL"])
    if "ACCORD_BASE_CURRENCY" in os.environ:
        values["base_currency"] = os.environ["ACCORD_BASE_CURRENCY"]
    return Settings.model_validate(values)


def build_accord(
    config: StoreConfig | None = None,
    settings: Settings | None = None,
    clock: Clock | None = None,
    master_key: MasterKey | None = None,
) -> Accord:
    config = config or store_config()
    return Accord(
        config.env, master_key or load_master_key(config), settings or settings_from_env(), clock
    )
