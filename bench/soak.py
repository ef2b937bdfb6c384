"""Soak: N concurrent gRPC clients issue mixed commands for M minutes; then the log is checked.

Run: .venv/bin/python bench/soak.py --store sqlite|postgres --clients N --minutes M [--seed S]

It starts its own `accord serve` on loopback (a free port) over a fresh store
(a temporary SQLite file, or a new PostgreSQL schema dropped afterwards; the
PostgreSQL server is ``ACCORD_TEST_POSTGRES_URL``). Each client sends
commands with a ``request_id`` and retries at random: the same request again
after its answer, twice at once from two threads, or again after a deadline
too short to be met; now and then the same id with another payload. Calls that
fail for a passing reason (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED, ...) are
retried with the same id. Afterwards:

- every acknowledged command is in the log exactly once (its events carry its
  ``request_id``, end at the acknowledged version and position, and are one
  event), a refused one is not there at all, one with no definite answer at
  most once, and no event has an id nobody sent;
- every retry answered with the first result (``replayed``), and the same id
  with another payload was INVALID_ARGUMENT;
- the log read over the API is the whole stored log;
- GetDigest's digest passes VerifyLog;
- with the server stopped, every read model as the server built it, document
  for document, equals a rebuild of it from position 0 (``accord rebuild``'s
  code path);

and it prints what it did: commands acknowledged, retries, errors by status,
throughput and each check's verdict. The exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

if __package__ in (None, ""):  # run as a script: the checkout's `tests` package is needed too
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.grpc.generated.accord.v1 import (
    audit_pb2,
    common_pb2,
    customer_pb2,
    partner_pb2,
)
from adapters.store import StoreConfig
from adapters.wiring import build_accord, build_read_models
from application.personal_data import MasterKey
from projections.catalog import all_projections
from tests.e2e.harness import Client, Served, serve, stored_event_count
from tests.support import postgres_schema, postgres_store, sqlite_store

TIMEOUT = 15.0
"""Deadline of an ordinary call."""
ATTEMPTS = 4
"""Sends of one request (same id) before its outcome is left unknown."""
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}
"""Failures that say nothing was decided for good: retried with the same request id."""
EXPECTED_REFUSALS = {grpc.StatusCode.FAILED_PRECONDITION}
"""Refusals a random mix provokes (a tier unchanged, a period reviewed twice, ...)."""
P_CONCURRENT = 0.06
"""Of commands: sent twice at once, from two threads, with one request id."""
P_HASTY = 0.06
"""Of commands: first sent with a deadline too short to be met, then retried."""
P_RESEND = 0.12
"""Of acknowledged commands: sent again afterwards; the first result must come back."""
P_OTHER_PAYLOAD = 0.03
"""Of acknowledged updates: the id reused with another payload; INVALID_ARGUMENT expected."""
MAX_CLIENTS = 64
MAX_MINUTES = 120.0
HOT = 12
"""Commands pick among the newest customers/partners this often, so clients collide."""

ALL_CATEGORIES = (
    common_pb2.DATA_CATEGORY_IDENTITY,
    common_pb2.DATA_CATEGORY_CONTACT,
    common_pb2.DATA_CATEGORY_PURCHASE_HISTORY,
)
ENTITY_FIELDS = ("contact_id", "interaction_id", "consent_id", "share_id", "agreement_id")
"""The id of what a command created inside its aggregate, by response."""
PARTNER_COMMANDS = set(partner_pb2.DESCRIPTOR.services_by_name["PartnerService"].methods_by_name)
TIERS = (common_pb2.TIER_STRATEGIC, common_pb2.TIER_KEY, common_pb2.TIER_STANDARD)
PURPOSES = (common_pb2.PURPOSE_MARKETING, common_pb2.PURPOSE_ANALYTICS)


def _ts(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment.astimezone(UTC))
    return out


def _ago(**delta: float) -> Timestamp:
    return _ts(datetime.now(UTC) - timedelta(**delta))


# ------------------------------------------------------------------- tallies


@dataclass(frozen=True)
class Ack:
    """What a command's response says it did."""

    aggregate_id: str
    version: int
    position: int
    entity_id: str

    @classmethod
    def of(cls, response: Message) -> Ack:
        names = response.DESCRIPTOR.fields_by_name
        aggregate = "customer_id" if "customer_id" in names else "partner_id"
        entity = next((name for name in ENTITY_FIELDS if name in names), None)
        fields: Any = response  # every command response has these; protobuf types them apart
        return cls(
            str(getattr(fields, aggregate)),
            int(fields.version),
            int(fields.position),
            str(getattr(fields, entity)) if entity else "",
        )


@dataclass
class Tally:
    """Everything the clients did and saw (one lock for all of it)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict[str, str] = field(default_factory=dict)
    """request_id -> command name, for every request id used."""
    acknowledged: dict[str, Ack] = field(default_factory=dict)
    refused: dict[str, grpc.StatusCode] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)
    """Request ids that never got a definite answer (may or may not be recorded)."""
    calls: int = 0
    retries: int = 0
    """Sends of a request id beyond its first (every kind of retry)."""
    concurrent: int = 0
    hasty: int = 0
    resends: int = 0
    other_payload: int = 0
    replayed: int = 0
    reads: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    """Every failed call, by status code."""
    problems: list[str] = field(default_factory=list)
    """Broken promises seen while running (a retry that did not replay, ...)."""

    def problem(self, text: str) -> None:
        with self.lock:
            if len(self.problems) < 1000:
                self.problems.append(text)


@dataclass
class World:
    """What exists, as the clients know it from their acknowledged commands."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    customers: list[str] = field(default_factory=list)
    partners: list[str] = field(default_factory=list)
    """Activated partners (they may have been suspended since)."""
    consents: dict[str, list[str]] = field(default_factory=dict)
    periods: Counter[str] = field(default_factory=Counter)

    def pick(self, rng: random.Random, items: list[str]) -> str | None:
        with self.lock:
            if not items:
                return None
            if rng.random() < 0.5:
                return rng.choice(items[-HOT:])
            return rng.choice(items)


# ------------------------------------------------------------------ sending


Rpc = Callable[..., Any]


def _request_id(request: Message) -> str:
    fields: Any = request  # every command request has one
    return str(fields.request_id)


class Sender:
    """Sends one command with retries, and records what happened in the tally."""

    def __init__(self, tally: Tally, rng: random.Random) -> None:
        self.tally = tally
        self.rng = rng

    def _call(self, rpc: Rpc, request: Message, timeout: float) -> Any | grpc.RpcError:
        with self.tally.lock:
            self.tally.calls += 1
        try:
            return rpc(request, timeout=timeout)
        except grpc.RpcError as error:
            with self.tally.lock:
                self.tally.errors[error.code().name] += 1
            return error

    def _until_definite(
        self, rpc: Rpc, request: Message, first: Any | grpc.RpcError | None
    ) -> Any | grpc.RpcError | None:
        """Resend (same id) while the outcome is a passing failure; None: never definite."""
        outcome = first
        for attempt in range(ATTEMPTS):
            if outcome is not None and not (
                isinstance(outcome, grpc.RpcError) and outcome.code() in RETRYABLE
            ):
                return outcome
            if outcome is not None:
                with self.tally.lock:
                    self.tally.retries += 1
                time.sleep(0.005 * 2**attempt)
            outcome = self._call(rpc, request, TIMEOUT)
        if isinstance(outcome, grpc.RpcError) and outcome.code() in RETRYABLE:
            return None
        return outcome

    def _twice_at_once(self, name: str, rpc: Rpc, request: Message) -> Any | grpc.RpcError | None:
        outcomes: list[Any | grpc.RpcError | None] = [None, None]

        def send(index: int) -> None:
            outcomes[index] = self._until_definite(rpc, request, None)

        other = threading.Thread(target=send, args=(1,))
        other.start()
        send(0)
        other.join()
        with self.tally.lock:
            self.tally.concurrent += 1
            self.tally.retries += 1
        first, second = outcomes
        answers = [o for o in outcomes if o is not None and not isinstance(o, grpc.RpcError)]
        if len(answers) == 2 and Ack.of(answers[0]) != Ack.of(answers[1]):
            self.tally.problem(
                f"{name} {_request_id(request)}: two sends at once "
                f"answered differently: {Ack.of(answers[0])} / {Ack.of(answers[1])}"
            )
        if answers and any(isinstance(o, grpc.RpcError) for o in outcomes):
            failed = next(o for o in outcomes if isinstance(o, grpc.RpcError))
            self.tally.problem(
                f"{name} {_request_id(request)}: one of two sends "
                f"at once was acknowledged, the other failed with {failed.code().name}"
            )
        if answers:
            return answers[0]
        return first if first is not None else second

    def command(self, name: str, rpc: Rpc, request: Message) -> Any | None:
        """Send ``request`` (a fresh request id) as chance has it; its response if acknowledged."""
        request_id = f"soak-{uuid4()}"
        setattr(request, "request_id", request_id)  # noqa: B010
        with self.tally.lock:
            self.tally.sent[request_id] = name
        roll = self.rng.random()
        outcome: Any | grpc.RpcError | None
        if roll < P_CONCURRENT:
            outcome = self._twice_at_once(name, rpc, request)
        elif roll < P_CONCURRENT + P_HASTY:
            with self.tally.lock:
                self.tally.hasty += 1
            outcome = self._call(rpc, request, self.rng.uniform(0.0005, 0.01))
            if isinstance(outcome, grpc.RpcError):
                with self.tally.lock:
                    self.tally.retries += 1
                outcome = self._until_definite(rpc, request, None)
        else:
            outcome = self._until_definite(rpc, request, None)

        if outcome is None:
            with self.tally.lock:
                self.tally.unknown.add(request_id)
            return None
        if isinstance(outcome, grpc.RpcError):
            code = outcome.code()
            with self.tally.lock:
                self.tally.refused[request_id] = code
            if code not in EXPECTED_REFUSALS:
                self.tally.problem(f"{name} {request_id}: {code.name} {outcome.details()}")
            return None
        ack = Ack.of(outcome)
        with self.tally.lock:
            self.tally.acknowledged[request_id] = ack
            self.tally.replayed += bool(getattr(outcome, "replayed", False))
        self._maybe_resend(name, rpc, request, ack)
        self._maybe_other_payload(name, rpc, request)
        return outcome

    def _maybe_resend(self, name: str, rpc: Rpc, request: Message, ack: Ack) -> None:
        if self.rng.random() >= P_RESEND:
            return
        with self.tally.lock:
            self.tally.resends += 1
            self.tally.retries += 1
        again = self._until_definite(rpc, request, None)
        request_id = _request_id(request)
        if again is None:
            return
        if isinstance(again, grpc.RpcError):
            self.tally.problem(f"{name} {request_id}: resent, got {again.code().name}")
        elif Ack.of(again) != ack or not getattr(again, "replayed", False):
            self.tally.problem(
                f"{name} {request_id}: resent, got {Ack.of(again)} "
                f"(replayed={getattr(again, 'replayed', None)}) instead of {ack}"
            )
        else:
            with self.tally.lock:
                self.tally.replayed += 1

    def _maybe_other_payload(self, name: str, rpc: Rpc, request: Message) -> None:
        if "expected_version" not in request.DESCRIPTOR.fields_by_name:
            return
        if self.rng.random() >= P_OTHER_PAYLOAD:
            return
        other = type(request)()
        other.CopyFrom(request)
        setattr(other, "expected_version", 10**9)  # noqa: B010
        with self.tally.lock:
            self.tally.other_payload += 1
        outcome = self._until_definite(rpc, other, None)
        request_id = _request_id(request)
        if outcome is None:
            return
        if not isinstance(outcome, grpc.RpcError):
            self.tally.problem(f"{name} {request_id}: another payload was accepted: {outcome}")
        elif outcome.code() != grpc.StatusCode.INVALID_ARGUMENT:
            self.tally.problem(
                f"{name} {request_id}: another payload got {outcome.code().name}, "
                "not INVALID_ARGUMENT"
            )


# ------------------------------------------------------------------ clients


class SoakClient:
    """One caller: a channel of its own, a random mix of commands, now and then a read."""

    def __init__(
        self, client: Client, world: World, tally: Tally, seed: int, stop: threading.Event
    ) -> None:
        self.client = client
        self.world = world
        self.tally = tally
        self.rng = random.Random(seed)
        self.send = Sender(tally, self.rng)
        self.stop = stop
        self.ops: list[tuple[Callable[[], None], int]] = [
            (self.register_customer, 8),
            (self.partner_lifecycle, 2),
            (self.record_interaction, 24),
            (self.update_profile, 6),
            (self.change_tier, 6),
            (self.add_contact, 5),
            (self.grant_consent, 8),
            (self.share, 8),
            (self.withdraw_consent, 3),
            (self.link_customer, 3),
            (self.review_partner, 2),
            (self.suspend_or_reinstate, 2),
            (self.read_back, 6),
        ]

    def run(self) -> None:
        actions = [op for op, _ in self.ops]
        weights = [weight for _, weight in self.ops]
        self.register_customer()
        while not self.stop.is_set():
            self.rng.choices(actions, weights)[0]()

    # ---------------------------------------------------------------- customers

    def register_customer(self) -> None:
        request = customer_pb2.RegisterCustomerRequest(
            external_ref=f"C-{uuid4().hex[:16]}",
            display_name=self.rng.choice(["Wang Fang", "Li Na", "Zhang Wei", "Liu Yang"]),
            kind=self.rng.choice(
                [common_pb2.CUSTOMER_KIND_ORGANISATION, common_pb2.CUSTOMER_KIND_PERSON]
            ),
            industry=self.rng.choice(["manufacturing", "retail", "logistics"]),
            region=self.rng.choice(["CN-east", "CN-north", "CN-south"]),
            source="soak",
        )
        response = self.send.command(
            "RegisterCustomer", self.client.customers.RegisterCustomer, request
        )
        if response is not None:
            with self.world.lock:
                self.world.customers.append(response.customer_id)

    def _customer(self) -> str | None:
        return self.world.pick(self.rng, self.world.customers)

    def _partner(self) -> str | None:
        return self.world.pick(self.rng, self.world.partners)

    def record_interaction(self) -> None:
        customer_id = self._customer()
        if customer_id is None:
            return
        request = customer_pb2.RecordInteractionRequest(
            customer_id=customer_id,
            channel=self.rng.choice([common_pb2.CHANNEL_WEB, common_pb2.CHANNEL_PHONE]),
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=_ago(days=self.rng.uniform(0.01, 400)),
            summary=self.rng.choice(["", "order via portal", "follow-up call"]),
        )
        roll = self.rng.random()
        if roll < 0.6:
            request.kind = common_pb2.INTERACTION_KIND_PURCHASE
            request.amount.CopyFrom(
                common_pb2.Money(amount=f"{self.rng.randint(10, 90000)}.00", currency="CNY")
            )
            if (partner_id := self._partner()) and self.rng.random() < 0.3:
                request.partner_id = partner_id
        elif roll < 0.7:
            request.kind = common_pb2.INTERACTION_KIND_REFUND
            request.amount.CopyFrom(
                common_pb2.Money(amount=f"{self.rng.randint(1, 500)}.00", currency="CNY")
            )
        elif roll < 0.85:
            request.kind = common_pb2.INTERACTION_KIND_SURVEY
            request.satisfaction = self.rng.randint(0, 10)
        else:
            request.kind = common_pb2.INTERACTION_KIND_MEETING
        self.send.command("RecordInteraction", self.client.customers.RecordInteraction, request)

    def update_profile(self) -> None:
        customer_id = self._customer()
        if customer_id is None:
            return
        request = customer_pb2.UpdateCustomerProfileRequest(
            customer_id=customer_id,
            industry=self.rng.choice(["manufacturing", "retail", "logistics", "energy"]),
        )
        self.send.command(
            "UpdateCustomerProfile", self.client.customers.UpdateCustomerProfile, request
        )

    def change_tier(self) -> None:
        customer_id = self._customer()
        if customer_id is None:
            return
        request = customer_pb2.ChangeTierRequest(
            customer_id=customer_id, to_tier=self.rng.choice(TIERS), reason="quarterly review"
        )
        self.send.command("ChangeTier", self.client.customers.ChangeTier, request)

    def add_contact(self) -> None:
        customer_id = self._customer()
        if customer_id is None:
            return
        request = customer_pb2.AddContactRequest(
            customer_id=customer_id,
            name="Ma Lin",
            email=f"ma.lin.{uuid4().hex[:8]}@example.cn",
            layer=common_pb2.CONTACT_LAYER_DECISION,
            function=common_pb2.CONTACT_FUNCTION_FINANCE,
        )
        self.send.command("AddContact", self.client.customers.AddContact, request)

    def grant_consent(self) -> None:
        customer_id, partner_id = self._customer(), self._partner()
        if customer_id is None or partner_id is None:
            return
        request = customer_pb2.GrantConsentRequest(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose=self.rng.choice(PURPOSES),
            data_categories=ALL_CATEGORIES[: self.rng.randint(1, 3)],
            capture=common_pb2.ConsentCapture(
                method="WEB_FORM", source="portal", evidence_ref="soak", notice_version="v3"
            ),
        )
        response = self.send.command("GrantConsent", self.client.customers.GrantConsent, request)
        if response is not None:
            with self.world.lock:
                self.world.consents.setdefault(customer_id, []).append(response.consent_id)

    def withdraw_consent(self) -> None:
        with self.world.lock:
            granted = [(c, ids) for c, ids in self.world.consents.items() if ids]
            if not granted:
                return
            customer_id, ids = self.rng.choice(granted)
            consent_id = ids.pop(self.rng.randrange(len(ids)))
        request = customer_pb2.WithdrawConsentRequest(
            customer_id=customer_id, consent_id=consent_id, channel="EMAIL"
        )
        self.send.command("WithdrawConsent", self.client.customers.WithdrawConsent, request)

    def share(self) -> None:
        customer_id, partner_id = self._customer(), self._partner()
        if customer_id is None or partner_id is None:
            return
        request = customer_pb2.ShareDataRequest(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose=self.rng.choice(PURPOSES),
            data_categories=ALL_CATEGORIES[: self.rng.randint(1, 3)],
        )
        self.send.command("ShareData", self.client.customers.ShareData, request)

    # ----------------------------------------------------------------- partners

    def partner_lifecycle(self) -> None:
        """Register, evaluate, sign a data-sharing agreement, activate: four commands."""
        partners = self.client.partners
        registered = self.send.command(
            "RegisterPartner",
            partners.RegisterPartner,
            partner_pb2.RegisterPartnerRequest(
                external_ref=f"P-{uuid4().hex[:16]}",
                name="Harbour Logistics",
                kind=common_pb2.PARTNER_KIND_RESELLER,
                regions=["CN-east"],
                capabilities=["crm"],
            ),
        )
        if registered is None:
            return
        partner_id = registered.partner_id
        steps: list[tuple[str, Rpc, Message]] = [
            (
                "EvaluatePartner",
                partners.EvaluatePartner,
                partner_pb2.EvaluatePartnerRequest(
                    partner_id=partner_id,
                    strength=80,
                    reputation=70,
                    business_fit=90,
                    data_protection=85,
                ),
            ),
            (
                "SignAgreement",
                partners.SignAgreement,
                partner_pb2.SignAgreementRequest(
                    partner_id=partner_id,
                    kind=common_pb2.AGREEMENT_KIND_DATA_SHARING,
                    effective_from=_ago(days=1),
                    confidentiality=True,
                    permitted_purposes=PURPOSES,
                    permitted_data_categories=ALL_CATEGORIES,
                    document_sha256="ab" * 32,
                ),
            ),
            (
                "ActivatePartner",
                partners.ActivatePartner,
                partner_pb2.ActivatePartnerRequest(partner_id=partner_id),
            ),
        ]
        for name, rpc, request in steps:
            if self.send.command(name, rpc, request) is None:
                return
        with self.world.lock:
            self.world.partners.append(partner_id)

    def link_customer(self) -> None:
        customer_id, partner_id = self._customer(), self._partner()
        if customer_id is None or partner_id is None:
            return
        request = partner_pb2.LinkCustomerRequest(
            partner_id=partner_id, customer_id=customer_id, role=common_pb2.LINK_ROLE_CO_SELL
        )
        self.send.command("LinkCustomer", self.client.partners.LinkCustomer, request)

    def review_partner(self) -> None:
        partner_id = self._partner()
        if partner_id is None:
            return
        with self.world.lock:
            self.world.periods[partner_id] += 1
            quarter = self.world.periods[partner_id]
        request = partner_pb2.ReviewPartnerPerformanceRequest(
            partner_id=partner_id,
            period=f"{2000 + (quarter - 1) // 4}-Q{(quarter - 1) % 4 + 1}",
            revenue=common_pb2.Money(amount=f"{self.rng.randint(0, 99999)}.00", currency="CNY"),
            new_customers=self.rng.randint(0, 9),
            satisfaction=str(self.rng.randint(0, 10)),
            complaints=self.rng.randint(0, 3),
        )
        self.send.command(
            "ReviewPartnerPerformance", self.client.partners.ReviewPartnerPerformance, request
        )

    def suspend_or_reinstate(self) -> None:
        partner_id = self._partner()
        if partner_id is None:
            return
        if self.rng.random() < 0.5:
            self.send.command(
                "SuspendPartner",
                self.client.partners.SuspendPartner,
                partner_pb2.SuspendPartnerRequest(partner_id=partner_id, reason="late report"),
            )
        else:
            self.send.command(
                "ReinstatePartner",
                self.client.partners.ReinstatePartner,
                partner_pb2.ReinstatePartnerRequest(partner_id=partner_id, reason="resolved"),
            )

    # -------------------------------------------------------------------- reads

    def read_back(self) -> None:
        """Read-your-writes: a customer read at an acknowledged position is at least that new."""
        with self.tally.lock:
            recent = list(self.tally.acknowledged.items())[-50:]
            if not recent:
                return
            request_id, ack = self.rng.choice(recent)
            of_partner = self.tally.sent[request_id] in PARTNER_COMMANDS
            self.tally.reads += 1
        try:
            if of_partner:
                partner = self.client.partners.GetPartner(
                    partner_pb2.GetPartnerRequest(
                        partner_id=ack.aggregate_id, min_position=ack.position
                    ),
                    timeout=TIMEOUT,
                ).partner
                version = partner.version
            else:
                customer = self.client.customers.GetCustomer(
                    customer_pb2.GetCustomerRequest(
                        customer_id=ack.aggregate_id, min_position=ack.position
                    ),
                    timeout=TIMEOUT,
                ).customer
                version = customer.version
        except grpc.RpcError as error:
            with self.tally.lock:
                self.tally.errors[error.code().name] += 1
            if error.code() not in RETRYABLE:
                self.tally.problem(f"read of {ack.aggregate_id}: {error.code().name}")
            return
        if version < ack.version:
            self.tally.problem(
                f"read of {ack.aggregate_id} at position {ack.position}: version {version} "
                f"is older than the acknowledged {ack.version}"
            )


# ------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Verdict:
    check: str
    ok: bool
    detail: str


@dataclass
class Report:
    store: str
    clients: int
    seconds: float
    tally: Tally
    events: int = 0
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.verdicts) and all(v.ok for v in self.verdicts)

    def lines(self) -> list[str]:
        t = self.tally
        rate = len(t.acknowledged) / self.seconds if self.seconds else 0.0
        by_kind = Counter(t.sent[r] for r in t.acknowledged)
        out = [
            f"soak: {self.store}, {self.clients} clients, {self.seconds:.0f} s",
            f"commands: {len(t.sent)} sent, {len(t.acknowledged)} acknowledged "
            f"({rate:.1f}/s), {len(t.refused)} refused, {len(t.unknown)} without answer",
            f"calls: {t.calls} ({t.calls / self.seconds if self.seconds else 0:.1f}/s) "
            f"and {t.reads} reads; retries {t.retries} (resent after the answer "
            f"{t.resends}, twice at once {t.concurrent}, after a hasty deadline {t.hasty}); "
            f"replayed answers {t.replayed}; same id other payload {t.other_payload}",
            "errors by status: "
            + (", ".join(f"{k} {v}" for k, v in sorted(t.errors.items())) or "none"),
            "acknowledged by command: " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())),
            f"log: {self.events} events",
        ]
        out += [f"check {'ok  ' if v.ok else 'FAIL'} {v.check}: {v.detail}" for v in self.verdicts]
        out.append("soak: " + ("all checks passed" if self.ok else "FAILED"))
        return out


def _verdict(check: str, failures: list[str], detail: str) -> Verdict:
    if failures:
        more = f" (+{len(failures) - 5} more)" if len(failures) > 5 else ""
        return Verdict(check, False, "; ".join(failures[:5]) + more)
    return Verdict(check, True, detail)


def _read_log(client: Client) -> list[audit_pb2.Event]:
    events: list[audit_pb2.Event] = []
    for batch in client.audit.ReadEvents(audit_pb2.ReadEventsRequest(batch_size=2000), timeout=300):
        events.extend(batch.events)
    return events


def _quiet_head(client: Client, at_least: int) -> audit_pb2.GetDigestResponse:
    """The digest once the trail has reached ``at_least`` and stopped moving."""
    deadline = time.monotonic() + 300
    while True:
        try:
            digest = client.audit.GetDigest(
                audit_pb2.GetDigestRequest(min_position=at_least), timeout=60
            )
            break
        except grpc.RpcError as error:  # NOT_CAUGHT_UP: the trail is still catching up
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
    while True:
        time.sleep(1.0)
        again = client.audit.GetDigest(audit_pb2.GetDigestRequest(), timeout=60)
        if again.position == digest.position:
            return digest
        digest = again


def check_log(tally: Tally, events: list[audit_pb2.Event]) -> list[Verdict]:
    by_request: dict[str, list[audit_pb2.Event]] = {}
    for event in events:
        by_request.setdefault(event.request_id, []).append(event)
    exactly_once: list[str] = []
    for request_id, ack in tally.acknowledged.items():
        found = by_request.get(request_id, [])
        shape = [(e.aggregate_id, e.version, e.position) for e in found]
        if shape != [(ack.aggregate_id, ack.version, ack.position)]:
            exactly_once.append(
                f"{tally.sent[request_id]} {request_id} acknowledged as {ack}, in the log as "
                f"{shape}"
            )
    refused_absent = [
        f"{tally.sent[r]} {r} refused ({code.name}) yet in the log"
        for r, code in tally.refused.items()
        if r in by_request
    ]
    unknown_once = [
        f"{tally.sent[r]} {r} (no answer) in the log {len(by_request[r])} times"
        for r in tally.unknown
        if len(by_request.get(r, [])) > 1
    ]
    strangers = [
        f"{len(found)} event(s) with request id {r!r}, never sent"
        for r, found in by_request.items()
        if r not in tally.sent
    ]
    unknown_recorded = sum(1 for r in tally.unknown if r in by_request)
    return [
        _verdict(
            "every acknowledged command is in the log exactly once",
            exactly_once,
            f"{len(tally.acknowledged)} acknowledged, each one event at its version and position",
        ),
        _verdict(
            "refused commands recorded nothing",
            refused_absent,
            f"{len(tally.refused)} refused, none in the log",
        ),
        _verdict(
            "commands without an answer are in the log at most once",
            unknown_once,
            f"{len(tally.unknown)} without answer, {unknown_recorded} of them recorded once",
        ),
        _verdict(
            "every event comes from a command sent",
            strangers,
            f"{len(events)} events, {len(by_request)} request ids",
        ),
    ]


def check_read_models(store: StoreConfig, key: MasterKey, head: int) -> Verdict:
    """Every read model as the server left it equals its rebuild from position 0."""
    app = build_accord(store, master_key=key)
    try:
        views = build_read_models(app, store)
        failures: list[str] = []
        behind: list[str] = []
        compared = 0
        for projection in all_projections():
            state = views.views.state(projection.name)
            if state is None:
                failures.append(f"{projection.name} was never built")
                continue
            generation, _ = state
            position = views.views.position(projection.name, generation) or 0
            if position < head:
                behind.append(f"{projection.name} at {position}")
                views.runner.catch_up()
            live = views.views.dump(projection.name, generation)
            rebuilt = views.runner.rebuild(projection.name)
            if rebuilt is None:
                failures.append(f"{projection.name}: the rebuild did not finish")
                continue
            again = views.views.dump(projection.name, rebuilt)
            if again != live:
                differ = sorted(
                    str(k)
                    for k in live.keys() ^ again.keys()
                    | {k for k in live.keys() & again.keys() if live[k] != again[k]}
                )
                failures.append(
                    f"{projection.name}: {len(differ)} documents differ, e.g. {differ[:3]}"
                )
            compared += len(live)
        detail = f"{len(all_projections())} read models, {compared} documents equal their rebuild"
        if behind:
            detail += f" (caught up first: {', '.join(behind)})"
        return _verdict("every read model equals a rebuild", failures, detail)
    finally:
        app.close()


# --------------------------------------------------------------------- soak


@contextmanager
def fresh_store(kind: str, workdir: Path) -> Iterator[StoreConfig]:
    """An empty store: a SQLite file in ``workdir``, or a PostgreSQL schema dropped after."""
    if kind == "sqlite":
        yield sqlite_store(workdir)
        return
    with postgres_schema() as schema:
        yield postgres_store(schema)


def soak(
    kind: str,
    clients: int,
    seconds: float,
    workdir: Path,
    *,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run the soak on a fresh store of ``kind`` and check what it left; see the module doc."""
    if not 1 <= clients <= MAX_CLIENTS:
        raise ValueError(f"clients must be 1..{MAX_CLIENTS}")
    if not 0 < seconds <= MAX_MINUTES * 60:
        raise ValueError(f"the soak runs for at most {MAX_MINUTES:.0f} minutes")
    say = progress or (lambda _: None)
    workdir.mkdir(parents=True, exist_ok=True)
    tally, world = Tally(), World()
    key = MasterKey.generate()
    with fresh_store(kind, workdir) as store:
        served: Served = serve(store, workdir, master_key=key)
        try:
            say(f"serving on {served.address} ({store.safe_url}); {clients} clients")
            stop = threading.Event()
            workers = [
                SoakClient(served.client("admin"), world, tally, seed * 1000 + n, stop)
                for n in range(clients)
            ]
            threads = [
                threading.Thread(target=w.run, name=f"soak-{n}") for n, w in enumerate(workers)
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            until = started + seconds
            while (left := until - time.monotonic()) > 0:
                time.sleep(min(left, 10.0))
                say(f"{len(tally.acknowledged)} acknowledged, {sum(tally.errors.values())} errors")
            stop.set()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            report = Report(kind, clients, elapsed, tally)

            checker = served.client("admin")
            highest = max((a.position for a in tally.acknowledged.values()), default=0)
            digest = _quiet_head(checker, highest)
            events = _read_log(checker)
            report.events = len(events)
            report.verdicts += check_log(tally, events)
            report.verdicts.append(
                _verdict(
                    "retries answered with the first result",
                    list(tally.problems),
                    f"{tally.retries} retries, {tally.replayed} replayed answers",
                )
            )
            verified = checker.audit.VerifyLog(
                audit_pb2.VerifyLogRequest(position=digest.position, hash=digest.hash),
                timeout=120,
            )
            last = events[-1] if events else None
            chain: list[str] = []
            if not verified.ok:
                chain.append(f"VerifyLog: first mismatch at {verified.first_mismatch_position}")
            if last is None or (last.position, last.hash) != (digest.position, digest.hash):
                chain.append(f"the digest {digest.position} is not the last event's")
            report.verdicts.append(
                _verdict(
                    "GetDigest + VerifyLog",
                    chain,
                    f"digest at {digest.position} is the last event's and verifies",
                )
            )
        finally:
            code, _ = served.stop()
        report.verdicts.append(
            _verdict("the server stopped cleanly", [] if code == 0 else [f"exit {code}"], "exit 0")
        )
        stored = stored_event_count(store)
        report.verdicts.append(
            _verdict(
                "the log read over the API is the stored log",
                [] if stored == len(events) else [f"{stored} stored, {len(events)} read"],
                f"{stored} events",
            )
        )
        say("rebuilding every read model")
        report.verdicts.append(check_read_models(store, key, digest.position))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="where the server's files go (default: temp)")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be 1..{MAX_CLIENTS}")
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be more than 0 and at most {MAX_MINUTES:.0f}")

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="accord-soak-") as temporary:
        workdir = args.workdir or Path(temporary)
        report = soak(
            args.store, args.clients, args.minutes * 60, workdir, seed=args.seed, progress=progress
        )
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
