"""Property: for any valid command sequence, the stored aggregate equals the in-memory one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.service import Accord
from application.settings import Settings
from domain.aggregate import Aggregate, EventMeta
from domain.customer import Customer
from domain.errors import DomainError
from domain.partner import Partner
from domain.values import (
    AgreementKind,
    Channel,
    ContactFunction,
    ContactLayer,
    CustomerKind,
    DataCategory,
    Direction,
    InteractionKind,
    LinkRole,
    PartnerKind,
    PotentialValue,
    Purpose,
    Tier,
)
from tests.conftest import AccordFactory

T0 = datetime(2025, 6, 1, tzinfo=UTC)
NAMES = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "Zs")), min_size=1, max_size=12
)
CONTACT_SLOTS = 4

customer_ops = st.one_of(
    st.tuples(st.just("profile"), st.sampled_from(["industry", "region", "source"]), NAMES),
    st.tuples(st.just("add_contact"), st.integers(0, CONTACT_SLOTS - 1), NAMES),
    st.tuples(st.just("remove_contact"), st.integers(0, CONTACT_SLOTS - 1)),
    st.tuples(st.just("purchase"), st.decimals(1, 10_000, places=2), st.integers(0, 1000)),
    st.tuples(st.just("refund"), st.decimals(1, 500, places=2), st.integers(0, 1000)),
    st.tuples(st.just("survey"), st.integers(0, 10), st.integers(0, CONTACT_SLOTS - 1)),
    st.tuples(st.just("tier"), st.sampled_from(list(Tier))),
)

partner_ops = st.one_of(
    st.tuples(st.just("evaluate"), st.integers(0, 100)),
    st.tuples(st.just("sign"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("terminate_agreement"), st.integers(0, 2)),
    st.tuples(st.sampled_from(["activate", "suspend", "reinstate", "terminate"])),
    st.tuples(st.just("review"), st.integers(2020, 2026), st.integers(1, 4)),
    st.tuples(st.just("tier"), st.sampled_from(list(Tier))),
    st.tuples(st.just("link"), st.integers(0, 2), st.sampled_from(list(LinkRole))),
    st.tuples(st.just("unlink"), st.integers(0, 2)),
)

SLOTS = [UUID(int=i + 1) for i in range(CONTACT_SLOTS)]


def _apply_customer(customer: Customer, op: tuple[Any, ...], meta: EventMeta) -> None:
    kind = op[0]
    if kind == "profile":
        customer.update_profile({op[1]: op[2]}, meta)
    elif kind == "add_contact":
        customer.add_contact(
            SLOTS[op[1]],
            name=op[2],
            email=None,
            phone=None,
            title=None,
            layer=ContactLayer.MANAGEMENT,
            function=ContactFunction.USER,
            influence=2,
            meta=meta,
        )
    elif kind == "remove_contact":
        customer.remove_contact(SLOTS[op[1]], meta)
    elif kind in ("purchase", "refund", "survey"):
        interaction = InteractionKind.SURVEY if kind == "survey" else InteractionKind(kind.upper())
        customer.record_interaction(
            uuid4(),
            kind=interaction,
            channel=Channel.WEB,
            direction=Direction.INBOUND,
            occurred_at=meta.recorded_at - timedelta(hours=op[2] if kind != "survey" else 1),
            summary="",
            amount=op[1] if kind != "survey" else None,
            currency="CNY" if kind != "survey" else None,
            satisfaction=op[1] if kind == "survey" else None,
            partner_id=None,
            contact_ids=(SLOTS[op[2]],) if kind == "survey" else (),
            meta=meta,
        )
    elif kind == "tier":
        customer.change_tier(op[1], reason="property", effective_from=meta.recorded_at, meta=meta)


def _apply_partner(partner: Partner, op: tuple[Any, ...], meta: EventMeta) -> None:
    kind = op[0]
    if kind == "evaluate":
        partner.evaluate(
            strength=op[1],
            reputation=op[1],
            business_fit=50,
            data_protection=op[1],
            notes="",
            meta=meta,
        )
    elif kind == "sign":
        partner.sign_agreement(
            SLOTS[op[1]],
            kind=AgreementKind.COOPERATION,
            effective_from=meta.recorded_at - timedelta(days=1),
            effective_to=None,
            confidentiality=op[2],
            permitted_purposes=(Purpose.SUPPORT,),
            permitted_data_categories=(DataCategory.CONTACT,),
            document_sha256="b" * 64,
            meta=meta,
        )
    elif kind == "terminate_agreement":
        partner.terminate_agreement(SLOTS[op[1]], reason="end", meta=meta)
    elif kind in ("activate", "suspend", "reinstate", "terminate"):
        getattr(partner, kind)(reason="property", meta=meta)
    elif kind == "review":
        partner.review_performance(
            period=f"{op[1]}-Q{op[2]}",
            revenue=Decimal(op[1]),
            new_customers=op[2],
            satisfaction=Decimal("7.5"),
            complaints=0,
            meta=meta,
        )
    elif kind == "tier":
        partner.change_tier(op[1], reason="property", meta=meta)
    elif kind == "link":
        partner.link_customer(SLOTS[op[1]], role=op[2], meta=meta)
    elif kind == "unlink":
        partner.unlink_customer(SLOTS[op[1]], meta=meta)


def _run(app: Accord, aggregate: Aggregate, ops: list[tuple[Any, ...]], apply: Any) -> None:
    app.log.save(aggregate)
    for step, op in enumerate(ops):
        meta = EventMeta(
            actor="p",
            request_id=f"r{step}",
            correlation_id="c",
            recorded_at=T0 + timedelta(minutes=step),
        )
        try:
            apply(aggregate, op, meta)
        except DomainError:
            assert not aggregate.pending_events
            continue
        app.log.save(aggregate)
    reloaded = app.log.load(aggregate.id)
    assert reloaded.state() == aggregate.state()
    assert (
        app.log.load_as_of_time(aggregate.id, T0 + timedelta(days=365)).state() == aggregate.state()
    )
    app.close()  # each example has its own connections; give them back now


PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(ops=st.lists(customer_ops, max_size=25))
def test_customers_rehydrate_to_the_in_memory_state(
    make_accord: AccordFactory, ops: list[tuple[Any, ...]]
) -> None:
    app = make_accord(settings=Settings(snapshot_interval=4))
    meta = EventMeta(
        actor="p", request_id="r", correlation_id="c", recorded_at=T0 - timedelta(days=1)
    )
    customer = Customer.register(
        uuid4(),
        external_ref="p",
        display_name="Prop",
        kind=CustomerKind.PERSON,
        industry="I",
        region="R",
        size=None,
        source="S",
        acquired_via_partner_id=None,
        potential_value=PotentialValue.LOW,
        meta=meta,
    )
    _run(app, customer, ops, _apply_customer)


@PROPERTY
@given(ops=st.lists(partner_ops, max_size=25))
def test_partners_rehydrate_to_the_in_memory_state(
    make_accord: AccordFactory, ops: list[tuple[Any, ...]]
) -> None:
    app = make_accord(settings=Settings(snapshot_interval=4))
    meta = EventMeta(
        actor="p", request_id="r", correlation_id="c", recorded_at=T0 - timedelta(days=1)
    )
    partner = Partner.register(
        uuid4(),
        external_ref="p",
        name="Prop",
        kind=PartnerKind.RESELLER,
        regions=("R",),
        capabilities=(),
        meta=meta,
    )
    _run(app, partner, ops, _apply_partner)
