"""Statuses stay small enough for a client to read, however many violations a request has."""

from __future__ import annotations

import grpc

from adapters.grpc.errors import MAX_VIOLATIONS, error_details_pb2, invalid
from application.errors import FieldViolation

METADATA_LIMIT = 16 * 1024
"""gRPC clients refuse trailing metadata beyond this (the status and its details travel there)."""


def test_a_status_lists_a_bounded_number_of_violations_and_says_how_many_more() -> None:
    """100k bad list items were 100k violations: 8 MB of trailers the client refused."""
    many = [
        FieldViolation(f"contact_ids.{i}", "Input should be a valid UUID") for i in range(10**5)
    ]
    failure = invalid(many)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    failure.details[0].Unpack(bad_request)
    listed = [(v.field, v.description) for v in bad_request.field_violations]
    assert listed[:MAX_VIOLATIONS] == [(v.field, v.description) for v in many[:MAX_VIOLATIONS]]
    assert listed[MAX_VIOLATIONS:] == [
        ("(request)", f"{10**5 - MAX_VIOLATIONS} more violations not listed")
    ]
    status_bytes = len(failure.to_status().SerializeToString())
    assert status_bytes + len(failure.message.encode()) < METADATA_LIMIT


def test_a_few_violations_are_all_listed() -> None:
    few = [FieldViolation("a", "required"), FieldViolation("b", "too long")]
    bad_request = error_details_pb2.BadRequest()
    invalid(few).details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["a", "b"]
