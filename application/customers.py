"""Customer use cases: each translates one command into one domain decision."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from application.coalescing import Coalescer
from application.commands import (
    AddContact,
    AggregateCommand,
    ChangeTier,
    EraseCustomerData,
    GrantConsent,
    RecordInteraction,
    RegisterCustomer,
    RemoveContact,
    ShareData,
    UpdateCustomerProfile,
    WithdrawConsent,
)
from application.context import CallContext
from application.errors import InvalidCommandError, NotFoundError
from application.executor import Act, BatchItem, CommandExecutor, Effects
from application.journal import Claim, VersionGuard
from application.randomness import new_uuid
from application.results import CommandResult, ShareOutcome
from domain.aggregate import EventMeta
from domain.customer import Customer
from domain.partner import Partner
from domain.sharing import ConsentCapture

EXTERNAL_REF_SCOPE = "customer.external_ref"

Submitted = tuple[RecordInteraction, CallContext]
"""A ``RecordInteraction`` and who sent it, as a batch gathers them."""


class CustomerUseCases:
    def __init__(
        self,
        executor: CommandExecutor,
        *,
        base_currency: str,
        command_batch: int = 1,
        command_linger: float = 0.0,
    ) -> None:
        self.executor = executor
        self.base_currency = base_currency
        self.interaction_batches: Coalescer[Submitted, CommandResult | Exception] | None = (
            Coalescer(
                self._record_together,
                self._record_alone,
                max_batch=command_batch,
                linger=command_linger,
                name="record_interaction",
            )
            if command_batch > 1
            else None
        )
        """Gathers concurrent ``record_interaction`` calls (its counters: how many shared)."""

    def register(self, command: RegisterCustomer, ctx: CallContext) -> CommandResult:
        customer_id = command.customer_id or new_uuid()
        if command.acquired_via_partner_id is not None:
            self._require_partner(command.acquired_via_partner_id)

        def build(meta: EventMeta) -> Customer:
            return Customer.register(
                customer_id,
                external_ref=command.external_ref,
                display_name=command.display_name,
                kind=command.kind,
                industry=command.industry,
                region=command.region,
                size=command.size,
                source=command.source,
                acquired_via_partner_id=command.acquired_via_partner_id,
                potential_value=command.potential_value,
                meta=meta,
            )

        return self.executor.create(
            command,
            ctx,
            kind=Customer.type_name,
            aggregate_id=customer_id,
            build=build,
            claims=[Claim(EXTERNAL_REF_SCOPE, command.external_ref, customer_id)],
        )

    def update_profile(self, command: UpdateCustomerProfile, ctx: CallContext) -> CommandResult:
        def act(customer: Customer, meta: EventMeta) -> None:
            customer.update_profile(command.changes(), meta)

        return self._update(command, ctx, command.customer_id, act)

    def add_contact(self, command: AddContact, ctx: CallContext) -> CommandResult:
        contact_id = command.contact_id or new_uuid()

        def act(customer: Customer, meta: EventMeta) -> UUID:
            customer.add_contact(
                contact_id,
                name=command.name,
                email=command.email,
                phone=command.phone,
                title=command.title,
                layer=command.layer,
                function=command.function,
                influence=command.influence,
                meta=meta,
            )
            return contact_id

        return self._update(command, ctx, command.customer_id, act)

    def remove_contact(self, command: RemoveContact, ctx: CallContext) -> CommandResult:
        def act(customer: Customer, meta: EventMeta) -> None:
            customer.remove_contact(command.contact_id, meta)

        return self._update(command, ctx, command.customer_id, act)

    def record_interaction(self, command: RecordInteraction, ctx: CallContext) -> CommandResult:
        """Record one interaction; concurrent calls are recorded in shared batches.

        The hot command: one at a time, each pays a journal record, a log line
        and a transaction of its own, several times what it costs inside a
        bulk batch. So calls that arrive while another batch is in progress
        queue and are recorded together by ``record_interactions``' path, each
        with the outcome it would have had alone; a call alone takes the
        one-command path at once. A batch that fails as a whole (the store
        went away) is run again call by call.
        """
        if self.interaction_batches is None:
            return self._record_alone((command, ctx))
        outcome = self.interaction_batches.submit((command, ctx))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _record_alone(self, submitted: Submitted) -> CommandResult:
        command, ctx = submitted
        self._check_interaction(command, {})
        return self._update(command, ctx, command.customer_id, self._interaction(command))

    def record_interactions(
        self, commands: Sequence[RecordInteraction], ctx: CallContext
    ) -> list[CommandResult | Exception]:
        """Many interactions, for any customers, recorded together (bulk ingestion).

        Each gets the outcome ``record_interaction`` would have given it, in
        order; the valid ones are written in one transaction.
        """
        return self._record_together([(command, ctx) for command in commands])

    def _record_together(self, submitted: Sequence[Submitted]) -> list[CommandResult | Exception]:
        """``record_interactions`` for commands that may come from different callers."""
        results: list[CommandResult | Exception | None] = [None] * len(submitted)
        items: list[BatchItem[Customer]] = []
        positions: list[int] = []
        partners: dict[UUID, bool] = {}
        for i, (command, ctx) in enumerate(submitted):
            try:
                self._check_interaction(command, partners)
            except (InvalidCommandError, NotFoundError) as error:
                results[i] = error
                continue
            items.append(
                BatchItem(command, command.customer_id, self._interaction(command), ctx=ctx)
            )
            positions.append(i)
        if items:
            outcomes = self.executor.update_many(items, submitted[0][1], kind=Customer)
            for i, outcome in zip(positions, outcomes, strict=True):
                results[i] = outcome
        return [r for r in results if r is not None]

    def _check_interaction(self, command: RecordInteraction, partners: dict[UUID, bool]) -> None:
        """What a decision cannot see: the base currency and that the partner exists."""
        if command.currency is not None and command.currency != self.base_currency:
            raise InvalidCommandError.single(
                "currency", f"amounts are recorded in the base currency {self.base_currency}"
            )
        if command.partner_id is not None:
            if command.partner_id not in partners:
                partners[command.partner_id] = self.executor.exists(Partner, command.partner_id)
            if not partners[command.partner_id]:
                raise NotFoundError(Partner.type_name, command.partner_id)

    @staticmethod
    def _interaction(command: RecordInteraction) -> Act[Customer]:
        interaction_id = command.interaction_id or new_uuid()

        def act(customer: Customer, meta: EventMeta) -> UUID:
            customer.record_interaction(
                interaction_id,
                kind=command.kind,
                channel=command.channel,
                direction=command.direction,
                occurred_at=command.occurred_at,
                summary=command.summary,
                amount=command.amount,
                currency=command.currency,
                satisfaction=command.satisfaction,
                partner_id=command.partner_id,
                contact_ids=command.contact_ids,
                meta=meta,
            )
            return interaction_id

        return act

    def change_tier(self, command: ChangeTier, ctx: CallContext) -> CommandResult:
        def act(customer: Customer, meta: EventMeta) -> None:
            customer.change_tier(
                command.to_tier,
                reason=command.reason,
                effective_from=command.effective_from or meta.recorded_at,
                meta=meta,
            )

        return self._update(command, ctx, command.customer_id, act)

    def grant_consent(self, command: GrantConsent, ctx: CallContext) -> CommandResult:
        self._require_partner(command.partner_id)
        consent_id = command.consent_id or new_uuid()
        capture = ConsentCapture(**command.capture.model_dump())

        def act(customer: Customer, meta: EventMeta) -> UUID:
            effective_from = command.effective_from or meta.recorded_at
            if command.expires_at is not None and command.expires_at <= effective_from:
                # The command checks the order only when both are given; "now" is known here.
                raise InvalidCommandError.single(
                    "expires_at",
                    "must be after effective_from (the time of recording if not given)",
                )
            customer.grant_consent(
                consent_id,
                partner_id=command.partner_id,
                purpose=command.purpose,
                data_categories=command.data_categories,
                effective_from=effective_from,
                expires_at=command.expires_at,
                capture=capture,
                meta=meta,
            )
            return consent_id

        return self._update(command, ctx, command.customer_id, act)

    def withdraw_consent(self, command: WithdrawConsent, ctx: CallContext) -> CommandResult:
        def act(customer: Customer, meta: EventMeta) -> UUID:
            customer.withdraw_consent(
                command.consent_id,
                expressed_at=command.expressed_at or meta.recorded_at,
                channel=command.channel,
                meta=meta,
            )
            return command.consent_id

        return self._update(command, ctx, command.customer_id, act)

    def share_data(self, command: ShareData, ctx: CallContext) -> ShareOutcome:
        """Share if the policy allows it at this moment; either way the outcome is recorded.

        The partner is read inside each attempt and its version is guarded in
        the same transaction as the share, so a suspension or an agreement's
        termination committed meanwhile makes the share decide again.
        """
        self._require_partner(command.partner_id)
        share_id = command.share_id or new_uuid()

        def act(customer: Customer, meta: EventMeta) -> Effects:
            partner = self.executor.load(Partner, command.partner_id)
            decision = customer.share_data(
                share_id,
                partner_id=command.partner_id,
                partner=partner,
                purpose=command.purpose,
                data_categories=command.data_categories,
                meta=meta,
            )
            guards = (VersionGuard(partner.id, partner.version),) if decision.allowed else ()
            return Effects(entity_id=share_id, guards=guards)

        result = self._update(command, ctx, command.customer_id, act)
        return ShareOutcome.of(
            result, self.executor.log.event_at(result.aggregate_id, result.version)
        )

    def erase(self, command: EraseCustomerData, ctx: CallContext) -> CommandResult:
        """Record the erasure and destroy the data key in the same transaction."""

        def act(customer: Customer, meta: EventMeta) -> Effects:
            customer.erase(reason=command.reason, meta=meta)
            return Effects(destroy_keys=(customer.id,))

        return self._update(command, ctx, command.customer_id, act)

    def _update(
        self,
        command: AggregateCommand,
        ctx: CallContext,
        customer_id: UUID,
        act: Act[Customer],
    ) -> CommandResult:
        return self.executor.update(command, ctx, kind=Customer, aggregate_id=customer_id, act=act)

    def _require_partner(self, partner_id: UUID) -> None:
        if not self.executor.exists(Partner, partner_id):
            raise NotFoundError(Partner.type_name, partner_id)
