"""Who may call what: the per-RPC role table (DESIGN §7), and who sees personal data.

`writer` records commands; `reader` reads state and insight; `compliance`
reads and answers for consent; `auditor` reads and replays the log; `admin`
may do everything. The table is written out RPC by RPC so that a new RPC
cannot be served until someone decides who may call it (a test checks every
RPC of every service is here).
"""

from __future__ import annotations

from adapters.grpc.tokens import Principal

_READS = frozenset({"reader", "compliance", "auditor"})
_WRITE = frozenset({"writer"})
_COMPLIANCE = frozenset({"compliance"})
_AUDIT = frozenset({"auditor"})

_CUSTOMER_COMMANDS = (
    "RegisterCustomer",
    "UpdateCustomerProfile",
    "AddContact",
    "RemoveContact",
    "RecordInteraction",
    "IngestInteractions",
    "ChangeTier",
    "GrantConsent",
    "WithdrawConsent",
    "ShareData",
    "EraseCustomerData",
)
_PARTNER_COMMANDS = (
    "RegisterPartner",
    "EvaluatePartner",
    "SignAgreement",
    "TerminateAgreement",
    "ActivatePartner",
    "SuspendPartner",
    "ReinstatePartner",
    "TerminatePartner",
    "ReviewPartnerPerformance",
    "ChangePartnerTier",
    "LinkCustomer",
    "UnlinkCustomer",
)


def _table() -> dict[str, frozenset[str]]:
    table: dict[str, frozenset[str]] = {}

    def allow(service: str, rpcs: tuple[str, ...], roles: frozenset[str]) -> None:
        for rpc in rpcs:
            table[f"/accord.v1.{service}/{rpc}"] = roles

    allow("CustomerService", _CUSTOMER_COMMANDS, _WRITE)
    allow("CustomerService", ("GetCustomer",), _READS)
    allow("PartnerService", _PARTNER_COMMANDS, _WRITE)
    allow("PartnerService", ("GetPartner",), _READS)
    allow(
        "ComplianceService",
        ("CheckConsent", "ListConsents", "ListDataShares", "ListLateWithdrawalShares"),
        _COMPLIANCE,
    )
    allow(
        "InsightService",
        (
            "GetCustomerInsight",
            "ListCustomers",
            "GetSegmentSummary",
            "GetLifecycleFunnel",
            "GetPartnerScorecard",
        ),
        _READS,
    )
    allow(
        "AuditService",
        ("ReadEvents", "GetAggregateHistory", "GetAggregateAt", "GetDigest", "VerifyLog"),
        _AUDIT,
    )
    return table


ALLOWED_ROLES: dict[str, frozenset[str]] = _table()
"""Full method name -> the roles that may call it (`admin` may call everything)."""

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Health checks and reflection answer without a token (load balancers, grpcurl)."""

_PERSONAL_DATA_ROLES = frozenset({"writer", "reader", "compliance", "admin"})


def is_open(method: str) -> bool:
    return method.startswith(OPEN_PREFIXES)


def may_call(principal: Principal, method: str) -> bool:
    roles = ALLOWED_ROLES.get(method)
    return roles is not None and principal.has_any(roles)


def sees_personal_data(principal: Principal) -> bool:
    """An auditor replays history without personal data unless another role grants it."""
    return bool(principal.roles & _PERSONAL_DATA_ROLES)
