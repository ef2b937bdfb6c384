"""Documents are written compactly with sorted keys, and read back to the values written."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.store import dump_doc, parse_doc

text = st.text(st.characters(exclude_categories=["Cs"]))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)  # counts, positions, versions
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
docs = st.dictionaries(
    text,
    st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=20,
    ),
    max_size=6,
)


@settings(max_examples=300)
@given(docs)
def test_a_document_reads_back_as_written(doc: dict[str, Any]) -> None:
    assert parse_doc(dump_doc(doc)) == doc


@settings(max_examples=200)
@given(docs)
def test_a_document_is_compact_with_sorted_keys(doc: dict[str, Any]) -> None:
    assert json.loads(dump_doc(doc)) == doc
    assert list(json.loads(dump_doc(doc))) == sorted(doc)
    assert "\n" not in dump_doc(doc)


def test_what_the_fast_encoder_refuses_is_written_all_the_same() -> None:
    doc: dict[str, Any] = {"big": 2**70, "by_number": {1: "one"}, "city": "杭州"}
    assert parse_doc(dump_doc(doc)) == {"big": 2**70, "by_number": {"1": "one"}, "city": "杭州"}
