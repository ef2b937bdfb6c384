"""The canonical encoding: one byte sequence per value, whichever encoder writes it.

Stored bodies and request prints are hashed, so ``canonical_json`` must give
exactly the standard library's bytes (sorted keys, no whitespace, UTF-8) for
every JSON value, including those its fast encoder spells differently.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application.mapper import canonical_json


def stdlib(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


text = st.text(st.characters(exclude_categories=["Cs"]))  # lone surrogates are not UTF-8
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400)
@given(json_values)
def test_any_json_value_encodes_to_the_standard_librarys_bytes(value: Any) -> None:
    assert canonical_json(value) == stdlib(value)


def test_the_forms_the_fast_encoder_spells_differently_still_give_the_standard_bytes() -> None:
    for value in [
        1e-05,
        -2.5e-07,
        {"small": 0.0001234},
        [1e-300],
        2**64,  # beyond 64 bits: the fast encoder refuses
        {"z": 1, "a": [{"y": 1e-6, "b": "e-mail"}]},
        "\x00\x1f\x7f\u2028 é 😀",
    ]:
        assert canonical_json(value) == stdlib(value), value


def test_keys_sort_by_code_point_across_planes() -> None:
    value = {"😀": 1, "\uffff": 2, "é": 3, "Z": 4, "a": 5, "": 6}
    assert canonical_json(value) == stdlib(value)
    assert list(json.loads(canonical_json(value))) == ["", "Z", "a", "é", "\uffff", "😀"]


def test_non_string_keys_are_written_as_the_standard_library_writes_them() -> None:
    assert (
        canonical_json({2: "two", 1: "one"})
        == stdlib({2: "two", 1: "one"})
        == (b'{"1":"one","2":"two"}')
    )


def test_what_json_cannot_hold_is_refused_as_before() -> None:
    class Thing:
        pass

    with pytest.raises(TypeError):
        canonical_json({"thing": Thing()})
