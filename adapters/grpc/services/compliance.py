"""ComplianceService: consent checks from the aggregates, lists from the consent registry.

CheckConsent is the authoritative answer (it replays the customer and the
partner, as recorded at ``at`` or as known now), so it waits on the log. The
List* RPCs answer across customers from the ``consent_registry`` read model,
wait on that view for ``min_position`` and report the position it reflects.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from adapters.grpc.errors import RpcError, invalid_field
from adapters.grpc.generated.accord.v1 import common_pb2, compliance_pb2, compliance_pb2_grpc
from adapters.grpc.services.reads import after_key, await_log, enum_filter, read_view
from adapters.grpc.state import consent_message, consent_status
from adapters.grpc.translate import (
    check_repeated,
    enum_in,
    enum_out,
    instant_in,
    page_size,
    page_token_in,
    page_token_out,
    paged,
    required_uuid,
    timestamp_out,
    uuid_in,
)
from application.service import Accord
from domain.sharing import Consent
from domain.values import DataCategory, Purpose
from projections import consent_registry as registry
from projections.read_models import ReadModels
from projections.store import Doc


def _fixed(number: int) -> str:
    """A position as a key that sorts as text in numeric order."""
    return f"{number:020d}"


# ------------------------------------------------------------- translation


def _share_message(doc: Doc) -> compliance_pb2.DataShare:
    message = compliance_pb2.DataShare(
        share_id=doc["share_id"],
        customer_id=doc["customer_id"],
        partner_id=doc["partner_id"],
        purpose=enum_out(common_pb2.Purpose, doc["purpose"]),
        data_categories=[enum_out(common_pb2.DataCategory, c) for c in doc["data_categories"]],
        shared=doc["shared"],
        reasons=[enum_out(common_pb2.ShareReason, r) for r in doc["reasons"]],
        relied_on_consent_ids=doc["relied_on_consent_ids"],
        agreement_id=doc["agreement_id"] or "",
        recorded_at=timestamp_out(doc["recorded_at"]),
        position=doc["position"],
    )
    if doc["partner_version"] is not None:
        message.partner_version = doc["partner_version"]
    return message


def _consent_doc_message(doc: Doc, at: datetime) -> common_pb2.Consent:
    """A registry document as the contract's Consent, by the same code GetCustomer uses."""
    positions = {doc["granted_version"]: doc["granted_position"]}
    if doc["withdrawal_version"] is not None:
        positions[doc["withdrawal_version"]] = doc["withdrawal_position"]
    return consent_message(Consent.model_validate(doc), doc["customer_id"], positions, at)


def _granted_order(doc: Doc) -> str:
    return _fixed(doc["granted_position"])


def _expiry_order(doc: Doc) -> str:
    return registry.expiry_key(datetime.fromisoformat(doc["expires_at"]), doc["consent_id"])


def _share_order(doc: Doc) -> str:
    return _fixed(doc["position"])


def _late_order(doc: Doc) -> str:
    return f"{_fixed(doc['share']['position'])}:{_fixed(doc['withdrawal_position'])}"


def _optional_id(field: str, value: str) -> str | None:
    parsed = uuid_in(field, value, required=False)
    return str(parsed) if parsed is not None else None


class ComplianceServicer(compliance_pb2_grpc.ComplianceServiceServicer):
    def __init__(self, accord: Accord, read_models: ReadModels) -> None:
        self.accord = accord
        self.read_models = read_models

    def CheckConsent(
        self, request: compliance_pb2.CheckConsentRequest, _: Any
    ) -> compliance_pb2.CheckConsentResponse:
        customer_id = required_uuid("customer_id", request.customer_id)
        partner_id = required_uuid("partner_id", request.partner_id)
        purpose = enum_in(common_pb2.Purpose.DESCRIPTOR, request.purpose)
        if purpose is None:
            raise RpcError(invalid_field("purpose", "required"))
        check_repeated("data_categories", len(request.data_categories))
        categories = self._categories(request.data_categories)
        at = instant_in("at", request.at) if request.HasField("at") else None
        await_log(self.accord.log, request.min_position)
        check = self.accord.compliance.check_consent(
            customer_id,
            partner_id,
            Purpose(purpose),
            categories,
            at=at,
            as_known_now=request.as_known_now,
        )
        decision = check.decision
        response = compliance_pb2.CheckConsentResponse(
            allowed=check.allowed,
            category_decisions=[
                compliance_pb2.CategoryDecision(
                    category=enum_out(common_pb2.DataCategory, d.category),
                    allowed=d.allowed,
                    reasons=[enum_out(common_pb2.ShareReason, r) for r in d.reasons],
                    consent_ids=[str(c) for c in d.consent_ids],
                )
                for d in decision.categories
            ],
            reasons=[enum_out(common_pb2.ShareReason, r) for r in decision.reasons],
            evidence=[
                compliance_pb2.ConsentEvidence(
                    consent_id=str(e.consent.consent_id),
                    granted_position=e.granted_position,
                    withdrawn_position=e.withdrawn_position,
                    status=common_pb2.ConsentStatus.ValueType(consent_status(e.consent, check.at)),
                )
                for e in check.evidence
            ],
            position=check.position,
            at=timestamp_out(check.at),
            as_known_now=check.as_known_now,
            agreement_id=str(decision.agreement_id or ""),
        )
        if decision.partner_version is not None:
            response.partner_version = decision.partner_version
        return response

    @staticmethod
    def _categories(numbers: Iterable[int]) -> tuple[DataCategory, ...]:
        """The distinct categories asked about, in the order first named."""
        found: dict[DataCategory, None] = {}
        for number in numbers:
            value = enum_in(common_pb2.DataCategory.DESCRIPTOR, number)
            if value is None:
                raise RpcError(invalid_field("data_categories", "unspecified or unknown category"))
            found.setdefault(DataCategory(value), None)
        if not found:
            raise RpcError(invalid_field("data_categories", "at least one is required"))
        return tuple(found)

    def ListConsents(
        self, request: compliance_pb2.ListConsentsRequest, _: Any
    ) -> compliance_pb2.ListConsentsResponse:
        customer_id = _optional_id("customer_id", request.customer_id)
        partner_id = _optional_id("partner_id", request.partner_id)
        days = request.expiring_within_days if request.HasField("expiring_within_days") else None
        if customer_id is None and partner_id is None and days is None:
            raise RpcError(
                invalid_field("customer_id", "give customer_id, partner_id or expiring_within_days")
            )
        at = instant_in("at", request.at) if request.HasField("at") else None
        status = enum_filter("status", common_pb2.ConsentStatus.DESCRIPTOR, request.status)
        size = page_size(request.page_size)
        query = {
            "customer_id": customer_id,
            "partner_id": partner_id,
            "at": at.isoformat() if at else None,
            "status": status,
            "expiring_within_days": days,
        }
        after = page_token_in(request.page_token, query)
        moment = at or self.accord.clock.now()
        if days is not None:
            self._check_horizon(moment, days)
        with read_view(self.read_models, registry.NAME, request.min_position) as reader:
            key = _granted_order
            if days is not None:
                docs = registry.expiring_within(reader, moment, days)
                key = _expiry_order
            elif customer_id is not None:
                docs = registry.consents_for_customer(reader, customer_id, moment)
            else:
                assert partner_id is not None
                docs = registry.consents_for_partner(reader, partner_id, moment)
            position = reader.position
        wanted = (
            d
            for d in docs
            if customer_id in (None, d["customer_id"])
            and partner_id in (None, d["partner_id"])
            and status in (None, d["status"])
        )
        page, last = paged(after_key(wanted, after, key), size, key)
        return compliance_pb2.ListConsentsResponse(
            consents=[_consent_doc_message(d, moment) for d in page],
            next_page_token=page_token_out(query, last) if last is not None else "",
            position=position,
        )

    @staticmethod
    def _check_horizon(moment: datetime, days: int) -> None:
        if days < 0:
            raise RpcError(invalid_field("expiring_within_days", "must not be negative"))
        try:
            moment + timedelta(days=days)
        except OverflowError:
            raise RpcError(
                invalid_field("expiring_within_days", "reaches past the last representable time")
            ) from None

    def ListDataShares(
        self, request: compliance_pb2.ListDataSharesRequest, _: Any
    ) -> compliance_pb2.ListDataSharesResponse:
        customer_id = _optional_id("customer_id", request.customer_id)
        partner_id = _optional_id("partner_id", request.partner_id)
        if customer_id is None and partner_id is None:
            raise RpcError(invalid_field("customer_id", "give customer_id, partner_id or both"))
        size = page_size(request.page_size)
        query = {
            "customer_id": customer_id,
            "partner_id": partner_id,
            "shared_only": request.shared_only,
        }
        after = page_token_in(request.page_token, query)
        with read_view(self.read_models, registry.NAME, request.min_position) as reader:
            if customer_id is not None:
                docs = registry.shares_for_customer(
                    reader, customer_id, shared_only=request.shared_only
                )
            else:
                assert partner_id is not None
                docs = registry.shares_for_partner(
                    reader, partner_id, shared_only=request.shared_only
                )
            position = reader.position
        wanted = (d for d in docs if partner_id in (None, d["partner_id"]))
        page, last = paged(after_key(wanted, after, _share_order), size, _share_order)
        return compliance_pb2.ListDataSharesResponse(
            shares=[_share_message(d) for d in page],
            next_page_token=page_token_out(query, last) if last is not None else "",
            position=position,
        )

    def ListLateWithdrawalShares(
        self, request: compliance_pb2.ListLateWithdrawalSharesRequest, _: Any
    ) -> compliance_pb2.ListLateWithdrawalSharesResponse:
        customer_id = _optional_id("customer_id", request.customer_id)
        size = page_size(request.page_size)
        query = {"customer_id": customer_id}
        after = page_token_in(request.page_token, query)
        with read_view(self.read_models, registry.NAME, request.min_position) as reader:
            found = registry.late_withdrawal_shares(reader, customer_id)
            position = reader.position
        page, last = paged(after_key(found, after, _late_order), size, _late_order)
        return compliance_pb2.ListLateWithdrawalSharesResponse(
            late_shares=[
                compliance_pb2.LateWithdrawalShare(
                    share=_share_message(f["share"]),
                    consent_id=f["consent_id"],
                    expressed_at=timestamp_out(f["expressed_at"]),
                    withdrawal_recorded_at=timestamp_out(f["withdrawal_recorded_at"]),
                    withdrawal_position=f["withdrawal_position"],
                )
                for f in page
            ],
            next_page_token=page_token_out(query, last) if last is not None else "",
            position=position,
        )
