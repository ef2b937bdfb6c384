"""PartnerService: requests -> partner commands and queries -> responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.message import Message
from pydantic import BaseModel

from adapters.grpc.generated.accord.v1 import partner_pb2, partner_pb2_grpc
from adapters.grpc.interceptor import current_call
from adapters.grpc.services.reads import await_log
from adapters.grpc.state import partner_message
from adapters.grpc.translate import command, command_response, instant_in, required_uuid
from application import commands
from application.context import CallContext
from application.results import CommandResult
from application.service import Accord

C = TypeVar("C", bound=BaseModel)
R = TypeVar("R", bound=Message)

_ID = "partner_id"


class PartnerServicer(partner_pb2_grpc.PartnerServiceServicer):
    def __init__(self, accord: Accord) -> None:
        self.accord = accord
        self.use = accord.partners

    @staticmethod
    def _run(
        request: Message,
        command_class: type[C],
        use_case: Callable[[C, CallContext], CommandResult],
        response_class: type[R],
        entity_field: str | None = None,
    ) -> R:
        result = use_case(command(request, command_class), current_call().ctx)
        return command_response(response_class, result, id_field=_ID, entity_field=entity_field)

    def RegisterPartner(
        self, request: partner_pb2.RegisterPartnerRequest, _: Any
    ) -> partner_pb2.RegisterPartnerResponse:
        return self._run(
            request,
            commands.RegisterPartner,
            self.use.register,
            partner_pb2.RegisterPartnerResponse,
        )

    def EvaluatePartner(
        self, request: partner_pb2.EvaluatePartnerRequest, _: Any
    ) -> partner_pb2.EvaluatePartnerResponse:
        return self._run(
            request,
            commands.EvaluatePartner,
            self.use.evaluate,
            partner_pb2.EvaluatePartnerResponse,
        )

    def SignAgreement(
        self, request: partner_pb2.SignAgreementRequest, _: Any
    ) -> partner_pb2.SignAgreementResponse:
        return self._run(
            request,
            commands.SignAgreement,
            self.use.sign_agreement,
            partner_pb2.SignAgreementResponse,
            entity_field="agreement_id",
        )

    def TerminateAgreement(
        self, request: partner_pb2.TerminateAgreementRequest, _: Any
    ) -> partner_pb2.TerminateAgreementResponse:
        return self._run(
            request,
            commands.TerminateAgreement,
            self.use.terminate_agreement,
            partner_pb2.TerminateAgreementResponse,
        )

    def ActivatePartner(
        self, request: partner_pb2.ActivatePartnerRequest, _: Any
    ) -> partner_pb2.ActivatePartnerResponse:
        return self._run(
            request,
            commands.ActivatePartner,
            self.use.activate,
            partner_pb2.ActivatePartnerResponse,
        )

    def SuspendPartner(
        self, request: partner_pb2.SuspendPartnerRequest, _: Any
    ) -> partner_pb2.SuspendPartnerResponse:
        return self._run(
            request, commands.SuspendPartner, self.use.suspend, partner_pb2.SuspendPartnerResponse
        )

    def ReinstatePartner(
        self, request: partner_pb2.ReinstatePartnerRequest, _: Any
    ) -> partner_pb2.ReinstatePartnerResponse:
        return self._run(
            request,
            commands.ReinstatePartner,
            self.use.reinstate,
            partner_pb2.ReinstatePartnerResponse,
        )

    def TerminatePartner(
        self, request: partner_pb2.TerminatePartnerRequest, _: Any
    ) -> partner_pb2.TerminatePartnerResponse:
        return self._run(
            request,
            commands.TerminatePartner,
            self.use.terminate,
            partner_pb2.TerminatePartnerResponse,
        )

    def ReviewPartnerPerformance(
        self, request: partner_pb2.ReviewPartnerPerformanceRequest, _: Any
    ) -> partner_pb2.ReviewPartnerPerformanceResponse:
        return self._run(
            request,
            commands.ReviewPartnerPerformance,
            self.use.review_performance,
            partner_pb2.ReviewPartnerPerformanceResponse,
        )

    def ChangePartnerTier(
        self, request: partner_pb2.ChangePartnerTierRequest, _: Any
    ) -> partner_pb2.ChangePartnerTierResponse:
        return self._run(
            request,
            commands.ChangePartnerTier,
            self.use.change_tier,
            partner_pb2.ChangePartnerTierResponse,
        )

    def LinkCustomer(
        self, request: partner_pb2.LinkCustomerRequest, _: Any
    ) -> partner_pb2.LinkCustomerResponse:
        return self._run(
            request, commands.LinkCustomer, self.use.link_customer, partner_pb2.LinkCustomerResponse
        )

    def UnlinkCustomer(
        self, request: partner_pb2.UnlinkCustomerRequest, _: Any
    ) -> partner_pb2.UnlinkCustomerResponse:
        return self._run(
            request,
            commands.UnlinkCustomer,
            self.use.unlink_customer,
            partner_pb2.UnlinkCustomerResponse,
        )

    def GetPartner(
        self, request: partner_pb2.GetPartnerRequest, _: Any
    ) -> partner_pb2.GetPartnerResponse:
        partner_id = required_uuid("partner_id", request.partner_id)
        await_log(self.accord.log, request.min_position)
        as_of_time = (
            instant_in("as_of_time", request.as_of_time) if request.HasField("as_of_time") else None
        )
        partner = self.accord.queries.partner(
            partner_id,
            as_of_version=request.as_of_version if request.HasField("as_of_version") else None,
            as_of_time=as_of_time,
        )
        positions = self.accord.log.journal.positions(partner_id)
        return partner_pb2.GetPartnerResponse(
            partner=partner_message(
                partner,
                at=as_of_time or self.accord.clock.now(),
                base_currency=self.accord.settings.base_currency,
            ),
            position=positions.get(partner.version, 0),
        )
