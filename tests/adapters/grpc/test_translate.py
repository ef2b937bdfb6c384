"""Requests become command inputs by the contract's conventions; enums match the domain exactly."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from adapters.grpc.errors import RpcError
from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2, partner_pb2
from adapters.grpc.translate import (
    MAX_REPEATED,
    enum_in,
    enum_out,
    fields_of,
    page_size,
    page_token_in,
    page_token_out,
    paged,
    timestamp_out,
    undecodable_request,
)
from domain import values
from domain.errors import Reason
from domain.sharing import ShareReason

PAIRS: list[tuple[Any, type[StrEnum]]] = [
    (common_pb2.Tier, values.Tier),
    (common_pb2.CustomerKind, values.CustomerKind),
    (common_pb2.PotentialValue, values.PotentialValue),
    (common_pb2.CompanySize, values.CompanySize),
    (common_pb2.ContactLayer, values.ContactLayer),
    (common_pb2.ContactFunction, values.ContactFunction),
    (common_pb2.InteractionKind, values.InteractionKind),
    (common_pb2.Channel, values.Channel),
    (common_pb2.Direction, values.Direction),
    (common_pb2.Purpose, values.Purpose),
    (common_pb2.DataCategory, values.DataCategory),
    (common_pb2.PartnerKind, values.PartnerKind),
    (common_pb2.PartnerStatus, values.PartnerStatus),
    (common_pb2.LinkRole, values.LinkRole),
    (common_pb2.AgreementKind, values.AgreementKind),
    (common_pb2.ShareReason, ShareReason),
    (common_pb2.ErrorReason, Reason),
]


@pytest.mark.parametrize(
    ("wrapper", "domain_enum"), PAIRS, ids=lambda p: getattr(p, "__name__", "")
)
def test_every_proto_enum_value_is_exactly_one_domain_value(
    wrapper: Any, domain_enum: type[StrEnum]
) -> None:
    proto_values = {enum_in(wrapper.DESCRIPTOR, n) for n in wrapper.values() if n}
    assert proto_values == {v.value for v in domain_enum}
    for value in domain_enum:
        assert enum_in(wrapper.DESCRIPTOR, enum_out(wrapper, value)) == value.value
    assert enum_out(wrapper, None) == 0
    assert enum_in(wrapper.DESCRIPTOR, 0) is None


def test_unset_fields_are_left_out_so_the_command_says_what_is_missing() -> None:
    request = customer_pb2.RegisterCustomerRequest(display_name="Li Lei")
    assert fields_of(request) == {"display_name": "Li Lei"}


def test_optional_fields_count_only_when_present() -> None:
    absent = customer_pb2.UpdateCustomerProfileRequest(customer_id="c")
    present = customer_pb2.UpdateCustomerProfileRequest(
        customer_id="c", expected_version=3, industry=""
    )
    assert fields_of(absent) == {"customer_id": "c"}
    assert fields_of(present) == {"customer_id": "c", "expected_version": 3, "industry": ""}


def test_numbers_and_booleans_without_presence_are_always_values() -> None:
    request = partner_pb2.SignAgreementRequest(partner_id="p")
    data = fields_of(request)
    assert data["confidentiality"] is False
    review = fields_of(partner_pb2.ReviewPartnerPerformanceRequest(partner_id="p"))
    assert review["new_customers"] == 0
    assert review["complaints"] == 0


def test_money_splits_into_amount_and_currency_and_times_become_aware() -> None:
    request = customer_pb2.RecordInteractionRequest(
        kind=common_pb2.INTERACTION_KIND_PURCHASE,
        amount=common_pb2.Money(amount="12.50", currency="CNY"),
        contact_ids=["a", "b"],
    )
    request.occurred_at.FromDatetime(datetime(2026, 3, 1, 12, tzinfo=UTC))
    data = fields_of(request)
    assert data["kind"] == "PURCHASE"
    assert data["amount"] == "12.50"
    assert data["currency"] == "CNY"
    assert data["occurred_at"] == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert data["contact_ids"] == ("a", "b")


def test_nested_messages_become_mappings() -> None:
    request = customer_pb2.GrantConsentRequest(
        capture=common_pb2.ConsentCapture(method="WEB_FORM", source="portal"),
        data_categories=[common_pb2.DATA_CATEGORY_CONTACT, common_pb2.DATA_CATEGORY_UNSPECIFIED],
    )
    data = fields_of(request)
    assert data["capture"] == {"method": "WEB_FORM", "source": "portal"}
    # An UNSPECIFIED inside a list stays visible, so the command rejects it.
    assert data["data_categories"] == ("CONTACT", None)


def test_page_sizes_default_and_cap() -> None:
    assert page_size(0) == 100
    assert page_size(5000) == 1000
    assert page_size(7) == 7
    with pytest.raises(RpcError):
        page_size(-1)


def test_page_tokens_continue_the_same_query_only() -> None:
    query = {"tier": "KEY"}
    token = page_token_out(query, "key-41")
    assert page_token_in(token, {"tier": "KEY"}) == "key-41"
    assert page_token_in("", query) is None
    with pytest.raises(RpcError, match="changed"):
        page_token_in(token, {"tier": "STRATEGIC"})
    with pytest.raises(RpcError, match="not a token"):
        page_token_in("garbage!!", query)


def test_paging_says_where_to_continue_only_when_more_may_follow() -> None:
    assert paged(range(5), 2, str) == ([0, 1], "1")
    assert paged(range(2), 2, str) == ([0, 1], None)
    assert paged([], 2, str) == ([], None)


def test_an_enum_number_the_contract_lacks_is_kept_so_the_command_refuses_it() -> None:
    request = customer_pb2.RegisterCustomerRequest(size=99, kind=77)  # type: ignore[arg-type]
    data = fields_of(request)
    assert data["size"] == "unknown value 99"
    assert data["kind"] == "unknown value 77"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x12\x02\xff\xfe", "request_id"),  # invalid UTF-8 in a string
        (b"\x52\x04\x0a\x02\xff\xfe", "capture.method"),  # ... inside a nested message
        (b"\x0a\x64ab", "customer_id"),  # a length past the end
        (b"\x08" + b"\xff" * 11, "customer_id"),  # a varint of eleven bytes
        (b"\x0b" * 200 + b"\x0c" * 200, "customer_id"),  # groups nested past the parser's limit
        (b"\x3a\x02\x01\xff", "data_categories"),  # a packed enum list cut short
        (b"\x00\x01", "(request)"),  # field number 0: no field to name
    ],
)
def test_request_bytes_that_do_not_parse_are_invalid_argument_naming_the_field(
    data: bytes, field: str
) -> None:
    """grpc answered these INTERNAL ("Exception deserializing request!")."""
    with pytest.raises(DecodeError):  # the premise: the message does not parse
        customer_pb2.GrantConsentRequest.FromString(data)
    failure = undecodable_request("/accord.v1.CustomerService/GrantConsent", data).failure
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.message.split(":")[0] == field


def test_repeated_fields_beyond_the_bound_are_refused_before_their_items_are_read() -> None:
    """4 MiB of packed enum numbers took a worker 16 s to translate, then were accepted."""
    identity = common_pb2.DATA_CATEGORY_IDENTITY
    at_bound = customer_pb2.ShareDataRequest(data_categories=[identity] * MAX_REPEATED)
    assert fields_of(at_bound)["data_categories"] == ("IDENTITY",) * MAX_REPEATED
    beyond = customer_pb2.ShareDataRequest(data_categories=[identity] * (MAX_REPEATED + 1))
    with pytest.raises(RpcError) as refused:
        fields_of(beyond)
    assert refused.value.failure.message.startswith("data_categories:")


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),  # RecursionError: was INTERNAL
        page_token_out({"tier": None}, "a\x00b"),  # NUL: PostgreSQL refused the query, INTERNAL
        page_token_out({"tier": None}, "k")[:-4] + "AAAA",
    ],
)
def test_page_tokens_that_are_not_ours_are_refused(token: str) -> None:
    with pytest.raises(RpcError, match="page_token"):
        page_token_in(token, {"tier": None})


MOMENTS = st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30)) | st.datetimes(
    datetime(1, 1, 2),
    datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-11, minutes=-30))]),
)


@given(moment=MOMENTS)
def test_timestamps_out_are_what_the_library_makes_of_the_time_in_utc(moment: datetime) -> None:
    """Naive times read as local time, as ``astimezone`` reads them."""
    expected = Timestamp()
    expected.FromDatetime(moment.astimezone(UTC))
    assert timestamp_out(moment) == expected
    assert timestamp_out(moment.isoformat()) == expected
