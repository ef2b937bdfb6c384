"""Every servicer of the accord.v1 contract, ready to be added to a server."""

from __future__ import annotations

from adapters.grpc.generated.accord.v1 import (
    audit_pb2_grpc,
    compliance_pb2_grpc,
    customer_pb2_grpc,
    insight_pb2_grpc,
    partner_pb2_grpc,
)
from adapters.grpc.server import Register
from adapters.grpc.services.audit import AuditServicer
from adapters.grpc.services.compliance import ComplianceServicer
from adapters.grpc.services.customer import CustomerServicer
from adapters.grpc.services.insight import InsightServicer
from adapters.grpc.services.partner import PartnerServicer
from application.service import Accord
from projections.read_models import ReadModels

SERVICE_NAMES = (
    "accord.v1.CustomerService",
    "accord.v1.PartnerService",
    "accord.v1.ComplianceService",
    "accord.v1.InsightService",
    "accord.v1.AuditService",
)


def registrations(accord: Accord, read_models: ReadModels) -> list[Register]:
    customers = CustomerServicer(accord)
    partners = PartnerServicer(accord)
    compliance = ComplianceServicer(accord, read_models)
    insight = InsightServicer(accord, read_models)
    audit = AuditServicer(accord, read_models)
    return [
        lambda server: customer_pb2_grpc.add_CustomerServiceServicer_to_server(customers, server),
        lambda server: partner_pb2_grpc.add_PartnerServiceServicer_to_server(partners, server),
        lambda server: compliance_pb2_grpc.add_ComplianceServiceServicer_to_server(
            compliance, server
        ),
        lambda server: insight_pb2_grpc.add_InsightServiceServicer_to_server(insight, server),
        lambda server: audit_pb2_grpc.add_AuditServiceServicer_to_server(audit, server),
    ]
