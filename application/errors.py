"""Application errors: what went wrong, in terms a caller can act on.

Each maps onto one gRPC status in the adapter; none carries personal data in
its message (messages end up in logs and in other services' error reports).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from pydantic import ValidationError

from domain.errors import DomainError, Reason

__all__ = [
    "AlreadyExistsError",
    "ConcurrencyConflictError",
    "DomainError",
    "FieldViolation",
    "IdempotencyKeyReusedError",
    "InvalidCommandError",
    "NotFoundError",
    "Reason",
    "StoreUnavailableError",
    "VersionMismatchError",
]


class ApplicationError(Exception):
    pass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidCommandError(ApplicationError):
    """Bad input: each violation names the field and what is wrong with it."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations

    @classmethod
    def single(cls, field: str, description: str) -> InvalidCommandError:
        return cls([FieldViolation(field, description)])

    @classmethod
    def from_validation(cls, error: ValidationError) -> InvalidCommandError:
        """Field paths and messages, never the offending input (it may be personal)."""
        return cls(
            [
                FieldViolation(
                    ".".join(str(p) for p in e["loc"]) or "(request)",
                    e["msg"].removeprefix("Value error, "),
                )
                for e in error.errors(include_input=False, include_url=False)
            ]
        )


class NotFoundError(ApplicationError):
    def __init__(self, kind: str, identifier: UUID | str) -> None:
        super().__init__(f"{kind} {identifier} not found")
        self.kind = kind
        self.identifier = str(identifier)


class AlreadyExistsError(ApplicationError):
    def __init__(self, kind: str, key: str, existing_id: UUID | None = None) -> None:
        super().__init__(f"{kind} {key} already exists")
        self.kind = kind
        self.key = key
        self.existing_id = existing_id


class IdempotencyKeyReusedError(ApplicationError):
    """The same request_id came with a different payload (AIP-155)."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request_id {request_id} was already used for a different request")
        self.request_id = request_id


class VersionMismatchError(ApplicationError):
    """The caller's ``expected_version`` is not the aggregate's version."""

    def __init__(self, aggregate_id: UUID, expected: int, actual: int) -> None:
        super().__init__(f"{aggregate_id} is at version {actual}, expected {expected}")
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class ConcurrencyConflictError(ApplicationError):
    """Concurrent writers kept winning; the command was retried and gave up."""

    def __init__(self, aggregate_id: UUID, attempts: int) -> None:
        super().__init__(f"{aggregate_id} kept changing; gave up after {attempts} attempts")
        self.aggregate_id = aggregate_id
        self.attempts = attempts


class StoreUnavailableError(ApplicationError):
    """The database cannot be reached; nothing was recorded."""
