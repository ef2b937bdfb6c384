"""Long histories, fast: events decided by the domain in memory and saved many per transaction.

Going through the use cases costs a command (a transaction, a journal row) per
event, about 500 a second here. These builders register customers and
partners through the use cases (so data keys, claims and the journal are
real), then let the domain decide many interactions and save them in one go,
as ``tests/builders.bulk_purchases`` does. The stored events are the very
ones the command path would have written; snapshots land at the same versions
too, because every save ends on a multiple of the snapshot interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from uuid import UUID, uuid4

from application import commands as c
from application.context import CallContext
from application.personal_data import MasterKey
from application.service import Accord
from domain.aggregate import EventMeta
from domain.customer import Customer
from domain.values import Channel, Direction, InteractionKind
from tests import builders

CTX = CallContext(actor="bench-loader", correlation_id="bench")
SPAN = timedelta(days=3 * 365)
"""Interactions are spread over the three years before now."""

# One in ten purchases; the rest a mix, some with a (personal, sealed) summary.
_MIX: tuple[tuple[InteractionKind, Channel, str], ...] = (
    (InteractionKind.PURCHASE, Channel.WEB, ""),
    (InteractionKind.CALL, Channel.PHONE, "called about the renewal"),
    (InteractionKind.EMAIL, Channel.EMAIL, ""),
    (InteractionKind.PURCHASE, Channel.IN_PERSON, ""),
    (InteractionKind.MEETING, Channel.IN_PERSON, "quarterly review with the buyer"),
    (InteractionKind.SUPPORT, Channel.PHONE, ""),
    (InteractionKind.PURCHASE, Channel.MOBILE_APP, ""),
    (InteractionKind.CHAT, Channel.MESSAGING, ""),
    (InteractionKind.SURVEY, Channel.EMAIL, ""),
    (InteractionKind.EMAIL, Channel.EMAIL, "sent the new catalogue"),
)


def register_customer(app: Accord, name: str = "Hangzhou Lakeside Trading Co.") -> UUID:
    command = c.RegisterCustomer(
        external_ref=f"BENCH-{uuid4().hex[:12]}",
        display_name=name,
        kind="ORGANISATION",
        industry="RETAIL",
        region="EAST",
        size="MEDIUM",
        source="TRADE_FAIR",
        potential_value="HIGH",
    )
    return app.customers.register(command, CTX).aggregate_id


def active_partner(app: Accord) -> UUID:
    """A partner that may receive the benchmarks' shares (marketing, purchase history)."""
    return builders.active_partner(
        app,
        app.clock.now(),
        purposes=("MARKETING", "JOINT_SERVICE"),
        categories=("IDENTITY", "CONTACT", "PURCHASE_HISTORY"),
    )


def grant_consent(app: Accord, customer_id: UUID, partner_id: UUID) -> None:
    app.customers.grant_consent(
        c.GrantConsent(
            customer_id=customer_id,
            partner_id=partner_id,
            purpose="MARKETING",
            data_categories=["IDENTITY", "CONTACT"],
            capture={
                "method": "WEB_FORM",
                "source": "customer-portal",
                "evidence_ref": "evidence/bench/0001",
                "notice_version": "privacy-2026-01",
            },
        ),
        CTX,
    )


def add_interactions(app: Accord, customer_id: UUID, count: int, *, chunk: int = 10_000) -> int:
    """Append ``count`` interactions to a customer; returns how many events were saved.

    Saved whenever the version reaches a multiple of ``chunk`` (itself a
    multiple of the snapshot interval) and at the end, so snapshots are taken
    at the versions one command at a time would have produced.
    """
    if chunk % app.log.snapshot_interval:
        raise ValueError("chunk must be a multiple of the snapshot interval")
    now = app.clock.now()
    meta = EventMeta(
        actor="bench-loader", request_id=f"bulk-{uuid4()}", correlation_id="bench", recorded_at=now
    )
    customer = app.executor.load(Customer, customer_id)
    step = SPAN / max(count, 1)
    for n in range(count):
        kind, channel, summary = _MIX[n % len(_MIX)]
        customer.record_interaction(
            uuid4(),
            kind=kind,
            channel=channel,
            direction=Direction.INBOUND if n % 3 else Direction.OUTBOUND,
            occurred_at=now - SPAN + step * n,
            summary=summary,
            amount=Decimal(100 + n % 900) if kind is InteractionKind.PURCHASE else None,
            currency="CNY" if kind is InteractionKind.PURCHASE else None,
            satisfaction=(n % 11) if kind is InteractionKind.SURVEY else None,
            partner_id=None,
            contact_ids=(),
            meta=meta,
        )
        if customer.version % chunk == 0:
            app.log.save(customer)
    if customer.pending_events:
        app.log.save(customer)
    return count


def populate(
    app: Accord, customers: int, interactions_each: int, partner_ids: Sequence[UUID]
) -> int:
    """``customers`` customers with ``interactions_each`` interactions; every tenth consents.

    Returns how many events were recorded.
    """
    events = 0
    for n in range(customers):
        customer_id = register_customer(app)
        events += 1 + add_interactions(app, customer_id, interactions_each)
        if partner_ids and n % 10 == 0:
            grant_consent(app, customer_id, partner_ids[n // 10 % len(partner_ids)])
            events += 1
    return events


def _populate_part(url: str, key: str, customers: int, each: int, partner_ids: list[str]) -> int:
    from adapters.store import store_config
    from adapters.wiring import build_accord

    config = store_config(url)  # the tables exist: two workers creating them would collide
    config = replace(config, env={**config.env, "CREATE_TABLE": "n"})
    with build_accord(config, master_key=MasterKey.from_base64(key)) as app:
        return populate(app, customers, each, [UUID(p) for p in partner_ids])


def generate(
    url: str, key: MasterKey, customers: int, each: int, partners: int, *, workers: int = 2
) -> int:
    """Populate the (empty) store at ``url`` using ``workers`` processes; events recorded."""
    from adapters.store import store_config
    from adapters.wiring import build_accord
    from bench.common import in_child, spawning_pool

    with build_accord(store_config(url), master_key=key) as app:
        partner_ids = [str(active_partner(app)) for _ in range(partners)]
    events = 4 * partners
    shares = [customers // workers + (i < customers % workers) for i in range(workers)]
    with spawning_pool(workers) as pool:
        parts = [
            pool.submit(in_child, _populate_part, url, key.to_base64(), n, each, partner_ids)
            for n in shares
        ]
        events += sum(part.result() for part in parts)
    return events
