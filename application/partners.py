"""Partner use cases: each translates one command into one domain decision."""

from __future__ import annotations

from uuid import UUID

from application.commands import (
    ActivatePartner,
    AggregateCommand,
    ChangePartnerTier,
    EvaluatePartner,
    LinkCustomer,
    RegisterPartner,
    ReinstatePartner,
    ReviewPartnerPerformance,
    SignAgreement,
    SuspendPartner,
    TerminateAgreement,
    TerminatePartner,
    UnlinkCustomer,
)
from application.context import CallContext
from application.errors import InvalidCommandError, NotFoundError
from application.executor import Act, CommandExecutor
from application.journal import Claim
from application.randomness import new_uuid
from application.results import CommandResult
from domain.aggregate import EventMeta
from domain.customer import Customer
from domain.partner import Partner

EXTERNAL_REF_SCOPE = "partner.external_ref"


class PartnerUseCases:
    def __init__(self, executor: CommandExecutor, *, base_currency: str) -> None:
        self.executor = executor
        self.base_currency = base_currency

    def register(self, command: RegisterPartner, ctx: CallContext) -> CommandResult:
        partner_id = command.partner_id or new_uuid()

        def build(meta: EventMeta) -> Partner:
            return Partner.register(
                partner_id,
                external_ref=command.external_ref,
                name=command.name,
                kind=command.kind,
                regions=command.regions,
                capabilities=command.capabilities,
                meta=meta,
            )

        return self.executor.create(
            command,
            ctx,
            kind=Partner.type_name,
            aggregate_id=partner_id,
            build=build,
            claims=[Claim(EXTERNAL_REF_SCOPE, command.external_ref, partner_id)],
        )

    def evaluate(self, command: EvaluatePartner, ctx: CallContext) -> CommandResult:
        def act(partner: Partner, meta: EventMeta) -> None:
            partner.evaluate(
                strength=command.strength,
                reputation=command.reputation,
                business_fit=command.business_fit,
                data_protection=command.data_protection,
                notes=command.notes,
                meta=meta,
            )

        return self._update(command, ctx, command.partner_id, act)

    def sign_agreement(self, command: SignAgreement, ctx: CallContext) -> CommandResult:
        agreement_id = command.agreement_id or new_uuid()

        def act(partner: Partner, meta: EventMeta) -> UUID:
            partner.sign_agreement(
                agreement_id,
                kind=command.kind,
                effective_from=command.effective_from,
                effective_to=command.effective_to,
                confidentiality=command.confidentiality,
                permitted_purposes=command.permitted_purposes,
                permitted_data_categories=command.permitted_data_categories,
                document_sha256=command.document_sha256,
                meta=meta,
            )
            return agreement_id

        return self._update(command, ctx, command.partner_id, act)

    def terminate_agreement(self, command: TerminateAgreement, ctx: CallContext) -> CommandResult:
        def act(partner: Partner, meta: EventMeta) -> None:
            partner.terminate_agreement(command.agreement_id, reason=command.reason, meta=meta)

        return self._update(command, ctx, command.partner_id, act)

    def activate(self, command: ActivatePartner, ctx: CallContext) -> CommandResult:
        def act(partner: Partner, meta: EventMeta) -> None:
            partner.activate(reason=command.reason, meta=meta)

        return self._update(command, ctx, command.partner_id, act)

    def suspend(self, command: SuspendPartner, ctx: CallContext) -> CommandResult:
        def act(partner: Partner, meta: EventMeta) -> None:
            partner.suspend(reason=command.reason, meta=meta)

        return self._update(command, ctx, command.partner_id, act)

    def reinstate(self, command: ReinstatePartner, ctx: CallContext) -> CommandResult:
        def act(partner: Partner, meta: EventMeta) -> None:
            partner.reinstate(reason=command.reason, meta=meta)

        return self._update(command, ctx, command.partner_id, act)

    def terminate(self, command: TerminatePartner, ctx: CallContext) -> CommandResult:
        def act(partner: Partner, meta: EventMeta) -> None:
            partner.terminate(reason=command.reason, meta=meta)

        return self._update(command, ctx, command.partner_id, act)

    def review_performance(
        self, command: ReviewPartnerPerformance, ctx: CallContext
    ) -> CommandResult:
        if command.currency != self.base_currency:
            raise InvalidCommandError.single(
                "currency", f"revenue is recorded in the base currency {self.base_currency}"
            )

        def act(partner: Partner, meta: EventMeta) -> None:
            partner.review_performance(
                period=command.period,
                revenue=command.revenue,
                new_customers=command.new_customers,
                satisfaction=command.satisfaction,
                complaints=command.complaints,
                meta=meta,
            )

        return self._update(command, ctx, command.partner_id, act)

    def change_tier(self, command: ChangePartnerTier, ctx: CallContext) -> CommandResult:
        def act(partner: Partner, meta: EventMeta) -> None:
            partner.change_tier(command.to_tier, reason=command.reason, meta=meta)

        return self._update(command, ctx, command.partner_id, act)

    def link_customer(self, command: LinkCustomer, ctx: CallContext) -> CommandResult:
        if not self.executor.exists(Customer, command.customer_id):
            raise NotFoundError(Customer.type_name, command.customer_id)

        def act(partner: Partner, meta: EventMeta) -> None:
            partner.link_customer(command.customer_id, role=command.role, meta=meta)

        return self._update(command, ctx, command.partner_id, act)

    def unlink_customer(self, command: UnlinkCustomer, ctx: CallContext) -> CommandResult:
        def act(partner: Partner, meta: EventMeta) -> None:
            partner.unlink_customer(command.customer_id, meta=meta)

        return self._update(command, ctx, command.partner_id, act)

    def _update(
        self, command: AggregateCommand, ctx: CallContext, partner_id: UUID, act: Act[Partner]
    ) -> CommandResult:
        return self.executor.update(command, ctx, kind=Partner, aggregate_id=partner_id, act=act)
