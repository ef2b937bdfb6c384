"""The role table, enforced by a real server: every RPC x every role, and bad credentials.

Each RPC is called with an empty request: a caller the table admits gets past
authentication and authorisation (and is then told what is wrong with the
request, or answered); any other caller is refused before the servicer runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory

from adapters.grpc.access import ALLOWED_ROLES
from adapters.grpc.generated.accord.v1 import (
    audit_pb2,
    compliance_pb2,
    customer_pb2,
    insight_pb2,
    partner_pb2,
)
from adapters.grpc.tokens import ROLES, add_token
from tests.e2e.harness import Served

FILES = (customer_pb2, partner_pb2, compliance_pb2, insight_pb2, audit_pb2)
REFUSALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def rpcs() -> list[tuple[str, Any, bool]]:
    """(path, request class, server-streaming) for every RPC of the contract."""
    found = []
    for module in FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                request = message_factory.GetMessageClass(method.input_type)
                found.append(
                    (f"/{service.full_name}/{method.name}", request, method.server_streaming)
                )
    return found


def outcome(
    channel: grpc.Channel, rpc: tuple[str, Any, bool], token: str | None
) -> grpc.StatusCode:
    path, request_class, streaming = rpc
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    kwargs: dict[str, Any] = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": lambda data: data,
    }
    try:
        if streaming:
            for _ in channel.unary_stream(path, **kwargs)(
                request_class(), metadata=metadata, timeout=5
            ):
                pass
        else:
            channel.unary_unary(path, **kwargs)(request_class(), metadata=metadata, timeout=5)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_the_rpcs_the_table_grants(served: Served, role: str) -> None:
    with grpc.insecure_channel(served.address) as channel:
        for rpc in rpcs():
            code = outcome(channel, rpc, served.tokens[role])
            allowed = role == "admin" or role in ALLOWED_ROLES[rpc[0]]
            if allowed:
                assert code not in (*REFUSALS, grpc.StatusCode.UNIMPLEMENTED), (role, rpc[0], code)
                assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), rpc[0]
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (role, rpc[0], code)


def test_no_token_a_wrong_token_an_expired_one_and_a_revoked_one_are_unauthenticated(
    served: Served,
) -> None:
    assert served.tokens_file is not None
    expired = add_token(
        served.tokens_file, "expired", ["admin"], expires_at=datetime.now(UTC) - timedelta(1)
    )
    revoked = add_token(served.tokens_file, "revoked", ["admin"])
    with served.tokens_file.open("a") as tokens:
        tokens.write("revoked = true\n")
    admin = served.tokens["admin"]
    bad = [None, "", "acc_wrong", admin[:-1], admin + "x", expired, revoked]
    with grpc.insecure_channel(served.address) as channel:
        for rpc in rpcs():
            for token in bad:
                assert outcome(channel, rpc, token) == grpc.StatusCode.UNAUTHENTICATED, (
                    rpc[0],
                    token and token[:6],
                )
        # Not a bearer token at all, or a scheme other than Bearer.
        call = channel.unary_unary(
            "/accord.v1.CustomerService/GetCustomer",
            request_serializer=customer_pb2.GetCustomerRequest.SerializeToString,
            response_deserializer=lambda data: data,
        )
        for header in (admin, f"Basic {admin}", "Bearer"):
            with pytest.raises(grpc.RpcError) as refused:
                call(
                    customer_pb2.GetCustomerRequest(),
                    metadata=(("authorization", header),),
                    timeout=5,
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection_need_no_token(served: Served) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(served.address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(
            health_pb2.HealthCheckRequest(service="accord.v1.CustomerService"), timeout=5
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_refusals_are_logged_without_the_token(served: Served) -> None:
    with grpc.insecure_channel(served.address) as channel:
        outcome(channel, rpcs()[0], "acc_leaked-guess-123")
    lines = served.log_lines()
    assert any(r.get("code") == "UNAUTHENTICATED" for r in served.log_records())
    assert not any("acc_leaked-guess-123" in line for line in lines)
    assert not any(token in line for line in lines for token in served.tokens.values())
