"""IngestInteractions: one batch of requests -> one batch of per-item results.

Each item is translated and validated on its own, so a bad item becomes that
item's error (the status a unary ``RecordInteraction`` would have returned,
as an ``IngestError``) and never the stream's. The valid items go to the
bulk use case, which records them in one transaction.
"""

from __future__ import annotations

import structlog

from adapters.grpc.errors import RpcError, error_details_pb2, failure_for, invalid_field
from adapters.grpc.generated.accord.v1 import customer_pb2
from adapters.grpc.translate import command, command_response
from application import commands
from application.context import CallContext
from application.customers import CustomerUseCases
from application.errors import InvalidCommandError
from application.results import CommandResult

logger = structlog.get_logger(__name__)

MAX_BATCH = 1000
"""Interactions in one IngestInteractionsRequest (the limit of any repeated field)."""


def ingest(
    use: CustomerUseCases, request: customer_pb2.IngestInteractionsRequest, ctx: CallContext
) -> customer_pb2.IngestInteractionsResponse:
    items = request.interactions
    if not 1 <= len(items) <= MAX_BATCH:
        raise RpcError(
            invalid_field(
                "interactions", f"a batch holds 1 to {MAX_BATCH} interactions (got {len(items)})"
            )
        )
    outcomes: list[CommandResult | Exception | None] = [None] * len(items)
    valid: list[commands.RecordInteraction] = []
    where: list[int] = []
    for i, item in enumerate(items):
        try:
            valid.append(command(item, commands.RecordInteraction))
        except InvalidCommandError as error:
            outcomes[i] = error
            continue
        where.append(i)
    for i, outcome in zip(where, use.record_interactions(valid, ctx), strict=True):
        outcomes[i] = outcome
    return customer_pb2.IngestInteractionsResponse(
        results=[_result(outcome) for outcome in outcomes]
    )


def _result(outcome: CommandResult | Exception | None) -> customer_pb2.IngestInteractionResult:
    if isinstance(outcome, CommandResult):
        recorded = command_response(
            customer_pb2.RecordInteractionResponse,
            outcome,
            id_field="customer_id",
            entity_field="interaction_id",
        )
        return customer_pb2.IngestInteractionResult(recorded=recorded)
    return customer_pb2.IngestInteractionResult(error=item_error(outcome))


def item_error(error: BaseException | None) -> customer_pb2.IngestError:
    """The status a unary call would have failed with, as a message (a bug: INTERNAL)."""
    failure = failure_for(error) if error is not None else None
    if failure is None:
        logger.error("ingest_item_internal_error", error_type=type(error).__name__)
        return customer_pb2.IngestError(
            code="INTERNAL", message="internal error; quote the x-correlation-id to the operator"
        )
    reason = ""
    violations: list[customer_pb2.IngestFieldViolation] = []
    for detail in failure.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(
                customer_pb2.IngestFieldViolation(field=v.field, description=v.description)
                for v in bad_request.field_violations
            )
    return customer_pb2.IngestError(
        code=failure.code.name,
        message=failure.message,
        reason=reason,
        field_violations=violations,
    )
