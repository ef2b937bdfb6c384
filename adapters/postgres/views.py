"""Read-model documents in PostgreSQL, beside the events; one active worker per read model."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from application.stored_bodies import canonical_originator
from projections.store import ENTRY_KIND, Change, Commit, Doc, entry_key, parse_doc

_load = parse_doc

Row = tuple[int, Any, int, str, bytes]
"""A stored event as the log holds it: position, originator id and version, topic, state."""

ENTRY_TYPES = ["text", "int4", "int8", "text", "text"]
"""The entry table's columns, for a binary COPY (cheaper to write than text)."""


class PostgresReader:
    def __init__(self, store: PostgresViewStore, curs: Cursor[DictRow], name: str, generation: int):
        self.store = store
        self.curs = curs
        self.name = name
        self.generation = generation
        curs.execute(
            store.sql("SELECT position FROM {tracking} WHERE projection = %s AND generation = %s"),
            (name, generation),
        )
        row = curs.fetchone()
        self._position = int(row["position"]) if row else 0

    @property
    def position(self) -> int:
        return self._position

    def get(self, kind: str, key: str) -> Doc | None:
        return self.store._get(self.curs, self.name, self.generation, kind, key)

    def scan(
        self,
        kind: str,
        *,
        group: str | None = None,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[str, Doc]]:
        yield from self.store._scan(
            self.curs, self.name, self.generation, kind, group, after_key, limit
        )

    def entries(
        self, *, after: int = 0, group: str | None = None, limit: int | None = None
    ) -> Iterator[Doc]:
        yield from self.store._entries(self.curs, self.name, self.generation, after, group, limit)

    def log_with_entries(
        self, start: int, stop: int, topics: Sequence[str], limit: int
    ) -> list[tuple[Row, Doc | None]]:
        """``read_log_range``, each event with what a message takes of this read model's
        entry at its position: its position, version, chain hash and summary (None: no
        entry there, or one without a hash or a summary).

        One statement, in this reader's snapshot, instead of a read of the log and
        one of the entries. The range is stated for both tables: the planner does
        not carry it across an outer join, and without it, on stale statistics
        (as after a rebuild), it scanned every entry of the generation. The
        database takes each entry apart (``json_to_record``): a replay reads
        pages ahead, so that work is done beside the stream's, on another core,
        where parsing whole entries for four of their fields was a tenth of
        the stream's own.
        """
        text = (
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state, "
            "x.position, x.version, x.hash, x.summary, "
            "x.position = e.notification_id::text AND x.version = e.originator_version::text "
            "FROM {events} e LEFT JOIN {entries} t ON t.projection = %s "
            "AND t.generation = %s AND t.position = e.notification_id "
            "AND t.position >= %s AND t.position <= %s "
            "LEFT JOIN LATERAL json_to_record(t.doc::json) "
            "AS x(position text, version text, hash text, summary text) ON true "
            "WHERE e.notification_id >= %s AND e.notification_id <= %s"
        )
        params: list[Any] = [self.name, self.generation, start, stop, start, stop]
        if topics:
            text += " AND e.topic = ANY(%s)"
            params.append(list(topics))
        text += " ORDER BY e.notification_id LIMIT %s"
        params.append(limit)
        with self.curs.connection.cursor(binary=True, row_factory=tuple_row) as curs:
            curs.execute(self.store.sql(text), params, prepare=True)
            joined: list[tuple[Row, Doc | None]] = []
            add = joined.append
            for row in curs.fetchall():
                position, originator_id, version, topic, state, at, of, digest, summary, agree = row
                entry: Doc | None = None
                if digest is not None and summary is not None:
                    entry = {
                        # As the log has them where they agree; as written otherwise,
                        # so that checking the entry against the log refuses it.
                        "position": position if agree else at,
                        "version": version if agree else of,
                        "hash": digest,
                        "summary": summary,
                    }
                add(((position, originator_id, version, topic, state), entry))
            return joined


class PostgresViewStore:
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        channel: str,
        conninfo: str,
        events_table: str = "accord_events",
    ) -> None:
        self.datastore = datastore
        self.channel = channel
        self.conninfo = conninfo
        schema = Identifier(datastore.schema)
        self.tables = {
            "docs": SQL("{}.{}").format(schema, Identifier("accord_view_docs")),
            "entries": SQL("{}.{}").format(schema, Identifier("accord_view_entries")),
            "tracking": SQL("{}.{}").format(schema, Identifier("accord_view_tracking")),
            "state": SQL("{}.{}").format(schema, Identifier("accord_view_state")),
            "events": SQL("{}.{}").format(schema, Identifier(events_table)),
        }
        self._listener: psycopg.Connection[Any] | None = None
        self._locks: dict[str, psycopg.Connection[Any]] = {}

    def sql(self, text: str) -> Composed:
        return SQL(text).format(**self.tables)

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self.sql(
                    "CREATE TABLE IF NOT EXISTS {docs} ("
                    "projection text NOT NULL, generation int NOT NULL, kind text NOT NULL, "
                    "key text NOT NULL, grp text, doc text NOT NULL, "
                    "PRIMARY KEY (projection, generation, kind, key))"
                )
            )
            curs.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS accord_view_docs_group "
                    "ON {} (projection, generation, kind, grp, key)"
                ).format(self.tables["docs"])
            )
            # Entries (a document per log position, never changed: the audit trail's)
            # apart from the documents: keyed by position, with text compared as
            # bytes (what C.UTF-8 orders by anyway), and no index by group (the
            # log's index by aggregate finds a group's positions), they cost
            # PostgreSQL a fraction of the documents' four text columns, twice indexed.
            curs.execute(
                self.sql(
                    "CREATE TABLE IF NOT EXISTS {entries} ("
                    'projection text COLLATE "C" NOT NULL, generation int NOT NULL, '
                    'position bigint NOT NULL, grp text COLLATE "C", doc text NOT NULL, '
                    "PRIMARY KEY (projection, generation, position))"
                )
            )
            curs.execute(
                self.sql(
                    "CREATE TABLE IF NOT EXISTS {tracking} ("
                    "projection text NOT NULL, generation int NOT NULL, position bigint NOT NULL, "
                    "PRIMARY KEY (projection, generation))"
                )
            )
            curs.execute(
                self.sql(
                    "CREATE TABLE IF NOT EXISTS {state} ("
                    "projection text PRIMARY KEY, generation int NOT NULL, version int NOT NULL)"
                )
            )

    def state(self, name: str) -> tuple[int, int] | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self.sql("SELECT generation, version FROM {state} WHERE projection = %s"), (name,)
            )
            row = curs.fetchone()
        return (row["generation"], row["version"]) if row else None

    def _set_active(self, curs: Cursor[DictRow], name: str, generation: int, version: int) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {state} VALUES (%s, %s, %s) ON CONFLICT (projection) "
                "DO UPDATE SET generation = excluded.generation, version = excluded.version"
            ),
            (name, generation, version),
        )

    def set_active(self, name: str, generation: int, version: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._set_active(curs, name, generation, version)

    def position(self, name: str, generation: int) -> int | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self.sql(
                    "SELECT position FROM {tracking} WHERE projection = %s AND generation = %s"
                ),
                (name, generation),
            )
            row = curs.fetchone()
        return int(row["position"]) if row else None

    def _fetch(self, text: str, params: Sequence[Any], *, binary: bool = False) -> list[Any]:
        """One statement on its own, rows as tuples: no BEGIN and ROLLBACK round trips
        around it (the pool's connections commit each statement), for reads on hot paths."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(binary=binary, row_factory=tuple_row) as curs,
        ):
            curs.execute(self.sql(text), params, prepare=True)
            return curs.fetchall()

    def active(self) -> dict[str, tuple[int, int]]:
        rows = self._fetch(
            "SELECT s.projection, s.generation, coalesce(t.position, 0) "
            "FROM {state} s LEFT JOIN {tracking} t "
            "ON t.projection = s.projection AND t.generation = s.generation",
            (),
        )
        return {name: (int(generation), int(position)) for name, generation, position in rows}

    def start(self, name: str, generation: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for table in ("docs", "entries"):
                curs.execute(
                    SQL("DELETE FROM {} WHERE projection = %s AND generation = %s").format(
                        self.tables[table]
                    ),
                    (name, generation),
                )
            curs.execute(
                self.sql(
                    "INSERT INTO {tracking} VALUES (%s, %s, 0) "
                    "ON CONFLICT (projection, generation) DO UPDATE SET position = 0"
                ),
                (name, generation),
            )

    def _get(
        self, curs: Cursor[DictRow], name: str, generation: int, kind: str, key: str
    ) -> Doc | None:
        curs.execute(
            self.sql(
                "SELECT doc FROM {docs} "
                "WHERE projection = %s AND generation = %s AND kind = %s AND key = %s"
            ),
            (name, generation, kind, key),
            prepare=True,
        )
        row = curs.fetchone()
        return json.loads(row["doc"]) if row else None

    def _scan(
        self,
        curs: Cursor[DictRow],
        name: str,
        generation: int,
        kind: str,
        group: str | None,
        after_key: str | None,
        limit: int | None,
    ) -> list[tuple[str, Doc]]:
        text = "SELECT key, doc FROM {docs} WHERE projection = %s AND generation = %s AND kind = %s"
        params: list[Any] = [name, generation, kind]
        if group is not None:
            text += " AND grp = %s"
            params.append(group)
        if after_key is not None:
            text += " AND key > %s"
            params.append(after_key)
        text += " ORDER BY key"
        if limit is not None:
            text += " LIMIT %s"
            params.append(limit)
        # Tuple rows on a cursor of the same transaction, documents parsed by orjson:
        # a replay reads a trail entry per event, and dict rows and ``json`` were most of it.
        with curs.connection.cursor(row_factory=tuple_row) as rows:
            rows.execute(self.sql(text), params)
            return [(key, _load(doc)) for key, doc in rows.fetchall()]

    def _entries(
        self,
        curs: Cursor[DictRow],
        name: str,
        generation: int,
        after: int,
        group: str | None,
        limit: int | None,
    ) -> list[Doc]:
        params: list[Any]
        if group is None:
            text = (
                "SELECT doc FROM {entries} WHERE projection = %s AND generation = %s "
                "AND position > %s ORDER BY position"
            )
            params = [name, generation, after]
        elif canonical_originator(group) is None:
            return []  # no aggregate's id: no event of the log is in this group
        else:
            # The group's positions from the log's index by aggregate, each entry by its key;
            # an entry whose event has since changed aggregate (an edited row) is not shown.
            text = (
                "SELECT t.doc FROM {events} e JOIN {entries} t ON t.projection = %s "
                "AND t.generation = %s AND t.position = e.notification_id "
                "WHERE e.originator_id = %s AND e.notification_id > %s AND t.grp = %s "
                "ORDER BY e.notification_id"
            )
            params = [name, generation, UUID(group), after, group]
        if limit is not None:
            text += " LIMIT %s"
            params.append(limit)
        with curs.connection.cursor(row_factory=tuple_row) as rows:
            rows.execute(self.sql(text), params)
            return [_load(doc) for (doc,) in rows.fetchall()]

    def entries(
        self, name: str, generation: int, *, after: int, group: str | None, limit: int | None
    ) -> list[Doc]:
        with self.datastore.transaction(commit=False) as curs:
            return self._entries(curs, name, generation, after, group, limit)

    def load(self, name: str, generation: int, kind: str, key: str) -> Doc | None:
        with self.datastore.transaction(commit=False) as curs:
            return self._get(curs, name, generation, kind, key)

    def load_many(
        self, name: str, generation: int, kind: str, keys: Sequence[str]
    ) -> dict[str, Doc]:
        if not keys:
            return {}
        rows = self._fetch(
            "SELECT key, doc FROM {docs} WHERE projection = %s AND generation = %s "
            "AND kind = %s AND key = ANY(%b::text[])",
            (name, generation, kind, list(keys)),
        )
        return {key: _load(doc) for key, doc in rows}

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
        with self.datastore.transaction(commit=False) as curs:
            return self._scan(curs, name, generation, kind, group, after_key, limit)

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
        """Every read model's share in one statement per kind of write, not one each.

        A follower commits each batch for all the read models at once; under a
        trickle of commands a batch holds an event or two, and a statement per
        read model and kind (tracking, documents, entries) was most of its
        cost. The tracking moves come first, in one ``UPDATE``: the changes of
        a read model whose position was not ``expected`` are then left out.
        """
        if not commits:
            return []
        with self.datastore.transaction(commit=True) as curs:
            if not durable:
                curs.execute("SET LOCAL synchronous_commit = off")
            moved = self._move_tracking(curs, commits)
            outcomes = [(c.name, c.generation) in moved for c in commits]
            won = [c for c, ok in zip(commits, outcomes, strict=True) if ok]
            self._write_docs(curs, won)
            self._write_entries(curs, won)
            for commit in won:
                if commit.activate_version is not None:
                    self._set_active(curs, commit.name, commit.generation, commit.activate_version)
        return outcomes

    def _move_tracking(
        self, curs: Cursor[DictRow], commits: Sequence[Commit]
    ) -> set[tuple[str, int]]:
        """Each read model's tracking ``expected`` -> ``position``; those that moved."""
        curs.execute(
            self.sql(
                "UPDATE {tracking} t SET position = m.position "
                "FROM unnest(%b::text[], %b::int4[], %b::int8[], %b::int8[]) "
                "AS m(projection, generation, expected, position) "
                "WHERE t.projection = m.projection AND t.generation = m.generation "
                "AND t.position = m.expected "
                "RETURNING t.projection, t.generation"
            ),
            (
                [c.name for c in commits],
                [c.generation for c in commits],
                [c.expected for c in commits],
                [c.position for c in commits],
            ),
        )
        return {(row["projection"], row["generation"]) for row in curs.fetchall()}

    def _write_docs(self, curs: Cursor[DictRow], commits: Sequence[Commit]) -> None:
        upserts: list[tuple[str, int, str, str, str | None, str]] = []
        deletes: list[tuple[str, int, str, str]] = []
        for commit in commits:
            written, deleted = commit.doc_rows()
            upserts += written
            deletes += deleted
        # The columns as arrays in binary: row by row (``executemany``), psycopg's
        # Python spent about 20 us a document. Each (read model, document) appears
        # once (``doc_rows``), as an upsert must touch a row only once.
        if upserts:
            names, generations, kinds, keys, groups, texts = map(list, zip(*upserts, strict=True))
            curs.execute(
                self.sql(
                    "INSERT INTO {docs} (projection, generation, kind, key, grp, doc) "
                    "SELECT * FROM unnest(%b::text[], %b::int4[], %b::text[], %b::text[], "
                    "%b::text[], %b::text[]) "
                    "ON CONFLICT (projection, generation, kind, key) "
                    "DO UPDATE SET grp = excluded.grp, doc = excluded.doc"
                ),
                (names, generations, kinds, keys, groups, texts),
            )
        if deletes:
            names, generations, kinds, keys = map(list, zip(*deletes, strict=True))
            curs.execute(
                self.sql(
                    "DELETE FROM {docs} WHERE (projection, generation, kind, key) IN "
                    "(SELECT * FROM unnest(%b::text[], %b::int4[], %b::text[], %b::text[]))"
                ),
                (names, generations, kinds, keys),
            )

    def _write_entries(self, curs: Cursor[DictRow], commits: Sequence[Commit]) -> None:
        """COPY: a fraction of the server's and the client's cost of row-by-row
        inserts, for entries that cannot exist yet (a duplicate fails loudly)."""
        recording = [c for c in commits if c.entries]
        if not recording:
            return
        with curs.copy(
            self.sql(
                "COPY {entries} (projection, generation, position, grp, doc) "
                "FROM STDIN (FORMAT BINARY)"
            )
        ) as copy:
            copy.set_types(ENTRY_TYPES)
            write = copy.write_row
            for commit in recording:
                name, generation = commit.name, commit.generation
                for position, group, text in commit.entries:
                    write((name, generation, position, group, text))

    def read_log(self, after: int, limit: int) -> list[Notification]:
        """A plain ordered range read in binary, into tuples: a third of the library's cost.

        The aggregate's id comes as text (its canonical form, what every read
        model writes): making a ``UUID`` of it, and each notification through
        its frozen dataclass's ``__init__``, cost a rebuild more than reading
        the row did.
        """
        rows = self._fetch(
            "SELECT notification_id, originator_id::text, originator_version, topic, state "
            "FROM {events} WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
            (after, limit),
            binary=True,
        )
        new = Notification.__new__
        notifications = []
        for position, originator_id, version, topic, state in rows:
            notification = new(Notification)
            # The fields a frozen dataclass keeps in its instance dictionary, set directly.
            notification.__dict__.update(
                id=position,
                originator_id=originator_id,
                originator_version=version,
                topic=topic,
                state=state,
            )
            notifications.append(notification)
        return notifications

    def read_log_range(self, start: int, stop: int, topics: Sequence[str], limit: int) -> list[Row]:
        """Positions ``start``..``stop`` of the log (of ``topics``, if any), in binary, as tuples.

        (position, originator_id, originator_version, topic, state): what the
        library's ``select_notifications`` reads, at a third of its cost.
        """
        text = (
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {events} WHERE notification_id >= %s AND notification_id <= %s"
        )
        params: list[Any] = [start, stop]
        if topics:
            text += " AND topic = ANY(%s)"
            params.append(list(topics))
        text += " ORDER BY notification_id LIMIT %s"
        params.append(limit)
        return self._fetch(text, params, binary=True)

    def drop(self, name: str, generation: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for table in ("docs", "entries", "tracking"):
                curs.execute(
                    SQL("DELETE FROM {} WHERE projection = %s AND generation = %s").format(
                        self.tables[table]
                    ),
                    (name, generation),
                )

    def dump(self, name: str, generation: int) -> dict[tuple[str, str], tuple[str | None, Doc]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self.sql(
                    "SELECT kind, key, grp, doc FROM {docs} "
                    "WHERE projection = %s AND generation = %s"
                ),
                (name, generation),
            )
            docs = {
                (r["kind"], r["key"]): (r["grp"], json.loads(r["doc"])) for r in curs.fetchall()
            }
            curs.execute(
                self.sql(
                    "SELECT position, grp, doc FROM {entries} "
                    "WHERE projection = %s AND generation = %s"
                ),
                (name, generation),
            )
            for r in curs.fetchall():
                docs[(ENTRY_KIND, entry_key(r["position"]))] = (r["grp"], json.loads(r["doc"]))
            return docs

    @contextmanager
    def reader(self, name: str, generation: int) -> Iterator[PostgresReader]:
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(force_rollback=True),
            conn.cursor() as curs,
        ):
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield PostgresReader(self, curs, name, generation)

    def _lock_id(self, name: str) -> int:
        digest = hashlib.sha256(f"accord:{self.datastore.schema}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Hold a session advisory lock while working: one active worker per read model."""
        with self.datastore.get_connection() as conn:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s) AS ok", (self._lock_id(name),)
            ).fetchone()
            held = bool(row and row["ok"])
            if held:
                self._locks[name] = conn
            try:
                yield held
            finally:
                if held:
                    del self._locks[name]
                    # A session PostgreSQL lost (a restart) took its lock with it.
                    with suppress(psycopg.Error):
                        conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_id(name),))

    def holds(self, name: str) -> bool:
        """The lock lives as long as the session that took it: is that one still there?"""
        conn = self._locks.get(name)
        if conn is None:
            return False
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def wait_for_events(self, timeout: float) -> None:
        """LISTEN on the events channel; the recorder NOTIFYs it with every insert."""
        try:
            if self._listener is None or self._listener.closed:
                self._listener = self._connect_listener()
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            # PostgreSQL is not answering (a refused connection fails at once): wait as
            # long as asked instead of returning, or a follower with nothing to do spins.
            self._listener = None
            time.sleep(timeout)

    def _connect_listener(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
        conn.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
        return conn

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
