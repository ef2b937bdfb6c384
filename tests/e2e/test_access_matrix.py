"""Access control and personal data, exhaustively, against a real server.

``test_access_api`` calls every RPC with an *empty* request per role and a few bad
tokens and checks the status code. An empty request is refused by validation
anyway, so it cannot show that a refused call recorded nothing. Here:

- every RPC of the five ``accord.v1`` services (enumerated from the descriptors) is
  called with a request that *would succeed*: after every refusal (each credential
  state, each role the table does not admit) the log has not moved, and then an
  admitted caller sends the very same request and succeeds, so each refusal refused
  something real (the test can fail);
- nothing of any presented token (valid or not) reaches the server's log;
- personal fields (and other free text) set to markers never come back in an error
  (message, ``BadRequest``, ``ErrorInfo``) nor reach the log, however the call fails,
  and a successful call does not log them either;
- once a customer is erased, no role obtains any of its markers through any read RPC
  or stream, now or as of versions and times before the erasure; before the erasure
  the same sweep does find them (so the search works).

Every call carries its own ``x-correlation-id``; before the log is searched, the
access line of every call made is waited for, so a late line cannot be missed.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

import grpc
import pytest
from google.protobuf import message_factory, text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc_status import rpc_status

from adapters.grpc.access import ALLOWED_ROLES
from adapters.grpc.errors import error_details_pb2
from adapters.grpc.generated.accord.v1 import (
    audit_pb2,
    common_pb2,
    compliance_pb2,
    customer_pb2,
    insight_pb2,
    partner_pb2,
)
from adapters.grpc.tokens import ROLES, TOKEN_PREFIX, add_token, token_hash
from application.personal_data import REFERENCE, SEALED
from tests.e2e.harness import Client, Served, stored_event_count
from tests.e2e.wire import ALL_CATEGORIES, TIMEOUT, ago, ts

C = customer_pb2
P = partner_pb2
K = compliance_pb2
I = insight_pb2  # noqa: E741 - the insight module, beside C, P, K and A
A = audit_pb2

SERVICE_FILES = (customer_pb2, partner_pb2, compliance_pb2, insight_pb2, audit_pb2)
SERVICES = frozenset(
    {"CustomerService", "PartnerService", "ComplianceService", "InsightService", "AuditService"}
)
M = TypeVar("M", bound=Message)
OK = grpc.StatusCode.OK
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
NEVER = (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


# ------------------------------------------------------------------ the contract


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    request: type[Message]
    response: type[Message]
    streaming: bool
    client_streaming: bool = False

    @property
    def path(self) -> str:
        return f"/accord.v1.{self.service}/{self.name}"

    @property
    def admitted(self) -> frozenset[str]:
        return ALLOWED_ROLES.get(self.path, frozenset()) | {"admin"}

    @property
    def mutating(self) -> bool:
        return self.service in {"CustomerService", "PartnerService"} and not self.name.startswith(
            "Get"
        )

    def __str__(self) -> str:
        return f"{self.service}/{self.name}"


def contract() -> list[Rpc]:
    """Every RPC of every service, from the generated descriptors."""
    found: list[Rpc] = []
    for module in SERVICE_FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert method.server_streaming or not method.client_streaming, (
                    "a client-streaming RPC with one response needs new probes"
                )
                found.append(
                    Rpc(
                        service.name,
                        method.name,
                        message_factory.GetMessageClass(method.input_type),
                        message_factory.GetMessageClass(method.output_type),
                        method.server_streaming,
                        method.client_streaming,
                    )
                )
    return found


RPCS = contract()
BY_NAME = {rpc.name: rpc for rpc in RPCS}
MUTATING = [rpc for rpc in RPCS if rpc.mutating]
READS = [rpc for rpc in RPCS if not rpc.mutating]


# ----------------------------------------------------------------------- calling


@dataclass
class Outcome:
    code: grpc.StatusCode
    responses: list[Message] = field(default_factory=list)
    error: grpc.RpcError | None = None


class Caller:
    """Raw calls to the server with any authorization header, each with its correlation id."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.channel = grpc.insecure_channel(served.address)
        self.correlation_ids: list[str] = []

    def bearer(self, role: str) -> str:
        return f"Bearer {self.served.tokens[role]}"

    def call(
        self,
        rpc: Rpc,
        request: Message,
        authorization: str | None,
        *,
        whole: bool = False,
        until: Callable[[Any], bool] | None = None,
    ) -> Outcome:
        """One call; of a stream the first response (``whole``: all, or up to ``until``)."""
        correlation_id = f"matrix-{uuid4().hex}"
        self.correlation_ids.append(correlation_id)
        metadata: tuple[tuple[str, str | bytes], ...] = (("x-correlation-id", correlation_id),)
        if authorization is not None:
            metadata += (("authorization", authorization),)
        kwargs: dict[str, Any] = {
            "request_serializer": rpc.request.SerializeToString,
            "response_deserializer": rpc.response.FromString,
        }
        try:
            if not rpc.streaming:
                unary = self.channel.unary_unary(rpc.path, **kwargs)
                return Outcome(OK, [unary(request, metadata=metadata, timeout=TIMEOUT)])
            if rpc.client_streaming:  # the probe is a stream of one request
                stream = self.channel.stream_stream(rpc.path, **kwargs)(
                    iter([request]), metadata=metadata, timeout=TIMEOUT
                )
            else:
                stream = self.channel.unary_stream(rpc.path, **kwargs)(
                    request, metadata=metadata, timeout=TIMEOUT
                )
            got: list[Message] = []
            try:
                for response in stream:
                    got.append(response)
                    if not whole or (until is not None and until(response)):
                        break
            finally:
                stream.cancel()
            return Outcome(OK, got)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return Outcome(code, [], error)

    def logged(self) -> list[str]:
        """The server's log, once the access line of every call made here is in it."""
        deadline = time.monotonic() + 10
        while True:
            text = self.served.stderr_path.read_text(encoding="utf-8")
            missing = [c for c in self.correlation_ids if c not in text]
            if not missing:
                return text.splitlines()
            assert time.monotonic() < deadline, f"{len(missing)} calls never logged: {missing[0]}"
            time.sleep(0.05)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def caller(served: Served) -> Iterator[Caller]:
    made = Caller(served)
    yield made
    made.close()


# ------------------------------------------------------------------------ probes


class World:
    """Fresh targets for probes, made by an admin; remembers the last position written."""

    def __init__(self, admin: Client) -> None:
        self.admin = admin
        self.last = 0

    def wrote(self, response: Any) -> Any:
        self.last = max(self.last, int(response.position))
        return response

    def customer(self) -> str:
        request = C.RegisterCustomerRequest(
            external_ref=f"C-{uuid4().hex[:12]}",
            display_name="Probe Person",
            kind=common_pb2.CUSTOMER_KIND_PERSON,
            industry="retail",
            region="CN-east",
            source="web",
        )
        return str(self.wrote(self.admin.customers.RegisterCustomer(request)).customer_id)

    def partner(self) -> str:
        request = P.RegisterPartnerRequest(
            external_ref=f"P-{uuid4().hex[:12]}",
            name="Probe Partner Co",
            kind=common_pb2.PARTNER_KIND_RESELLER,
            regions=["CN-east"],
        )
        return str(self.wrote(self.admin.partners.RegisterPartner(request)).partner_id)

    def evaluated_and_signed(self) -> tuple[str, str]:
        partner_id = self.partner()
        self.wrote(self.admin.partners.EvaluatePartner(evaluation(partner_id)))
        signed = self.wrote(self.admin.partners.SignAgreement(agreement(partner_id)))
        return partner_id, str(signed.agreement_id)

    def active(self) -> tuple[str, str]:
        partner_id, agreement_id = self.evaluated_and_signed()
        self.wrote(
            self.admin.partners.ActivatePartner(P.ActivatePartnerRequest(partner_id=partner_id))
        )
        return partner_id, agreement_id

    def consent(self, customer_id: str, partner_id: str) -> str:
        granted = self.wrote(self.admin.customers.GrantConsent(grant(customer_id, partner_id)))
        return str(granted.consent_id)

    def contact(self, customer_id: str) -> str:
        return str(self.wrote(self.admin.customers.AddContact(contact(customer_id))).contact_id)

    def linked(self) -> tuple[str, str]:
        partner_id, customer_id = self.partner(), self.customer()
        self.wrote(self.admin.partners.LinkCustomer(link(partner_id, customer_id)))
        return partner_id, customer_id

    def suspended(self) -> str:
        partner_id, _ = self.active()
        self.wrote(
            self.admin.partners.SuspendPartner(
                P.SuspendPartnerRequest(partner_id=partner_id, reason="audit pending")
            )
        )
        return partner_id


def evaluation(partner_id: str) -> P.EvaluatePartnerRequest:
    return P.EvaluatePartnerRequest(
        partner_id=partner_id, strength=80, reputation=70, business_fit=90, data_protection=85
    )


def agreement(partner_id: str) -> P.SignAgreementRequest:
    return P.SignAgreementRequest(
        partner_id=partner_id,
        kind=common_pb2.AGREEMENT_KIND_DATA_SHARING,
        effective_from=ago(days=1),
        confidentiality=True,
        permitted_purposes=[common_pb2.PURPOSE_MARKETING],
        permitted_data_categories=ALL_CATEGORIES,
        document_sha256="ab" * 32,
    )


def contact(customer_id: str) -> C.AddContactRequest:
    return C.AddContactRequest(
        customer_id=customer_id,
        name="Probe Contact",
        layer=common_pb2.CONTACT_LAYER_DECISION,
        function=common_pb2.CONTACT_FUNCTION_FINANCE,
    )


def interaction(customer_id: str) -> C.RecordInteractionRequest:
    return C.RecordInteractionRequest(
        customer_id=customer_id,
        kind=common_pb2.INTERACTION_KIND_CALL,
        channel=common_pb2.CHANNEL_PHONE,
        direction=common_pb2.DIRECTION_INBOUND,
        occurred_at=ago(hours=1),
    )


def grant(customer_id: str, partner_id: str) -> C.GrantConsentRequest:
    return C.GrantConsentRequest(
        customer_id=customer_id,
        partner_id=partner_id,
        purpose=common_pb2.PURPOSE_MARKETING,
        data_categories=ALL_CATEGORIES,
        capture=common_pb2.ConsentCapture(
            method="WEB_FORM", source="portal", evidence_ref="doc-1", notice_version="v3"
        ),
    )


def link(partner_id: str, customer_id: str) -> P.LinkCustomerRequest:
    return P.LinkCustomerRequest(
        partner_id=partner_id, customer_id=customer_id, role=common_pb2.LINK_ROLE_RESALE
    )


def _share(w: World) -> C.ShareDataRequest:
    partner_id, _ = w.active()
    customer_id = w.customer()
    w.consent(customer_id, partner_id)
    return C.ShareDataRequest(
        customer_id=customer_id,
        partner_id=partner_id,
        purpose=common_pb2.PURPOSE_MARKETING,
        data_categories=ALL_CATEGORIES,
    )


def _withdraw(w: World) -> C.WithdrawConsentRequest:
    partner_id, _ = w.active()
    customer_id = w.customer()
    consent_id = w.consent(customer_id, partner_id)
    return C.WithdrawConsentRequest(
        customer_id=customer_id, consent_id=consent_id, channel="LETTER"
    )


def _remove_contact(w: World) -> C.RemoveContactRequest:
    customer_id = w.customer()
    return C.RemoveContactRequest(customer_id=customer_id, contact_id=w.contact(customer_id))


def _terminate_agreement(w: World) -> P.TerminateAgreementRequest:
    partner_id, agreement_id = w.active()
    return P.TerminateAgreementRequest(
        partner_id=partner_id, agreement_id=agreement_id, reason="contract ended"
    )


def _unlink(w: World) -> P.UnlinkCustomerRequest:
    partner_id, customer_id = w.linked()
    return P.UnlinkCustomerRequest(partner_id=partner_id, customer_id=customer_id)


def _check_consent(w: World) -> K.CheckConsentRequest:
    partner_id, _ = w.active()
    customer_id = w.customer()
    return K.CheckConsentRequest(
        customer_id=customer_id,
        partner_id=partner_id,
        purpose=common_pb2.PURPOSE_MARKETING,
        data_categories=[common_pb2.DATA_CATEGORY_IDENTITY],
        min_position=w.last,
    )


def _verify(w: World) -> A.VerifyLogRequest:
    digest = w.admin.audit.GetDigest(A.GetDigestRequest(min_position=w.last), timeout=TIMEOUT)
    return A.VerifyLogRequest(position=digest.position, hash=digest.hash)


def _fresh(w: World, key: str, make: Callable[[], str]) -> dict[str, Any]:
    """A fresh target to read (as ``key``) and the position that makes it visible."""
    return {key: make(), "min_position": w.last}


def _settled(w: World) -> int:
    """A position to wait for that includes a fresh write."""
    w.customer()
    return w.last


PROBES: dict[str, Callable[[World], Message]] = {
    # ------------------------------------------------------------ CustomerService
    "RegisterCustomer": lambda w: C.RegisterCustomerRequest(
        external_ref=f"C-{uuid4().hex[:12]}",
        display_name="Probe Person",
        kind=common_pb2.CUSTOMER_KIND_PERSON,
        industry="retail",
        region="CN-east",
        source="web",
    ),
    "UpdateCustomerProfile": lambda w: C.UpdateCustomerProfileRequest(
        customer_id=w.customer(), industry="logistics"
    ),
    "AddContact": lambda w: contact(w.customer()),
    "RemoveContact": _remove_contact,
    "RecordInteraction": lambda w: interaction(w.customer()),
    "IngestInteractions": lambda w: C.IngestInteractionsRequest(
        interactions=[interaction(w.customer())]
    ),
    "ChangeTier": lambda w: C.ChangeTierRequest(
        customer_id=w.customer(), to_tier=common_pb2.TIER_KEY, reason="annual review"
    ),
    "GrantConsent": lambda w: grant(w.customer(), w.active()[0]),
    "WithdrawConsent": _withdraw,
    "ShareData": _share,
    "EraseCustomerData": lambda w: C.EraseCustomerDataRequest(
        customer_id=w.customer(), reason="the data subject asked"
    ),
    "GetCustomer": lambda w: C.GetCustomerRequest(**_fresh(w, "customer_id", w.customer)),
    # ------------------------------------------------------------- PartnerService
    "RegisterPartner": lambda w: P.RegisterPartnerRequest(
        external_ref=f"P-{uuid4().hex[:12]}",
        name="Probe Partner Co",
        kind=common_pb2.PARTNER_KIND_SERVICE,
    ),
    "EvaluatePartner": lambda w: evaluation(w.partner()),
    "SignAgreement": lambda w: agreement(w.partner()),
    "TerminateAgreement": _terminate_agreement,
    "ActivatePartner": lambda w: P.ActivatePartnerRequest(partner_id=w.evaluated_and_signed()[0]),
    "SuspendPartner": lambda w: P.SuspendPartnerRequest(
        partner_id=w.active()[0], reason="audit pending"
    ),
    "ReinstatePartner": lambda w: P.ReinstatePartnerRequest(
        partner_id=w.suspended(), reason="audit passed"
    ),
    "TerminatePartner": lambda w: P.TerminatePartnerRequest(
        partner_id=w.partner(), reason="ceased trading"
    ),
    "ReviewPartnerPerformance": lambda w: P.ReviewPartnerPerformanceRequest(
        partner_id=w.partner(),
        period="2025-Q1",
        revenue=common_pb2.Money(amount="1000.00", currency="CNY"),
        satisfaction="8.5",
    ),
    "ChangePartnerTier": lambda w: P.ChangePartnerTierRequest(
        partner_id=w.partner(), to_tier=common_pb2.TIER_KEY, reason="growth"
    ),
    "LinkCustomer": lambda w: link(w.partner(), w.customer()),
    "UnlinkCustomer": _unlink,
    "GetPartner": lambda w: P.GetPartnerRequest(**_fresh(w, "partner_id", w.partner)),
    # ---------------------------------------------------------- ComplianceService
    "CheckConsent": _check_consent,
    "ListConsents": lambda w: K.ListConsentsRequest(**_fresh(w, "customer_id", w.customer)),
    "ListDataShares": lambda w: K.ListDataSharesRequest(**_fresh(w, "customer_id", w.customer)),
    "ListLateWithdrawalShares": lambda w: K.ListLateWithdrawalSharesRequest(
        **_fresh(w, "customer_id", w.customer)
    ),
    # ------------------------------------------------------------- InsightService
    "GetCustomerInsight": lambda w: I.GetCustomerInsightRequest(
        **_fresh(w, "customer_id", w.customer)
    ),
    "ListCustomers": lambda w: I.ListCustomersRequest(page_size=5, min_position=_settled(w)),
    "GetSegmentSummary": lambda w: I.GetSegmentSummaryRequest(min_position=_settled(w)),
    "GetLifecycleFunnel": lambda w: I.GetLifecycleFunnelRequest(min_position=_settled(w)),
    "GetPartnerScorecard": lambda w: I.GetPartnerScorecardRequest(
        **_fresh(w, "partner_id", w.partner)
    ),
    # --------------------------------------------------------------- AuditService
    "ReadEvents": lambda w: A.ReadEventsRequest(**_fresh(w, "aggregate_id", w.customer)),
    "GetAggregateHistory": lambda w: A.GetAggregateHistoryRequest(
        **_fresh(w, "aggregate_id", w.customer)
    ),
    "GetAggregateAt": lambda w: A.GetAggregateAtRequest(**_fresh(w, "aggregate_id", w.customer)),
    "GetDigest": lambda w: A.GetDigestRequest(min_position=_settled(w)),
    "VerifyLog": _verify,
}
"""For every RPC: a request an admitted caller sends successfully (its targets made fresh)."""


def test_the_contract_is_five_services_each_rpc_in_the_role_table_and_probed() -> None:
    services = {
        service.name
        for module in SERVICE_FILES
        for service in module.DESCRIPTOR.services_by_name.values()
    }
    assert services == SERVICES
    assert {rpc.service for rpc in RPCS} == SERVICES
    assert len(RPCS) == len({rpc.path for rpc in RPCS}) == 39
    assert {rpc.path for rpc in RPCS} == set(ALLOWED_ROLES), "the role table is the contract"
    assert set(PROBES) == {rpc.name for rpc in RPCS}, "every RPC has a live probe"
    for rpc in MUTATING:
        assert ALLOWED_ROLES[rpc.path] == {"writer"}, rpc
    for rpc in READS:
        assert "writer" not in ALLOWED_ROLES[rpc.path], rpc


def _refused_then_admitted(
    served: Served,
    caller: Caller,
    rpc: Rpc,
    refusals: list[tuple[str, str | None, grpc.StatusCode]],
) -> None:
    """Each refusal of a live probe records nothing; then an admitted caller succeeds with it."""
    request = PROBES[rpc.name](World(served.client("admin")))
    before = stored_event_count(served.store)
    logged_as: dict[str, grpc.StatusCode] = {}
    for label, authorization, expected in refusals:
        outcome = caller.call(rpc, request, authorization)
        assert outcome.code == expected, (str(rpc), label, outcome.code)
        assert not outcome.responses
        logged_as[caller.correlation_ids[-1]] = expected
    assert stored_event_count(served.store) == before, (str(rpc), "a refused call recorded")
    lines = caller.logged()
    for correlation_id, code in logged_as.items():  # every refusal is in the access log
        [line] = [line for line in lines if correlation_id in line]
        record = json.loads(line)
        assert record["code"] == code.name, line
        assert record["method"] == rpc.path, line

    admitted = sorted(rpc.admitted, key=lambda role: role == "admin")  # admin last
    first, *others = admitted
    outcome = caller.call(rpc, request, caller.bearer(first))
    assert outcome.code == OK, (str(rpc), first, outcome.code, outcome.error)
    assert outcome.responses or rpc.streaming, str(rpc)
    if rpc.mutating:
        assert stored_event_count(served.store) > before, (str(rpc), "the probe records")
    for role in others:  # the same request again: it may now conflict, but is never refused
        code = caller.call(rpc, request, caller.bearer(role)).code
        assert code not in (*REFUSED, *NEVER), (str(rpc), role, code)


# ------------------------------------------------------ 1. credentials x every RPC


@dataclass(frozen=True)
class Credentials:
    states: list[tuple[str, str | None]]
    """(label, authorization header or None for none) for every credential to refuse."""
    secrets: list[str]
    """Every token presented, valid or not: none of it may be logged."""


@pytest.fixture(scope="module")
def credentials(served: Served) -> Credentials:
    assert served.tokens_file is not None
    admin = served.tokens["admin"]
    expired = add_token(
        served.tokens_file, "expired", ["admin"], expires_at=datetime.now(UTC) - timedelta(1)
    )
    revoked = add_token(served.tokens_file, "revoked", ["admin"])
    with served.tokens_file.open("a", encoding="utf-8") as tokens:
        tokens.write("revoked = true\n")  # applies to the table just appended
    unknown = TOKEN_PREFIX + secrets.token_urlsafe(32)
    wrong_case = TOKEN_PREFIX.upper() + admin[len(TOKEN_PREFIX) :]
    states: list[tuple[str, str | None]] = [
        ("no authorization header", None),
        ("Bearer with no token", "Bearer"),
        ("Bearer and blanks", "Bearer    "),
        ("Basic scheme", f"Basic {admin}"),
        ("Basic x", "Basic x"),
        ("Token scheme", f"Token {admin}"),
        ("a token without a scheme", admin),
        ("the token prefix in the wrong case", f"Bearer {wrong_case}"),
        ("the token upper-cased", f"Bearer {admin.upper()}"),
        ("a token one character short", f"Bearer {admin[:-1]}"),
        ("a token one character long", f"Bearer {admin}x"),
        ("a well-formed unknown token", f"Bearer {unknown}"),
        ("the stored hash instead of the token", f"Bearer {token_hash(admin)}"),
        ("an expired token", f"Bearer {expired}"),
        ("a revoked token", f"Bearer {revoked}"),
    ]
    presented = [admin, wrong_case, admin.upper(), unknown, expired, revoked]
    return Credentials(states, [*presented, *served.tokens.values(), token_hash(admin)])


def _fragments(secret: str) -> list[str]:
    """The secret and its body (without the prefix): a partial leak is a leak."""
    body = secret.removeprefix(TOKEN_PREFIX).removeprefix(TOKEN_PREFIX.upper())
    return [secret, body[:16], body[-16:]]


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_every_bad_credential_is_unauthenticated_records_nothing_and_is_not_logged(
    served: Served, caller: Caller, credentials: Credentials, rpc: Rpc
) -> None:
    _refused_then_admitted(
        served,
        caller,
        rpc,
        [(label, header, grpc.StatusCode.UNAUTHENTICATED) for label, header in credentials.states],
    )
    lines = caller.logged()
    for secret in credentials.secrets:
        for fragment in _fragments(secret):
            assert not any(fragment in line for line in lines), (str(rpc), fragment[:6])


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_every_role_is_admitted_or_permission_denied_as_the_table_says_and_denials_record_nothing(
    served: Served, caller: Caller, rpc: Rpc
) -> None:
    denied = [role for role in ROLES if role not in rpc.admitted]
    assert "admin" not in denied
    _refused_then_admitted(
        served,
        caller,
        rpc,
        [(role, caller.bearer(role), grpc.StatusCode.PERMISSION_DENIED) for role in denied],
    )


def test_a_token_revoked_or_expiring_while_serving_is_refused_without_a_restart(
    served: Served, caller: Caller
) -> None:
    assert served.tokens_file is not None
    digest = BY_NAME["GetDigest"]
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    expiring = add_token(served.tokens_file, "expiring", ["auditor"], expires_at=soon)
    revoking = add_token(served.tokens_file, "revoking", ["auditor"])
    for token in (expiring, revoking):
        assert caller.call(digest, A.GetDigestRequest(), f"Bearer {token}").code == OK

    with served.tokens_file.open("a", encoding="utf-8") as tokens:
        tokens.write("revoked = true\n")
    refused = caller.call(digest, A.GetDigestRequest(), f"Bearer {revoking}")
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED

    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    refused = caller.call(digest, A.GetDigestRequest(), f"Bearer {expiring}")
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED


def test_the_scheme_is_case_insensitive_as_rfc_7235_says_but_the_token_is_not(
    served: Served, caller: Caller
) -> None:
    digest = BY_NAME["GetDigest"]
    token = served.tokens["auditor"]
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert caller.call(digest, A.GetDigestRequest(), f"{scheme} {token}").code == OK
    for changed in (token.upper(), token.lower(), token.swapcase()):
        if changed != token:
            outcome = caller.call(digest, A.GetDigestRequest(), f"Bearer {changed}")
            assert outcome.code == grpc.StatusCode.UNAUTHENTICATED


# ------------------------------------------- 3. personal data never in errors or logs


STRING = FieldDescriptor.TYPE_STRING
NOT_TEXT = frozenset({"request_id", "external_ref", "document_sha256", "period", "satisfaction"})
"""String fields that are ids, keys, hashes or formatted values, never free text.

``external_ref`` is the business key an ALREADY_EXISTS names back (docs/api.md §3), as
NOT_FOUND names the id asked for; neither is personal data (DESIGN §3)."""


def _is_text(d: Any) -> bool:
    return bool(
        d.type == STRING and not d.name.endswith(("_id", "_ids")) and d.name not in NOT_TEXT
    )


def _holds_text(d: Any) -> bool:
    """A nested message of the contract that may hold free text (Money holds none)."""
    return bool(
        d.type == FieldDescriptor.TYPE_MESSAGE
        and d.message_type is not None
        and d.message_type.full_name.startswith("accord.")
        and d.message_type.full_name != "accord.v1.Money"
    )


def _free_text(descriptor: Any, prefix: str = "") -> set[str]:
    """The free-text string fields of a request, at any depth."""
    found: set[str] = set()
    for d in descriptor.fields:
        if _is_text(d):
            found.add(prefix + d.name)
        elif _holds_text(d):
            found |= _free_text(d.message_type, f"{prefix}{d.name}.")
    return found


@dataclass
class Markers:
    """Recognisable, distinct values for every free-text field a request may carry."""

    tag: str = field(default_factory=lambda: uuid4().hex[:10])
    used: dict[str, str] = field(default_factory=dict)
    """Searchable string -> the field it was put in."""

    PERSONAL = ("display_name", "name", "email", "phone", "summary")
    """The personal fields of the contract (DESIGN §3, marked *)."""

    def value(self, name: str, variant: str = "") -> str:
        """The marker for field ``name`` (``variant``: another one for the same field)."""
        if name == "phone":
            digits = str(int(uuid4().hex[:12], 16))[:11].rjust(11, "7")
            value = f"+86 ({digits[:3]}) {digits[3:]}"
            self.used[value] = name
            return value
        stem = f"Pii{self.tag}{variant}{name.replace('_', '')}"
        self.used[stem] = name
        return f"{stem}@example.com" if name == "email" else stem

    def mark(self, message: Message, variant: str = "") -> None:
        """Set every free-text string field (at any depth) to its marker."""
        for d in message.DESCRIPTOR.fields:
            if _is_text(d):
                if d.is_repeated:
                    repeated = getattr(message, d.name)
                    del repeated[:]
                    repeated.append(self.value(d.name, variant))
                else:
                    setattr(message, d.name, self.value(d.name, variant))
            elif _holds_text(d) and not d.is_repeated and message.HasField(d.name):
                self.mark(getattr(message, d.name), variant)

    def found_in(self, text: str | bytes) -> list[str]:
        """The fields whose markers occur in ``text``."""
        data = text if isinstance(text, bytes) else text.encode()
        return sorted({name for marker, name in self.used.items() if marker.encode() in data})


def error_texts(error: grpc.RpcError) -> list[bytes]:
    """Everything a failed call tells its caller: message, trailers and every detail."""
    assert isinstance(error, grpc.Call)
    texts = [(error.details() or "").encode()]
    for key, value in error.trailing_metadata() or ():
        texts.append(key.encode())
        texts.append(value if isinstance(value, bytes) else str(value).encode())
    status = rpc_status.from_call(error)
    if status is not None:
        texts.append(status.SerializeToString())
        texts.append(text_format.MessageToString(status).encode())
        for detail in status.details:
            for kind in (error_details_pb2.BadRequest, error_details_pb2.ErrorInfo):
                unpacked = kind()
                if detail.Unpack(unpacked):
                    texts.append(text_format.MessageToString(unpacked).encode())
    return texts


def _copy(request: M, **changes: Any) -> M:
    out = type(request)()
    out.CopyFrom(request)
    for name, value in changes.items():
        setattr(out, name, value)
    return out


def _invalid_personal(request: Message, markers: Markers) -> Iterator[tuple[str, Message]]:
    """The request with one personal field made invalid (too long or malformed) in turn."""
    names = {d.name for d in request.DESCRIPTOR.fields}
    if "display_name" in names:
        yield (
            "display_name too long",
            _copy(request, display_name=markers.value("display_name") * 20),
        )
    if "name" in names and isinstance(request, C.AddContactRequest):
        yield "contact name too long", _copy(request, name=markers.value("name") * 20)
    if "email" in names:
        yield "email malformed", _copy(request, email=markers.value("email").replace("@", " at "))
    if "phone" in names:
        yield "phone malformed", _copy(request, phone=markers.value("phone") + " ext. five")
    if "summary" in names:
        yield "summary too long", _copy(request, summary=markers.value("summary") * 300)


@pytest.fixture(scope="module")
def gone(served: Served) -> tuple[str, str]:
    """An erased customer and a terminated partner: targets the domain refuses to change."""
    w = World(served.client("admin"))
    customer_id = w.customer()
    w.admin.customers.EraseCustomerData(
        C.EraseCustomerDataRequest(customer_id=customer_id, reason="asked"), timeout=TIMEOUT
    )
    partner_id = w.partner()
    w.admin.partners.TerminatePartner(
        P.TerminatePartnerRequest(partner_id=partner_id, reason="ended"), timeout=TIMEOUT
    )
    return customer_id, partner_id


MARKABLE = [
    rpc for rpc in MUTATING if _free_text(rpc.request.DESCRIPTOR) and not rpc.client_streaming
]
"""IngestInteractions carries RecordInteraction requests: its own test marks them per item
(``test_ingest_api``)."""


def test_the_commands_not_marked_carry_no_free_text_at_all() -> None:
    """Ids, enums, times, amounts and formatted values only: nothing personal to echo."""
    unmarked = {rpc.name for rpc in MUTATING if rpc not in MARKABLE and not rpc.client_streaming}
    assert unmarked == {
        "RemoveContact",
        "ShareData",
        "SignAgreement",
        "ReviewPartnerPerformance",
        "LinkCustomer",
        "UnlinkCustomer",
    }

    def text(name: str) -> set[str]:
        return _free_text(BY_NAME[name].request.DESCRIPTOR)

    assert "display_name" in text("RegisterCustomer") & text("UpdateCustomerProfile")
    assert {"name", "email", "phone"} <= text("AddContact")
    assert "summary" in text("RecordInteraction")
    assert "capture.evidence_ref" in text("GrantConsent")


@pytest.mark.parametrize("rpc", MARKABLE, ids=str)
def test_marked_free_text_never_comes_back_in_an_error_nor_reaches_the_log(
    served: Served, caller: Caller, gone: tuple[str, str], rpc: Rpc
) -> None:
    markers = Markers()
    request = PROBES[rpc.name](World(served.client("admin")))
    markers.mark(request)
    assert markers.used, f"{rpc} carries no free text to mark"
    names = {d.name for d in request.DESCRIPTOR.fields}
    id_field = "customer_id" if rpc.service == "CustomerService" else "partner_id"
    creates = rpc.name.startswith("Register")
    writer = caller.bearer("writer")

    failing: list[tuple[str, Message, grpc.StatusCode | None]] = [
        ("an id that is not a UUID", _copy(request, **{id_field: "not-a-uuid"}), None),
        *((label, bad, None) for label, bad in _invalid_personal(request, markers)),
    ]
    if "expected_version" in names:
        failing += [
            ("expected_version 0", _copy(request, expected_version=0), None),
            ("a stale expected_version", _copy(request, expected_version=10**6), None),
        ]
    if not creates:
        erased_or_terminated = gone[0] if id_field == "customer_id" else gone[1]
        failing += [
            ("an unknown aggregate", _copy(request, **{id_field: str(uuid4())}), None),
            (
                "an erased customer or terminated partner",
                _copy(request, **{id_field: erased_or_terminated}),
                OK,
            ),
        ]
    for label, bad, tolerated in failing:
        outcome = caller.call(rpc, bad, writer)
        if outcome.code == OK and tolerated == OK:
            continue  # e.g. a tier change of an erased customer: allowed, nothing personal
        assert outcome.code not in (OK, *REFUSED, *NEVER), (str(rpc), label, outcome.code)
        assert outcome.error is not None
        for text in error_texts(outcome.error):
            assert not markers.found_in(text), (str(rpc), label, markers.found_in(text))

    # Succeeds once with a request id; the same id with other markers is refused.
    request_id = f"pii-{uuid4().hex}"
    first = _copy(request, request_id=request_id)
    done = caller.call(rpc, first, writer)
    assert done.code == OK, (str(rpc), done.code, done.error)
    other = _copy(request, request_id=request_id)
    markers.mark(other, variant="b")
    reused = caller.call(rpc, other, writer)
    assert reused.code == grpc.StatusCode.INVALID_ARGUMENT, (str(rpc), reused.code)
    assert reused.error is not None
    for text in error_texts(reused.error):
        assert not markers.found_in(text), (str(rpc), "request_id reused", markers.found_in(text))
    if creates:  # the same natural key again, without a request id
        again = caller.call(rpc, request, writer)
        assert again.code == grpc.StatusCode.ALREADY_EXISTS, (str(rpc), again.code)
        assert again.error is not None
        for text in error_texts(again.error):
            assert not markers.found_in(text), (str(rpc), "already exists", markers.found_in(text))

    leaked = {name for line in caller.logged() for name in markers.found_in(line)}
    assert not leaked, (str(rpc), leaked)


# ------------------------------------------- 4. nothing personal of an erased customer


@dataclass
class Subject:
    """A customer with marked personal data in every place it can be, and its surroundings."""

    customer_id: str
    partner_id: str
    versions: list[int]
    """The customer's versions before its erasure."""
    times: list[Any]
    """The recorded time of each of those versions (Timestamps)."""
    first_position: int
    last_position: int


CUSTOMER_TYPES = [
    "customer.registered",
    "customer.profile_updated",
    "customer.contact_added",
    "customer.contact_removed",
    "customer.interaction_recorded",
    "customer.consent_granted",
    "customer.consent_withdrawn",
    "customer.data_shared",
    "customer.personal_data_erased",
]


def _subject(admin: Client, markers: Markers) -> Subject:
    """Register, add contacts, interactions, consent, a share, a late withdrawal and a link."""
    w = World(admin)
    partner_id, _ = w.active()
    registered = w.wrote(
        admin.customers.RegisterCustomer(
            C.RegisterCustomerRequest(
                external_ref=f"C-{uuid4().hex[:12]}",
                display_name=markers.value("display_name"),
                kind=common_pb2.CUSTOMER_KIND_PERSON,
                industry="retail",
                region="CN-east",
                source="web",
                acquired_via_partner_id=partner_id,
            ),
            timeout=TIMEOUT,
        )
    )
    customer_id = str(registered.customer_id)
    for variant in ("", "second"):
        added = C.AddContactRequest(
            customer_id=customer_id,
            name=markers.value("name", variant),
            email=markers.value("email", variant),
            phone=markers.value("phone", variant),
            title="buyer",
            layer=common_pb2.CONTACT_LAYER_DECISION,
            function=common_pb2.CONTACT_FUNCTION_PROCUREMENT,
        )
        contact_id = w.wrote(admin.customers.AddContact(added, timeout=TIMEOUT)).contact_id
    w.wrote(  # the second contact leaves: a removed contact's data must go too
        admin.customers.RemoveContact(
            C.RemoveContactRequest(customer_id=customer_id, contact_id=contact_id),
            timeout=TIMEOUT,
        )
    )
    call = _copy(interaction(customer_id), summary=markers.value("summary"))
    w.wrote(admin.customers.RecordInteraction(call, timeout=TIMEOUT))
    bought = C.RecordInteractionRequest(
        customer_id=customer_id,
        kind=common_pb2.INTERACTION_KIND_PURCHASE,
        channel=common_pb2.CHANNEL_WEB,
        direction=common_pb2.DIRECTION_INBOUND,
        occurred_at=ago(days=2),
        summary=markers.value("summary", "purchase"),
        amount=common_pb2.Money(amount="1200.00", currency="CNY"),
    )
    w.wrote(admin.customers.RecordInteraction(bought, timeout=TIMEOUT))
    renamed = C.UpdateCustomerProfileRequest(
        customer_id=customer_id, display_name=markers.value("display_name", "renamed")
    )
    w.wrote(admin.customers.UpdateCustomerProfile(renamed, timeout=TIMEOUT))
    consent_id = w.consent(customer_id, partner_id)
    expressed = datetime.now(UTC)  # the withdrawal is dated before the share: a late one
    shared = w.wrote(admin.customers.ShareData(_share_of(customer_id, partner_id)))
    assert shared.shared
    w.wrote(
        admin.customers.WithdrawConsent(
            C.WithdrawConsentRequest(
                customer_id=customer_id,
                consent_id=consent_id,
                channel="LETTER",
                expressed_at=ts(expressed),
            ),
            timeout=TIMEOUT,
        )
    )
    w.wrote(admin.partners.LinkCustomer(link(partner_id, customer_id), timeout=TIMEOUT))
    history = [
        event
        for batch in admin.audit.GetAggregateHistory(
            A.GetAggregateHistoryRequest(aggregate_id=customer_id, min_position=w.last),
            timeout=TIMEOUT,
        )
        for event in batch.events
    ]
    return Subject(
        customer_id=customer_id,
        partner_id=partner_id,
        versions=[e.version for e in history],
        times=[e.recorded_at for e in history],
        first_position=registered.position,
        last_position=w.last,
    )


def _share_of(customer_id: str, partner_id: str) -> C.ShareDataRequest:
    return C.ShareDataRequest(
        customer_id=customer_id,
        partner_id=partner_id,
        purpose=common_pb2.PURPOSE_MARKETING,
        data_categories=ALL_CATEGORIES,
    )


def _reads(s: Subject, at: int) -> dict[str, list[tuple[str, Message, bool]]]:
    """Every read that can mention the subject: RPC -> (label, request, page through).

    ``at``: the position every read waits for (the erasure, or the last write before it).
    """
    c, p = s.customer_id, s.partner_id
    before = s.times[-1]  # the last moment before the erasure, as recorded
    start = s.first_position
    return {
        "GetCustomer": [
            ("now", C.GetCustomerRequest(customer_id=c, min_position=at), False),
            *(
                (f"as of version {v}", C.GetCustomerRequest(customer_id=c, as_of_version=v), False)
                for v in s.versions
            ),
            *(
                (
                    f"as of the time of v{v}",
                    C.GetCustomerRequest(customer_id=c, as_of_time=t),
                    False,
                )
                for v, t in zip(s.versions, s.times, strict=True)
            ),
        ],
        "GetPartner": [
            ("now", P.GetPartnerRequest(partner_id=p, min_position=at), False),
            ("before", P.GetPartnerRequest(partner_id=p, as_of_time=before), False),
        ],
        "GetAggregateAt": [
            ("now", A.GetAggregateAtRequest(aggregate_id=c, min_position=at), False),
            *(
                (
                    f"as of version {v}",
                    A.GetAggregateAtRequest(aggregate_id=c, as_of_version=v),
                    False,
                )
                for v in s.versions
            ),
            ("as of before", A.GetAggregateAtRequest(aggregate_id=c, as_of_time=before), False),
            ("the partner", A.GetAggregateAtRequest(aggregate_id=p, min_position=at), False),
        ],
        "GetAggregateHistory": [
            ("all", A.GetAggregateHistoryRequest(aggregate_id=c, min_position=at), False),
            (
                "bounded",
                A.GetAggregateHistoryRequest(aggregate_id=c, from_version=2, to_version=4),
                False,
            ),
            ("batches of one", A.GetAggregateHistoryRequest(aggregate_id=c, batch_size=1), False),
        ],
        "ReadEvents": [
            ("by aggregate", A.ReadEventsRequest(aggregate_id=c, min_position=at), False),
            (
                "everything since",
                A.ReadEventsRequest(from_position=start, min_position=at),
                False,
            ),
            (
                "by type",
                A.ReadEventsRequest(from_position=start, types=CUSTOMER_TYPES, min_position=at),
                False,
            ),
            (
                "by aggregate type",
                A.ReadEventsRequest(
                    from_position=start, aggregate_type="customer", min_position=at
                ),
                False,
            ),
            (
                "by aggregate and type, in batches of one",
                A.ReadEventsRequest(
                    aggregate_id=c, types=CUSTOMER_TYPES[:5], batch_size=1, min_position=at
                ),
                False,
            ),
            (
                "following",
                A.ReadEventsRequest(from_position=start, follow=True, min_position=at),
                False,
            ),
        ],
        "GetCustomerInsight": [
            ("now", I.GetCustomerInsightRequest(customer_id=c, min_position=at), False),
            ("before", I.GetCustomerInsightRequest(customer_id=c, as_of=before), False),
        ],
        "ListCustomers": [
            ("all", I.ListCustomersRequest(page_size=1000, min_position=at), True),
            ("before", I.ListCustomersRequest(page_size=1000, as_of=before), True),
            ("by tier", I.ListCustomersRequest(tier=common_pb2.TIER_STANDARD, page_size=50), True),
        ],
        "GetSegmentSummary": [("now", I.GetSegmentSummaryRequest(min_position=at), False)],
        "GetLifecycleFunnel": [("now", I.GetLifecycleFunnelRequest(min_position=at), False)],
        "GetPartnerScorecard": [
            ("now", I.GetPartnerScorecardRequest(partner_id=p, min_position=at), False),
            ("before", I.GetPartnerScorecardRequest(partner_id=p, at=before), False),
        ],
        "CheckConsent": [
            (
                label,
                K.CheckConsentRequest(
                    customer_id=c,
                    partner_id=p,
                    purpose=common_pb2.PURPOSE_MARKETING,
                    data_categories=ALL_CATEGORIES,
                    min_position=at,
                    **extra,
                ),
                False,
            )
            for label, extra in (
                ("now", {}),
                ("before", {"at": before}),
                ("before, as known now", {"at": before, "as_known_now": True}),
            )
        ],
        "ListConsents": [
            ("by customer", K.ListConsentsRequest(customer_id=c, min_position=at), True),
            ("by partner", K.ListConsentsRequest(partner_id=p, min_position=at), True),
            ("before", K.ListConsentsRequest(customer_id=c, at=before), True),
        ],
        "ListDataShares": [
            ("by customer", K.ListDataSharesRequest(customer_id=c, min_position=at), True),
            ("by partner", K.ListDataSharesRequest(partner_id=p, min_position=at), True),
        ],
        "ListLateWithdrawalShares": [
            (
                "by customer",
                K.ListLateWithdrawalSharesRequest(customer_id=c, min_position=at),
                True,
            ),
            ("all", K.ListLateWithdrawalSharesRequest(min_position=at), True),
        ],
        "GetDigest": [("now", A.GetDigestRequest(min_position=at), False)],
        "VerifyLog": [("at the subject", A.VerifyLogRequest(position=start, hash="0" * 64), False)],
    }


@dataclass
class Seen:
    """What one role got from the sweep: per RPC and label, the marked fields found."""

    found: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    codes: dict[tuple[str, str], grpc.StatusCode] = field(default_factory=dict)

    def fields(self, rpc: str | None = None) -> set[str]:
        return {f for (name, _), got in self.found.items() if rpc in (None, name) for f in got}


def _sweep(caller: Caller, role: str, s: Subject, at: int, markers: Markers) -> Seen:
    """Every read of the subject as ``role``; every response searched, bytes and text."""
    seen = Seen()
    for name, variants in _reads(s, at).items():
        rpc = BY_NAME[name]
        for label, request, paged in variants:
            texts: list[bytes] = []
            code = OK
            token = ""
            for _ in range(200):
                page = _copy(request, page_token=token) if paged else request
                outcome = caller.call(
                    rpc,
                    page,
                    caller.bearer(role),
                    whole=True,
                    until=lambda r: bool(getattr(r, "caught_up", False)),
                )
                code = outcome.code
                for response in outcome.responses:
                    texts.append(response.SerializeToString())
                    texts.append(text_format.MessageToString(response).encode())
                if outcome.error is not None:
                    texts.extend(error_texts(outcome.error))
                token = (
                    str(getattr(outcome.responses[0], "next_page_token", ""))
                    if outcome.responses
                    else ""
                )
                if not paged or not token:
                    break
            else:
                raise AssertionError(f"{name} {label}: paging did not end")
            seen.codes[name, label] = code
            seen.found[name, label] = sorted({f for t in texts for f in markers.found_in(t)})
            for text in texts:
                for sealed in (REFERENCE.encode(), f'"{SEALED}"'.encode()):
                    assert sealed not in text, (role, name, label, "a sealed value went out")
    return seen


def test_no_role_obtains_personal_data_of_an_erased_customer_by_any_read(
    served: Served, caller: Caller
) -> None:
    markers = Markers()
    admin = served.client("admin")
    s = _subject(admin, markers)
    assert len(s.versions) >= 10
    assert set(_reads(s, 0)) == {rpc.name for rpc in READS}, "every read RPC is swept"

    # Before the erasure the sweep finds every marker: the search can fail.
    seen = _sweep(caller, "admin", s, s.last_position, markers)
    assert all(code == OK for code in seen.codes.values()), seen.codes
    everything = set(Markers.PERSONAL)
    assert seen.fields() == everything, seen.fields()
    assert seen.fields("GetCustomer") == {"display_name", "name", "email", "phone"}
    assert seen.fields("GetAggregateAt") == {"display_name", "name", "email", "phone"}
    assert seen.fields("ReadEvents") == everything
    assert seen.fields("GetAggregateHistory") == everything
    assert seen.fields("ListCustomers") == {"display_name"}
    hidden = _sweep(caller, "auditor", s, s.last_position, markers)
    assert hidden.fields() == set(), "an auditor never sees personal data"

    erased = admin.customers.EraseCustomerData(
        C.EraseCustomerDataRequest(customer_id=s.customer_id, reason="the data subject asked"),
        timeout=TIMEOUT,
    )
    for role in ROLES:
        after = _sweep(caller, role, s, erased.position, markers)
        for (name, label), code in after.codes.items():
            expected = OK if role in BY_NAME[name].admitted else grpc.StatusCode.PERMISSION_DENIED
            assert code == expected, (role, name, label, code)
        leaks = {key: got for key, got in after.found.items() if got}
        assert not leaks, (role, leaks)

    got = admin.customers.GetCustomer(
        C.GetCustomerRequest(customer_id=s.customer_id), timeout=TIMEOUT
    ).customer
    assert got.erased
    assert got.display_name == "[erased]"
    leaked = {name for line in caller.logged() for name in markers.found_in(line)}
    assert not leaked, leaked
