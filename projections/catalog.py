"""Every read model Accord maintains, in one place."""

from __future__ import annotations

from projections.audit_trail import AuditTrail
from projections.customer_summary import CustomerSummary
from projections.projection import Projection


def all_projections() -> list[Projection]:
    return [CustomerSummary(), AuditTrail()]
