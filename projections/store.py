"""The ports a read model is written against: documents by kind and key.

Every read model keeps its state as JSON documents in its own namespace
(its name and a *generation*, so a rebuild can be built beside the copy that
serves). A batch of events is applied to a ``Docs`` unit of work; the store
adapter writes the changed documents and the new tracking position in one
transaction, which is what makes every projection exactly-once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from eventsourcing.persistence import Notification

Doc = dict[str, Any]
Change = tuple[str, str, str | None, Doc | None]
"""(kind, key, group, document); a None document deletes."""
Entry = tuple[int, str | None, str]
"""(log position, group, the entry as JSON) of a read model's log (see ``Docs.record``)."""
ENTRY_KIND = "entry"
"""The kind under which ``ViewStore.dump`` lists a generation's entries (keyed ``entry_key``)."""


def entry_key(position: int) -> str:
    """A log position as a key that sorts as the position does."""
    return f"{position:020d}"


_standard_dump = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def dump_doc(doc: Doc) -> str:
    """A document as the stores write it: sorted keys, no whitespace.

    By orjson, several times faster than the standard library: a document
    that changes is written again with every batch that changes it, and one
    that holds a customer's purchases grows with them, so encoding was half
    of what following the log cost. What orjson refuses (integers beyond 64
    bits, non-string keys, a lone surrogate) goes through the standard
    library; both read back to the same values. A float that is not a number
    would be written as null, where the standard library writes a bare NaN
    that JSON does not allow: no read model computes one (their arithmetic is
    on integers and decimals).
    """
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return _standard_dump(doc)


def parse_doc(text: str) -> Doc:
    """A stored document: by orjson, or ``json`` for what orjson refuses (NaN, a lone surrogate)."""
    try:
        doc: Doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        doc = json.loads(text)
    return doc


class DocReader(Protocol):
    """Read access to one generation of one read model, as of one log position."""

    @property
    def position(self) -> int:
        """The last log position this read model has applied."""
        ...

    def get(self, kind: str, key: str) -> Doc | None: ...

    def scan(
        self,
        kind: str,
        *,
        group: str | None = None,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[str, Doc]]:
        """Documents of ``kind`` (optionally of one group) in key order."""
        ...

    def entries(
        self, *, after: int = 0, group: str | None = None, limit: int | None = None
    ) -> Iterator[Doc]:
        """The read model's entries after log position ``after`` (of one group), in log order."""
        ...


class Docs(DocReader, Protocol):
    """A unit of work: reads see this batch's own writes.

    A document ``get`` returns may be the very object a later batch gets
    again (the runner keeps recent ones): change it only to ``put`` it back.
    """

    def put(self, kind: str, key: str, doc: Doc, *, group: str | None = None) -> None: ...

    def delete(self, kind: str, key: str) -> None: ...

    def record(self, entries: Sequence[Entry]) -> None:
        """Add entries to the read model's log: at most one per log position, never changed.

        For read models that write a document per event (the audit trail): a
        generation applies each position once, so the store keeps them apart
        from the documents, keyed by position, and inserts them in bulk, as
        the JSON text the read model made of them (it knows their shape). An
        entry's group, if any, is the id of the aggregate whose event is at
        its position (as the model writes it): a store may find a group's
        entries through the log's own index by aggregate.
        """
        ...


@dataclass
class Commit:
    """One read model's share of a batch: its changes and its tracking move."""

    name: str
    generation: int
    expected: int
    position: int
    changes: list[Change] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    activate_version: int | None = None
    """Make this generation the active one in the same transaction."""
    texts: list[str | None] | None = None
    """The changed documents as ``dump_doc`` writes them (None where one is deleted), when
    the caller made them: it may then change the documents while the commit is written."""

    def encode(self) -> list[str | None]:
        """Write the changed documents out now (``texts``)."""
        self.texts = [None if doc is None else dump_doc(doc) for *_, doc in self.changes]
        return self.texts

    def doc_rows(
        self,
    ) -> tuple[list[tuple[str, int, str, str, str | None, str]], list[tuple[str, int, str, str]]]:
        """The documents to write, as rows, and the keys of those to delete.

        A document changed more than once counts once, as its last change left
        it: a store may then write them all in one statement, which must not
        touch a row twice.
        """
        texts = self.texts if self.texts is not None else self.encode()
        name, generation = self.name, self.generation
        last = {
            (kind, key): (group, text)
            for (kind, key, group, _), text in zip(self.changes, texts, strict=True)
        }
        upserts = [
            (name, generation, kind, key, group, text)
            for (kind, key), (group, text) in last.items()
            if text is not None
        ]
        deletes = [
            (name, generation, kind, key) for (kind, key), (_, text) in last.items() if text is None
        ]
        return upserts, deletes


class ViewStore(Protocol):
    """Where read models live: the store adapter (same database as the events)."""

    def create_tables(self) -> None: ...

    def state(self, name: str) -> tuple[int, int] | None:
        """The active (generation, version) of a read model, None before its first build."""
        ...

    def set_active(self, name: str, generation: int, version: int) -> None: ...

    def position(self, name: str, generation: int) -> int | None:
        """Tracking position of a generation (None: not started)."""
        ...

    def active(self) -> dict[str, tuple[int, int]]:
        """Every read model's active (generation, position), in one read.

        A follower asks before every batch: one statement instead of two per
        read model (at a few hundred commands a second, those reads were most
        of the follower's work). A read model built but not tracked yet shows
        position 0; one never built is left out.
        """
        ...

    def start(self, name: str, generation: int) -> None:
        """Begin a generation at position 0 (clearing anything left of an earlier try)."""
        ...

    def load(self, name: str, generation: int, kind: str, key: str) -> Doc | None: ...

    def load_many(
        self, name: str, generation: int, kind: str, keys: Sequence[str]
    ) -> dict[str, Doc]:
        """The documents of ``kind`` among ``keys`` (those not stored are left out)."""
        ...

    def scan(
        self,
        name: str,
        generation: int,
        kind: str,
        *,
        group: str | None,
        after_key: str | None,
        limit: int | None,
    ) -> list[tuple[str, Doc]]: ...

    def entries(
        self, name: str, generation: int, *, after: int, group: str | None, limit: int | None
    ) -> list[Doc]:
        """A generation's entries after log position ``after`` (of one group), in log order."""
        ...

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
        """Write changes and move tracking ``expected`` -> ``position`` in one transaction.

        False (nothing written) if the tracking position was not ``expected``:
        another worker got there first. With ``activate_version``, the same
        transaction makes this generation the active one.
        """
        ...

    def commit_all(self, commits: Sequence[Commit], *, durable: bool = True) -> list[bool]:
        """``commit`` several read models' batches in one transaction; each one's outcome.

        A read model whose tracking position was not ``expected`` writes
        nothing (False); the others still commit. ``durable=False`` lets the
        database acknowledge before the transaction is flushed to disk: for a
        generation that does not serve yet, a crash then loses whole batches
        (documents and tracking together), which the next run redoes.
        """
        ...

    def read_log(self, after: int, limit: int) -> Sequence[Notification]:
        """Up to ``limit`` recorded events after position ``after``, in log order.

        The same events as the recorder's ``select_notifications``, read in
        the cheapest way the store allows (read models read the whole log).
        """
        ...

    def drop(self, name: str, generation: int) -> None: ...

    def dump(self, name: str, generation: int) -> dict[tuple[str, str], tuple[str | None, Doc]]:
        """Every document of a generation (for comparing a rebuild with the live copy).

        Entries are listed too, as documents of kind ``ENTRY_KIND`` keyed ``entry_key``.
        """
        ...

    def reader(self, name: str, generation: int) -> AbstractContextManager[DocReader]:
        """A consistent read of one generation (documents and position together)."""
        ...

    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        """Try to become the one active worker of ``name`` (True if this process is)."""
        ...

    def holds(self, name: str) -> bool:
        """Whether the ``exclusive`` hold this process took on ``name`` is still in force.

        It is not once the database has lost the session that held it (a
        restart): the worker must then let go and take it again.
        """
        ...

    def wait_for_events(self, timeout: float) -> None:
        """Block until new events may have been recorded, or ``timeout`` seconds."""
        ...
