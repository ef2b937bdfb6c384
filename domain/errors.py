"""Domain errors carry a machine-readable reason code.

Callers (the gRPC layer, other services, auditors) branch on the code, never
on the message, so codes are part of the public contract and never renamed.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a command was refused by an invariant."""

    # Customer
    TIER_UNCHANGED = "TIER_UNCHANGED"
    REASON_REQUIRED = "REASON_REQUIRED"
    NO_CHANGE = "NO_CHANGE"
    CONTACT_NOT_FOUND = "CONTACT_NOT_FOUND"
    CONTACT_ALREADY_EXISTS = "CONTACT_ALREADY_EXISTS"
    REFUND_EXCEEDS_PURCHASES = "REFUND_EXCEEDS_PURCHASES"
    OCCURRED_IN_FUTURE = "OCCURRED_IN_FUTURE"
    # Consent, sharing, erasure
    CONSENT_NOT_FOUND = "CONSENT_NOT_FOUND"
    CONSENT_ALREADY_EXISTS = "CONSENT_ALREADY_EXISTS"
    CONSENT_ALREADY_WITHDRAWN = "CONSENT_ALREADY_WITHDRAWN"
    CONSENT_BACKDATED = "CONSENT_BACKDATED"
    WITHDRAWAL_BEFORE_GRANT = "WITHDRAWAL_BEFORE_GRANT"
    WITHDRAWAL_IN_FUTURE = "WITHDRAWAL_IN_FUTURE"
    CUSTOMER_ERASED = "CUSTOMER_ERASED"
    # Partner
    PARTNER_TERMINATED = "PARTNER_TERMINATED"
    PARTNER_NOT_REGISTERED = "PARTNER_NOT_REGISTERED"
    PARTNER_NOT_ACTIVE = "PARTNER_NOT_ACTIVE"
    PARTNER_NOT_SUSPENDED = "PARTNER_NOT_SUSPENDED"
    EVALUATION_REQUIRED = "EVALUATION_REQUIRED"
    CONFIDENTIAL_AGREEMENT_REQUIRED = "CONFIDENTIAL_AGREEMENT_REQUIRED"
    AGREEMENT_ALREADY_EXISTS = "AGREEMENT_ALREADY_EXISTS"
    AGREEMENT_NOT_FOUND = "AGREEMENT_NOT_FOUND"
    AGREEMENT_ALREADY_TERMINATED = "AGREEMENT_ALREADY_TERMINATED"
    PERIOD_ALREADY_REVIEWED = "PERIOD_ALREADY_REVIEWED"
    CUSTOMER_ALREADY_LINKED = "CUSTOMER_ALREADY_LINKED"
    CUSTOMER_NOT_LINKED = "CUSTOMER_NOT_LINKED"


class DomainError(Exception):
    """An invariant refused a command; nothing was recorded."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"DomainError({self.reason.value}, {self.message!r})"
