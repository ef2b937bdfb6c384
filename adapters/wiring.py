"""The composition root: settings from the environment, the store, the application."""

from __future__ import annotations

import os
from collections.abc import Sequence

from psycopg.conninfo import make_conninfo

from adapters.master_key import load_master_key
from adapters.postgres.recorder import AccordPostgresRecorder
from adapters.postgres.views import PostgresViewStore
from adapters.sqlite.recorder import AccordSQLiteRecorder
from adapters.sqlite.views import SQLiteViewStore
from adapters.store import StoreConfig, store_config
from application.clock import Clock
from application.observer import CommandObserver
from application.personal_data import MasterKey
from application.service import Accord
from application.settings import Settings
from projections.catalog import all_projections
from projections.projection import Projection
from projections.read_models import ReadModels
from projections.store import ViewStore


def settings_from_env() -> Settings:
    values: dict[str, object] = {}
    if "ACCORD_SNAPSHOT_INTERVAL" in os.environ:
        values["snapshot_interval"] = int(os.environ["ACCORD_SNAPSHOT_INTERVAL"])
    if "ACCORD_BASE_CURRENCY" in os.environ:
        values["base_currency"] = os.environ["ACCORD_BASE_CURRENCY"]
    if "ACCORD_AGGREGATE_CACHE" in os.environ:
        values["aggregate_cache_size"] = int(os.environ["ACCORD_AGGREGATE_CACHE"])
    if "ACCORD_COMMAND_BATCH" in os.environ:
        values["command_batch"] = int(os.environ["ACCORD_COMMAND_BATCH"])
    if "ACCORD_COMMAND_LINGER_US" in os.environ:
        values["command_linger_us"] = int(os.environ["ACCORD_COMMAND_LINGER_US"])
    return Settings.model_validate(values)


def build_accord(
    config: StoreConfig | None = None,
    settings: Settings | None = None,
    clock: Clock | None = None,
    master_key: MasterKey | None = None,
    *,
    observer: CommandObserver | None = None,
) -> Accord:
    config = config or store_config()
    return Accord(
        config.env,
        master_key or load_master_key(config),
        settings or settings_from_env(),
        clock,
        observer=observer,
    )


def build_view_store(accord: Accord, config: StoreConfig) -> ViewStore:
    recorder = accord.log.recorder
    if isinstance(recorder, AccordPostgresRecorder):
        env = config.env
        conninfo = make_conninfo(
            dbname=env["POSTGRES_DBNAME"],
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"] or None,
        )
        return PostgresViewStore(
            recorder.datastore,
            channel=recorder.channel_name,
            conninfo=conninfo,
            events_table=recorder.events_table_name,
        )
    assert isinstance(recorder, AccordSQLiteRecorder)
    return SQLiteViewStore(recorder.datastore, events_table=recorder.events_table_name)


def build_read_models(
    accord: Accord,
    config: StoreConfig,
    projections: Sequence[Projection] | None = None,
    *,
    batch_size: int = 500,
) -> ReadModels:
    return ReadModels(
        accord.log,
        build_view_store(accord, config),
        projections if projections is not None else all_projections(),
        batch_size=batch_size,
    )
