"""Which stored bodies the audit stream may translate without decoding them into events.

Replaying the log sends every event it reads, and the full decode (JSON, the
pydantic model, then a dump back to JSON) was most of a replay's cost. But a
body the mapper stored at its event class's current schema version already
holds, field for field, what that dump gives: only the key order (sorted in
the store, the model's in a payload) and the personal fields (sealed in the
store) differ. A ``Plan`` says, per event class, how to vouch for that: the
body has exactly the class's fields and schema version, and every value is in
the very form the dump produces. A body it cannot vouch for (an older schema
version, whose upcasters must run; a field missing or extra; a value in
another form, written by hand or by another pydantic; a class with a field of
a type not known here) is left to the full decode, which stays the reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from uuid import UUID

import orjson

from application.mapper import SCHEMA_KEY
from application.personal_data import SEALED
from domain.events import DomainEvent
from domain.personal import personal_fields

Check = Callable[[Any], bool]
"""True when a stored value is exactly what the model's JSON dump makes of its field."""

STORED_APART = frozenset({"originator_id", "originator_version"})
"""Model fields the store keeps beside the body, not in it."""

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATETIME = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(?!0{6})\d{6})?(Z|(?![+-]00:00)[+-]\d\d:\d\d)?"
)
"""pydantic's form: six digits of microseconds unless zero, ``Z`` for UTC, naive kept naive."""


class _Never:
    """The type of no JSON value: a field whose every value needs its check."""


@dataclass(frozen=True)
class _Field:
    """How to vouch for one stored value: of type ``kind`` (the common case), or ``check``."""

    kind: type
    check: Check


def _never(_: Any) -> bool:
    return False


def _decimal(value: Any) -> bool:
    if type(value) is not str:
        return False
    try:
        number = Decimal(value)
    except InvalidOperation:
        return False
    return number.is_finite() and str(number) == value


def _matching(pattern: re.Pattern[str]) -> Check:
    match = pattern.fullmatch
    return lambda value: type(value) is str and match(value) is not None


def _optional(field: _Field) -> _Field:
    kind, check = field.kind, field.check
    return _Field(kind, lambda value: value is None or type(value) is kind or check(value))


def _union(annotation: Any) -> _Field | None:
    args = get_args(annotation)
    fields = [_field(arg) for arg in args if arg is not NoneType]
    if len(fields) != 1 or fields[0] is None:
        return None  # a union of two types: which one pydantic picks is its business
    return _optional(fields[0]) if NoneType in args else fields[0]


def _tuple(annotation: Any) -> _Field | None:
    args = get_args(annotation)
    item = _field(args[0]) if len(args) == 2 and args[1] is Ellipsis else None
    if item is None:
        return None
    kind, check = item.kind, item.check

    def check_items(value: Any) -> bool:
        if type(value) is not list:
            return False
        return not value or all(type(i) is kind or check(i) for i in value)

    return _Field(_Never, check_items)


def _enum(annotation: type[Enum]) -> _Field | None:
    values = frozenset(member.value for member in annotation)
    if not all(type(value) is str for value in values):
        return None
    return _Field(_Never, lambda value: type(value) is str and value in values)


def _field(annotation: Any) -> _Field | None:
    """How to vouch for a stored value of ``annotation`` (None: not a type known here)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _field(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return _union(annotation)
    if origin is tuple:
        return _tuple(annotation)
    if annotation in (str, int, bool):
        return _Field(annotation, _never)  # the type is the form: bool is no int here
    if annotation is UUID:
        return _Field(_Never, _matching(_UUID))
    if annotation is datetime:
        return _Field(_Never, _matching(_DATETIME))
    if annotation is Decimal:
        return _Field(_Never, _decimal)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _enum(annotation)
    return None


def _sealed(value: Any) -> bool:
    return type(value) is dict and value.keys() == {SEALED} and type(value[SEALED]) is str


def _personal(optional: bool) -> _Field:
    """As stored: sealed, or a plain string (stored before sealing, empty, or ``[erased]``)."""
    field = _Field(str, _sealed)
    return _optional(field) if optional else field


@dataclass(frozen=True)
class Plan:
    """How to read one event class's current stored bodies without the model."""

    aggregate_type: str
    schema_version: int
    keys: frozenset[str]
    """Every key of a current body: the model's fields stored in it, and the schema version."""
    checks: tuple[tuple[str, type, Check], ...]
    fields: tuple[str, ...]
    """The payload's fields, in the model's order."""
    personal: tuple[tuple[str, str], ...]
    """The payload's personal fields, each with its sealing context."""

    def body(self, state: bytes) -> dict[str, Any] | None:
        """The stored body, parsed, if the model would dump it back unchanged (else None).

        orjson parses what the stdlib does, except that it refuses a lone
        surrogate or a NaN, and reads a number beyond 64 bits as a float, which
        no check lets pass: such a body goes the long way.
        """
        try:
            body = orjson.loads(state)
        except orjson.JSONDecodeError:
            return None
        if type(body) is not dict or body.keys() != self.keys:
            return None
        if body[SCHEMA_KEY] != self.schema_version:
            return None
        for name, kind, check in self.checks:
            value = body[name]
            if type(value) is not kind and not check(value):
                return None
        return body


def encode(payload: dict[str, Any]) -> str:
    """``payload`` as ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` writes it.

    For the values a vouched-for body holds (strings, integers, booleans,
    nulls, lists), and the plaintexts the vault opens, orjson writes the same
    bytes, in a tenth of the time.
    """
    return orjson.dumps(payload).decode()


@cache
def plan(topic: str, envelope: frozenset[str]) -> Plan | None:
    """The plan for the events of ``topic`` (None: unknown topic, or not vouched for here).

    ``envelope``: the fields the message carries apart, not in the payload.
    """
    event_class = DomainEvent.registry.get(topic)
    if event_class is None:
        return None
    personal = personal_fields(event_class)
    checks: list[tuple[str, type, Check]] = []
    fields: list[str] = []
    for name, info in event_class.model_fields.items():
        if name in STORED_APART:
            continue
        if name in personal:
            field: _Field | None = _personal(optional=NoneType in get_args(info.annotation))
        else:
            field = _field(info.annotation)
        if field is None:
            return None
        checks.append((name, field.kind, field.check))
        if name not in envelope:
            fields.append(name)
    return Plan(
        aggregate_type=event_class.aggregate_type,
        schema_version=event_class.schema_version,
        keys=frozenset(name for name, _, _ in checks) | {SCHEMA_KEY},
        checks=tuple(checks),
        fields=tuple(fields),
        personal=tuple((name, f"{topic}|{name}") for name in fields if name in personal),
    )
