"""CustomerService and PartnerService over the wire: results, statuses and their details."""

from __future__ import annotations

import time
import uuid

import grpc
from grpc_status import rpc_status

from adapters.grpc.errors import error_details_pb2
from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2, partner_pb2
from tests.e2e.harness import Served, rpc_error, stored_event_count
from tests.e2e.wire import (
    TIMEOUT,
    active_partner,
    grant,
    purchase,
    register_customer,
    register_partner,
    share,
)


def error_reason(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            assert info.domain == "accord"
            return str(info.reason)
    raise AssertionError("no ErrorInfo")


def test_a_retry_with_the_same_request_id_records_one_event_and_returns_the_first_result(
    served: Served,
) -> None:
    client = served.client("writer")
    customer_id = register_customer(client).customer_id
    request = customer_pb2.ChangeTierRequest(
        customer_id=customer_id,
        request_id=f"tier-{uuid.uuid4()}",
        to_tier=common_pb2.TIER_KEY,
        reason="annual review",
    )
    before = stored_event_count(served.store)

    first = client.customers.ChangeTier(request, timeout=TIMEOUT)
    again = client.customers.ChangeTier(request, timeout=TIMEOUT)

    assert stored_event_count(served.store) == before + 1
    assert not first.replayed
    assert again.replayed
    assert (again.customer_id, again.version, again.position) == (
        first.customer_id,
        first.version,
        first.position,
    )


def test_the_same_request_id_with_another_payload_is_invalid(served: Served) -> None:
    client = served.client("writer")
    customer_id = register_customer(client).customer_id
    request_id = f"tier-{uuid.uuid4()}"
    client.customers.ChangeTier(
        customer_pb2.ChangeTierRequest(
            customer_id=customer_id,
            request_id=request_id,
            to_tier=common_pb2.TIER_KEY,
            reason="annual review",
        ),
        timeout=TIMEOUT,
    )
    error = rpc_error(
        lambda: client.customers.ChangeTier(
            customer_pb2.ChangeTierRequest(
                customer_id=customer_id,
                request_id=request_id,
                to_tier=common_pb2.TIER_STRATEGIC,
                reason="annual review",
            ),
            timeout=TIMEOUT,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in (error.details() or "")


def test_an_invariant_refusal_is_failed_precondition_with_its_reason_code(
    served: Served,
) -> None:
    client = served.client("writer")
    customer_id = register_customer(client).customer_id
    error = rpc_error(
        lambda: client.customers.ChangeTier(
            customer_pb2.ChangeTierRequest(
                customer_id=customer_id, to_tier=common_pb2.TIER_STANDARD, reason="same"
            ),
            timeout=TIMEOUT,
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "TIER_UNCHANGED"

    partner_id = register_partner(client).partner_id
    error = rpc_error(
        lambda: client.partners.ActivatePartner(
            partner_pb2.ActivatePartnerRequest(partner_id=partner_id), timeout=TIMEOUT
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "EVALUATION_REQUIRED"


def test_unknown_aggregates_are_not_found_and_taken_keys_already_exist(served: Served) -> None:
    client = served.client("writer")
    error = rpc_error(
        lambda: client.customers.ChangeTier(
            customer_pb2.ChangeTierRequest(
                customer_id=str(uuid.uuid4()), to_tier=common_pb2.TIER_KEY, reason="x"
            ),
            timeout=TIMEOUT,
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND

    customer = register_customer(client)
    got = served.client("reader").customers.GetCustomer(
        customer_pb2.GetCustomerRequest(customer_id=customer.customer_id), timeout=TIMEOUT
    )
    error = rpc_error(lambda: register_customer(client, external_ref=got.customer.external_ref))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(error) == "ALREADY_EXISTS"

    error = rpc_error(lambda: share(client, customer.customer_id, str(uuid.uuid4())))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_a_stale_expected_version_is_aborted_and_records_nothing(served: Served) -> None:
    client = served.client("writer")
    registered = register_customer(client)
    purchase(client, registered.customer_id)  # now at version 2
    before = stored_event_count(served.store)
    error = rpc_error(
        lambda: client.customers.ChangeTier(
            customer_pb2.ChangeTierRequest(
                customer_id=registered.customer_id,
                expected_version=1,
                to_tier=common_pb2.TIER_KEY,
                reason="review",
            ),
            timeout=TIMEOUT,
        )
    )
    assert error.code() == grpc.StatusCode.ABORTED
    assert error_reason(error) == "VERSION_MISMATCH"
    assert stored_event_count(served.store) == before

    done = client.customers.ChangeTier(
        customer_pb2.ChangeTierRequest(
            customer_id=registered.customer_id,
            expected_version=2,
            to_tier=common_pb2.TIER_KEY,
            reason="review",
        ),
        timeout=TIMEOUT,
    )
    assert done.version == 3


def test_a_refused_share_is_recorded_and_answered_with_its_reasons(served: Served) -> None:
    client = served.client("writer")
    partner_id, agreement_id = active_partner(client)
    customer_id = register_customer(client).customer_id

    refused = share(client, customer_id, partner_id)
    assert not refused.shared
    assert list(refused.reasons) == [common_pb2.SHARE_REASON_NO_CONSENT]
    assert refused.version == 2
    assert refused.position > 0

    consent = grant(client, customer_id, partner_id)
    shared = share(client, customer_id, partner_id)
    assert shared.shared
    assert not shared.reasons
    assert list(shared.relied_on_consent_ids) == [consent.consent_id]
    assert shared.agreement_id == agreement_id


def test_get_customer_reads_now_at_a_version_and_as_known_at_a_time(served: Served) -> None:
    writer, reader = served.client("writer"), served.client("reader")
    registered = register_customer(writer, display_name="Chen Jing")
    time.sleep(0.05)
    moment = customer_pb2.GetCustomerRequest().as_of_time
    moment.GetCurrentTime()
    time.sleep(0.05)
    changed = writer.customers.ChangeTier(
        customer_pb2.ChangeTierRequest(
            customer_id=registered.customer_id, to_tier=common_pb2.TIER_KEY, reason="growth"
        ),
        timeout=TIMEOUT,
    )

    now = reader.customers.GetCustomer(
        customer_pb2.GetCustomerRequest(
            customer_id=registered.customer_id, min_position=changed.position
        ),
        timeout=TIMEOUT,
    )
    assert now.customer.tier == common_pb2.TIER_KEY
    assert now.customer.version == 2
    assert now.position == changed.position
    assert now.customer.display_name == "Chen Jing"

    at_one = reader.customers.GetCustomer(
        customer_pb2.GetCustomerRequest(customer_id=registered.customer_id, as_of_version=1),
        timeout=TIMEOUT,
    )
    assert at_one.customer.tier == common_pb2.TIER_STANDARD
    assert at_one.position == registered.position

    request = customer_pb2.GetCustomerRequest(customer_id=registered.customer_id)
    request.as_of_time.CopyFrom(moment)
    then = reader.customers.GetCustomer(request, timeout=TIMEOUT)
    assert then.customer.version == 1

    request.as_of_version = 1
    error = rpc_error(lambda: reader.customers.GetCustomer(request, timeout=TIMEOUT))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    beyond = rpc_error(
        lambda: reader.customers.GetCustomer(
            customer_pb2.GetCustomerRequest(customer_id=registered.customer_id, as_of_version=9),
            timeout=TIMEOUT,
        )
    )
    assert beyond.code() == grpc.StatusCode.NOT_FOUND


def test_a_position_never_reached_is_unavailable_within_the_deadline(served: Served) -> None:
    reader = served.client("reader")
    customer_id = register_customer(served.client("writer")).customer_id
    started = time.monotonic()
    error = rpc_error(
        lambda: reader.customers.GetCustomer(
            customer_pb2.GetCustomerRequest(customer_id=customer_id, min_position=10**12),
            timeout=1.0,
        )
    )
    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert time.monotonic() - started < 5


def test_an_auditor_reads_state_without_personal_data_and_erasure_reaches_everyone(
    served: Served,
) -> None:
    writer = served.client("writer")
    customer_id = register_customer(writer, display_name="Sun Li").customer_id
    writer.customers.AddContact(
        customer_pb2.AddContactRequest(
            customer_id=customer_id,
            name="Sun Mei",
            email="mei@example.com",
            layer=common_pb2.CONTACT_LAYER_DECISION,
            function=common_pb2.CONTACT_FUNCTION_FINANCE,
        ),
        timeout=TIMEOUT,
    )
    request = customer_pb2.GetCustomerRequest(customer_id=customer_id)

    seen = served.client("reader").customers.GetCustomer(request, timeout=TIMEOUT).customer
    assert seen.display_name == "Sun Li"
    assert (seen.contacts[0].name, seen.contacts[0].email) == ("Sun Mei", "mei@example.com")

    hidden = served.client("auditor").customers.GetCustomer(request, timeout=TIMEOUT).customer
    assert hidden.display_name == "[redacted]"
    assert (hidden.contacts[0].name, hidden.contacts[0].email) == ("[redacted]", "[redacted]")
    assert hidden.external_ref == seen.external_ref  # business fields stay

    writer.customers.EraseCustomerData(
        customer_pb2.EraseCustomerDataRequest(customer_id=customer_id, reason="GDPR art. 17"),
        timeout=TIMEOUT,
    )
    erased = served.client("admin").customers.GetCustomer(request, timeout=TIMEOUT).customer
    assert erased.erased
    assert erased.display_name == "[erased]"
    assert erased.contacts[0].email == "[erased]"
    as_auditor = served.client("auditor").customers.GetCustomer(request, timeout=TIMEOUT)
    assert as_auditor.customer.display_name == "[erased]"


def test_the_correlation_id_is_returned_and_logged_with_the_call(served: Served) -> None:
    client = served.client("writer")
    correlation_id = f"corr-{uuid.uuid4()}"
    _response, call = client.partners.RegisterPartner.with_call(
        partner_pb2.RegisterPartnerRequest(
            external_ref=f"P-{uuid.uuid4().hex[:8]}",
            name="Corr Ltd",
            kind=common_pb2.PARTNER_KIND_SERVICE,
        ),
        metadata=(("x-correlation-id", correlation_id),),
        timeout=TIMEOUT,
    )
    assert dict(call.initial_metadata())["x-correlation-id"] == correlation_id
    records = [r for r in served.log_records() if r.get("correlation_id") == correlation_id]
    assert any(r["event"] == "rpc" and "RegisterPartner" in r["method"] for r in records)

    _, plain = client.partners.RegisterPartner.with_call(
        partner_pb2.RegisterPartnerRequest(
            external_ref=f"P-{uuid.uuid4().hex[:8]}",
            name="Plain Ltd",
            kind=common_pb2.PARTNER_KIND_SERVICE,
        ),
        timeout=TIMEOUT,
    )
    generated = str(dict(plain.initial_metadata())["x-correlation-id"])
    assert uuid.UUID(generated)
    assert generated != correlation_id
