"""PostgreSQL recorder: the library's, plus the journal and data keys in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
import psycopg.errors
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from adapters.postgres.availability import Availability
from application.coalescing import Coalescer
from application.journal import Claim, CurrentRead, RequestRecord, StoredRequest, VersionGuard
from application.personal_data import WrappedKey

PIPELINE_BYTES = 256 * 1024
"""Stored bodies above this in one transaction are written without pipeline mode."""


@dataclass(frozen=True)
class Save:
    """One ``insert_events`` call: its events and what its command writes beside them."""

    events: tuple[StoredEvent, ...]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(event.state) for event in (*self.events, *self.snapshots))

    @property
    def requests(self) -> Sequence[RequestRecord]:
        requests: Sequence[RequestRecord] = self.options.get("requests", ())
        return requests

    @property
    def claims(self) -> Sequence[Claim]:
        claims: Sequence[Claim] = self.options.get("claims", ())
        return claims

    @property
    def guards(self) -> Sequence[VersionGuard]:
        guards: Sequence[VersionGuard] = self.options.get("guards", ())
        return guards

    @property
    def destroy_keys(self) -> Sequence[UUID]:
        keys: Sequence[UUID] = self.options.get("destroy_keys", ())
        return keys

    @property
    def snapshots(self) -> Sequence[StoredEvent]:
        snapshots: Sequence[StoredEvent] = self.options.get("snapshots", ())
        return snapshots


def _stored_request(row: DictRow) -> StoredRequest:
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


def _stored_columns(stored: Sequence[StoredEvent]) -> tuple[list[Any], ...]:
    """Events or snapshots as the four arrays their tables' columns take."""
    return (
        [s.originator_id for s in stored],
        [s.originator_version for s in stored],
        [s.topic for s in stored],
        [s.state for s in stored],
    )


def _request_columns(requests: Sequence[RequestRecord]) -> tuple[list[Any], ...]:
    """Request records as the five arrays the journal's columns take."""
    return (
        [r.request_id for r in requests],
        [r.fingerprint for r in requests],
        [r.aggregate_id for r in requests],
        [r.version for r in requests],
        [r.entity_id for r in requests],
    )


def _split(ids: Sequence[int], saves: Sequence[Save]) -> list[Sequence[int]]:
    """The notification ids of one shared insert, handed back save by save, in order."""
    out: list[Sequence[int]] = []
    start = 0
    for save in saves:
        out.append(ids[start : start + len(save.events)])
        start += len(save.events)
    return out


class AccordPostgresRecorder(PostgresApplicationRecorder):
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "accord_events",
        snapshots_table_name: str | None = None,
    ) -> None:
        """``snapshots_table_name`` defaults to the name the library's factory gives the
        snapshot table beside ``events_table_name`` (``accord_snapshots``): snapshots
        are written in the events' transaction (see ``EventLog._due_snapshots``)."""
        Availability.install(datastore)  # PostgreSQL down: fail fast; back: recover
        super().__init__(datastore, events_table_name=events_table_name)
        # Group commit: concurrent saves share one transaction, each acknowledged
        # only after it commits (see application.coalescing).
        self.group_commit: Coalescer[Save, Sequence[int]] = Coalescer(
            self._write_saves, self._write_alone, name="group_commit"
        )
        schema = Identifier(datastore.schema)
        self.requests_table = SQL("{}.{}").format(schema, Identifier("accord_requests"))
        self.claims_table = SQL("{}.{}").format(schema, Identifier("accord_claims"))
        self.keys_table = SQL("{}.{}").format(schema, Identifier("accord_data_keys"))
        self.events_table = SQL("{}.{}").format(schema, Identifier(events_table_name))
        snapshots = snapshots_table_name or events_table_name.removesuffix("_events") + "_snapshots"
        self.snapshots_table = SQL("{}.{}").format(schema, Identifier(snapshots))
        self.insert_requests_statement = SQL(
            "INSERT INTO {} SELECT * FROM unnest("
            "%b::text[], %b::text[], %b::uuid[], %b::bigint[], %b::uuid[])"
        ).format(self.requests_table)
        # A snapshot already stored (the same state: events are never rewritten) is kept.
        self.insert_snapshots_statement = SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "ON CONFLICT DO NOTHING"
        ).format(self.snapshots_table)
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
        self.append_function = SQL("{}.{}").format(schema, Identifier("accord_insert"))
        self.sql_create_statements.append(
            # The common save in one statement: no claims, guards or erasures. Executed
            # alone (autocommit), so the whole transaction is one round trip. Columns as
            # arrays, sent in binary: no text escaping of the bodies. The snapshot
            # insert is planned only when a save has one (the table is the snapshot
            # recorder's, created after this one). Request records and snapshots default
            # to none, so the commonest save sends its four event columns alone.
            SQL(
                "CREATE OR REPLACE FUNCTION {function}("
                "ids uuid[], versions bigint[], topics text[], states bytea[], "
                "request_ids text[] DEFAULT '{{}}', fingerprints text[] DEFAULT '{{}}', "
                "aggregate_ids uuid[] DEFAULT '{{}}', request_versions bigint[] DEFAULT '{{}}', "
                "entity_ids uuid[] DEFAULT '{{}}', snapshot_ids uuid[] DEFAULT '{{}}', "
                "snapshot_versions bigint[] DEFAULT '{{}}', snapshot_topics text[] DEFAULT '{{}}', "
                "snapshot_states bytea[] DEFAULT '{{}}') "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $$ "
                "BEGIN "
                "SET LOCAL lock_timeout = '{lock_timeout}s'; "
                "LOCK TABLE {events} IN EXCLUSIVE MODE; "
                "NOTIFY {channel}; "
                "INSERT INTO {requests} SELECT * FROM unnest("
                "request_ids, fingerprints, aggregate_ids, request_versions, entity_ids); "
                "IF cardinality(snapshot_ids) > 0 THEN "
                "INSERT INTO {snapshots} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(snapshot_ids, snapshot_versions, snapshot_topics, "
                "snapshot_states) ON CONFLICT DO NOTHING; "
                "END IF; "
                "RETURN QUERY INSERT INTO {events} "
                "(originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(ids, versions, topics, states) "
                "RETURNING notification_id; "
                "END $$"
            ).format(
                function=self.append_function,
                lock_timeout=SQL(str(int(datastore.lock_timeout))),
                events=self.events_table,
                channel=Identifier(self.channel_name),
                requests=self.requests_table,
                snapshots=self.snapshots_table,
            )
        )
        # The statements run on every command are rendered once: psycopg renders a
        # composed statement again on every execute.
        self.read_current_statement = (
            SQL(
                "SELECT 0 AS part, e.originator_id, e.originator_version, e.topic, e.state, "
                "NULL::bigint AS position "
                "FROM unnest(%b::uuid[], %b::bigint[]) AS a(id, after) "
                "JOIN {events} e ON e.originator_id = a.id AND e.originator_version > a.after "
                "UNION ALL "
                "SELECT 1, NULL, originator_version, NULL, NULL, notification_id FROM {events} "
                "WHERE originator_id = %s AND originator_version = ANY(%b::bigint[]) "
                "UNION ALL "
                "SELECT 2, NULL, NULL, NULL, NULL, max(notification_id) FROM {events}"
            )
            .format(events=self.events_table)
            .as_bytes(None)
        )
        self.append_statement = (
            SQL(
                "SELECT notification_id FROM {}(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[], "
                "%b::text[], %b::text[], %b::uuid[], %b::bigint[], %b::uuid[], "
                "%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) AS notification_id"
            )
            .format(self.append_function)
            .as_bytes(None)
        )
        self.append_events_statement = (
            SQL(
                "SELECT notification_id FROM {}(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
                "AS notification_id"
            )
            .format(self.append_function)
            .as_bytes(None)
        )
        """A save with neither request records nor snapshots: nine empty arrays fewer to
        send (each adapted in Python on every execute)."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write one save (events and journal), sharing a transaction with concurrent saves.

        A save too large to pipeline is written on its own (it would also make
        everyone queued behind it wait for its transfer).
        """
        if not stored_events:
            return []
        save = Save(tuple(stored_events), kwargs)
        if save.size > PIPELINE_BYTES:
            return self._write_alone(save)
        return self.group_commit.submit(save)

    def _write_alone(self, save: Save) -> Sequence[int]:
        [ids] = self._write_saves([save])
        return ids

    def _write_saves(self, saves: Sequence[Save]) -> list[Sequence[int]]:
        """One transaction for all of ``saves``: one ``accord_insert`` call when they hold
        only events and request records (the common case), else the statements below.

        The library's statements go first (the lock, then the events); ours
        follow, so guards are checked under the lock (no insert can commit
        between check and write). Statements are pipelined unless the bodies
        are large: psycopg's pipeline mode can deadlock on a message of several
        megabytes (client and server each waiting to write). When a statement
        fails, psycopg may raise ``PipelineAborted`` while leaving the
        transaction, which would hide a conflict behind what looks like a
        database fault; the first error is the one raised, so a conflict stays
        a conflict.
        """
        events = [event for save in saves for event in save.events]  # never empty: see above
        if not any(save.claims or save.guards or save.destroy_keys for save in saves):
            return _split(self._append(saves, events), saves)
        pipelined = sum(save.size for save in saves) <= PIPELINE_BYTES
        failure: Exception | None = None
        ids: Sequence[int] | None = None
        with self.datastore.get_connection() as conn:
            try:
                with (
                    conn.pipeline() if pipelined else nullcontext() as pipeline,
                    conn.transaction(),
                    conn.cursor() as curs,
                ):
                    try:
                        super()._insert_stored_events(curs, events)
                        with conn.cursor() as extra:
                            self._write_journals(extra, saves)
                        if pipeline is not None:
                            pipeline.sync()
                        ids = self._fetch_ids_after_insert_events(curs, events)
                    except psycopg.Error as error:
                        failure = error
                        raise
            except psycopg.errors.PipelineAborted:
                if failure is None:
                    raise
            if failure is not None:
                raise failure
        return _split(ids or [], saves)

    def _append(self, saves: Sequence[Save], events: Sequence[StoredEvent]) -> list[int]:
        """Events, request records and snapshots in one statement: lock, insert, commit in
        one round trip."""
        requests = [request for save in saves for request in save.requests]
        snapshots = [snapshot for save in saves for snapshot in save.snapshots]
        params = _stored_columns(events)
        statement = self.append_events_statement
        if requests or snapshots:
            statement = self.append_statement
            params += _request_columns(requests) + _stored_columns(snapshots)
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,  # no dict per returned id
        ):
            curs.execute(statement, params, prepare=True)
            return [row[0] for row in curs.fetchall()]

    def _write_journals(self, curs: Cursor[DictRow], saves: Sequence[Save]) -> None:
        """Request records in one statement, snapshots in another; the rarer claims,
        erasures and guards one by one.

        Not prepared: a prepared statement queued behind a failed one is never
        created on the server, yet psycopg would believe it was, and the
        connection's next use of it would fail.
        """
        requests = [request for save in saves for request in save.requests]
        if requests:
            curs.execute(self.insert_requests_statement, _request_columns(requests), prepare=False)
        snapshots = [snapshot for save in saves for snapshot in save.snapshots]
        if snapshots:
            curs.execute(self.insert_snapshots_statement, _stored_columns(snapshots), prepare=False)
        for save in saves:
            self._write_journal(curs, save.claims, save.destroy_keys, save.guards)

    def _write_journal(
        self,
        curs: Cursor[DictRow],
        claims: Sequence[Claim],
        destroy_keys: Sequence[UUID],
        guards: Sequence[VersionGuard],
    ) -> None:
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
        return self.find_requests([request_id]).get(request_id)

    def find_requests(self, request_ids: Sequence[str]) -> dict[str, StoredRequest]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT r.*, e.notification_id AS position FROM {} r JOIN {} e "
                    "ON e.originator_id = r.aggregate_id AND e.originator_version = r.version "
                    "WHERE r.request_id = ANY(%b::text[])"
                ).format(self.requests_table, self.events_table),
                (list(request_ids),),
                prepare=True,
            )
            return {row["request_id"]: _stored_request(row) for row in curs.fetchall()}

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

    def read_current(
        self, after: Sequence[tuple[UUID, int]], positions_of: UUID, versions: Sequence[int]
    ) -> CurrentRead:
        """One statement, so one snapshot: the head and everything read agree."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(
                self.read_current_statement,
                (
                    [aggregate_id for aggregate_id, _ in after],
                    [version for _, version in after],
                    positions_of,
                    list(versions),
                ),
                prepare=True,
            )
            rows = curs.fetchall()
        newer: dict[UUID, list[StoredEvent]] = {aggregate_id: [] for aggregate_id, _ in after}
        positions: dict[int, int] = {}
        head = 0
        for part, originator_id, version, topic, state, position in rows:
            if part == 0:
                newer[originator_id].append(StoredEvent(originator_id, version, topic, state))
            elif part == 1:
                positions[version] = position
            else:
                head = position or 0
        for events in newer.values():
            events.sort(key=lambda event: event.originator_version)
        return CurrentRead(newer, positions, head)

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

    def get_data_keys(self, customer_ids: Sequence[UUID]) -> dict[UUID, WrappedKey]:
        if not customer_ids:
            return {}
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(
                SQL(
                    "SELECT customer_id, wrapped_key, master_key_id FROM {} "
                    "WHERE customer_id = ANY(%b::uuid[])"
                ).format(self.keys_table),
                (list(customer_ids),),
                prepare=True,
            )
            return {
                customer_id: WrappedKey(bytes(wrapped) if wrapped is not None else None, key_id)
                for customer_id, wrapped, key_id in curs.fetchall()
            }

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
