"""InsightService over the wire: analyses, customer lists and scorecards from the read models.

The server is shared by the module, so RFM scores (which rank against
everyone who bought) are not pinned here; what does not depend on the other
customers is: lifecycle stages, the LOST segment, frequency, monetary, CLV,
and how counts move when this test adds a customer. Every read passes the
last write's position as ``min_position``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.grpc.generated.accord.v1 import common_pb2, customer_pb2, insight_pb2, partner_pb2
from tests.e2e.harness import Client, Served, field_violations, pages, rpc_error
from tests.e2e.wire import TIMEOUT, active_partner, grant, purchase, register_customer, share, ts

NOW = datetime.now(UTC)
"""One as_of for the module: answers compared with each other are judged at the same moment.

(Writes use the real clock, so a run that crosses midnight UTC can see a customer as
not yet known; that is the one way these tests can be flaky.)
"""

QUADRANT_TIER = {
    insight_pb2.VALUE_QUADRANT_STAR: common_pb2.TIER_STRATEGIC,
    insight_pb2.VALUE_QUADRANT_CASH_COW: common_pb2.TIER_KEY,
    insight_pb2.VALUE_QUADRANT_GROWTH: common_pb2.TIER_KEY,
    insight_pb2.VALUE_QUADRANT_MAINTAIN: common_pb2.TIER_STANDARD,
}


@pytest.fixture(scope="module")
def writer(served: Served) -> Client:
    return served.client("writer")


@pytest.fixture(scope="module")
def reader(served: Served) -> Client:
    return served.client("reader")


def insight(client: Client, **fields: Any) -> insight_pb2.GetCustomerInsightResponse:
    values: dict[str, Any] = {"as_of": ts(NOW), **fields}
    return client.insight.GetCustomerInsight(
        insight_pb2.GetCustomerInsightRequest(**values), timeout=TIMEOUT
    )


def listed(
    client: Client, min_position: int, **filters: Any
) -> dict[str, insight_pb2.CustomerSummary]:
    """Every customer a ListCustomers query returns, over all its pages, by id."""
    values: dict[str, Any] = {"as_of": ts(NOW), **filters}
    responses = pages(
        lambda token: client.insight.ListCustomers(
            insight_pb2.ListCustomersRequest(page_token=token, min_position=min_position, **values),
            timeout=TIMEOUT,
        )
    )
    return {c.customer_id: c for r in responses for c in r.customers}


def lost_customer(client: Client, display_name: str = "Zhao Lei") -> tuple[str, int]:
    """A customer whose only purchase lies before the 365-day window: LOST and CHURNED."""
    customer_id = register_customer(client, display_name).customer_id
    return customer_id, purchase(client, customer_id, "300.00", days_ago=400).position


# ------------------------------------------------------ GetCustomerInsight


def test_a_new_buyer_has_its_stage_stats_rfm_and_clv(writer: Client, reader: Client) -> None:
    customer_id = register_customer(writer).customer_id
    purchase(writer, customer_id, "1000.00", days_ago=10)
    last = purchase(writer, customer_id, "500.00", days_ago=5).position

    answer = insight(reader, customer_id=customer_id, min_position=last)
    one_year = insight(reader, customer_id=customer_id, lifespan_years=1, min_position=last)

    assert answer.customer_id == customer_id
    assert answer.lifecycle_stage == insight_pb2.LIFECYCLE_STAGE_NEW
    assert answer.frequency == 2
    assert Decimal(answer.monetary) == Decimal("1500.00")
    assert answer.recency_days == 5
    assert answer.HasField("rfm")
    assert all(1 <= score <= 5 for score in (answer.rfm.r, answer.rfm.f, answer.rfm.m))
    assert answer.segment not in (insight_pb2.SEGMENT_UNSPECIFIED, insight_pb2.SEGMENT_LOST)
    # average order 750 x 2 purchases a year x 3 years (the default lifespan)
    assert answer.clv == "4500.00"
    assert one_year.clv == "1500.00"
    assert answer.currency == "CNY"
    assert answer.assigned_tier == common_pb2.TIER_STANDARD
    assert answer.recommended_tier == QUADRANT_TIER[answer.value_quadrant]
    assert answer.as_of == ts(NOW)
    assert answer.position >= last


def test_a_prospect_has_no_segment_no_rfm_and_zero_clv(writer: Client, reader: Client) -> None:
    registered = register_customer(writer)

    answer = insight(reader, customer_id=registered.customer_id, min_position=registered.position)

    assert answer.lifecycle_stage == insight_pb2.LIFECYCLE_STAGE_PROSPECT
    assert answer.segment == insight_pb2.SEGMENT_UNSPECIFIED
    assert not answer.HasField("rfm")
    assert not answer.HasField("recency_days")
    assert answer.frequency == 0
    assert answer.clv == "0.00"
    assert answer.value_quadrant == insight_pb2.VALUE_QUADRANT_MAINTAIN


def test_the_analysis_travels_in_time(writer: Client, reader: Client) -> None:
    customer_id, last = lost_customer(writer)

    today = insight(reader, customer_id=customer_id, min_position=last)
    back_then = insight(
        reader, customer_id=customer_id, as_of=ts(NOW - timedelta(days=300)), min_position=last
    )
    before_anything = rpc_error(
        lambda: insight(
            reader, customer_id=customer_id, as_of=ts(NOW - timedelta(days=500)), min_position=last
        )
    )

    assert today.lifecycle_stage == insight_pb2.LIFECYCLE_STAGE_CHURNED
    assert today.segment == insight_pb2.SEGMENT_LOST
    assert not today.HasField("rfm")
    assert today.recency_days == 400
    assert back_then.lifecycle_stage == insight_pb2.LIFECYCLE_STAGE_ACTIVE
    assert back_then.recency_days == 100
    assert back_then.HasField("rfm")
    assert before_anything.code() == grpc.StatusCode.NOT_FOUND

    bought = (NOW - timedelta(days=400)).date()
    history = [(change.since.ToDatetime().date(), change.stage) for change in today.stage_history]
    assert history == [
        (bought, insight_pb2.LIFECYCLE_STAGE_NEW),
        (bought + timedelta(days=91), insight_pb2.LIFECYCLE_STAGE_ACTIVE),
        (bought + timedelta(days=181), insight_pb2.LIFECYCLE_STAGE_AT_RISK),
        (bought + timedelta(days=366), insight_pb2.LIFECYCLE_STAGE_CHURNED),
    ]
    assert len(back_then.stage_history) == 2  # NEW, then ACTIVE by day 300 before today


def test_an_unknown_customer_is_not_found(reader: Client) -> None:
    error = rpc_error(lambda: insight(reader, customer_id=str(uuid4())))

    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_get_customer_insight_names_the_bad_field(reader: Client) -> None:
    known = str(uuid4())
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "customer_id"),
        ({"customer_id": "42"}, "customer_id"),
        ({"customer_id": known, "lifespan_years": -1}, "lifespan_years"),
        ({"customer_id": known, "as_of": Timestamp(seconds=-62135596800)}, "as_of"),
        ({"customer_id": known, "min_position": -1}, "min_position"),
    ]
    for fields, field in cases:
        error = rpc_error(lambda fields=fields: insight(reader, **fields))  # type: ignore[misc]
        assert field in field_violations(error), (fields, error.details())
    not_a_time = insight_pb2.GetCustomerInsightRequest(customer_id=known)
    not_a_time.as_of.seconds = 2**40  # beyond year 9999
    error = rpc_error(lambda: reader.insight.GetCustomerInsight(not_a_time, timeout=TIMEOUT))
    assert "as_of" in field_violations(error)


# ----------------------------------------------------------- ListCustomers


def test_list_customers_filters_by_segment_stage_and_tier(writer: Client, reader: Client) -> None:
    lost = [lost_customer(writer)[0] for _ in range(3)]
    buyer = register_customer(writer).customer_id
    purchase(writer, buyer, days_ago=3)
    key = writer.customers.ChangeTier(
        customer_pb2.ChangeTierRequest(
            customer_id=lost[0], to_tier=common_pb2.TIER_KEY, reason="strategic fit"
        ),
        timeout=TIMEOUT,
    )
    last = key.position

    in_lost = listed(reader, last, segment=insight_pb2.SEGMENT_LOST, page_size=2)
    churned = listed(reader, last, lifecycle_stage=insight_pb2.LIFECYCLE_STAGE_CHURNED)
    key_and_lost = listed(reader, last, tier=common_pb2.TIER_KEY, segment=insight_pb2.SEGMENT_LOST)
    everyone = listed(reader, last, page_size=3)

    assert set(lost) <= set(in_lost)
    assert buyer not in in_lost
    assert all(c.segment == insight_pb2.SEGMENT_LOST for c in in_lost.values())
    assert set(lost) <= set(churned)
    assert buyer not in churned
    assert lost[0] in key_and_lost
    assert not set(lost[1:]) & set(key_and_lost)
    assert all(c.tier == common_pb2.TIER_KEY for c in key_and_lost.values())
    assert list(everyone) == sorted(everyone), "customer_id order, each once"
    assert everyone[buyer].lifecycle_stage == insight_pb2.LIFECYCLE_STAGE_NEW
    assert everyone[buyer].segment != insight_pb2.SEGMENT_UNSPECIFIED


def test_a_customer_summary_carries_the_profile_and_counts(writer: Client, reader: Client) -> None:
    customer_id = register_customer(writer, "Chen Jing").customer_id
    purchase(writer, customer_id, "800.00", days_ago=2)
    last = writer.customers.RecordInteraction(
        customer_pb2.RecordInteractionRequest(
            customer_id=customer_id,
            kind=common_pb2.INTERACTION_KIND_REFUND,
            channel=common_pb2.CHANNEL_WEB,
            direction=common_pb2.DIRECTION_INBOUND,
            occurred_at=ts(NOW - timedelta(days=1)),
            amount=common_pb2.Money(amount="100.00", currency="CNY"),
        ),
        timeout=TIMEOUT,
    ).position

    summary = listed(reader, last)[customer_id]

    assert summary.display_name == "Chen Jing"
    assert summary.kind == common_pb2.CUSTOMER_KIND_ORGANISATION
    assert summary.industry == "manufacturing"
    assert summary.region == "CN-east"
    assert summary.tier == common_pb2.TIER_STANDARD
    assert summary.interaction_count == 2
    assert summary.purchase_count == 1
    assert summary.refund_count == 1
    assert Decimal(summary.net_purchases.amount) == Decimal("700.00")
    assert summary.net_purchases.currency == "CNY"
    assert summary.HasField("registered_at")
    assert summary.last_interaction_at == ts(NOW - timedelta(days=1))
    assert summary.lifecycle_stage == insight_pb2.LIFECYCLE_STAGE_NEW
    assert not summary.erased


def test_list_customers_pages_and_pins_the_other_parameters(writer: Client, reader: Client) -> None:
    made = [lost_customer(writer) for _ in range(3)]
    mine = {customer_id for customer_id, _ in made}
    last = made[-1][1]

    def page(token: str, **filters: Any) -> insight_pb2.ListCustomersResponse:
        request = insight_pb2.ListCustomersRequest(
            as_of=ts(NOW), page_size=1, page_token=token, min_position=last, **filters
        )
        return reader.insight.ListCustomers(request, timeout=TIMEOUT)

    responses = list(pages(lambda token: page(token, segment=insight_pb2.SEGMENT_LOST)))

    assert all(len(r.customers) == 1 for r in responses)
    ids = [r.customers[0].customer_id for r in responses]
    assert ids == sorted(set(ids))
    assert mine <= set(ids)
    assert all(r.position >= last for r in responses)
    token = responses[0].next_page_token
    error = rpc_error(lambda: page(token, segment=insight_pb2.SEGMENT_HIBERNATING))
    assert "page_token" in field_violations(error)


def test_personal_data_is_redacted_for_auditors_and_erased_for_everyone(
    served: Served, writer: Client, reader: Client
) -> None:
    auditor = served.client("auditor")
    kept = register_customer(writer, "Liu Yang").customer_id
    gone = register_customer(writer, "Sun Mei").customer_id
    last = writer.customers.EraseCustomerData(
        customer_pb2.EraseCustomerDataRequest(customer_id=gone, reason="customer request"),
        timeout=TIMEOUT,
    ).position

    as_reader = listed(reader, last)
    as_auditor = listed(auditor, last)

    assert as_reader[kept].display_name == "Liu Yang"
    assert as_auditor[kept].display_name == "[redacted]"
    assert as_reader[gone].display_name == "[erased]"
    assert as_auditor[gone].display_name == "[erased]"
    assert as_reader[gone].erased
    assert insight(auditor, customer_id=kept, min_position=last).customer_id == kept


def test_list_customers_names_the_bad_field(reader: Client) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"page_size": -1}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"tier": 17}, "tier"),
        ({"segment": 99}, "segment"),
        ({"lifecycle_stage": 99}, "lifecycle_stage"),
        ({"min_position": -3}, "min_position"),
    ]
    for fields, field in cases:
        error = rpc_error(
            lambda fields=fields: reader.insight.ListCustomers(  # type: ignore[misc]
                insight_pb2.ListCustomersRequest(**fields), timeout=TIMEOUT
            )
        )
        assert field in field_violations(error), (fields, error.details())


def test_writers_may_not_read_insight(writer: Client) -> None:
    error = rpc_error(
        lambda: writer.insight.GetSegmentSummary(
            insight_pb2.GetSegmentSummaryRequest(), timeout=TIMEOUT
        )
    )

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


# ------------------------------------------------- segment summary, funnel


def _counts(entries: Any, key: Callable[[Any], int]) -> dict[int, int]:
    return {key(e): e.customers for e in entries}


def test_segment_summary_and_funnel_count_every_bucket_and_move_with_new_customers(
    writer: Client, reader: Client
) -> None:
    start = register_customer(writer).position

    def segment_counts(position: int) -> dict[int, int]:
        response = reader.insight.GetSegmentSummary(
            insight_pb2.GetSegmentSummaryRequest(as_of=ts(NOW), min_position=position),
            timeout=TIMEOUT,
        )
        assert response.as_of == ts(NOW)
        assert response.position >= position
        return _counts(response.segments, lambda e: e.segment)

    def stage_counts(position: int) -> dict[int, int]:
        response = reader.insight.GetLifecycleFunnel(
            insight_pb2.GetLifecycleFunnelRequest(as_of=ts(NOW), min_position=position),
            timeout=TIMEOUT,
        )
        assert response.as_of == ts(NOW)
        assert response.position >= position
        return _counts(response.stages, lambda e: e.stage)

    segments_before, stages_before = segment_counts(start), stage_counts(start)
    lost_customer(writer)
    last = register_customer(writer).position  # a prospect: no segment, PROSPECT stage
    segments_after, stages_after = segment_counts(last), stage_counts(last)

    assert list(segments_after) == list(range(1, 12)), "every segment, in enum order"
    assert list(stages_after) == list(range(1, 8)), "every stage, in enum order"
    assert segments_after == {
        **segments_before,
        insight_pb2.SEGMENT_LOST: segments_before[insight_pb2.SEGMENT_LOST] + 1,
    }
    assert stages_after == {
        **stages_before,
        insight_pb2.LIFECYCLE_STAGE_CHURNED: stages_before[insight_pb2.LIFECYCLE_STAGE_CHURNED] + 1,
        insight_pb2.LIFECYCLE_STAGE_PROSPECT: stages_before[insight_pb2.LIFECYCLE_STAGE_PROSPECT]
        + 1,
    }


def test_summary_and_funnel_name_the_bad_field(reader: Client) -> None:
    too_early = Timestamp(seconds=-62135596800)  # 0001-01-01: no year to look back on
    for call in (
        lambda: reader.insight.GetSegmentSummary(
            insight_pb2.GetSegmentSummaryRequest(as_of=too_early), timeout=TIMEOUT
        ),
        lambda: reader.insight.GetLifecycleFunnel(
            insight_pb2.GetLifecycleFunnelRequest(as_of=too_early), timeout=TIMEOUT
        ),
    ):
        assert "as_of" in field_violations(rpc_error(call))
    error = rpc_error(
        lambda: reader.insight.GetLifecycleFunnel(
            insight_pb2.GetLifecycleFunnelRequest(min_position=-1), timeout=TIMEOUT
        )
    )
    assert "min_position" in field_violations(error)


# ----------------------------------------------------- GetPartnerScorecard


def scorecard(client: Client, **fields: Any) -> insight_pb2.GetPartnerScorecardResponse:
    return client.insight.GetPartnerScorecard(
        insight_pb2.GetPartnerScorecardRequest(**fields), timeout=TIMEOUT
    )


def test_a_partner_scorecard_has_standing_agreements_reviews_links_shares_and_score(
    writer: Client, reader: Client
) -> None:
    partner_id, agreement_id = active_partner(writer)
    for period, satisfaction, complaints in (("2025-Q4", "8.5", 1), ("2025-03", "2", 0)):
        writer.partners.ReviewPartnerPerformance(
            partner_pb2.ReviewPartnerPerformanceRequest(
                partner_id=partner_id,
                period=period,
                revenue=common_pb2.Money(amount="10000", currency="CNY"),
                new_customers=3,
                satisfaction=satisfaction,
                complaints=complaints,
            ),
            timeout=TIMEOUT,
        )
    customer_id = register_customer(writer).customer_id
    writer.partners.LinkCustomer(
        partner_pb2.LinkCustomerRequest(
            partner_id=partner_id, customer_id=customer_id, role=common_pb2.LINK_ROLE_RESALE
        ),
        timeout=TIMEOUT,
    )
    grant(writer, customer_id, partner_id)
    share(writer, customer_id, partner_id)
    last = share(writer, customer_id, partner_id, purpose=common_pb2.PURPOSE_ANALYTICS).position

    response = scorecard(reader, partner_id=partner_id, min_position=last)
    card = response.scorecard
    earlier = scorecard(reader, partner_id=partner_id, at=ts(NOW - timedelta(days=2))).scorecard

    assert response.position >= last
    assert card.partner_id == partner_id
    assert card.name == "Partner Co"
    assert card.status == common_pb2.PARTNER_STATUS_ACTIVE
    assert card.kind == common_pb2.PARTNER_KIND_RESELLER
    assert list(card.regions) == ["CN-east"]
    assert card.evaluation.strength == 80
    assert card.evaluation_count == 1
    assert [a.agreement_id for a in card.agreements] == [agreement_id]
    assert card.agreements[0].in_effect
    assert list(card.active_agreement_ids) == [agreement_id]
    assert [r.period for r in card.reviews] == ["2025-03", "2025-Q4"], "oldest period first"
    assert card.latest_review_period == "2025-Q4", "by period, not by recording order"
    assert Decimal(card.performance) == Decimal(80)  # 8.5 x 10 - 5 x 1
    # 0.25 x 80 + 0.20 x 70 + 0.20 x 90 + 0.15 x 85 + 0.20 x 80 = 80.75, half-up
    assert card.weighted_score == "80.8"
    assert [(c.customer_id, c.role) for c in card.linked_customers] == [
        (customer_id, common_pb2.LINK_ROLE_RESALE)
    ]
    assert card.customers_linked_count == 1
    assert card.share_count == 1
    assert card.refused_share_count == 1
    assert [(r.reason, r.count) for r in card.refusal_reasons] == [
        (common_pb2.SHARE_REASON_NO_CONSENT, 1)
    ]
    assert not earlier.agreements[0].in_effect, "its agreement took effect a day ago"
    assert list(earlier.active_agreement_ids) == []


def test_an_unevaluated_partner_has_no_score(writer: Client, reader: Client) -> None:
    registered = writer.partners.RegisterPartner(
        partner_pb2.RegisterPartnerRequest(
            external_ref=f"P-{uuid4().hex[:12]}",
            name="Fresh Co",
            kind=common_pb2.PARTNER_KIND_SERVICE,
        ),
        timeout=TIMEOUT,
    )

    card = scorecard(
        reader, partner_id=registered.partner_id, min_position=registered.position
    ).scorecard

    assert card.status == common_pb2.PARTNER_STATUS_REGISTERED
    assert not card.HasField("evaluation")
    assert not card.HasField("weighted_score")
    assert card.performance == "50"
    assert card.latest_review_period == ""


def test_get_partner_scorecard_refuses_bad_or_unknown_partners(reader: Client) -> None:
    missing = rpc_error(lambda: scorecard(reader))
    malformed = rpc_error(lambda: scorecard(reader, partner_id="p-1"))
    unknown = rpc_error(lambda: scorecard(reader, partner_id=str(uuid4())))

    assert "partner_id" in field_violations(missing)
    assert "partner_id" in field_violations(malformed)
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
