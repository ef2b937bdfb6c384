"""Where the events live: ``ACCORD_DATABASE_URL`` onto the library's settings.

``sqlite:///path.db`` (relative) or ``sqlite:////abs/path.db`` selects the
embedded store; ``postgresql://user[:password]@host[:port]/db[?schema=s]``
the production one. The URL is parsed here, once, so nothing else has to
know the library's environment variable names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from adapters.postgres.recorder import AccordPostgresRecorder
from adapters.sqlite.recorder import AccordSQLiteRecorder

DEFAULT_URL = "sqlite:///accord.db"


def _topic(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class StoreConfigError(ValueError):
    """The database URL cannot be used; the message says why (never the password)."""


@dataclass(frozen=True)
class StoreConfig:
    url: str
    kind: str
    env: dict[str, str]
    sqlite_path: Path | None = None

    @property
    def safe_url(self) -> str:
        """The URL with any password removed, fit for logs and messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()


def store_config(url: str | None = None) -> StoreConfig:
    url = url or os.environ.get("ACCORD_DATABASE_URL") or DEFAULT_URL
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return _sqlite(url, parts.netloc, parts.path)
    if parts.scheme in ("postgresql", "postgres"):
        return _postgres(url)
    raise StoreConfigError(
        f"ACCORD_DATABASE_URL must start with sqlite:/// or postgresql:// (got {parts.scheme!r})"
    )


def _sqlite(url: str, netloc: str, path: str) -> StoreConfig:
    if netloc:
        raise StoreConfigError(
            "a SQLite URL has no host: use sqlite:///relative.db or sqlite:////abs.db"
        )
    raw = unquote(path[1:] if path.startswith("/") else path)
    if not raw:
        raise StoreConfigError("a SQLite URL names a file: sqlite:///accord.db")
    db_path = Path(raw).expanduser().resolve()
    if not db_path.parent.is_dir():
        raise StoreConfigError(
            f"the directory for the SQLite file does not exist: {db_path.parent}"
        )
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(db_path),
        "SQLITE_LOCK_TIMEOUT": "10",
        "APPLICATION_RECORDER_TOPIC": _topic(AccordSQLiteRecorder),
    }
    return StoreConfig(url=url, kind="sqlite", env=env, sqlite_path=db_path)


def _postgres(url: str) -> StoreConfig:
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not dbname:
        raise StoreConfigError(
            "a PostgreSQL URL names a host and a database: postgresql://user@host:5432/db"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"schema", "pool_size", "max_overflow", "connect_timeout"}
    if unknown:
        raise StoreConfigError(f"unknown PostgreSQL URL options: {sorted(unknown)}")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or os.environ.get("USER", "postgres")),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": query.get("schema", "public"),
        "POSTGRES_POOL_SIZE": query.get("pool_size", "5"),
        "POSTGRES_MAX_OVERFLOW": query.get("max_overflow", "10"),
        "POSTGRES_CONNECT_TIMEOUT": query.get("connect_timeout", "5"),
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_LOCK_TIMEOUT": "5",
        "APPLICATION_RECORDER_TOPIC": _topic(AccordPostgresRecorder),
    }
    return StoreConfig(url=url, kind="postgres", env=env)
