"""Which stored bodies the audit stream may translate without decoding them into events.

Replaying the log sends every event it reads, and the full decode (JSON, the
pydantic model, then a dump back to JSON) was most of a replay's cost. A body
``application.stored_bodies`` vouches for (the mapper stored it at its event
class's current schema version, every value in the very form the dump
produces) already holds, field for field, what that dump gives: only the key
order (sorted in the store, the model's in a payload) and the personal fields
(sealed in the store) differ. A ``Plan`` adds what a message needs: which
fields go in the payload, and which of them to open. A body not vouched for
is left to the full decode, which stays the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from application.stored_bodies import BodyPlan, body_plan
from domain.personal import personal_fields


@dataclass(frozen=True)
class Plan:
    """How to read one event class's current stored bodies without the model."""

    aggregate_type: str
    bodies: BodyPlan
    fields: tuple[str, ...]
    """The payload's fields, in the model's order."""
    personal: tuple[tuple[str, str], ...]
    """The payload's personal fields, each with its sealing context."""

    def body(self, state: bytes) -> dict[str, Any] | None:
        """The stored body, parsed, if the model would dump it back unchanged (else None)."""
        return self.bodies.body(state)


def encode(payload: dict[str, Any]) -> bytes:
    """``payload`` as ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` writes it,
    in UTF-8.

    For the values a vouched-for body holds (strings, integers, booleans,
    nulls, lists), and the plaintexts the vault opens, orjson writes the same
    bytes, in a tenth of the time.
    """
    return orjson.dumps(payload)


@cache
def plan(topic: str, envelope: frozenset[str]) -> Plan | None:
    """The plan for the events of ``topic`` (None: unknown topic, or not vouched for here).

    ``envelope``: the fields the message carries apart, not in the payload.
    """
    bodies = body_plan(topic)
    if bodies is None:
        return None
    event_class = bodies.event_class
    personal = personal_fields(event_class)
    fields = tuple(name for name in bodies.fields if name not in envelope)
    return Plan(
        aggregate_type=event_class.aggregate_type,
        bodies=bodies,
        fields=fields,
        personal=tuple((name, f"{topic}|{name}") for name in fields if name in personal),
    )
