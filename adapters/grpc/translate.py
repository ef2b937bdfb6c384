"""Protobuf <-> application values, by the contract's conventions (common.proto).

Requests become commands generically: a field that is not set (an empty
string, an UNSPECIFIED enum, an unset Timestamp or `optional` field) is left
out, so the command's own validation says what is missing, field by field,
under the proto's field names. Enum values travel as the domain value with
the enum's prefix (``TIER_STRATEGIC`` <-> ``Tier.STRATEGIC``); Money splits
into the amount and its currency.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ValidationError

from adapters.grpc.errors import RpcError, invalid_field
from adapters.grpc.generated.accord.v1 import common_pb2
from application.errors import FieldViolation, InvalidCommandError
from application.results import CommandResult

if TYPE_CHECKING:  # a stub-only generic: the runtime class is not generic
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

C = TypeVar("C", bound=BaseModel)
M = TypeVar("M", bound=Message)
V = TypeVar("V", bound=int)

_MONEY = common_pb2.Money.DESCRIPTOR.full_name
_TIMESTAMP = Timestamp.DESCRIPTOR.full_name
_NUMERIC_OR_BOOL = {
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_DOUBLE,
    FieldDescriptor.TYPE_FLOAT,
}

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_REPEATED = 1000
"""Items a repeated request field may hold; more is refused before any item is looked at
(a 4 MiB request holds 4 million enum numbers: seconds of a worker's time)."""


# ----------------------------------------------------------------- scalars


@cache
def enum_prefix(descriptor: EnumDescriptor) -> str:
    """``ContactLayer`` -> ``CONTACT_LAYER_`` (once per enum: every enum field of every call)."""
    name = descriptor.name
    snake = "".join(("_" + c if c.isupper() and i else c) for i, c in enumerate(name)).upper()
    return snake + "_"


@cache
def enum_in(descriptor: EnumDescriptor, number: int) -> str | None:
    """A request's enum number -> the domain value (None: UNSPECIFIED or unknown)."""
    value = descriptor.values_by_number.get(number)
    if value is None or number == 0:
        return None
    return value.name.removeprefix(enum_prefix(descriptor))


def enum_out(wrapper: _EnumTypeWrapper[V], value: StrEnum | str | None) -> V:
    """A domain value -> the enum number (UNSPECIFIED for None)."""
    prefix = enum_prefix(wrapper.DESCRIPTOR)
    return wrapper.Value(prefix + ("UNSPECIFIED" if value is None else str(value)))


def timestamp_in(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def instant_in(field: str, value: Timestamp) -> datetime:
    """A request Timestamp as an aware datetime; out of the Timestamp range is a bad field."""
    try:
        return timestamp_in(value)
    except (ValueError, OverflowError):
        raise RpcError(invalid_field(field, "not a valid timestamp")) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_out(value: datetime | str | None) -> Timestamp | None:
    """A naive time is local time, as ``astimezone`` reads it.

    Computed here rather than by ``Timestamp.FromDatetime`` (the same whole
    seconds and nanoseconds), which costs twice as much: a replay makes one
    per event.
    """
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.utcoffset() is None:
        moment = moment.astimezone(UTC)
    elapsed = moment - _EPOCH
    return Timestamp(
        seconds=elapsed.days * 86_400 + elapsed.seconds, nanos=elapsed.microseconds * 1000
    )


def money_out(amount: Decimal | str, currency: str) -> common_pb2.Money:
    return common_pb2.Money(amount=format(Decimal(amount), "f"), currency=currency)


def uuid_in(field: str, value: str, *, required: bool = True) -> UUID | None:
    """For ids read outside a command (queries): a field violation when malformed."""
    if not value:
        if required:
            raise RpcError(invalid_field(field, "required"))
        return None
    try:
        return UUID(value)
    except ValueError:
        raise RpcError(invalid_field(field, "must be a UUID")) from None


def check_repeated(field: str, count: int) -> None:
    """INVALID_ARGUMENT for a repeated field of more than ``MAX_REPEATED`` items."""
    if count > MAX_REPEATED:
        raise RpcError(invalid_field(field, f"at most {MAX_REPEATED} items"))


def required_uuid(field: str, value: str) -> UUID:
    parsed = uuid_in(field, value)
    assert parsed is not None
    return parsed


# ----------------------------------------------------------------- requests


def _is_message(field: Any, full_name: str) -> bool:
    return bool(
        field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name == full_name
    )


def _value(field: Any, value: Any) -> Any:
    """``field``: a FieldDescriptor (the C implementation's type differs from the stubs')."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        if not value:
            return None
        known = enum_in(field.enum_type, value)
        # A number the contract lacks must be refused, not read as "not given".
        return known if known is not None else f"unknown value {value}"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if _is_message(field, _TIMESTAMP):
            return instant_in(field.name, value)
        return fields_of(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


@dataclass(frozen=True)
class _Plan:
    """How to read one request message type, worked out once per type."""

    defaults: dict[str, Any]
    """Numbers and booleans without presence: 0 and false are values, never "not given"."""
    money: frozenset[str]
    repeated: frozenset[str]


@cache
def _plan(descriptor: Any) -> _Plan:
    fields: list[Any] = list(descriptor.fields)
    return _Plan(
        defaults={
            f.name: f.default_value
            for f in fields
            if not f.is_repeated and f.type in _NUMERIC_OR_BOOL and not f.has_presence
        },
        money=frozenset(f.name for f in fields if _is_message(f, _MONEY)),
        repeated=frozenset(f.name for f in fields if f.is_repeated),
    )


def fields_of(message: Message) -> dict[str, Any]:
    """The fields a request sets, as plain values keyed by the proto's field names.

    Only the fields set are visited (``ListFields``), with what each type
    needs worked out once: this runs for every command and every item of a
    bulk batch.
    """
    plan = _plan(message.DESCRIPTOR)
    data: dict[str, Any] = dict(plan.defaults)
    for field, value in message.ListFields():
        name = field.name
        if name in plan.repeated:
            check_repeated(name, len(value))
            items = [_value(field, v) for v in value]
            if items:
                data[name] = tuple(items)
        elif name in plan.money:
            if value.amount:
                data[name] = value.amount
            if value.currency:
                data["currency"] = value.currency
        else:
            converted = _value(field, value)
            if converted is not None:
                data[name] = converted
    return data


def command(message: Message, command_class: type[C], **extra: Any) -> C:
    """Build and validate a command; INVALID_ARGUMENT with field violations otherwise."""
    data = fields_of(message)
    data.update(extra)
    try:
        return command_class.model_validate(data)
    except ValidationError as error:
        invalid = InvalidCommandError.from_validation(error)
        raise InvalidCommandError([_named(v, command_class) for v in invalid.violations]) from None


def _named(violation: FieldViolation, command_class: type[BaseModel]) -> FieldViolation:
    """A rule across fields ("amount is required for a PURCHASE") names its first field."""
    if violation.field != "(request)":
        return violation
    first = violation.description.split(" ", 1)[0]
    if first in command_class.model_fields:
        return FieldViolation(first, violation.description)
    return violation


def command_response(
    response_class: type[M],
    result: CommandResult,
    *,
    id_field: str,
    entity_field: str | None = None,
) -> M:
    values: dict[str, Any] = {
        id_field: str(result.aggregate_id),
        "version": result.version,
        "position": result.position,
        "replayed": result.replayed,
    }
    if entity_field is not None and result.entity_id is not None:
        values[entity_field] = str(result.entity_id)
    return response_class(**values)


# --------------------------------------------------------- undecodable bytes

_MAX_NESTING = 100
"""upb's recursion limit: groups nested deeper do not parse."""
_PACKED_VARINTS = {
    FieldDescriptor.TYPE_ENUM,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
}


class _MalformedError(Exception):
    pass


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while position < len(data) and shift < 70:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position
    raise _MalformedError


def _skip(data: bytes, position: int, key: int, depth: int) -> int:
    """Past the value of the field ``key`` introduces; _MalformedError if it does not parse."""
    wire_type = key & 7
    if wire_type == 0:
        return _varint(data, position)[1]
    if wire_type == 3:  # a group: fields up to the matching end-group tag
        if depth >= _MAX_NESTING:
            raise _MalformedError
        while True:
            inner, position = _varint(data, position)
            if inner & 7 == 4:
                if inner >> 3 != key >> 3:
                    raise _MalformedError
                return position
            if inner >> 3 == 0:
                raise _MalformedError
            position = _skip(data, position, inner, depth + 1)
    if wire_type == 1:
        end = position + 8
    elif wire_type == 5:
        end = position + 4
    elif wire_type == 2:
        length, position = _varint(data, position)
        end = position + length
    else:  # an end-group without its start, or a wire type that does not exist
        raise _MalformedError
    if end > len(data):
        raise _MalformedError
    return end


def _broken(descriptor: Descriptor, data: bytes, prefix: str) -> str | None:
    """The dotted path of the field that makes ``data`` unparsable (None: none found)."""
    enclosing = prefix.removesuffix(".") or None
    fields: dict[int, Any] = dict(descriptor.fields_by_number)
    position = 0
    while position < len(data):
        try:
            key, position = _varint(data, position)
        except _MalformedError:
            return enclosing
        field = fields.get(key >> 3)
        name = prefix + field.name if field is not None else enclosing
        start = position
        try:
            if key >> 3 == 0:
                raise _MalformedError
            position = _skip(data, position, key, 1)
        except _MalformedError:
            return name
        if field is None or key & 7 != 2:
            continue
        payload = data[_varint(data, start)[1] : position]
        if field.type == FieldDescriptor.TYPE_STRING:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                return name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            inner = _broken(field.message_type, payload, f"{name}.")
            if inner is not None:
                return inner
        elif field.type in _PACKED_VARINTS:
            try:
                at = 0
                while at < len(payload):
                    at = _varint(payload, at)[1]
            except _MalformedError:
                return name
    return None


def undecodable_request(method: str, data: bytes) -> RpcError:
    """INVALID_ARGUMENT for request bytes that are not the method's message, naming the field.

    ``method`` is the call's path (``/accord.v1.CustomerService/RegisterCustomer``). The
    field is the one whose bytes do not parse (invalid UTF-8 in a string, a truncated
    value, ...), ``(request)`` when the fault lies outside any field (a bad tag).
    """
    found: str | None = None
    try:
        full_name = method.strip("/").replace("/", ".")
        request_type = descriptor_pool.Default().FindMethodByName(full_name).input_type
        found = _broken(request_type, data, "")
    except KeyError:
        pass
    return RpcError(
        invalid_field(
            found or "(request)",
            "not a valid protobuf encoding (malformed bytes, or invalid UTF-8 in a string)",
        )
    )


# ------------------------------------------------------------------- paging


def page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise RpcError(invalid_field(field, "must not be negative"))
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def page_token_out(query: dict[str, Any], after: str) -> str:
    """An opaque token that also pins the query, so changed parameters are caught."""
    raw = json.dumps({"q": query, "after": after}, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def page_token_in(token: str, query: dict[str, Any]) -> str | None:
    """The key to continue after, or None for the first page."""
    if not token:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = decoded["after"]
        pinned = decoded["q"]
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: "[[[[..."
        raise RpcError(invalid_field("page_token", "not a token this server issued")) from None
    if not isinstance(after, str) or "\x00" in after:  # no key holds NUL (PostgreSQL refuses it)
        raise RpcError(invalid_field("page_token", "not a token this server issued"))
    if pinned != json.loads(json.dumps(query, sort_keys=True)):
        raise RpcError(
            invalid_field("page_token", "the other parameters changed since this token was issued")
        )
    return after


def paged(
    items: Iterable[Any], size: int, key: Callable[[Any], str]
) -> tuple[list[Any], str | None]:
    """Up to ``size`` items, and the key to continue after if there may be more."""
    page: list[Any] = []
    for item in items:
        if len(page) == size:
            return page, key(page[-1])
        page.append(item)
    return page, None
