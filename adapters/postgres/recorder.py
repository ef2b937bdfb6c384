"""PostgreSQL recorder: the library's, plus the journal and data keys in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
import psycopg.errors
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from adapters.postgres.availability import Availability
from application.journal import Claim, RequestRecord, StoredRequest, VersionGuard
from application.personal_data import WrappedKey

PIPELINE_BYTES = 256 * 1024
"""Stored bodies above this in one save are written without pipeline mode."""


class AccordPostgresRecorder(PostgresApplicationRecorder):
    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "accord_events"
    ) -> None:
        Availability.install(datastore)  # PostgreSQL down: fail fast; back: recover
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(datastore.schema)
        self.requests_table = SQL("{}.{}").format(schema, Identifier("accord_requests"))
        self.claims_table = SQL("{}.{}").format(schema, Identifier("accord_claims"))
        self.keys_table = SQL("{}.{}").format(schema, Identifier("accord_data_keys"))
        self.events_table = SQL("{}.{}").format(schema, Identifier(events_table_name))
        self.expect_version = SQL("{}.{}").format(schema, Identifier("accord_expect_version"))
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
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    "customer_id uuid PRIMARY KEY, "
                    "wrapped_key bytea, "
                    "master_key_id text NOT NULL, "
                    "destroyed boolean NOT NULL DEFAULT false)"
                ).format(self.keys_table),
                # Raises an integrity error (a conflict: the caller decides again) when
                # an aggregate the decision read has moved on since.
                SQL(
                    "CREATE OR REPLACE FUNCTION {}(aggregate uuid, expected bigint) "
                    "RETURNS void LANGUAGE plpgsql AS $$ "
                    "DECLARE actual bigint; "
                    "BEGIN "
                    "SELECT max(originator_version) INTO actual FROM {} "
                    "WHERE originator_id = aggregate; "
                    "IF actual IS DISTINCT FROM expected THEN "
                    "RAISE EXCEPTION 'aggregate % moved on from version %', aggregate, expected "
                    "USING ERRCODE = 'integrity_constraint_violation'; "
                    "END IF; "
                    "END $$"
                ).format(self.expect_version, self.events_table),
            ]
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's pipelined insert, keeping the first error when the pipeline aborts.

        When a statement fails (a duplicate version or request id: a conflict),
        psycopg may raise ``PipelineAborted`` while leaving the transaction, and
        that would hide the conflict behind what looks like a database fault.
        Here the first error is the one raised, so a conflict stays a conflict.
        """
        if sum(len(event.state) for event in stored_events) > PIPELINE_BYTES:
            return self._insert_events_unpipelined(stored_events, **kwargs)
        failure: Exception | None = None
        notification_ids: Sequence[int] | None = None
        with self.datastore.get_connection() as conn:
            try:
                with conn.pipeline() as pipeline, conn.transaction():
                    with conn.cursor() as curs:
                        self._insert_events(curs, stored_events, **kwargs)
                    if stored_events:
                        with conn.cursor() as curs:
                            try:
                                self._insert_stored_events(curs, stored_events, **kwargs)
                                pipeline.sync()
                                notification_ids = self._fetch_ids_after_insert_events(
                                    curs, stored_events, **kwargs
                                )
                            except psycopg.Error as error:
                                failure = error
            except psycopg.errors.PipelineAborted:
                if failure is None:
                    raise
            if failure is not None:
                raise failure
        return notification_ids

    def _insert_events_unpipelined(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The same statements, one round trip each: for batches too large to pipeline.

        psycopg's pipeline mode can deadlock on a message of several megabytes
        (client and server each waiting to write), hanging the call for ever.
        """
        with self.datastore.get_connection() as conn, conn.transaction():
            with conn.cursor() as curs:
                self._insert_events(curs, stored_events, **kwargs)
            with conn.cursor() as curs:
                self._insert_stored_events(curs, stored_events, **kwargs)
                return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """Write the journal beside the events, in the library's pipelined transaction.

        The library's statements go first: the table lock, then the events. Ours
        follow, so the guards are checked under the lock (no insert can commit
        between check and write), and any failure of ours comes last in the
        pipeline. They are not prepared: a prepared statement queued behind a
        failed one is never created on the server, yet psycopg would believe it
        was, and the connection's next use of it would fail.
        """
        request: RequestRecord | None = kwargs.get("request")
        claims: Sequence[Claim] = kwargs.get("claims", ())
        guards: Sequence[VersionGuard] = kwargs.get("guards", ())
        destroy_keys: Sequence[UUID] = kwargs.get("destroy_keys", ())
        super()._insert_stored_events(curs, stored_events, **kwargs)
        # A cursor of our own: the library reads the new notification ids from ``curs``.
        with curs.connection.cursor() as extra:
            self._write_journal(extra, request, claims, destroy_keys, guards)

    def _write_journal(
        self,
        curs: Cursor[DictRow],
        request: RequestRecord | None,
        claims: Sequence[Claim],
        destroy_keys: Sequence[UUID],
        guards: Sequence[VersionGuard],
    ) -> None:
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
                prepare=False,
            )
        for claim in claims:
            curs.execute(
                SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(self.claims_table),
                (claim.scope, claim.key, claim.aggregate_id),
                prepare=False,
            )
        for customer_id in destroy_keys:
            curs.execute(
                SQL(
                    "UPDATE {} SET wrapped_key = NULL, destroyed = true WHERE customer_id = %s"
                ).format(self.keys_table),
                (customer_id,),
                prepare=False,
            )
        for guard in guards:
            curs.execute(
                SQL("SELECT {}(%s, %s)").format(self.expect_version),
                (guard.aggregate_id, guard.version),
                prepare=False,
            )

    # ------------------------------------------------------------ the journal

    def _fetch_one(self, statement: Composed, params: tuple[Any, ...]) -> DictRow | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return curs.fetchone()

    def find_request(self, request_id: str) -> StoredRequest | None:
        row = self._fetch_one(
            SQL(
                "SELECT r.*, e.notification_id AS position FROM {} r JOIN {} e "
                "ON e.originator_id = r.aggregate_id AND e.originator_version = r.version "
                "WHERE r.request_id = %s"
            ).format(self.requests_table, self.events_table),
            (request_id,),
        )
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
        row = self._fetch_one(
            SQL("SELECT aggregate_id FROM {} WHERE scope = %s AND key = %s").format(
                self.claims_table
            ),
            (scope, key),
        )
        return row["aggregate_id"] if row else None

    def positions(self, aggregate_id: UUID) -> dict[int, int]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT originator_version, notification_id FROM {} WHERE originator_id = %s"
                ).format(self.events_table),
                (aggregate_id,),
                prepare=True,
            )
            return {row["originator_version"]: row["notification_id"] for row in curs.fetchall()}

    # -------------------------------------------------------------- data keys

    def get_data_key(self, customer_id: UUID) -> WrappedKey | None:
        row = self._fetch_one(
            SQL("SELECT wrapped_key, master_key_id FROM {} WHERE customer_id = %s").format(
                self.keys_table
            ),
            (customer_id,),
        )
        if row is None:
            return None
        wrapped = row["wrapped_key"]
        return WrappedKey(bytes(wrapped) if wrapped is not None else None, row["master_key_id"])

    def create_data_key(self, customer_id: UUID, key: WrappedKey) -> WrappedKey:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} (customer_id, wrapped_key, master_key_id) "
                    "VALUES (%s, %s, %s) ON CONFLICT (customer_id) DO NOTHING"
                ).format(self.keys_table),
                (customer_id, key.wrapped, key.master_key_id),
            )
        stored = self.get_data_key(customer_id)
        assert stored is not None
        return stored

    def all_data_keys(self) -> list[tuple[UUID, WrappedKey]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT customer_id, wrapped_key, master_key_id FROM {}").format(
                    self.keys_table
                )
            )
            return [
                (
                    r["customer_id"],
                    WrappedKey(
                        bytes(r["wrapped_key"]) if r["wrapped_key"] is not None else None,
                        r["master_key_id"],
                    ),
                )
                for r in curs.fetchall()
            ]

    def master_key_ids(self) -> set[str]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT DISTINCT master_key_id FROM {} WHERE wrapped_key IS NOT NULL").format(
                    self.keys_table
                )
            )
            return {r["master_key_id"] for r in curs.fetchall()}

    def replace_data_keys(self, keys: list[tuple[UUID, WrappedKey]], previous_id: str) -> int:
        with self.datastore.transaction(commit=True) as curs:
            for customer_id, key in keys:
                curs.execute(
                    SQL(
                        "UPDATE {} SET wrapped_key = %s, master_key_id = %s "
                        "WHERE customer_id = %s AND master_key_id = %s "
                        "AND wrapped_key IS NOT NULL"
                    ).format(self.keys_table),
                    (key.wrapped, key.master_key_id, customer_id, previous_id),
                )
        return len(keys)
