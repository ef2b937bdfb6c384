"""SQLite recorder: the library's, plus the request journal in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from application.idempotency import Claim, RequestRecord, StoredRequest


class AccordSQLiteRecorder(SQLiteApplicationRecorder):
    def __init__(
        self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name)
        # The table name is the library's configuration, never caller input.
        self._find_request_sql = (
            "SELECT r.*, e.rowid AS position FROM accord_requests r "  # noqa: S608
            f"JOIN {events_table_name} e "
            "ON e.originator_id = r.aggregate_id AND e.originator_version = r.version "
            "WHERE r.request_id = ?"
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
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        request: RequestRecord | None = kwargs.get("request")
        claims: Sequence[Claim] = kwargs.get("claims", ())
        if request is not None:
            c.execute(
                "INSERT INTO accord_requests VALUES (?,?,?,?,?)",
                (
                    request.request_id,
                    request.fingerprint,
                    request.aggregate_id.hex,
                    request.version,
                    request.entity_id.hex if request.entity_id else None,
                ),
            )
        for claim in claims:
            c.execute(
                "INSERT INTO accord_claims VALUES (?,?,?)",
                (claim.scope, claim.key, claim.aggregate_id.hex),
            )
        return super()._insert_events(c, stored_events, **kwargs)

    def find_request(self, request_id: str) -> StoredRequest | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._find_request_sql, (request_id,))
            row = c.fetchone()
        if row is None:
            return None
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
