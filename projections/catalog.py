"""Every read model Accord maintains, in one place."""

from __future__ import annotations

from projections.audit_trail import AuditTrail
from projections.consent_registry import ConsentRegistry
from projections.customer_summary import CustomerSummary
from projections.lifecycle import Lifecycle
from projections.partner_scorecard import PartnerScorecard
from projections.projection import Projection
from projections.segments import Segments


def all_projections() -> list[Projection]:
    return [
        CustomerSummary(),
        Segments(),
        Lifecycle(),
        ConsentRegistry(),
        PartnerScorecard(),
        AuditTrail(),
    ]
