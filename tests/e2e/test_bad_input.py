"""Every mutating RPC refuses malformed input field by field, and records nothing.

Each row is one invalid request and the field its violation must name. The
requests are otherwise aimed at real aggregates, so it is the input, not a
missing customer or partner, that is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from adapters.grpc.errors import MAX_VIOLATIONS
from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2, partner_pb2
from adapters.grpc.translate import MAX_REPEATED
from tests.e2e.harness import Client, Served, field_violations, rpc_error, stored_event_count
from tests.e2e.wire import active_partner, ago, register_customer

C = customer_pb2
P = partner_pb2
CAPTURE = common_pb2.ConsentCapture(
    method="WEB_FORM", source="portal", evidence_ref="doc-1", notice_version="v3"
)
NOT_A_UUID = "customer-42"


# (rpc, request factory given (customer_id, partner_id, agreement_id), field named)
Case = tuple[str, Callable[[str, str, str], Any], str]

CASES: list[Case] = [
    (
        "RegisterCustomer",
        lambda c, p, a: C.RegisterCustomerRequest(
            external_ref="X-0",
            display_name="Li",
            kind=common_pb2.CUSTOMER_KIND_PERSON,
            industry="retail",
            region="CN",
            source="web",
            size=99,  # type: ignore[arg-type]
        ),
        "size",
    ),
    # ------------------------------------------------------------ customers
    (
        "RegisterCustomer",
        lambda c, p, a: C.RegisterCustomerRequest(
            external_ref="X-1",
            kind=common_pb2.CUSTOMER_KIND_PERSON,
            industry="retail",
            region="CN",
            source="web",
        ),
        "display_name",
    ),
    (
        "RegisterCustomer",
        lambda c, p, a: C.RegisterCustomerRequest(
            external_ref="X-2", display_name="Li", industry="retail", region="CN", source="web"
        ),
        "kind",
    ),
    (
        "RegisterCustomer",
        lambda c, p, a: C.RegisterCustomerRequest(
            external_ref="X-3",
            display_name="L" * 201,
            kind=common_pb2.CUSTOMER_KIND_PERSON,
            industry="retail",
            region="CN",
            source="web",
        ),
        "display_name",
    ),
    (
        "RegisterCustomer",
        lambda c, p, a: C.RegisterCustomerRequest(
            customer_id=NOT_A_UUID,
            external_ref="X-4",
            display_name="Li",
            kind=common_pb2.CUSTOMER_KIND_PERSON,
            industry="retail",
            region="CN",
            source="web",
        ),
        "customer_id",
    ),
    (
        "RegisterCustomer",
        lambda c, p, a: C.RegisterCustomerRequest(
            request_id="r" * 129,
            external_ref="X-5",
            display_name="Li",
            kind=common_pb2.CUSTOMER_KIND_PERSON,
            industry="retail",
            region="CN",
            source="web",
        ),
        "request_id",
    ),
    (
        "UpdateCustomerProfile",
        lambda c, p, a: C.UpdateCustomerProfileRequest(
            customer_id=c, expected_version=0, industry="retail"
        ),
        "expected_version",
    ),
    (
        "UpdateCustomerProfile",
        lambda c, p, a: C.UpdateCustomerProfileRequest(customer_id=NOT_A_UUID, industry="retail"),
        "customer_id",
    ),
    (
        "AddContact",
        lambda c, p, a: C.AddContactRequest(
            customer_id=c,
            name="Zhao",
            email="not-an-email",
            layer=common_pb2.CONTACT_LAYER_DECISION,
            function=common_pb2.CONTACT_FUNCTION_FINANCE,
        ),
        "email",
    ),
    (
        "AddContact",
        lambda c, p, a: C.AddContactRequest(
            customer_id=c,
            name="Zhao",
            influence=9,
            layer=common_pb2.CONTACT_LAYER_DECISION,
            function=common_pb2.CONTACT_FUNCTION_FINANCE,
        ),
        "influence",
    ),
    (
        "AddContact",
        lambda c, p, a: C.AddContactRequest(
            customer_id=c, name="Zhao", function=common_pb2.CONTACT_FUNCTION_FINANCE
        ),
        "layer",
    ),
    ("RemoveContact", lambda c, p, a: C.RemoveContactRequest(customer_id=c), "contact_id"),
    (
        "RecordInteraction",
        lambda c, p, a: C.RecordInteractionRequest(
            customer_id=c,
            kind=common_pb2.INTERACTION_KIND_PURCHASE,
            channel=common_pb2.CHANNEL_WEB,
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=ago(days=1),
        ),
        "amount",
    ),
    (
        "RecordInteraction",
        lambda c, p, a: C.RecordInteractionRequest(
            customer_id=c,
            kind=common_pb2.INTERACTION_KIND_PURCHASE,
            channel=common_pb2.CHANNEL_WEB,
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=ago(days=1),
            amount=common_pb2.Money(amount="-5", currency="CNY"),
        ),
        "amount",
    ),
    (
        "RecordInteraction",
        lambda c, p, a: C.RecordInteractionRequest(
            customer_id=c,
            kind=common_pb2.INTERACTION_KIND_PURCHASE,
            channel=common_pb2.CHANNEL_WEB,
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=ago(days=1),
            amount=common_pb2.Money(amount="12", currency="USD"),
        ),
        "currency",
    ),
    (
        "RecordInteraction",
        lambda c, p, a: C.RecordInteractionRequest(
            customer_id=c,
            kind=common_pb2.INTERACTION_KIND_CALL,
            channel=common_pb2.CHANNEL_PHONE,
            direction=common_pb2.DIRECTION_INBOUND,
        ),
        "occurred_at",
    ),
    (
        "RecordInteraction",
        lambda c, p, a: C.RecordInteractionRequest(
            customer_id=c,
            kind=common_pb2.INTERACTION_KIND_SURVEY,
            channel=common_pb2.CHANNEL_WEB,
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=ago(days=1),
            satisfaction=11,
        ),
        "satisfaction",
    ),
    (
        "RecordInteraction",
        lambda c, p, a: C.RecordInteractionRequest(
            customer_id=c,
            kind=common_pb2.INTERACTION_KIND_CALL,
            channel=common_pb2.CHANNEL_PHONE,
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=ago(days=1),
            summary="s" * 4001,
        ),
        "summary",
    ),
    (
        "RecordInteraction",
        lambda c, p, a: C.RecordInteractionRequest(
            customer_id=c,
            kind=common_pb2.INTERACTION_KIND_CALL,
            channel=common_pb2.CHANNEL_PHONE,
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=ago(days=1),
            contact_ids=["x"],
        ),
        "contact_ids.0",
    ),
    ("ChangeTier", lambda c, p, a: C.ChangeTierRequest(customer_id=c, reason="growth"), "to_tier"),
    (
        "ChangeTier",
        lambda c, p, a: C.ChangeTierRequest(customer_id=c, to_tier=common_pb2.TIER_KEY),
        "reason",
    ),
    (
        "GrantConsent",
        lambda c, p, a: C.GrantConsentRequest(
            customer_id=c, partner_id=p, purpose=common_pb2.PURPOSE_MARKETING, capture=CAPTURE
        ),
        "data_categories",
    ),
    (
        "GrantConsent",
        lambda c, p, a: C.GrantConsentRequest(
            customer_id=c,
            partner_id=p,
            purpose=common_pb2.PURPOSE_MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
        ),
        "capture",
    ),
    (
        "GrantConsent",
        lambda c, p, a: C.GrantConsentRequest(
            customer_id=c,
            partner_id=p,
            purpose=common_pb2.PURPOSE_MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
            capture=CAPTURE,
            effective_from=ago(days=-2),
            expires_at=ago(days=-1),
        ),
        "expires_at",
    ),
    (
        "GrantConsent",
        lambda c, p, a: C.GrantConsentRequest(
            customer_id=c,
            partner_id=NOT_A_UUID,
            purpose=common_pb2.PURPOSE_MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
            capture=CAPTURE,
        ),
        "partner_id",
    ),
    (
        "WithdrawConsent",
        lambda c, p, a: C.WithdrawConsentRequest(
            customer_id=c, consent_id=NOT_A_UUID, channel="LETTER"
        ),
        "consent_id",
    ),
    (
        "WithdrawConsent",
        lambda c, p, a: C.WithdrawConsentRequest(customer_id=c, consent_id=a),
        "channel",
    ),
    (
        "ShareData",
        lambda c, p, a: C.ShareDataRequest(
            customer_id=c, partner_id=p, data_categories=[common_pb2.DATA_CATEGORY_CONTACT]
        ),
        "purpose",
    ),
    (
        "ShareData",
        lambda c, p, a: C.ShareDataRequest(
            customer_id=c,
            partner_id=p,
            purpose=common_pb2.PURPOSE_MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_UNSPECIFIED],
        ),
        "data_categories.0",
    ),
    ("EraseCustomerData", lambda c, p, a: C.EraseCustomerDataRequest(customer_id=c), "reason"),
    # ------------------------------------------------------------- partners
    (
        "RegisterPartner",
        lambda c, p, a: P.RegisterPartnerRequest(
            external_ref="PX-1", kind=common_pb2.PARTNER_KIND_REFERRAL
        ),
        "name",
    ),
    (
        "RegisterPartner",
        lambda c, p, a: P.RegisterPartnerRequest(external_ref="PX-2", name="Acme"),
        "kind",
    ),
    (
        "EvaluatePartner",
        lambda c, p, a: P.EvaluatePartnerRequest(
            partner_id=p, reputation=1, business_fit=1, data_protection=1
        ),
        "strength",
    ),
    (
        "EvaluatePartner",
        lambda c, p, a: P.EvaluatePartnerRequest(
            partner_id=p, strength=1, reputation=101, business_fit=1, data_protection=1
        ),
        "reputation",
    ),
    (
        "SignAgreement",
        lambda c, p, a: P.SignAgreementRequest(
            partner_id=p,
            kind=common_pb2.AGREEMENT_KIND_REFERRAL,
            effective_from=ago(days=1),
            confidentiality=True,
            permitted_purposes=[common_pb2.PURPOSE_MARKETING],
            permitted_data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
            document_sha256="xyz",
        ),
        "document_sha256",
    ),
    (
        "SignAgreement",
        lambda c, p, a: P.SignAgreementRequest(
            partner_id=p,
            kind=common_pb2.AGREEMENT_KIND_REFERRAL,
            confidentiality=True,
            permitted_purposes=[common_pb2.PURPOSE_MARKETING],
            permitted_data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
            document_sha256="ab" * 32,
        ),
        "effective_from",
    ),
    (
        "SignAgreement",
        lambda c, p, a: P.SignAgreementRequest(
            partner_id=p,
            kind=common_pb2.AGREEMENT_KIND_REFERRAL,
            effective_from=ago(days=1),
            effective_to=ago(days=2),
            confidentiality=True,
            permitted_purposes=[common_pb2.PURPOSE_MARKETING],
            permitted_data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
            document_sha256="ab" * 32,
        ),
        "effective_to",
    ),
    (
        "TerminateAgreement",
        lambda c, p, a: P.TerminateAgreementRequest(
            partner_id=p, agreement_id=NOT_A_UUID, reason="ended"
        ),
        "agreement_id",
    ),
    (
        "TerminateAgreement",
        lambda c, p, a: P.TerminateAgreementRequest(partner_id=p, agreement_id=a),
        "reason",
    ),
    (
        "ActivatePartner",
        lambda c, p, a: P.ActivatePartnerRequest(partner_id=NOT_A_UUID),
        "partner_id",
    ),
    ("SuspendPartner", lambda c, p, a: P.SuspendPartnerRequest(partner_id=p), "reason"),
    ("ReinstatePartner", lambda c, p, a: P.ReinstatePartnerRequest(partner_id=p), "reason"),
    ("TerminatePartner", lambda c, p, a: P.TerminatePartnerRequest(partner_id=p), "reason"),
    (
        "ReviewPartnerPerformance",
        lambda c, p, a: P.ReviewPartnerPerformanceRequest(
            partner_id=p,
            period="2025-13",
            revenue=common_pb2.Money(amount="10", currency="CNY"),
            satisfaction="8",
        ),
        "period",
    ),
    (
        "ReviewPartnerPerformance",
        lambda c, p, a: P.ReviewPartnerPerformanceRequest(
            partner_id=p,
            period="2025-Q1",
            revenue=common_pb2.Money(amount="10", currency="CNY"),
            satisfaction="11",
        ),
        "satisfaction",
    ),
    (
        "ReviewPartnerPerformance",
        lambda c, p, a: P.ReviewPartnerPerformanceRequest(
            partner_id=p,
            period="2025-Q1",
            revenue=common_pb2.Money(amount="ten", currency="CNY"),
            satisfaction="8",
        ),
        "revenue",
    ),
    (
        "ChangePartnerTier",
        lambda c, p, a: P.ChangePartnerTierRequest(partner_id=p, reason="growth"),
        "to_tier",
    ),
    (
        "LinkCustomer",
        lambda c, p, a: P.LinkCustomerRequest(
            partner_id=p, customer_id=NOT_A_UUID, role=common_pb2.LINK_ROLE_RESALE
        ),
        "customer_id",
    ),
    ("LinkCustomer", lambda c, p, a: P.LinkCustomerRequest(partner_id=p, customer_id=c), "role"),
    ("UnlinkCustomer", lambda c, p, a: P.UnlinkCustomerRequest(partner_id=p), "customer_id"),
    # ------------------------------------------- found by the fuzzer (tests/e2e/test_fuzz.py)
    (  # effective_from defaults to now: was INTERNAL (the aggregate's ValueError)
        "GrantConsent",
        lambda c, p, a: C.GrantConsentRequest(
            customer_id=c,
            partner_id=p,
            purpose=common_pb2.PURPOSE_MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
            capture=CAPTURE,
            expires_at=ago(days=1),
        ),
        "expires_at",
    ),
    (  # NUL: PostgreSQL refused to store it, INTERNAL
        "UpdateCustomerProfile",
        lambda c, p, a: C.UpdateCustomerProfileRequest(customer_id=c, industry="retail\x00"),
        "industry",
    ),
    (
        "SuspendPartner",
        lambda c, p, a: P.SuspendPartnerRequest(partner_id=p, request_id="r\x00", reason="x"),
        "request_id",
    ),
    (  # 4 MiB of these took a worker 16 s, then were accepted
        "ShareData",
        lambda c, p, a: C.ShareDataRequest(
            customer_id=c,
            partner_id=p,
            purpose=common_pb2.PURPOSE_MARKETING,
            data_categories=[common_pb2.DATA_CATEGORY_CONTACT] * (MAX_REPEATED + 1),
        ),
        "data_categories",
    ),
]


def _stub_method(client: Client, rpc: str) -> Callable[..., Any]:
    stub = client.customers if hasattr(client.customers, rpc) else client.partners
    method: Callable[..., Any] = getattr(stub, rpc)
    return method


def test_every_mutating_rpc_is_covered_by_the_table() -> None:
    mutating = {
        m.name
        for module in (customer_pb2, partner_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
        if not m.name.startswith("Get")
    }
    # IngestInteractions carries RecordInteraction requests: the test below sends it those.
    assert mutating - {"IngestInteractions"} == {rpc for rpc, _, _ in CASES}


@pytest.fixture(scope="module")
def targets(served: Served) -> tuple[str, str, str]:
    """A real customer, partner and agreement for the requests to aim at."""
    client = served.client("writer")
    partner_id, agreement_id = active_partner(client)
    customer_id = register_customer(client).customer_id
    return customer_id, partner_id, agreement_id


def test_invalid_requests_name_the_field_and_record_nothing(
    served: Served, targets: tuple[str, str, str]
) -> None:
    client = served.client("writer")
    before = stored_event_count(served.store)
    for rpc, build, field in CASES:
        request = build(*targets)
        method = _stub_method(client, rpc)
        error = rpc_error(lambda: method(request, timeout=15), (rpc, field))  # noqa: B023
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc, field, error.details())
        violations = field_violations(error)
        assert field in violations, (rpc, field, violations)
        assert violations[field], "a violation says what is wrong"
    assert stored_event_count(served.store) == before


def test_each_bad_interaction_in_a_bulk_batch_is_its_own_invalid_argument(
    served: Served, targets: tuple[str, str, str]
) -> None:
    """RecordInteraction's bad requests, sent in one batch: each item refused, naming its field."""
    client = served.client("writer")
    cases = [(build, field) for rpc, build, field in CASES if rpc == "RecordInteraction"]
    assert len(cases) >= 5
    before = stored_event_count(served.store)

    [response] = client.customers.IngestInteractions(
        iter([C.IngestInteractionsRequest(interactions=[build(*targets) for build, _ in cases])]),
        timeout=15,
    )

    assert len(response.results) == len(cases)
    for (_, field), result in zip(cases, response.results, strict=True):
        assert result.WhichOneof("outcome") == "error", field
        assert result.error.code == "INVALID_ARGUMENT", (field, result.error)
        violations = {v.field: v.description for v in result.error.field_violations}
        assert violations.get(field), (field, violations)
    assert stored_event_count(served.store) == before


def test_violations_never_echo_the_input(served: Served, targets: tuple[str, str, str]) -> None:
    customer_id, _, _ = targets
    secret = "zhao.secret@example"  # not an email: refused, and must not be repeated back
    error = rpc_error(
        lambda: served.client("writer").customers.AddContact(
            C.AddContactRequest(
                customer_id=customer_id,
                name="Zhao Secret",
                email=secret,
                layer=common_pb2.CONTACT_LAYER_DECISION,
                function=common_pb2.CONTACT_FUNCTION_FINANCE,
            ),
            timeout=15,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert secret not in (error.details() or "")
    assert "Zhao Secret" not in str(field_violations(error))
    assert not any(secret in line for line in served.log_lines())


def test_a_request_above_the_message_size_limit_is_refused_before_it_is_read(
    served: Served, targets: tuple[str, str, str]
) -> None:
    customer_id, _, _ = targets
    before = stored_event_count(served.store)
    error = rpc_error(
        lambda: served.client("writer").customers.RecordInteraction(
            C.RecordInteractionRequest(
                customer_id=customer_id,
                kind=common_pb2.INTERACTION_KIND_CALL,
                channel=common_pb2.CHANNEL_PHONE,
                direction=common_pb2.DIRECTION_INBOUND,
                occurred_at=ago(days=1),
                summary="x" * (5 * 1024 * 1024),
            ),
            timeout=15,
        )
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stored_event_count(served.store) == before


def test_bytes_that_are_not_the_request_message_are_refused_naming_the_field(
    served: Served, targets: tuple[str, str, str]
) -> None:
    """grpc answered these INTERNAL ("Exception deserializing request!") before any servicer ran."""
    customer_id, partner_id, _ = targets
    valid = C.GrantConsentRequest(
        customer_id=customer_id,
        partner_id=partner_id,
        purpose=common_pb2.PURPOSE_MARKETING,
        data_categories=[common_pb2.DATA_CATEGORY_CONTACT],
        capture=CAPTURE,
    ).SerializeToString()
    broken = {
        "request_id": valid + b"\x12\x02\xff\xfe",  # field 2, invalid UTF-8
        "capture.method": valid + b"\x52\x04\x0a\x02\xff\xfe",  # field 10 { field 1 }, the same
        "customer_id": b"\x0a\x64" + valid[:10],  # a length past the end
        "(request)": valid + b"\x00",  # field number 0
    }
    channel = grpc.insecure_channel(served.address)
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/accord.v1.CustomerService/GrantConsent",
        request_serializer=None,
        response_deserializer=None,
    )
    metadata = (("authorization", f"Bearer {served.tokens['writer']}"),)
    before = stored_event_count(served.store)
    try:
        for field, payload in broken.items():
            error = rpc_error(lambda: call(payload, timeout=15, metadata=metadata), field)  # noqa: B023
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
            assert field in field_violations(error), field
    finally:
        channel.close()
    assert stored_event_count(served.store) == before


def test_a_thousand_bad_items_are_a_short_list_of_violations(
    served: Served, targets: tuple[str, str, str]
) -> None:
    """One violation per bad item made trailers the client refused (RESOURCE_EXHAUSTED, no
    details) from a few hundred items on; past MAX_REPEATED the count alone is the violation."""
    customer_id, _, _ = targets
    client = served.client("writer")
    before = stored_event_count(served.store)
    for count, named in ((MAX_REPEATED, "contact_ids.0"), (100_000, "contact_ids")):
        request = C.RecordInteractionRequest(
            customer_id=customer_id,
            kind=common_pb2.INTERACTION_KIND_CALL,
            channel=common_pb2.CHANNEL_PHONE,
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=ago(days=1),
            contact_ids=["x"] * count,
        )
        error = rpc_error(lambda: client.customers.RecordInteraction(request, timeout=15))  # noqa: B023
        violations = field_violations(error)
        assert named in violations, violations
        assert len(violations) <= MAX_VIOLATIONS + 1
    assert stored_event_count(served.store) == before
