"""The canonical encoding: one byte sequence per value, whichever encoder writes it.

Stored bodies and request prints are hashed, so ``canonical_json`` must give
exactly the standard library's bytes (sorted keys, no whitespace, UTF-8) for
every JSON value. The fast encoder is used only for values that cannot hold a
float (it spells small floats differently), which ``may_hold_floats`` decides
from the model a value was dumped from.
"""

from __future__ import annotations

import inspect
import json
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, computed_field, field_serializer

from application import commands
from application.canonical import canonical_json, may_hold_floats
from domain.events import DomainEvent


def stdlib(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


text = st.text(st.characters(exclude_categories=["Cs"]))  # lone surrogates are not UTF-8
integers = st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
float_free_scalars = st.none() | st.booleans() | integers | text
scalars = float_free_scalars | st.floats(allow_nan=False, allow_infinity=False)


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
        max_leaves=30,
    )


@settings(max_examples=300)
@given(nested(float_free_scalars))
def test_a_value_without_floats_encodes_to_the_standard_bytes_on_the_fast_path(
    value: Any,
) -> None:
    assert canonical_json(value, floats=False) == stdlib(value)


@settings(max_examples=300)
@given(nested(scalars))
def test_a_value_that_may_hold_floats_encodes_to_the_standard_bytes(value: Any) -> None:
    assert canonical_json(value) == stdlib(value)


@pytest.mark.parametrize("value", [1e-05, -2.5e-07, {"small": 0.0001234}, [1e-300, 1e16]])
def test_small_floats_keep_the_standard_spelling(value: Any) -> None:
    assert canonical_json(value) == stdlib(value)


@pytest.mark.parametrize(
    "value",
    [
        2**64,  # beyond 64 bits: the fast encoder refuses it
        {2: "two", 1: "one"},  # non-string keys: refused too
        "\x00\x1f\x7f\u2028 é 😀",
        {"request_id": "5e3f9a2e-1b4e-4c2d-8e9f-0a1b2c3d4e5f", "amount": "0.00001"},
    ],
)
def test_what_the_fast_encoder_refuses_or_might_misread_still_gives_the_standard_bytes(
    value: Any,
) -> None:
    assert canonical_json(value, floats=False) == stdlib(value)


def test_keys_sort_by_code_point_across_planes() -> None:
    value = {"😀": 1, "\uffff": 2, "é": 3, "Z": 4, "a": 5, "": 6}
    assert canonical_json(value, floats=False) == stdlib(value)
    assert list(json.loads(canonical_json(value, floats=False))) == [
        "",
        "Z",
        "a",
        "é",
        "\uffff",
        "😀",
    ]


def test_what_json_cannot_hold_is_refused_as_before() -> None:
    class Thing:
        pass

    for floats in (True, False):
        with pytest.raises(TypeError):
            canonical_json({"thing": Thing()}, floats=floats)


class Colour(Enum):
    RED = "red"


class Plain(BaseModel):
    name: str
    count: int
    amount: Decimal
    at: datetime
    id: UUID
    colour: Colour
    tags: list[str]
    maybe: int | None = None
    kind: Literal["a", "b"] = "a"


class Nested(BaseModel):
    plain: Plain
    many: dict[str, list[Plain]]


class WithFloat(BaseModel):
    ratio: float


class WithOptionalFloats(BaseModel):
    ratios: list[float] | None = None


class WithNestedFloat(BaseModel):
    inner: WithFloat | None = None


class WithAnything(BaseModel):
    changes: dict[str, Any]


class WithSerializer(BaseModel):
    count: int

    @field_serializer("count")
    def _as_ratio(self, count: int) -> float:
        return count / 3


class WithComputed(BaseModel):
    count: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def half(self) -> float:
        return self.count / 2


def test_models_of_text_numbers_times_and_nested_models_hold_no_float() -> None:
    assert not may_hold_floats(Plain)
    assert not may_hold_floats(Nested)


@pytest.mark.parametrize(
    "model",
    [WithFloat, WithOptionalFloats, WithNestedFloat, WithAnything, WithSerializer, WithComputed],
)
def test_a_float_anywhere_or_anything_unknown_counts_as_may_hold_floats(
    model: type[BaseModel],
) -> None:
    assert may_hold_floats(model)


def test_accords_events_and_commands_take_the_fast_path() -> None:
    """None declares a float, so their bodies and prints are written by orjson."""
    events = set(DomainEvent.registry.values())
    command_models = {
        model
        for model in vars(commands).values()
        if inspect.isclass(model) and issubclass(model, BaseModel) and model is not BaseModel
    }
    assert events
    assert command_models
    assert [m.__name__ for m in events | command_models if may_hold_floats(m)] == []
