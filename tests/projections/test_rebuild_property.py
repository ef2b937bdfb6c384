"""Property: for any command history, each view built incrementally equals its rebuild."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application import commands as c
from application.errors import ApplicationError, DomainError
from application.service import Accord
from projections.catalog import all_projections
from tests.builders import CTX, active_partner, grant, new_customer, purchase, share
from tests.conftest import AccordFactory, ReadModelsFactory
from tests.support import FakeClock

ops = st.lists(
    st.one_of(
        st.tuples(st.just("customer")),
        st.tuples(st.just("partner")),
        st.tuples(st.just("purchase"), st.integers(0, 9), st.integers(1, 500), st.integers(0, 800)),
        st.tuples(st.just("refund"), st.integers(0, 9), st.integers(1, 50)),
        st.tuples(st.just("survey"), st.integers(0, 9), st.integers(0, 10)),
        st.tuples(st.just("contact"), st.integers(0, 9)),
        st.tuples(
            st.just("tier"), st.integers(0, 9), st.sampled_from(["STRATEGIC", "KEY", "STANDARD"])
        ),
        st.tuples(
            st.just("potential"), st.integers(0, 9), st.sampled_from(["HIGH", "MEDIUM", "LOW"])
        ),
        st.tuples(st.just("consent"), st.integers(0, 9), st.integers(0, 3)),
        st.tuples(st.just("withdraw"), st.integers(0, 9), st.integers(0, 400)),
        st.tuples(st.just("share"), st.integers(0, 9), st.integers(0, 3)),
        st.tuples(st.just("suspend"), st.integers(0, 3)),
        st.tuples(st.just("review"), st.integers(0, 3), st.integers(1, 4)),
        st.tuples(st.just("link"), st.integers(0, 3), st.integers(0, 9)),
        st.tuples(st.just("erase"), st.integers(0, 9)),
        st.tuples(st.just("advance"), st.integers(1, 90)),
        st.tuples(
            st.just("project"),
        ),
    ),
    max_size=40,
)


PARTNER_OPS = ("suspend", "review", "link")


class World:
    """Turns generated ops into commands against whatever customers and partners exist."""

    def __init__(self, app: Accord, clock: FakeClock) -> None:
        self.app, self.clock = app, clock
        self.customers: list[UUID] = []
        self.partners: list[UUID] = []
        self.consents: dict[UUID, list[UUID]] = {}

    @staticmethod
    def pick(items: list[UUID], index: int) -> UUID | None:
        return items[index % len(items)] if items else None

    def run(self, op: tuple[Any, ...]) -> None:
        kind, now = op[0], self.clock.now()
        if kind == "customer":
            self.customers.append(new_customer(self.app))
        elif kind == "partner":
            self.partners.append(active_partner(self.app, now))
        elif kind == "advance":
            self.clock.advance(days=op[1])
        elif kind in PARTNER_OPS:
            partner = self.pick(self.partners, op[1])
            if partner is not None:
                self.on_partner(partner, op)
        else:
            customer = self.pick(self.customers, op[1])
            if customer is not None:
                self.on_customer(customer, op)

    def on_customer(self, customer: UUID, op: tuple[Any, ...]) -> None:
        app, now, kind = self.app.customers, self.clock.now(), op[0]
        if kind == "purchase":
            app.record_interaction(purchase(customer, str(op[2]), now - timedelta(days=op[3])), CTX)
        elif kind == "refund":
            app.record_interaction(purchase(customer, str(op[2]), now, kind="REFUND"), CTX)
        elif kind == "survey":
            app.record_interaction(
                c.RecordInteraction(
                    customer_id=customer,
                    kind="SURVEY",
                    channel="EMAIL",
                    direction="INBOUND",
                    occurred_at=now,
                    satisfaction=op[2],
                ),
                CTX,
            )
        elif kind == "contact":
            contact = c.AddContact(
                customer_id=customer,
                name="Ma Lin",
                email="ma.lin@example.cn",
                layer="DECISION",
                function="FINANCE",
            )
            app.add_contact(contact, CTX)
        elif kind == "tier":
            app.change_tier(c.ChangeTier(customer_id=customer, to_tier=op[2], reason="p"), CTX)
        elif kind == "potential":
            app.update_profile(
                c.UpdateCustomerProfile(customer_id=customer, potential_value=op[2]), CTX
            )
        elif kind == "consent" and (partner := self.pick(self.partners, op[2])):
            expires = now + timedelta(days=200)
            consent = app.grant_consent(grant(customer, partner, now, expires_at=expires), CTX)
            assert consent.entity_id is not None
            self.consents.setdefault(customer, []).append(consent.entity_id)
        elif kind == "share" and (partner := self.pick(self.partners, op[2])):
            app.share_data(share(customer, partner), CTX)
        elif kind == "withdraw" and (consents := self.consents.get(customer)):
            withdrawal = c.WithdrawConsent(
                customer_id=customer,
                consent_id=consents.pop(),
                channel="LETTER",
                expressed_at=now - timedelta(minutes=op[2]),
            )
            app.withdraw_consent(withdrawal, CTX)
        elif kind == "erase":
            app.erase(c.EraseCustomerData(customer_id=customer, reason="request"), CTX)

    def on_partner(self, partner: UUID, op: tuple[Any, ...]) -> None:
        app, kind = self.app.partners, op[0]
        if kind == "suspend":
            app.suspend(c.SuspendPartner(partner_id=partner, reason="p"), CTX)
        elif kind == "review":
            review = c.ReviewPartnerPerformance(
                partner_id=partner,
                period=f"2026-Q{op[2]}",
                revenue=Decimal(1000),
                currency="CNY",
                new_customers=2,
                satisfaction=Decimal(8),
                complaints=op[2],
            )
            app.review_performance(review, CTX)
        elif kind == "link" and (customer := self.pick(self.customers, op[2])):
            app.link_customer(
                c.LinkCustomer(partner_id=partner, customer_id=customer, role="CO_SELL"), CTX
            )


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=ops)
def test_every_view_built_incrementally_equals_its_rebuild(
    make_accord: AccordFactory, make_read_models: ReadModelsFactory, history: list[tuple[Any, ...]]
) -> None:
    clock = FakeClock()
    app = make_accord(clock=clock)
    views = make_read_models(app, batch_size=7)
    world = World(app, clock)
    for seed in [("customer",)] * 3 + [("partner",)] * 2:
        world.run(seed)
    for op in history:
        if op[0] == "project":
            views.runner.step()
            continue
        with contextlib.suppress(DomainError, ApplicationError):
            world.run(op)
    views.runner.catch_up()

    for projection in all_projections():
        generation, _ = views.views.state(projection.name) or (0, 0)
        live = views.views.dump(projection.name, generation)
        rebuilt = views.runner.rebuild(projection.name)
        assert rebuilt is not None
        assert views.views.dump(projection.name, rebuilt) == live, projection.name
    app.close()
