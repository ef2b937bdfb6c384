"""Which stored bodies may be read as they are, without decoding them into events.

Decoding a stored event (JSON, the pydantic model, and for a reader of JSON a
dump back to it) is most of what reading the log costs. But a body the mapper
stored at its event class's current schema version already holds, field for
field, what the model's JSON dump gives: only the key order (sorted in the
store) and the personal fields (sealed in the store) differ. A ``BodyPlan``
says, per event class, how to vouch for that: the body has exactly the
class's fields and schema version, and every value is in the very form the
dump produces and the model accepts (its constraints too). A body it cannot
vouch for (an older schema version, whose upcasters must run; a field missing
or extra; a value in another form, written by hand or by another pydantic; a
class with a field of a type, a constraint or a validator not known here) is
left to the full decode, which stays the reference.

Shared by the read models (``projections``) and the audit stream
(``adapters.grpc.payloads``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from uuid import UUID

import orjson
from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen

from application.mapper import SCHEMA_KEY
from application.personal_data import SEALED
from domain.events import DomainEvent
from domain.personal import PERSONAL, personal_fields

Check = Callable[[Any], bool]
"""True when a stored value is exactly what the model's JSON dump makes of its field."""

STORED_APART = frozenset({"originator_id", "originator_version"})
"""Model fields the store keeps beside the body, not in it."""

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATETIME = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(?!0{6})\d{6})?(Z|(?![+-]00:00)[+-]\d\d:\d\d)?",
    re.ASCII,
)
"""pydantic's form: six digits of microseconds unless zero, ``Z`` for UTC, naive kept naive."""


class _Never:
    """The type of no JSON value: a field whose every value needs its check."""


@dataclass(frozen=True)
class _Field:
    """How to vouch for one stored value: of type ``kind`` (the common case), or ``check``.

    ``expr``, when given, says the same as ``type(v) is kind or check(v)`` as a
    Python expression over ``{v}`` (and ``{x}``, standing for ``extra``): a
    plan compiles its fields' expressions into one function, which vouches for
    a body in a fraction of the time a loop over the checks takes.
    """

    kind: type
    check: Check
    expr: str | None = None
    extra: Any = None


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


def _matching(pattern: re.Pattern[str]) -> _Field:
    match = pattern.fullmatch
    return _Field(
        _Never,
        lambda value: type(value) is str and match(value) is not None,
        "type({v}) is str and {x}({v}) is not None",
        match,
    )


_MOMENTS: dict[str, bool] = {}
"""Moments vouched for lately: the events of one save share their recorded time."""
MOMENTS_KEPT = 1024


def _moment(value: Any) -> bool:
    """In pydantic's form, and a real moment (no 25 o'clock, no 31 February)."""
    if type(value) is not str:
        return False
    if value in _MOMENTS:
        return True
    if _DATETIME.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    if len(_MOMENTS) >= MOMENTS_KEPT:
        _MOMENTS.clear()
    _MOMENTS[value] = True
    return True


def _optional(field: _Field) -> _Field:
    kind, check = field.kind, field.check
    return _Field(
        kind,
        lambda value: value is None or type(value) is kind or check(value),
        None if field.expr is None else f"{{v}} is None or ({field.expr})",
        field.extra,
    )


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
    return _Field(
        _Never,
        lambda value: type(value) is str and value in values,
        "type({v}) is str and {v} in {x}",
        values,
    )


def _field(annotation: Any) -> _Field | None:
    """How to vouch for a stored value of ``annotation`` (None: not a type known here)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        if any(meta is not PERSONAL for meta in get_args(annotation)[1:]):
            return None  # a constraint inside a type: not read here
        return _field(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return _union(annotation)
    if origin is tuple:
        return _tuple(annotation)
    if annotation in (str, int, bool):
        # The type is the form: bool is no int here.
        return _Field(annotation, _never, "type({v}) is {x}", annotation)
    if annotation is UUID:
        return _matching(_UUID)
    if annotation is datetime:
        return _Field(_Never, _moment, "{x}({v})", _moment)
    if annotation is Decimal:
        return _Field(_Never, _decimal, "{x}({v})", _decimal)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _enum(annotation)
    return None


def _int_range(metadata: list[Any]) -> tuple[int | None, int | None] | None:
    """The inclusive bounds ``ge``/``gt``/``le``/``lt`` leave (None: another constraint)."""
    low: int | None = None
    high: int | None = None
    for meta in metadata:
        if isinstance(meta, Ge) and type(meta.ge) is int:
            low = meta.ge if low is None else max(low, meta.ge)
        elif isinstance(meta, Gt) and type(meta.gt) is int:
            low = meta.gt + 1 if low is None else max(low, meta.gt + 1)
        elif isinstance(meta, Le) and type(meta.le) is int:
            high = meta.le if high is None else min(high, meta.le)
        elif isinstance(meta, Lt) and type(meta.lt) is int:
            high = meta.lt - 1 if high is None else min(high, meta.lt - 1)
        else:
            return None
    return low, high


def _length_range(metadata: list[Any]) -> tuple[int, int | None] | None:
    """The inclusive lengths ``min_length``/``max_length`` leave (None: another constraint)."""
    low, high = 0, None
    for meta in metadata:
        if isinstance(meta, MinLen):
            low = max(low, meta.min_length)
        elif isinstance(meta, MaxLen):
            high = meta.max_length if high is None else min(high, meta.max_length)
        else:
            return None
    return low, high


def _constrained(field: _Field, metadata: list[Any], optional: bool) -> _Field | None:
    """``field`` held to the constraints pydantic validates (None: one not known here).

    Bounds on integers and lengths of strings are read; anything else (a
    pattern, a bound on a decimal, strictness) leaves the class to the decode.
    """
    if not metadata:
        return field
    check: Check
    if field.kind is int and (ints := _int_range(metadata)) is not None:
        low, high = ints
        lowest = low if low is not None else -(2**63)
        highest = high if high is not None else 2**63 - 1  # what orjson reads as an int

        def in_range(value: Any) -> bool:
            return type(value) is int and lowest <= value <= highest

        check = in_range
        expr = f"type({{v}}) is int and {lowest} <= {{v}} <= {highest}"
    elif field.kind is str and (lengths := _length_range(metadata)) is not None:
        shortest, longest = lengths
        longest_ = longest if longest is not None else 2**63

        def of_length(value: Any) -> bool:
            return type(value) is str and shortest <= len(value) <= longest_

        check = of_length
        expr = f"type({{v}}) is str and {shortest} <= len({{v}}) <= {longest_}"
    else:
        return None
    if optional:
        return _Field(
            _Never, lambda value: value is None or check(value), f"{{v}} is None or ({expr})"
        )
    return _Field(_Never, check, expr)


def _sealed(value: Any) -> bool:
    return type(value) is dict and value.keys() == {SEALED} and type(value[SEALED]) is str


def _personal(optional: bool) -> _Field:
    """As stored: sealed, or a plain string (stored before sealing, empty, or ``[erased]``)."""
    field = _Field(str, _sealed, "type({v}) is str or {x}({v})", _sealed)
    return _optional(field) if optional else field


def _validated_apart(event_class: type[DomainEvent]) -> bool:
    """Whether the class validates or dumps by code of its own (validators, serializers)."""
    decorators = event_class.__pydantic_decorators__
    return bool(
        decorators.validators
        or decorators.field_validators
        or decorators.root_validators
        or decorators.model_validators
        or decorators.field_serializers
        or decorators.model_serializers
    )


@dataclass(frozen=True)
class BodyPlan:
    """How to read one event class's current stored bodies without the model."""

    event_class: type[DomainEvent]
    schema_version: int
    keys: frozenset[str]
    """Every key of a current body: the model's fields stored in it, and the schema version."""
    checks: tuple[tuple[str, type, Check], ...]
    fields: tuple[str, ...]
    """The model's fields stored in the body, in the model's order."""
    vouch: Callable[[dict[str, Any]], bool] = field(
        default=lambda body: False, compare=False, repr=False
    )
    """``checks`` over a body with the plan's keys, compiled into one function."""

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
        # As many keys as the plan's, and every one of the plan's there: the same keys.
        if type(body) is not dict or len(body) != len(self.keys):
            return None
        try:
            if body[SCHEMA_KEY] != self.schema_version:
                return None
            return body if self.vouch(body) else None
        except KeyError:  # ``vouch`` reads every field of the plan
            return None


def _compiled(fields: list[tuple[str, _Field]]) -> Callable[[dict[str, Any]], bool]:
    """One function vouching for every field in turn, as the loop over their checks would.

    A field without an expression is checked as the loop checks it
    (``type(v) is kind or check(v)``), so the function says what the checks say.
    """
    namespace: dict[str, Any] = {}
    lines = ["def vouch(body):"]
    for index, (name, described) in enumerate(fields):
        if described.expr is None:
            expr = f"type(v) is k{index} or c{index}(v)"
            namespace[f"k{index}"], namespace[f"c{index}"] = described.kind, described.check
        else:
            expr = described.expr.format(v="v", x=f"x{index}")
            namespace[f"x{index}"] = described.extra
        lines += [f"    v = body[{name!r}]", f"    if not ({expr}):", "        return False"]
    lines.append("    return True")
    # Source made here from field names and fixed expressions, nothing read from a body.
    exec("\n".join(lines), namespace)  # noqa: S102
    vouch: Callable[[dict[str, Any]], bool] = namespace["vouch"]
    return vouch


def canonical_originator(originator_id: Any) -> str | None:
    """The originator id as the model writes it (None: a form only the decode should read)."""
    if type(originator_id) is UUID:
        return str(originator_id)
    if type(originator_id) is str and _UUID.fullmatch(originator_id) is not None:
        return originator_id
    return None


@cache
def body_plan(topic: str) -> BodyPlan | None:
    """The plan for the events of ``topic`` (None: unknown topic, or not vouched for here)."""
    event_class = DomainEvent.registry.get(topic)
    if event_class is None or _validated_apart(event_class):
        return None
    personal = personal_fields(event_class)
    checks: list[tuple[str, type, Check]] = []
    described: list[tuple[str, _Field]] = []
    for name, info in event_class.model_fields.items():
        if name in STORED_APART:
            continue
        one: _Field | None
        if name in personal:
            if any(meta is not PERSONAL for meta in info.metadata):
                return None
            one = _personal(optional=NoneType in get_args(info.annotation))
        else:
            one = _field(info.annotation)
            optional = NoneType in get_args(info.annotation)
            one = None if one is None else _constrained(one, info.metadata, optional)
        if one is None:
            return None
        checks.append((name, one.kind, one.check))
        described.append((name, one))
    return BodyPlan(
        event_class=event_class,
        schema_version=event_class.schema_version,
        keys=frozenset(name for name, _, _ in checks) | {SCHEMA_KEY},
        checks=tuple(checks),
        fields=tuple(name for name, _, _ in checks),
        vouch=_compiled(described),
    )
