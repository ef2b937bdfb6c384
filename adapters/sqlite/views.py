"""Read-model documents in the SQLite file, beside the events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore

from projections.store import ENTRY_KIND, Change, Commit, Doc, entry_key, parse_doc

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS accord_view_docs ("
    "projection TEXT NOT NULL, generation INTEGER NOT NULL, kind TEXT NOT NULL, "
    "key TEXT NOT NULL, grp TEXT, doc TEXT NOT NULL, "
    "PRIMARY KEY (projection, generation, kind, key))",
    "CREATE INDEX IF NOT EXISTS accord_view_docs_group "
    "ON accord_view_docs (projection, generation, kind, grp, key)",
    "CREATE TABLE IF NOT EXISTS accord_view_entries ("
    "projection TEXT NOT NULL, generation INTEGER NOT NULL, position INTEGER NOT NULL, "
    "grp TEXT, doc TEXT NOT NULL, PRIMARY KEY (projection, generation, position))",
    "CREATE INDEX IF NOT EXISTS accord_view_entries_group "
    "ON accord_view_entries (projection, generation, grp, position)",
    "CREATE TABLE IF NOT EXISTS accord_view_tracking ("
    "projection TEXT NOT NULL, generation INTEGER NOT NULL, position INTEGER NOT NULL, "
    "PRIMARY KEY (projection, generation))",
    "CREATE TABLE IF NOT EXISTS accord_view_state ("
    "projection TEXT PRIMARY KEY, generation INTEGER NOT NULL, version INTEGER NOT NULL)",
]


LOAD_CHUNK = 500
"""Keys per query when loading many documents (SQLite limits a statement's parameters)."""

UPSERT = (
    "INSERT INTO accord_view_docs VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (projection, generation, kind, key) "
    "DO UPDATE SET grp = excluded.grp, doc = excluded.doc"
)


class SQLiteReader:
    def __init__(self, cursor: SQLiteCursor, name: str, generation: int) -> None:
        self.cursor = cursor
        self.name = name
        self.generation = generation
        cursor.execute(
            "SELECT position FROM accord_view_tracking WHERE projection = ? AND generation = ?",
            (name, generation),
        )
        row = cursor.fetchone()
        self._position = row[0] if row else 0

    @property
    def position(self) -> int:
        return int(self._position)

    def get(self, kind: str, key: str) -> Doc | None:
        return _get(self.cursor, self.name, self.generation, kind, key)

    def scan(
        self,
        kind: str,
        *,
        group: str | None = None,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[str, Doc]]:
        yield from _scan(self.cursor, self.name, self.generation, kind, group, after_key, limit)

    def entries(
        self, *, after: int = 0, group: str | None = None, limit: int | None = None
    ) -> Iterator[Doc]:
        yield from _entries(self.cursor, self.name, self.generation, after, group, limit)


def _get(c: SQLiteCursor, name: str, generation: int, kind: str, key: str) -> Doc | None:
    c.execute(
        "SELECT doc FROM accord_view_docs "
        "WHERE projection = ? AND generation = ? AND kind = ? AND key = ?",
        (name, generation, kind, key),
    )
    row = c.fetchone()
    return json.loads(row[0]) if row else None


def _scan(
    c: SQLiteCursor,
    name: str,
    generation: int,
    kind: str,
    group: str | None,
    after_key: str | None,
    limit: int | None,
) -> list[tuple[str, Doc]]:
    sql = (
        "SELECT key, doc FROM accord_view_docs WHERE projection = ? AND generation = ? AND kind = ?"
    )
    params: list[Any] = [name, generation, kind]
    if group is not None:
        sql += " AND grp = ?"
        params.append(group)
    if after_key is not None:
        sql += " AND key > ?"
        params.append(after_key)
    sql += " ORDER BY key"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    c.execute(sql, params)
    return [(row[0], json.loads(row[1])) for row in c.fetchall()]


def _entries(
    c: SQLiteCursor,
    name: str,
    generation: int,
    after: int,
    group: str | None,
    limit: int | None,
) -> list[Doc]:
    sql = "SELECT doc FROM accord_view_entries WHERE projection = ? AND generation = ?"
    params: list[Any] = [name, generation]
    if group is not None:
        sql += " AND grp = ?"
        params.append(group)
    sql += " AND position > ? ORDER BY position"
    params.append(after)
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    c.execute(sql, params)
    return [parse_doc(row[0]) for row in c.fetchall()]


class SQLiteViewStore:
    def __init__(
        self,
        datastore: SQLiteDatastore,
        *,
        poll_interval: float = 0.05,
        events_table: str = "stored_events",
    ) -> None:
        self.datastore = datastore
        self.poll_interval = poll_interval
        self.events_table = events_table

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for statement in SCHEMA:
                c.execute(statement)

    def state(self, name: str) -> tuple[int, int] | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT generation, version FROM accord_view_state WHERE projection = ?", (name,)
            )
            row = c.fetchone()
        return (row[0], row[1]) if row else None

    def set_active(self, name: str, generation: int, version: int) -> None:
        with self.datastore.transaction(commit=True) as c:
            self._set_active(c, name, generation, version)

    @staticmethod
    def _set_active(c: SQLiteCursor, name: str, generation: int, version: int) -> None:
        c.execute(
            "INSERT INTO accord_view_state VALUES (?, ?, ?) ON CONFLICT (projection) "
            "DO UPDATE SET generation = excluded.generation, version = excluded.version",
            (name, generation, version),
        )

    def position(self, name: str, generation: int) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT position FROM accord_view_tracking WHERE projection = ? AND generation = ?",
                (name, generation),
            )
            row = c.fetchone()
        return int(row[0]) if row else None

    def active(self) -> dict[str, tuple[int, int]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT s.projection, s.generation, coalesce(t.position, 0) "
                "FROM accord_view_state s LEFT JOIN accord_view_tracking t "
                "ON t.projection = s.projection AND t.generation = s.generation"
            )
            rows = c.fetchall()
        return {row[0]: (int(row[1]), int(row[2])) for row in rows}

    def start(self, name: str, generation: int) -> None:
        with self.datastore.transaction(commit=True) as c:
            for table in ("accord_view_docs", "accord_view_entries"):
                c.execute(
                    f"DELETE FROM {table} WHERE projection = ? AND generation = ?",  # noqa: S608
                    (name, generation),
                )
            c.execute(
                "INSERT INTO accord_view_tracking VALUES (?, ?, 0) "
                "ON CONFLICT (projection, generation) DO UPDATE SET position = 0",
                (name, generation),
            )

    def load(self, name: str, generation: int, kind: str, key: str) -> Doc | None:
        with self.datastore.transaction(commit=False) as c:
            return _get(c, name, generation, kind, key)

    def load_many(
        self, name: str, generation: int, kind: str, keys: Sequence[str]
    ) -> dict[str, Doc]:
        found: dict[str, Doc] = {}
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(keys), LOAD_CHUNK):
                chunk = list(keys[start : start + LOAD_CHUNK])
                c.execute(
                    "SELECT key, doc FROM accord_view_docs "  # noqa: S608 (placeholders only)
                    "WHERE projection = ? AND generation = ? AND kind = ? "
                    f"AND key IN ({', '.join('?' * len(chunk))})",
                    [name, generation, kind, *chunk],
                )
                found.update((row[0], json.loads(row[1])) for row in c.fetchall())
        return found

    def scan(
        self,
        name: str,
        generation: int,
        kind: str,
        *,
        group: str | None,
        after_key: str | None,
        limit: int | None,
    ) -> list[tuple[str, Doc]]:
        with self.datastore.transaction(commit=False) as c:
            return _scan(c, name, generation, kind, group, after_key, limit)

    def entries(
        self, name: str, generation: int, *, after: int, group: str | None, limit: int | None
    ) -> list[Doc]:
        with self.datastore.transaction(commit=False) as c:
            return _entries(c, name, generation, after, group, limit)

    def commit(
        self,
        name: str,
        generation: int,
        expected: int,
        position: int,
        changes: list[Change],
        *,
        activate_version: int | None = None,
    ) -> bool:
        commit = Commit(name, generation, expected, position, changes)
        commit.activate_version = activate_version
        return self.commit_all([commit])[0]

    def commit_all(self, commits: Sequence[Commit], *, durable: bool = True) -> list[bool]:
        # ``durable`` asks for nothing here: the SQLite file's own settings decide.
        with self.datastore.transaction(commit=True) as c:
            return [self._commit(c, commit) for commit in commits]

    def _commit(self, c: SQLiteCursor, commit: Commit) -> bool:
        name, generation = commit.name, commit.generation
        c.execute(
            "UPDATE accord_view_tracking SET position = ? "
            "WHERE projection = ? AND generation = ? AND position = ?",
            (commit.position, name, generation, commit.expected),
        )
        if c.sqlite_cursor.rowcount != 1:
            return False
        upserts, deletes = commit.doc_rows()
        if upserts:
            c.executemany(UPSERT, upserts)
        if deletes:
            c.executemany(
                "DELETE FROM accord_view_docs "
                "WHERE projection = ? AND generation = ? AND kind = ? AND key = ?",
                deletes,
            )
        if commit.entries:
            # A plain INSERT: an entry that already exists is an error, not an update.
            c.executemany(
                "INSERT INTO accord_view_entries VALUES (?, ?, ?, ?, ?)",
                [
                    (name, generation, position, group, text)
                    for position, group, text in commit.entries
                ],
            )
        if commit.activate_version is not None:
            self._set_active(c, name, generation, commit.activate_version)
        return True

    def read_log(self, after: int, limit: int) -> list[Notification]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "  # noqa: S608
                f"FROM {self.events_table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, limit),
            )
            return [
                Notification(
                    id=row[0],
                    originator_id=UUID(row[1]),
                    originator_version=row[2],
                    topic=row[3],
                    state=bytes(row[4]),
                )
                for row in c.fetchall()
            ]

    def drop(self, name: str, generation: int) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("PRAGMA secure_delete = ON")
            for table in ("accord_view_docs", "accord_view_entries", "accord_view_tracking"):
                c.execute(
                    f"DELETE FROM {table} WHERE projection = ? AND generation = ?",  # noqa: S608
                    (name, generation),
                )

    def dump(self, name: str, generation: int) -> dict[tuple[str, str], tuple[str | None, Doc]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT kind, key, grp, doc FROM accord_view_docs "
                "WHERE projection = ? AND generation = ?",
                (name, generation),
            )
            docs = {(r[0], r[1]): (r[2], json.loads(r[3])) for r in c.fetchall()}
            c.execute(
                "SELECT position, grp, doc FROM accord_view_entries "
                "WHERE projection = ? AND generation = ?",
                (name, generation),
            )
            for r in c.fetchall():
                docs[(ENTRY_KIND, entry_key(r[0]))] = (r[1], json.loads(r[2]))
            return docs

    @contextmanager
    def reader(self, name: str, generation: int) -> Iterator[SQLiteReader]:
        # One read transaction: in WAL mode, documents and position are one snapshot.
        with self.datastore.transaction(commit=False) as c:
            yield SQLiteReader(c, name, generation)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        # The tracking check in ``commit`` already keeps concurrent workers exactly-once.
        yield True

    def holds(self, name: str) -> bool:
        return True

    def wait_for_events(self, timeout: float) -> None:
        time.sleep(min(timeout, self.poll_interval))
