"""What makes a rebuild cheap keeps its results: entries, the audit trail's fold, the reads.

The audit trail's entries live apart from the documents (``Docs.record``),
its fold takes a batch at a time and parses bodies with orjson, the log is
read with ids as text and the next batch read ahead, and documents a batch
needs are loaded in one query. Each is checked here against what it replaces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import Notification

from application.mapper import EventMapper
from application.service import Accord
from application.stored_bodies import body_plan
from domain.customer import InteractionRecorded
from domain.events import DomainEvent
from projections import audit_trail
from projections.audit_trail import (
    EMPTY,
    AuditTrail,
    stored_body,
    stored_summary,
)
from projections.runner import BatchKeys, ReadAhead, UnitOfWork
from projections.store import ENTRY_KIND, Commit, Doc, Entry, dump_doc, entry_key
from tests.builders import bulk_purchases
from tests.conftest import ReadModelsFactory
from tests.projections.memory import MemoryDocs
from tests.projections.test_rebuild_pass import _all_notifications, _world
from tests.support import FakeClock

# ------------------------------------------------------------------ entries


def test_entries_are_kept_by_position_read_by_group_and_cleared_with_their_generation(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    bulk_purchases(accord, customers=2, per_customer=1, now=clock.now())
    models = make_read_models(accord)
    log = _all_notifications(models)[-3:]
    a, b = str(log[0].originator_id), str(log[-1].originator_id)
    assert a != b
    groups = [str(n.originator_id) for n in log]
    views = models.views
    views.start("trail", 7)
    views.start("other", 7)
    p = [n.id for n in log]
    entries: list[Entry] = [
        (p[0], groups[0], '{"n":1}'),
        (p[1], groups[1], '{"n":2,"s":"\\u00e9"}'),
        (p[2], groups[2], '{"n":3}'),
    ]
    commit = views.commit_all
    assert commit([Commit("trail", 7, 0, p[2], [], entries), Commit("other", 7, 0, 1, [])]) == [
        True,
        True,
    ]

    every = [{"n": 1}, {"n": 2, "s": "\u00e9"}, {"n": 3}]
    assert views.entries("trail", 7, after=0, group=None, limit=None) == every
    mine = [doc for doc, group in zip(every, groups, strict=True) if group == b]
    assert views.entries("trail", 7, after=0, group=b, limit=None) == mine
    assert views.entries("trail", 7, after=p[0], group=None, limit=1) == every[1:2]
    assert views.entries("trail", 7, after=0, group=str(uuid4()), limit=None) == []
    assert views.entries("trail", 7, after=0, group="not an id", limit=None) == []
    assert views.entries("other", 7, after=0, group=None, limit=None) == []
    with views.reader("trail", 7) as reader:
        assert list(reader.entries(group=a)) == [
            doc for doc, group in zip(every, groups, strict=True) if group == a
        ]
        assert reader.position == p[2]
    assert views.dump("trail", 7)[(ENTRY_KIND, entry_key(p[1]))] == (groups[1], every[1])

    # Written once: a second entry at a position is refused, and nothing of its batch stays.
    with pytest.raises(Exception, match=r"(?i)unique"):  # the store's own integrity error
        commit([Commit("trail", 7, p[2], p[2] + 1, [("k", "x", None, {"y": 1})], entries[2:])])
    assert views.position("trail", 7) == p[2]
    assert views.load("trail", 7, "k", "x") is None

    views.start("trail", 7)  # a generation begun again starts empty
    assert views.entries("trail", 7, after=0, group=None, limit=None) == []
    commit([Commit("trail", 7, 0, p[0], [], entries[:1])])
    views.drop("trail", 7)
    assert views.dump("trail", 7) == {}


def test_a_commit_writes_each_document_as_its_last_change_left_it(
    accord: Accord, make_read_models: ReadModelsFactory
) -> None:
    """The store writes a commit's documents in one statement, which sees no order among them."""
    views = make_read_models(accord).views
    views.start("docs", 3)
    many = [("customer", f"c{i}", f"g{i % 3}", {"n": i, "s": 'é"\\'}) for i in range(600)]
    assert views.commit("docs", 3, 0, 1, list(many))
    assert views.dump("docs", 3) == {(k, key): (g, doc) for k, key, g, doc in many}

    changed = [
        ("customer", "c0", "g0", {"n": "first"}),
        ("customer", "c0", "g7", {"n": "again"}),  # changed twice: the last change stays
        ("customer", "c1", None, None),  # deleted
        ("customer", "c2", None, None),
        ("customer", "c2", "g9", {"n": "back"}),  # deleted, then written again
        ("customer", "c3", "g3", {"n": "brief"}),
        ("customer", "c3", None, None),  # written, then deleted
        ("customer", "new", None, {"n": "new"}),
    ]
    assert views.commit("docs", 3, 1, 2, changed)
    after = views.dump("docs", 3)
    assert after[("customer", "c0")] == ("g7", {"n": "again"})
    assert after[("customer", "c2")] == ("g9", {"n": "back"})
    assert after[("customer", "new")] == (None, {"n": "new"})
    assert ("customer", "c1") not in after
    assert ("customer", "c3") not in after
    assert after[("customer", "c599")] == ("g2", {"n": 599, "s": 'é"\\'})
    assert len(after) == 600 - 2 + 1

    # A commit whose tracking position has moved on writes nothing.
    assert not views.commit("docs", 3, 1, 3, [("customer", "c4", None, None)])
    assert views.dump("docs", 3) == after
    assert views.position("docs", 3) == 2


# --------------------------------------------------------- the audit trail


def _interaction(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> Notification:
    bulk_purchases(accord, customers=1, per_customer=1, now=clock.now())
    notifications = _all_notifications(make_read_models(accord))
    return next(n for n in notifications if n.topic == InteractionRecorded.topic)


def _edited(notification: Notification, **changes: Any) -> Notification:
    body = json.loads(notification.state)
    body.update(changes)
    return Notification(
        id=notification.id,
        originator_id=notification.originator_id,
        originator_version=notification.originator_version,
        topic=notification.topic,
        state=json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
    )


def _entry(notification: Notification) -> Doc:
    docs = MemoryDocs()
    AuditTrail().apply_stored(notification, docs)
    return docs.log[notification.id][1]


def test_entries_in_a_row_differing_in_one_envelope_field_each_carry_their_own(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    """A batch writes a save's shared fields once; each field that changes is its own."""
    bulk_purchases(accord, customers=1, per_customer=1, now=clock.now())
    log = _all_notifications(make_read_models(accord))
    registered = next(n for n in log if n.topic != InteractionRecorded.topic)
    interaction = next(n for n in log if n.topic == InteractionRecorded.topic)
    other = str(uuid4())
    changes: list[tuple[Notification, dict[str, Any], Any]] = [
        (interaction, {}, interaction.originator_id),
        (interaction, {}, interaction.originator_id),  # the same save
        (interaction, {"request_id": "another request"}, interaction.originator_id),
        (interaction, {"timestamp": "2031-01-01T00:00:00.000001Z"}, interaction.originator_id),
        (interaction, {"actor": "another-actor"}, interaction.originator_id),
        (interaction, {"correlation_id": "another correlation"}, interaction.originator_id),
        (interaction, {}, other),  # another aggregate
        (registered, {}, other),  # another topic
    ]
    batch = []
    envelope: dict[str, Any] = {}
    for offset, (stored, change, originator_id) in enumerate(changes):
        envelope.update(change)
        edited = _edited(stored, **envelope)
        batch.append(
            Notification(
                id=1000 + offset,
                originator_id=originator_id,
                originator_version=edited.originator_version,
                topic=edited.topic,
                state=edited.state,
            )
        )
    docs = MemoryDocs()
    AuditTrail().apply_stored_batch(batch, docs)
    for notification in batch:
        alone = {k: v for k, v in _entry(notification).items() if k != "hash"}
        assert {k: v for k, v in docs.log[notification.id][1].items() if k != "hash"} == alone


@pytest.mark.parametrize(
    "changes",
    [
        {"satisfaction": 123456789012345678901234567890},  # beyond 64 bits: orjson makes a float
        {"satisfaction": -9223372036854775809},
        {"contact_ids": [18446744073709551616]},
        {"actor": 2**70},
        {"satisfaction": 1.5},
    ],
)
def test_a_body_orjson_reads_otherwise_than_the_standard_library_gives_the_same_entry(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory, changes: dict[str, Any]
) -> None:
    edited = _edited(_interaction(accord, clock, make_read_models), **changes)
    event_class, body = stored_body(edited)  # the standard library's reading
    entry = _entry(edited)
    assert entry["summary"] == stored_summary(event_class, body)
    assert entry["actor"] == body["actor"]
    assert str(changes[next(iter(changes))]).strip("[]") in json.dumps(entry)


@pytest.mark.parametrize("value", [None, "", [], {}, 0, 0.0, False, "0", [0], {"a": None}, "x"])
def test_a_summary_leaves_out_exactly_the_empty_values(value: Any) -> None:
    body: dict[str, Any] = dict.fromkeys(InteractionRecorded.model_fields)
    body["kind"] = value
    shown = stored_summary(InteractionRecorded, body)
    assert ("kind=" in shown) is (value is not None and value not in EMPTY)


def test_a_batch_folds_as_its_events_one_at_a_time(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _world(accord, clock)
    notifications = _all_notifications(make_read_models(accord))
    one, batched = MemoryDocs(), MemoryDocs()
    trail = AuditTrail()
    for notification in notifications:
        trail.apply_stored(notification, one)
    AuditTrail().apply_stored_batch(notifications[:5], batched)
    AuditTrail().apply_stored_batch(notifications[5:], batched)  # another instance: reads HEAD
    assert batched.dumped() == one.dumped()
    assert audit_trail.digest(batched) == audit_trail.digest(one)


# ------------------------------------------------------------------ reading


def test_the_log_read_for_read_models_is_the_recorders_with_ids_as_text(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    _world(accord, clock)
    read = _all_notifications(make_read_models(accord))
    library = accord.log.recorder.select_notifications(1, 10_000)
    assert len(read) == len(library) > 10
    for ours, theirs in zip(read, library, strict=True):
        assert isinstance(ours, Notification)
        assert str(ours.originator_id) == str(theirs.originator_id)
        assert (ours.id, ours.originator_version, ours.topic, bytes(ours.state)) == (
            theirs.id,
            theirs.originator_version,
            theirs.topic,
            bytes(theirs.state),
        )
        event = EventMapper(accord.log.vault, references=True).to_domain_event(ours)
        assert isinstance(event, DomainEvent)
        assert event.originator_id == theirs.originator_id


class _Log:
    """A log of ``size`` events that counts its reads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reads: list[int] = []

    def read_log(self, after: int, limit: int) -> list[Notification]:
        self.reads.append(after)
        return [
            Notification(id=p, originator_id=uuid4(), originator_version=1, topic="t", state=b"")
            for p in range(after + 1, min(after + limit, self.size) + 1)
        ]


def test_a_batch_read_ahead_serves_only_the_batch_starting_where_it_was_read() -> None:
    log = _Log(10)
    ahead = ReadAhead(log, 4)  # type: ignore[arg-type]
    try:
        assert [n.id for n in ahead.read(0)] == [1, 2, 3, 4]
        ahead.prefetch(4)
        assert [n.id for n in ahead.read(4)] == [5, 6, 7, 8]
        ahead.prefetch(8)
        assert [n.id for n in ahead.read(6)] == [7, 8, 9, 10]  # not where it was read: read anew
    finally:
        ahead.close()
    assert log.reads.count(4) == 1
    assert sorted(log.reads) == [0, 4, 6, 8] or sorted(log.reads) == [0, 4, 6]


def test_a_rebuild_reads_each_batch_once(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    bulk_purchases(accord, customers=3, per_customer=10, now=clock.now())
    views = make_read_models(accord, batch_size=4)
    head = accord.log.recorder.max_notification_id() or 0
    reads: list[int] = []
    read_log = views.views.read_log

    def counted(after: int, limit: int) -> Sequence[Notification]:
        reads.append(after)
        return read_log(after, limit)

    views.views.read_log = counted  # type: ignore[method-assign]
    assert views.runner.rebuild_many(list(views.runner.projections)) is not None
    assert len(reads) == len(set(reads)) == -(-head // 4)


@pytest.mark.parametrize("size", [0, -1])
def test_read_models_in_batches_of_none_are_refused(
    accord: Accord, make_read_models: ReadModelsFactory, size: int
) -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        make_read_models(accord, batch_size=size)


class _Docs:
    """A store of one document per key, counting how it was asked for them."""

    def __init__(self, docs: dict[str, Doc]) -> None:
        self.docs = docs
        self.one_by_one: list[str] = []
        self.together: list[list[str]] = []

    def load(self, name: str, generation: int, kind: str, key: str) -> Doc | None:
        self.one_by_one.append(key)
        return self.docs.get(key)

    def load_many(
        self, name: str, generation: int, kind: str, keys: Sequence[str]
    ) -> dict[str, Doc]:
        self.together.append(list(keys))
        return {k: self.docs[k] for k in keys if k in self.docs}


def test_the_documents_of_a_batchs_aggregates_are_loaded_in_one_query() -> None:
    ids = [str(uuid4()) for _ in range(3)]
    store = _Docs({ids[0]: {"n": 0}, ids[2]: {"n": 2}})
    batch = [
        Notification(id=i + 1, originator_id=ids[i % 3], originator_version=1, topic="t", state=b"")
        for i in range(6)
    ]
    unit = UnitOfWork(store, "m", 1, 0, None, BatchKeys(batch))  # type: ignore[arg-type]

    assert unit.get("customer", ids[1]) is None
    assert unit.get("customer", ids[0]) == {"n": 0}
    assert unit.get("customer", ids[2]) == {"n": 2}
    assert unit.get("customer", "not-in-the-batch") is None
    assert len(store.together) == 1
    assert sorted(store.together[0]) == sorted(ids)
    assert store.one_by_one == ["not-in-the-batch"]


def test_a_body_with_other_keys_as_many_as_the_plans_is_not_vouched_for(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    notification = _interaction(accord, clock, make_read_models)
    plan = body_plan(notification.topic)
    assert plan is not None
    assert plan.body(notification.state) is not None
    body = json.loads(notification.state)
    body["summarY"] = body.pop("summary")
    assert plan.body(json.dumps(body).encode()) is None
    del body["summarY"]
    assert plan.body(json.dumps(body).encode()) is None


def test_a_trail_built_before_entries_is_still_read_until_its_rebuild_switches_over() -> None:
    legacy = MemoryDocs()
    aggregate = str(uuid4())
    for position in (1, 2, 3):
        group = aggregate if position != 2 else "other"
        doc: Doc = {"position": position, "aggregate_id": group}
        legacy.put("event", audit_trail.event_key(position), doc, group=group)
    assert [d["position"] for d in audit_trail.events(legacy, after=1)] == [2, 3]
    assert [d["position"] for d in audit_trail.events(legacy, aggregate_id=aggregate)] == [1, 3]
    assert list(audit_trail.events(legacy, after=3)) == []


def _written(models: Any, delay: float) -> list[tuple[str, int, dict[tuple[str, str], str | None]]]:
    """Each commit a rebuild makes, as the store writes it, ``delay`` seconds after it is asked."""
    written = []
    commit_all = models.views.commit_all

    def slow(commits: Sequence[Commit], *, durable: bool = True) -> list[bool]:
        time.sleep(delay)  # the next batch is folded meanwhile, when commits are pipelined
        for commit in commits:
            texts = commit.texts or [
                None if doc is None else dump_doc(doc) for *_, doc in commit.changes
            ]
            docs = {
                (kind, key): text
                for (kind, key, _, _), text in zip(commit.changes, texts, strict=True)
            }
            written.append((commit.name, commit.position, docs))
        outcomes: list[bool] = commit_all(commits, durable=durable)
        return outcomes

    models.views.commit_all = slow
    return written


def test_a_batch_folded_while_the_one_before_commits_changes_nothing_that_one_writes(
    accord: Accord, clock: FakeClock, make_read_models: ReadModelsFactory
) -> None:
    bulk_purchases(accord, customers=2, per_customer=20, now=clock.now())
    one_by_one = make_read_models(accord, batch_size=5)
    one_by_one.runner.pipelined = False
    expected = _written(one_by_one, 0)
    assert one_by_one.runner.rebuild_many(list(one_by_one.runner.projections)) is not None

    pipelined = make_read_models(accord, batch_size=5)
    assert pipelined.runner.pipelined
    written = _written(pipelined, 0.02)
    assert pipelined.runner.rebuild_many(list(pipelined.runner.projections)) is not None

    assert written == expected
    assert len(written) > 20
