"""The canonical JSON every stored body and request print is hashed as.

Sorted keys, no whitespace, UTF-8, exactly as the standard library writes
them (``separators=(",", ":")``, ``sort_keys``, ``ensure_ascii=False``): the
audit chain hashes stored bytes, so the bytes must be a function of the
value alone, never of which encoder ran.

orjson writes those very bytes, several times faster, for every JSON value
but two kinds: floats under 1e-4 in magnitude (``0.00001`` and ``1e-7``
where the standard library writes ``1e-05`` and ``1e-07``), and what it
refuses (integers beyond 64 bits, non-string keys, very deep nesting). So a
value that cannot hold a float, because the model it was dumped from has no
field that could, is written by orjson, anything it refuses by the standard
library, and a value that may hold floats by the standard library alone.
Encoding is a large share of what a command costs.
"""

from __future__ import annotations

import json
import types
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

import orjson
from pydantic import BaseModel

_EXACT = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
"""Types the standard library would refuse, or write its own way, are refused (no default)."""

_FLOAT_FREE = (str, int, bool, bytes, Decimal, UUID, datetime, date, time, timedelta, Enum)
"""Field types a JSON-mode dump never writes as a float (Decimal and durations become text)."""


def canonical_json(value: Any, *, floats: bool = True) -> bytes:
    """``value`` in canonical form; ``floats=False`` promises it holds no float."""
    if floats:
        return _standard(value)
    try:
        return orjson.dumps(value, option=_EXACT)
    except TypeError:  # orjson.JSONEncodeError is one
        return _standard(value)


def _standard(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


@cache
def may_hold_floats(model: type[BaseModel]) -> bool:
    """Whether ``model.model_dump(mode="json")`` could hold a float anywhere.

    Decided from the declared field types, nested models and containers
    included; anything it cannot see through (``Any``, a custom serializer,
    a computed field, a type it does not know) counts as "could".
    """
    decorators = model.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers:
        return True
    if model.model_computed_fields:
        return True
    return any(_annotation_may_hold_floats(f.annotation) for f in model.model_fields.values())


def _annotation_may_hold_floats(annotation: Any) -> bool:
    if annotation is None or annotation is types.NoneType:
        return False
    origin = get_origin(annotation)
    if origin is Literal:
        return any(isinstance(value, float) for value in get_args(annotation))
    if origin is Annotated:
        return _annotation_may_hold_floats(get_args(annotation)[0])
    if origin is not None:  # containers and unions: list[X], dict[K, V], X | None, ...
        if origin not in (list, tuple, set, frozenset, dict, Union, types.UnionType):
            return True
        return any(_annotation_may_hold_floats(a) for a in get_args(annotation) if a is not ...)
    if not isinstance(annotation, type):
        return True  # Any, a type variable, a forward reference: could be anything
    if issubclass(annotation, float):
        return True
    if issubclass(annotation, BaseModel):
        return may_hold_floats(annotation)
    return not issubclass(annotation, _FLOAT_FREE)
