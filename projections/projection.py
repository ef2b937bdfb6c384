"""What a read model is: a name, a version, the events it reads, and a fold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, TypeGuard, runtime_checkable

from eventsourcing.persistence import Notification

from domain.events import DomainEvent
from projections.store import Docs


class Projection(Protocol):
    name: ClassVar[str]
    """Stable name: the namespace of its documents and its tracking row."""
    version: ClassVar[int]
    """Bumped when the fold changes: a new version is rebuilt beside the old one."""
    topics: ClassVar[frozenset[str] | None]
    """The event topics it reads (None: all of them)."""

    def apply(self, event: DomainEvent, notification: Notification, docs: Docs) -> None:
        """Fold one event (at ``notification.id`` in the log) into the documents."""
        ...


@runtime_checkable
class StoredProjection(Projection, Protocol):
    """A read model that folds events as stored, so the runner decodes nothing for it.

    Decoding (JSON, then validation into the event model) is most of what
    reading the log costs; a read model that needs only the stored bytes and
    a few body fields (the audit trail) skips it. ``apply_stored`` must write
    what ``apply`` writes for the same event.
    """

    def apply_stored(self, notification: Notification, docs: Docs) -> None: ...


@runtime_checkable
class BatchProjection(StoredProjection, Protocol):
    """A ``StoredProjection`` that folds a whole batch in one call.

    For a read model that does little per event (the audit trail), the calls
    and look-ups a fold per event repeats (its head, its unit of work) are a
    large part of the work. ``apply_stored_batch`` gets the batch's events of
    its topics after its position, in log order, and must write what
    ``apply_stored`` would for each in turn. It must never change a document
    it got (only put new ones): a rebuild folds its next batch while the
    last one's documents are still being written.
    """

    def apply_stored_batch(self, notifications: Sequence[Notification], docs: Docs) -> None: ...


@runtime_checkable
class BodyProjection(Projection, Protocol):
    """A read model that folds some topics from the stored body, when it can be vouched for.

    For the topics in ``body_topics``, the runner hands ``apply_body`` the
    stored body as parsed JSON, and the aggregate's id as the model writes it,
    instead of decoding the event, but only when ``application.stored_bodies``
    vouches for the body (current schema version, every value in the form the
    model's dump writes); any other body is decoded and goes to ``apply``.
    ``apply_body`` must write exactly what ``apply`` writes for the same event,
    and must not change the body (the other read models read it too).
    """

    body_topics: ClassVar[frozenset[str]]

    def apply_body(
        self, body: dict[str, Any], key: str, notification: Notification, docs: Docs
    ) -> None: ...


_last_key: tuple[object, str] = (None, "")


def aggregate_key(event: DomainEvent) -> str:
    """``str(event.originator_id)``, computed once per event however many read models ask.

    Keyed on the id object itself, which is held here, so a later event's id
    cannot be mistaken for it.
    """
    global _last_key
    originator, key = _last_key
    if originator is not event.originator_id:
        originator = event.originator_id
        key = str(originator)
        _last_key = (originator, key)
    return key


_conformance: dict[tuple[type, type], bool] = {}


def _conforms(projection: Projection, protocol: type) -> bool:
    key = (type(projection), protocol)
    found = _conformance.get(key)
    if found is None:
        found = _conformance[key] = isinstance(projection, protocol)
    return found


def folds_stored(projection: Projection) -> TypeGuard[StoredProjection]:
    """``isinstance(projection, StoredProjection)``, worked out once per class.

    A check against a runtime protocol inspects every member each time, and
    the runner asks for every lane and topic of every batch: a few percent of
    a rebuild. Every member of these protocols is defined on the class.
    """
    return _conforms(projection, StoredProjection)


def folds_batches(projection: Projection) -> TypeGuard[BatchProjection]:
    """``isinstance(projection, BatchProjection)``, once per class (see ``folds_stored``)."""
    return _conforms(projection, BatchProjection)


def folds_bodies(projection: Projection) -> TypeGuard[BodyProjection]:
    """``isinstance(projection, BodyProjection)``, once per class (see ``folds_stored``)."""
    return _conforms(projection, BodyProjection)
