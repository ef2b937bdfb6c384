"""The role table covers every RPC of the contract and grants what DESIGN §7 says."""

from __future__ import annotations

import pytest

from adapters.grpc.access import ALLOWED_ROLES, is_open, may_call, sees_personal_data
from adapters.grpc.generated.accord.v1 import (
    audit_pb2,
    compliance_pb2,
    customer_pb2,
    insight_pb2,
    partner_pb2,
)
from adapters.grpc.tokens import ROLES, Principal

FILES = (customer_pb2, partner_pb2, compliance_pb2, insight_pb2, audit_pb2)


def every_rpc() -> list[str]:
    return [
        f"/{service.full_name}/{method.name}"
        for module in FILES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


def as_role(*roles: str) -> Principal:
    return Principal("p", frozenset(roles))


def test_every_rpc_of_the_contract_has_an_entry_and_nothing_else_does() -> None:
    assert sorted(ALLOWED_ROLES) == sorted(every_rpc())
    assert len(ALLOWED_ROLES) == 12 + 13 + 4 + 5 + 5


@pytest.mark.parametrize("method", every_rpc())
def test_admin_may_call_everything(method: str) -> None:
    assert may_call(as_role("admin"), method)


def expected(role: str, method: str) -> bool:
    service, rpc = method.strip("/").split("/")
    service = service.removeprefix("accord.v1.")
    is_read = rpc.startswith("Get") and service in {"CustomerService", "PartnerService"}
    if service in {"CustomerService", "PartnerService"}:
        return role in {"reader", "compliance", "auditor"} if is_read else role == "writer"
    if service == "InsightService":
        return role in {"reader", "compliance", "auditor"}
    if service == "ComplianceService":
        return role == "compliance"
    assert service == "AuditService"
    return role == "auditor"


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
def test_each_role_may_call_exactly_its_share_of_the_contract(role: str) -> None:
    for method in every_rpc():
        assert may_call(as_role(role), method) is expected(role, method), (role, method)


def test_roles_add_up() -> None:
    both = as_role("writer", "reader")
    assert may_call(both, "/accord.v1.CustomerService/RegisterCustomer")
    assert may_call(both, "/accord.v1.CustomerService/GetCustomer")
    assert not may_call(both, "/accord.v1.AuditService/ReadEvents")


def test_unknown_methods_are_refused_and_only_health_and_reflection_are_open() -> None:
    assert not may_call(as_role("admin"), "/accord.v1.CustomerService/DropEverything")
    assert is_open("/grpc.health.v1.Health/Check")
    assert is_open("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not is_open("/accord.v1.AuditService/ReadEvents")


def test_an_auditor_alone_does_not_see_personal_data() -> None:
    assert not sees_personal_data(as_role("auditor"))
    assert sees_personal_data(as_role("auditor", "reader"))
    for role in ("writer", "reader", "compliance", "admin"):
        assert sees_personal_data(as_role(role))
