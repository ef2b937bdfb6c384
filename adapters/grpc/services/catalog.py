"""Every servicer of the accord.v1 contract, ready to be added to a server."""

from __future__ import annotations

from adapters.grpc.generated.accord.v1 import customer_pb2_grpc, partner_pb2_grpc
from adapters.grpc.server import Register
from adapters.grpc.services.customer import CustomerServicer
from adapters.grpc.services.partner import PartnerServicer
from application.service import Accord
from projections.read_models import ReadModels

SERVICE_NAMES = (
    "accord.v1.CustomerService",
    "accord.v1.PartnerService",
)


def registrations(accord: Accord, read_models: ReadModels) -> list[Register]:
    customers = CustomerServicer(accord)
    partners = PartnerServicer(accord)
    return [
        lambda server: customer_pb2_grpc.add_CustomerServiceServicer_to_server(customers, server),
        lambda server: partner_pb2_grpc.add_PartnerServiceServicer_to_server(partners, server),
    ]
