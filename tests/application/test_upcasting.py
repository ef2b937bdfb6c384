"""An event stored in an older shape is read in the current shape."""

from __future__ import annotations

import json
from typing import Any, ClassVar
from uuid import uuid4

from eventsourcing.persistence import StoredEvent

from application.service import Accord
from domain.customer import CustomerEvent


class ProbeNoted(CustomerEvent):
    """A test-only event whose schema changed once: ``note`` became ``notes`` (a list)."""

    topic: ClassVar[str] = "test.probe_noted"
    schema_version: ClassVar[int] = 2

    notes: tuple[str, ...]
    channel: str

    @staticmethod
    def _v1_to_v2(body: dict[str, Any]) -> dict[str, Any]:
        note = body.pop("note")
        body["notes"] = [note] if note else []
        body.setdefault("channel", "UNKNOWN")
        return body

    upcasters: ClassVar[dict[int, Any]] = {1: _v1_to_v2}


def test_a_v1_body_stored_as_raw_json_reads_as_v2(accord: Accord) -> None:
    originator = uuid4()
    v1_body = {
        "_v": 1,
        "timestamp": "2024-03-01T08:00:00+00:00",
        "actor": "legacy-import",
        "request_id": "r-1",
        "correlation_id": "c-1",
        "note": "called back",
    }
    accord.log.recorder.insert_events(
        [StoredEvent(originator, 1, ProbeNoted.topic, json.dumps(v1_body).encode())]
    )

    [event] = list(accord.log.events.get(originator))

    assert isinstance(event, ProbeNoted)
    assert event.notes == ("called back",)
    assert event.channel == "UNKNOWN"
    assert event.actor == "legacy-import"


def test_new_events_are_stored_with_their_schema_version(accord: Accord) -> None:
    originator = uuid4()
    event = ProbeNoted(
        originator_id=originator,
        originator_version=1,
        timestamp="2024-03-01T08:00:00+00:00",
        actor="a",
        request_id="r",
        correlation_id="c",
        notes=("x",),
        channel="PHONE",
    )
    accord.log.save(event)

    [stored] = accord.log.recorder.select_events(originator)
    body = json.loads(stored.state)
    assert body["_v"] == 2
    assert stored.topic == "test.probe_noted"
    assert "originator_id" not in body
    assert list(accord.log.events.get(originator)) == [event]
