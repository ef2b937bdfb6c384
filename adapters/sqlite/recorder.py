"""SQLite recorder: the library's, plus the journal and data keys in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from application.journal import Claim, CurrentRead, RequestRecord, StoredRequest, VersionGuard
from application.personal_data import WrappedKey


def _text(originator_id: UUID | str) -> str:
    """An id as the library stores it in SQLite (hex, no dashes)."""
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


class AccordSQLiteRecorder(SQLiteApplicationRecorder):
    def __init__(
        self,
        datastore: SQLiteDatastore,
        events_table_name: str = "stored_events",
        snapshots_table_name: str = "stored_snapshots",
    ) -> None:
        """``snapshots_table_name`` is the library factory's name for the snapshot table:
        snapshots are written in the events' transaction (``EventLog._due_snapshots``)."""
        super().__init__(datastore, events_table_name)
        # The table names are the library's configuration, never caller input.
        events = events_table_name
        # A snapshot already stored (the same state: events are never rewritten) is kept.
        self._insert_snapshots_sql = (
            f"INSERT OR IGNORE INTO {snapshots_table_name} VALUES (?,?,?,?)"  # noqa: S608
        )
        self._find_requests_sql = (
            "SELECT r.*, e.rowid AS position FROM accord_requests r "  # noqa: S608
            f"JOIN {events} e "
            "ON e.originator_id = r.aggregate_id AND e.originator_version = r.version "
            "WHERE r.request_id IN (?)"
        )
        self._version_sql = f"SELECT MAX(originator_version) FROM {events} WHERE originator_id = ?"  # noqa: S608
        self._positions_sql = (
            f"SELECT originator_version, rowid FROM {events} WHERE originator_id = ?"  # noqa: S608
        )

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS accord_requests ("
            "request_id TEXT PRIMARY KEY, "
            "fingerprint TEXT NOT NULL, "
            "aggregate_id TEXT NOT NULL, "
            "version INTEGER NOT NULL, "
            "entity_id TEXT)",
            "CREATE TABLE IF NOT EXISTS accord_claims ("
            "scope TEXT NOT NULL, "
            "key TEXT NOT NULL, "
            "aggregate_id TEXT NOT NULL, "
            "PRIMARY KEY (scope, key))",
            "CREATE TABLE IF NOT EXISTS accord_data_keys ("
            "customer_id TEXT PRIMARY KEY, "
            "wrapped_key BLOB, "
            "master_key_id TEXT NOT NULL, "
            "destroyed INTEGER NOT NULL DEFAULT 0)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        requests: Sequence[RequestRecord] = kwargs.get("requests", ())
        claims: Sequence[Claim] = kwargs.get("claims", ())
        guards: Sequence[VersionGuard] = kwargs.get("guards", ())
        destroy_keys: Sequence[UUID] = kwargs.get("destroy_keys", ())
        snapshots: Sequence[StoredEvent] = kwargs.get("snapshots", ())
        for guard in guards:
            c.execute(self._version_sql, (guard.aggregate_id.hex,))
            row = c.fetchone()
            if (row[0] if row else None) != guard.version:
                raise IntegrityError(f"{guard.aggregate_id} moved on from v{guard.version}")
        if requests:
            c.executemany(
                "INSERT INTO accord_requests VALUES (?,?,?,?,?)",
                [
                    (
                        request.request_id,
                        request.fingerprint,
                        request.aggregate_id.hex,
                        request.version,
                        request.entity_id.hex if request.entity_id else None,
                    )
                    for request in requests
                ],
            )
        for claim in claims:
            c.execute(
                "INSERT INTO accord_claims VALUES (?,?,?)",
                (claim.scope, claim.key, claim.aggregate_id.hex),
            )
        if destroy_keys:
            c.execute("PRAGMA secure_delete = ON")
        for customer_id in destroy_keys:
            c.execute(
                "UPDATE accord_data_keys SET wrapped_key = NULL, destroyed = 1 "
                "WHERE customer_id = ?",
                (customer_id.hex,),
            )
        ids = super()._insert_events(c, stored_events, **kwargs)
        if snapshots:
            c.executemany(
                self._insert_snapshots_sql,
                [
                    (_text(s.originator_id), s.originator_version, s.topic, s.state)
                    for s in snapshots
                ],
            )
        return ids

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super().insert_events(stored_events, **kwargs)
        if kwargs.get("destroy_keys"):
            self._scrub_write_ahead_log()
        return ids

    def _scrub_write_ahead_log(self) -> None:
        """Copy the erased pages into the database file and empty the write-ahead log,
        so no earlier page image holding the destroyed key stays on disk."""
        with self.datastore.get_connection(commit=True) as conn:
            conn.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------ the journal

    def find_request(self, request_id: str) -> StoredRequest | None:
        return self.find_requests([request_id]).get(request_id)

    def find_requests(self, request_ids: Sequence[str]) -> dict[str, StoredRequest]:
        found: dict[str, StoredRequest] = {}
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(request_ids), 500):  # SQLite's variable limit
                chunk = request_ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                c.execute(self._find_requests_sql.replace("(?)", f"({marks})"), tuple(chunk))
                for row in c.fetchall():
                    found[row["request_id"]] = self._stored_request(row)
        return found

    @staticmethod
    def _stored_request(row: Any) -> StoredRequest:
        return StoredRequest(
            record=RequestRecord(
                request_id=row["request_id"],
                fingerprint=row["fingerprint"],
                aggregate_id=UUID(row["aggregate_id"]),
                version=row["version"],
                entity_id=UUID(row["entity_id"]) if row["entity_id"] else None,
            ),
            position=row["position"],
        )

    def find_claim(self, scope: str, key: str) -> UUID | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT aggregate_id FROM accord_claims WHERE scope = ? AND key = ?", (scope, key)
            )
            row = c.fetchone()
        return UUID(row["aggregate_id"]) if row else None

    def positions(self, aggregate_id: UUID) -> dict[int, int]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._positions_sql, (aggregate_id.hex,))
            return {row[0]: row[1] for row in c.fetchall()}

    def read_current(
        self, after: Sequence[tuple[UUID, int]], positions_of: UUID, versions: Sequence[int]
    ) -> CurrentRead:
        """Embedded, so no round trips to save: the usual reads, the head first."""
        head = self.max_notification_id() or 0
        newer = {
            aggregate_id: list(self.select_events(aggregate_id, gt=version))
            for aggregate_id, version in after
        }
        wanted = set(versions)
        positions = {v: p for v, p in self.positions(positions_of).items() if v in wanted}
        return CurrentRead(newer, positions, head)

    # -------------------------------------------------------------- data keys

    def get_data_key(self, customer_id: UUID) -> WrappedKey | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT wrapped_key, master_key_id FROM accord_data_keys WHERE customer_id = ?",
                (customer_id.hex,),
            )
            row = c.fetchone()
        return WrappedKey(row[0], row[1]) if row else None

    def get_data_keys(self, customer_ids: Sequence[UUID]) -> dict[UUID, WrappedKey]:
        ids = [customer_id.hex for customer_id in set(customer_ids)]
        found: dict[UUID, WrappedKey] = {}
        per_read = 500  # within SQLite's limit on a statement's parameters
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(ids), per_read):
                chunk = ids[start : start + per_read]
                marks = ",".join("?" * len(chunk))
                c.execute(
                    "SELECT customer_id, wrapped_key, master_key_id FROM accord_data_keys "  # noqa: S608
                    f"WHERE customer_id IN ({marks})",
                    chunk,
                )
                for customer_id, wrapped, key_id in c.fetchall():
                    found[UUID(hex=customer_id)] = WrappedKey(wrapped, key_id)
        return found

    def create_data_key(self, customer_id: UUID, key: WrappedKey) -> WrappedKey:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "INSERT OR IGNORE INTO accord_data_keys (customer_id, wrapped_key, master_key_id) "
                "VALUES (?,?,?)",
                (customer_id.hex, key.wrapped, key.master_key_id),
            )
        stored = self.get_data_key(customer_id)
        assert stored is not None
        return stored

    def all_data_keys(self) -> list[tuple[UUID, WrappedKey]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT customer_id, wrapped_key, master_key_id FROM accord_data_keys")
            return [(UUID(r[0]), WrappedKey(r[1], r[2])) for r in c.fetchall()]

    def master_key_ids(self) -> set[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT DISTINCT master_key_id FROM accord_data_keys WHERE wrapped_key IS NOT NULL"
            )
            return {r[0] for r in c.fetchall()}

    def replace_data_keys(self, keys: list[tuple[UUID, WrappedKey]], previous_id: str) -> int:
        with self.datastore.transaction(commit=True) as c:
            c.execute("PRAGMA secure_delete = ON")
            for customer_id, key in keys:
                c.execute(
                    "UPDATE accord_data_keys SET wrapped_key = ?, master_key_id = ? "
                    "WHERE customer_id = ? AND master_key_id = ? AND wrapped_key IS NOT NULL",
                    (key.wrapped, key.master_key_id, customer_id.hex, previous_id),
                )
        self._scrub_write_ahead_log()
        return len(keys)
