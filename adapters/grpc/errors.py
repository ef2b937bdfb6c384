"""Application errors -> gRPC statuses with rich details (DESIGN §7).

Every message here is built from ids, field paths and reason codes, never
from request content, so an error can be logged and forwarded without
carrying personal data. Anything unexpected becomes INTERNAL with no detail
beyond the correlation id that finds it in the server's log.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import grpc
from eventsourcing.persistence import InterfaceError, OperationalError
from google.protobuf import any_pb2
from google.protobuf.message import Message
from pydantic import ValidationError

from application.errors import (
    AlreadyExistsError,
    ConcurrencyConflictError,
    DomainError,
    FieldViolation,
    IdempotencyKeyReusedError,
    InvalidCommandError,
    NotFoundError,
    StoreUnavailableError,
    VersionMismatchError,
)
from projections.read_models import NotCaughtUpError

DOMAIN = "accord"

# googleapis-common-protos has no type information mypy can see beside types-protobuf's
# google-stubs (its stub package drags in a conflicting grpc-stubs), so these stay untyped.
code_pb2: Any = importlib.import_module("google.rpc.code_pb2")
error_details_pb2: Any = importlib.import_module("google.rpc.error_details_pb2")
status_pb2: Any = importlib.import_module("google.rpc.status_pb2")


@dataclass(frozen=True)
class Failure:
    """A status to send: code, message and the details a client branches on."""

    code: grpc.StatusCode
    message: str
    details: tuple[any_pb2.Any, ...] = ()

    def to_status(self) -> Any:
        return status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=self.details
        )


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


MAX_VIOLATIONS = 20
"""Violations a status lists. A status travels in trailing metadata, which clients refuse
beyond 16 KiB (RESOURCE_EXHAUSTED, the details lost): 100k bad items of a repeated field
must not become 100k violations."""


def invalid(violations: list[FieldViolation]) -> Failure:
    if len(violations) > MAX_VIOLATIONS:
        more = len(violations) - MAX_VIOLATIONS
        violations = [
            *violations[:MAX_VIOLATIONS],
            FieldViolation("(request)", f"{more} more violations not listed"),
        ]
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
    )
    message = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return Failure(grpc.StatusCode.INVALID_ARGUMENT, message, (_pack(bad_request),))


def invalid_field(field: str, description: str) -> Failure:
    return invalid([FieldViolation(field, description)])


def _info(reason: str, **metadata: str) -> any_pb2.Any:
    return _pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))


def stream_limit_reached(limit: int) -> Failure:
    """Every stream slot is held (``adapters.grpc.limits``): retry later, or close a stream."""
    return Failure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"too many concurrent streams (the server allows {limit}); close one of yours, "
        "or retry later",
        (_info("STREAM_LIMIT", limit=str(limit)),),
    )


class RpcError(Exception):
    """Raised by servicers for failures that are not application errors (e.g. a bad page token)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def failure_for(error: BaseException) -> Failure | None:
    """The status for a known error; None for a bug (the caller logs it, sends INTERNAL)."""
    match error:
        case RpcError():
            return error.failure
        case InvalidCommandError():
            return invalid(error.violations)
        case ValidationError():
            return invalid(InvalidCommandError.from_validation(error).violations)
        case IdempotencyKeyReusedError():
            return invalid_field(
                "request_id", "already used for a different request (same id, other payload)"
            )
        case NotFoundError():
            return Failure(
                grpc.StatusCode.NOT_FOUND,
                str(error),
                (_info("NOT_FOUND", kind=error.kind, id=error.identifier),),
            )
        case AlreadyExistsError():
            metadata = {"kind": error.kind}
            if error.existing_id is not None:
                metadata["existing_id"] = str(error.existing_id)
            return Failure(
                grpc.StatusCode.ALREADY_EXISTS, str(error), (_info("ALREADY_EXISTS", **metadata),)
            )
        case DomainError():
            return Failure(
                grpc.StatusCode.FAILED_PRECONDITION,
                error.message,
                (_info(error.reason.value),),
            )
        case VersionMismatchError():
            return Failure(
                grpc.StatusCode.ABORTED,
                str(error),
                (
                    _info(
                        "VERSION_MISMATCH",
                        expected_version=str(error.expected),
                        actual_version=str(error.actual),
                    ),
                ),
            )
        case ConcurrencyConflictError():
            return Failure(grpc.StatusCode.ABORTED, str(error), (_info("CONCURRENCY_CONFLICT"),))
        case NotCaughtUpError():
            return Failure(
                grpc.StatusCode.UNAVAILABLE,
                f"{error.name} has not reached position {error.wanted} yet (at {error.reached}); "
                "retry, or allow a longer deadline",
                (_info("NOT_CAUGHT_UP", position=str(error.reached)),),
            )
        case StoreUnavailableError() | OperationalError() | InterfaceError():
            return Failure(
                grpc.StatusCode.UNAVAILABLE,
                "the event store is unavailable; nothing was recorded, retry later",
                (_info("STORE_UNAVAILABLE"),),
            )
    return None
