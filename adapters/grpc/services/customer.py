"""CustomerService: requests -> customer commands and queries -> responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2, customer_pb2_grpc
from adapters.grpc.ingestion import ingest
from adapters.grpc.interceptor import current_call
from adapters.grpc.services.reads import await_log
from adapters.grpc.state import customer_message
from adapters.grpc.translate import (
    command,
    command_response,
    enum_out,
    instant_in,
    required_uuid,
)
from application import commands
from application.service import Accord

_ID = "customer_id"


class CustomerServicer(customer_pb2_grpc.CustomerServiceServicer):
    def __init__(self, accord: Accord) -> None:
        self.accord = accord
        self.use = accord.customers

    def RegisterCustomer(
        self, request: customer_pb2.RegisterCustomerRequest, _: Any
    ) -> customer_pb2.RegisterCustomerResponse:
        result = self.use.register(command(request, commands.RegisterCustomer), current_call().ctx)
        return command_response(customer_pb2.RegisterCustomerResponse, result, id_field=_ID)

    def UpdateCustomerProfile(
        self, request: customer_pb2.UpdateCustomerProfileRequest, _: Any
    ) -> customer_pb2.UpdateCustomerProfileResponse:
        result = self.use.update_profile(
            command(request, commands.UpdateCustomerProfile), current_call().ctx
        )
        return command_response(customer_pb2.UpdateCustomerProfileResponse, result, id_field=_ID)

    def AddContact(
        self, request: customer_pb2.AddContactRequest, _: Any
    ) -> customer_pb2.AddContactResponse:
        result = self.use.add_contact(command(request, commands.AddContact), current_call().ctx)
        return command_response(
            customer_pb2.AddContactResponse, result, id_field=_ID, entity_field="contact_id"
        )

    def RemoveContact(
        self, request: customer_pb2.RemoveContactRequest, _: Any
    ) -> customer_pb2.RemoveContactResponse:
        result = self.use.remove_contact(
            command(request, commands.RemoveContact), current_call().ctx
        )
        return command_response(customer_pb2.RemoveContactResponse, result, id_field=_ID)

    def RecordInteraction(
        self, request: customer_pb2.RecordInteractionRequest, _: Any
    ) -> customer_pb2.RecordInteractionResponse:
        result = self.use.record_interaction(
            command(request, commands.RecordInteraction), current_call().ctx
        )
        return command_response(
            customer_pb2.RecordInteractionResponse,
            result,
            id_field=_ID,
            entity_field="interaction_id",
        )

    def IngestInteractions(
        self, requests: Iterator[customer_pb2.IngestInteractionsRequest], _: Any
    ) -> Iterator[customer_pb2.IngestInteractionsResponse]:
        for request in requests:
            yield ingest(self.use, request, current_call().ctx)

    def ChangeTier(
        self, request: customer_pb2.ChangeTierRequest, _: Any
    ) -> customer_pb2.ChangeTierResponse:
        result = self.use.change_tier(command(request, commands.ChangeTier), current_call().ctx)
        return command_response(customer_pb2.ChangeTierResponse, result, id_field=_ID)

    def GrantConsent(
        self, request: customer_pb2.GrantConsentRequest, _: Any
    ) -> customer_pb2.GrantConsentResponse:
        result = self.use.grant_consent(command(request, commands.GrantConsent), current_call().ctx)
        return command_response(
            customer_pb2.GrantConsentResponse, result, id_field=_ID, entity_field="consent_id"
        )

    def WithdrawConsent(
        self, request: customer_pb2.WithdrawConsentRequest, _: Any
    ) -> customer_pb2.WithdrawConsentResponse:
        result = self.use.withdraw_consent(
            command(request, commands.WithdrawConsent), current_call().ctx
        )
        return command_response(
            customer_pb2.WithdrawConsentResponse, result, id_field=_ID, entity_field="consent_id"
        )

    def ShareData(
        self, request: customer_pb2.ShareDataRequest, _: Any
    ) -> customer_pb2.ShareDataResponse:
        outcome = self.use.share_data(command(request, commands.ShareData), current_call().ctx)
        response = command_response(customer_pb2.ShareDataResponse, outcome.result, id_field=_ID)
        response.share_id = str(outcome.share_id)
        response.shared = outcome.shared
        response.reasons.extend(enum_out(common_pb2.ShareReason, r) for r in outcome.reasons)
        response.relied_on_consent_ids.extend(str(c) for c in outcome.relied_on_consent_ids)
        response.agreement_id = str(outcome.agreement_id or "")
        if outcome.partner_version is not None:
            response.partner_version = outcome.partner_version
        return response

    def EraseCustomerData(
        self, request: customer_pb2.EraseCustomerDataRequest, _: Any
    ) -> customer_pb2.EraseCustomerDataResponse:
        result = self.use.erase(command(request, commands.EraseCustomerData), current_call().ctx)
        return command_response(customer_pb2.EraseCustomerDataResponse, result, id_field=_ID)

    def GetCustomer(
        self, request: customer_pb2.GetCustomerRequest, _: Any
    ) -> customer_pb2.GetCustomerResponse:
        customer_id = required_uuid("customer_id", request.customer_id)
        await_log(self.accord.log, request.min_position)
        as_of_time = (
            instant_in("as_of_time", request.as_of_time) if request.HasField("as_of_time") else None
        )
        customer = self.accord.queries.customer(
            customer_id,
            as_of_version=request.as_of_version if request.HasField("as_of_version") else None,
            as_of_time=as_of_time,
        )
        positions = self.accord.log.journal.positions(customer_id)
        message = customer_message(
            customer,
            positions=positions,
            at=as_of_time or self.accord.clock.now(),
            base_currency=self.accord.settings.base_currency,
            show_personal=current_call().sees_personal_data,
        )
        return customer_pb2.GetCustomerResponse(
            customer=message, position=positions.get(customer.version, 0)
        )
