"""The ports a read model is written against: documents by kind and key.

Every read model keeps its state as JSON documents in its own namespace
(its name and a *generation*, so a rebuild can be built beside the copy that
serves). A batch of events is applied to a ``Docs`` unit of work; the store
adapter writes the changed documents and the new tracking position in one
transaction, which is what makes every projection exactly-once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.persistence import Notification

Doc = dict[str, Any]
Change = tuple[str, str, str | None, Doc | None]
"""(kind, key, group, document); a None document deletes."""
Append = tuple[str, str, str | None, Doc, str | None]
"""(kind, key, group, document, its JSON if the caller had it) of a document no
earlier batch wrote."""


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


class Docs(DocReader, Protocol):
    """A unit of work: reads see this batch's own writes.

    A document ``get`` returns may be the very object a later batch gets
    again (the runner keeps recent ones): change it only to ``put`` it back.
    """

    def put(self, kind: str, key: str, doc: Doc, *, group: str | None = None) -> None: ...

    def delete(self, kind: str, key: str) -> None: ...

    def append(
        self, kind: str, key: str, doc: Doc, *, group: str | None = None, text: str | None = None
    ) -> None:
        """``put`` a document that no earlier batch can have written.

        For documents keyed by log position (the audit trail's entries): a
        generation applies each position once, so the store can insert them
        in bulk instead of upserting one by one. ``text``, when the caller
        has it, is ``doc`` as JSON, stored as it is.
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
    appends: list[Append] = field(default_factory=list)
    activate_version: int | None = None
    """Make this generation the active one in the same transaction."""


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

    def start(self, name: str, generation: int) -> None:
        """Begin a generation at position 0 (clearing anything left of an earlier try)."""
        ...

    def load(self, name: str, generation: int, kind: str, key: str) -> Doc | None: ...

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
        """Every document of a generation (for comparing a rebuild with the live copy)."""
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
