"""PostgreSQL recorder: the library's, plus the request journal in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from application.idempotency import Claim, RequestRecord, StoredRequest


class AccordPostgresRecorder(PostgresApplicationRecorder):
    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "accord_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(datastore.schema)
        self.requests_table = SQL("{}.{}").format(schema, Identifier("accord_requests"))
        self.claims_table = SQL("{}.{}").format(schema, Identifier("accord_claims"))
        self.events_table = SQL("{}.{}").format(schema, Identifier(events_table_name))
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    "request_id text PRIMARY KEY, "
                    "fingerprint text NOT NULL, "
                    "aggregate_id uuid NOT NULL, "
                    "version bigint NOT NULL, "
                    "entity_id uuid)"
                ).format(self.requests_table),
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    "scope text NOT NULL, "
                    "key text NOT NULL, "
                    "aggregate_id uuid NOT NULL, "
                    "PRIMARY KEY (scope, key))"
                ).format(self.claims_table),
            ]
        )

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        request: RequestRecord | None = kwargs.get("request")
        claims: Sequence[Claim] = kwargs.get("claims", ())
        if request is not None:
            curs.execute(
                SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s)").format(self.requests_table),
                (
                    request.request_id,
                    request.fingerprint,
                    request.aggregate_id,
                    request.version,
                    request.entity_id,
                ),
                prepare=True,
            )
        for claim in claims:
            curs.execute(
                SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(self.claims_table),
                (claim.scope, claim.key, claim.aggregate_id),
                prepare=True,
            )
        super()._insert_events(curs, stored_events, **kwargs)

    def find_request(self, request_id: str) -> StoredRequest | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT r.*, e.notification_id AS position FROM {} r JOIN {} e "
                    "ON e.originator_id = r.aggregate_id AND e.originator_version = r.version "
                    "WHERE r.request_id = %s"
                ).format(self.requests_table, self.events_table),
                (request_id,),
                prepare=True,
            )
            row = curs.fetchone()
        if row is None:
            return None
        return StoredRequest(
            record=RequestRecord(
                request_id=row["request_id"],
                fingerprint=row["fingerprint"],
                aggregate_id=row["aggregate_id"],
                version=row["version"],
                entity_id=row["entity_id"],
            ),
            position=row["position"],
        )

    def find_claim(self, scope: str, key: str) -> UUID | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT aggregate_id FROM {} WHERE scope = %s AND key = %s").format(
                    self.claims_table
                ),
                (scope, key),
                prepare=True,
            )
            row = curs.fetchone()
        return row["aggregate_id"] if row else None
