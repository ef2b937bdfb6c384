"""InsightService: segments, lifecycle, customer lists and partner scorecards from the read models.

Every answer comes from the read models (``segments``, ``lifecycle``,
``customer_summary``, ``partner_scorecard``), each read after it has applied
the request's ``min_position``. An answer built from several views reports
the lowest position among them: the position every part of it reflects.
Views are read one after another, never nested, so a call holds at most one
store connection at a time.

"As of" a date: the request's ``as_of`` or, unset, the server clock's now;
the analyses reduce it to its UTC calendar date.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from adapters.grpc.errors import RpcError, invalid_field
from adapters.grpc.generated.accord.v1 import (
    common_pb2,
    insight_pb2,
    insight_pb2_grpc,
    partner_pb2,
)
from adapters.grpc.interceptor import current_call
from adapters.grpc.services.reads import enum_filter, read_view
from adapters.grpc.state import REDACTED
from adapters.grpc.translate import (
    enum_in,
    enum_out,
    instant_in,
    money_out,
    page_size,
    page_token_in,
    page_token_out,
    paged,
    required_uuid,
    timestamp_out,
)
from application.errors import NotFoundError
from application.service import Accord
from domain.personal import ERASED
from domain.sharing import ShareReason
from projections import customer_summary, lifecycle, partner_scorecard, segments
from projections.read_models import ReadModels
from projections.store import Doc, DocReader

EARLIEST_AS_OF = date(2, 1, 1)
"""Analyses look back a year from as_of; before this the window is not representable."""

SCAN_CHUNK = 500
"""Customer summaries read per query while filling a filtered page."""


def _segment_out(value: str | None) -> insight_pb2.Segment.ValueType:
    """The view names segments for people ("Potential Loyalist"); the contract by member name."""
    return enum_out(insight_pb2.Segment, segments.Segment(value).name if value else None)


def _segment_in(number: int) -> str | None:
    name = enum_filter("segment", insight_pb2.Segment.DESCRIPTOR, number)
    return segments.Segment[name].value if name else None


def _segments_at(reader: DocReader, day: date) -> dict[str, str | None]:
    """Each customer known at ``day`` -> its segment value (None: never purchased).

    RFM scores rank a customer against the whole population, so one pass over
    the view scores everyone at once (per-customer ``segments.insight`` would
    rescan the population for every customer listed). Built from the
    module's public pieces in the same way as its own queries.
    """
    docs = {key: doc for key, doc in reader.scan(segments.KIND) if lifecycle.known_at(doc, day)}
    stats = {
        key: segments.purchase_stats(lifecycle.parse_entries(doc["purchases"]), day)
        for key, doc in docs.items()
    }
    scores = segments.rfm_scores(stats)
    found = {key: segments.customer_segment(s, scores.get(key)) for key, s in stats.items()}
    return {key: named.value if named else None for key, named in found.items()}


def _stages_at(reader: DocReader, day: date) -> dict[str, str]:
    """Each customer known at ``day`` -> its lifecycle stage value."""
    stages: dict[str, str] = {}
    for key, doc in reader.scan(lifecycle.KIND):
        if lifecycle.known_at(doc, day):
            dates = lifecycle.purchase_dates(lifecycle.parse_entries(doc["purchases"]))
            stages[key] = lifecycle.stage_at(dates, day).value
    return stages


def _agreement(doc: Doc, active: set[str]) -> partner_pb2.Agreement:
    return partner_pb2.Agreement(
        agreement_id=doc["agreement_id"],
        kind=enum_out(common_pb2.AgreementKind, doc["kind"]),
        effective_from=timestamp_out(doc["effective_from"]),
        effective_to=timestamp_out(doc["effective_to"]),
        confidentiality=doc["confidentiality"],
        permitted_purposes=[enum_out(common_pb2.Purpose, p) for p in doc["permitted_purposes"]],
        permitted_data_categories=[
            enum_out(common_pb2.DataCategory, c) for c in doc["permitted_data_categories"]
        ],
        document_sha256=doc["document_sha256"],
        signed_at=timestamp_out(doc["signed_at"]),
        terminated_at=timestamp_out(doc["terminated_at"]),
        termination_reason=doc["termination_reason"] or "",
        in_effect=doc["agreement_id"] in active,
    )


def _scorecard_message(card: Doc, base_currency: str) -> insight_pb2.PartnerScorecard:
    active: list[str] = card["active_agreements"]
    counts = card["counts"]
    message = insight_pb2.PartnerScorecard(
        partner_id=card["partner_id"],
        version=card["version"],
        external_ref=card["external_ref"],
        name=card["name"],
        kind=enum_out(common_pb2.PartnerKind, card["kind"]),
        regions=card["regions"],
        capabilities=card["capabilities"],
        status=enum_out(common_pb2.PartnerStatus, card["status"]),
        status_reason=card["status_reason"],
        status_changed_at=timestamp_out(card["status_changed_at"]),
        tier=enum_out(common_pb2.Tier, card["tier"]),
        registered_at=timestamp_out(card["registered_at"]),
        performance=format(card["performance"], "f"),
        latest_review_period=card["latest_review_period"] or "",
        agreements=[
            _agreement(a, set(active))
            for a in sorted(card["agreements"].values(), key=lambda a: a["signed_version"])
        ],
        active_agreement_ids=active,
        reviews=[
            partner_pb2.PerformanceReview(
                period=r["period"],
                revenue=money_out(r["revenue"], base_currency),
                new_customers=r["new_customers"],
                satisfaction=r["satisfaction"],
                complaints=r["complaints"],
                reviewed_at=timestamp_out(r["reviewed_at"]),
            )
            for r in sorted(
                card["reviews"].values(),
                key=lambda r: partner_scorecard.period_order(r["period"]),
            )
        ],
        linked_customers=[
            partner_pb2.LinkedCustomer(
                customer_id=customer_id, role=enum_out(common_pb2.LinkRole, role)
            )
            for customer_id, role in sorted(card["linked_customers"].items())
        ],
        evaluation_count=counts["evaluations"],
        customers_linked_count=counts["customers_linked"],
        customers_unlinked_count=counts["customers_unlinked"],
        share_count=counts["shares"],
        refused_share_count=counts["refused_shares"],
        refusal_reasons=[
            insight_pb2.ShareReasonCount(
                reason=enum_out(common_pb2.ShareReason, reason),
                count=card["refusal_reasons"][reason.value],
            )
            for reason in ShareReason
            if card["refusal_reasons"].get(reason.value, 0) > 0
        ],
    )
    evaluation = card["evaluation"]
    if evaluation is not None:
        message.evaluation.CopyFrom(
            partner_pb2.PartnerEvaluation(
                strength=evaluation["strength"],
                reputation=evaluation["reputation"],
                business_fit=evaluation["business_fit"],
                data_protection=evaluation["data_protection"],
                notes=evaluation["notes"],
                evaluated_at=timestamp_out(evaluation["evaluated_at"]),
            )
        )
    if card["weighted_score"] is not None:
        message.weighted_score = format(card["weighted_score"], "f")
    return message


class InsightServicer(insight_pb2_grpc.InsightServiceServicer):
    def __init__(self, accord: Accord, read_models: ReadModels) -> None:
        self.accord = accord
        self.read_models = read_models

    def _as_of(self, given: Timestamp, present: bool) -> datetime:
        """The moment analysed: the request's as_of, else now."""
        if not present:
            return self.accord.clock.now()
        moment = instant_in("as_of", given)
        if moment.date() < EARLIEST_AS_OF:
            raise RpcError(invalid_field("as_of", f"must not precede {EARLIEST_AS_OF}"))
        return moment

    def GetCustomerInsight(
        self, request: insight_pb2.GetCustomerInsightRequest, _: Any
    ) -> insight_pb2.GetCustomerInsightResponse:
        customer_id = str(required_uuid("customer_id", request.customer_id))
        lifespan = (
            request.lifespan_years
            if request.HasField("lifespan_years")
            else segments.DEFAULT_LIFESPAN_YEARS
        )
        if lifespan < 0:
            raise RpcError(invalid_field("lifespan_years", "must not be negative"))
        moment = self._as_of(request.as_of, request.HasField("as_of"))
        with read_view(self.read_models, segments.NAME, request.min_position) as reader:
            found = segments.insight(reader, customer_id, moment, lifespan_years=lifespan)
            position = reader.position
        with read_view(self.read_models, lifecycle.NAME, request.min_position) as reader:
            stage = lifecycle.stage(reader, customer_id, moment)
            changes = lifecycle.history(reader, customer_id, moment)
            position = min(position, reader.position)
        if found is None or stage is None:
            raise NotFoundError("customer", customer_id)
        response = insight_pb2.GetCustomerInsightResponse(
            customer_id=customer_id,
            as_of=timestamp_out(moment),
            lifecycle_stage=enum_out(insight_pb2.LifecycleStage, stage),
            segment=_segment_out(found["segment"]),
            value_quadrant=enum_out(insight_pb2.ValueQuadrant, found["value_quadrant"]),
            recommended_tier=enum_out(common_pb2.Tier, found["recommended_tier"]),
            assigned_tier=enum_out(common_pb2.Tier, found["assigned_tier"]),
            clv=found["clv"],
            currency=self.accord.settings.base_currency,
            frequency=found["frequency"],
            monetary=found["monetary"],
            position=position,
            stage_history=[
                insight_pb2.StageChange(
                    since=timestamp_out(datetime.combine(day, time.min, tzinfo=UTC)),
                    stage=enum_out(insight_pb2.LifecycleStage, changed),
                )
                for day, changed in changes
            ],
        )
        if found["r"] is not None and found["f"] is not None and found["m"] is not None:
            response.rfm.CopyFrom(insight_pb2.Rfm(r=found["r"], f=found["f"], m=found["m"]))
        if found["recency_days"] is not None:
            response.recency_days = found["recency_days"]
        return response

    def ListCustomers(
        self, request: insight_pb2.ListCustomersRequest, _: Any
    ) -> insight_pb2.ListCustomersResponse:
        tier = enum_filter("tier", common_pb2.Tier.DESCRIPTOR, request.tier)
        wanted_segment = _segment_in(request.segment)
        wanted_stage = enum_filter(
            "lifecycle_stage", insight_pb2.LifecycleStage.DESCRIPTOR, request.lifecycle_stage
        )
        present = request.HasField("as_of")
        moment = self._as_of(request.as_of, present)
        size = page_size(request.page_size)
        query = {
            "tier": tier,
            "segment": wanted_segment,
            "lifecycle_stage": wanted_stage,
            "as_of": moment.isoformat() if present else None,
        }
        after = page_token_in(request.page_token, query)
        day = moment.date()
        with read_view(self.read_models, segments.NAME, request.min_position) as reader:
            segment_of = _segments_at(reader, day)
            position = reader.position
        with read_view(self.read_models, lifecycle.NAME, request.min_position) as reader:
            stage_of = _stages_at(reader, day)
            position = min(position, reader.position)

        def matches(doc: Doc) -> bool:
            key = doc["customer_id"]
            return (wanted_segment is None or segment_of.get(key) == wanted_segment) and (
                wanted_stage is None or stage_of.get(key) == wanted_stage
            )

        with read_view(self.read_models, customer_summary.NAME, request.min_position) as reader:
            page, last = paged(
                (d for d in self._summaries(reader, tier, after) if matches(d)),
                size,
                lambda d: str(d["customer_id"]),
            )
            position = min(position, reader.position)
        return insight_pb2.ListCustomersResponse(
            customers=[
                self._summary_message(d, stage_of.get(d["customer_id"]), segment_of) for d in page
            ],
            next_page_token=page_token_out(query, last) if last is not None else "",
            position=position,
        )

    def _summaries(self, reader: DocReader, tier: str | None, after: str | None) -> Iterator[Doc]:
        """Customer summaries in id order after ``after``, read a chunk at a time."""
        reveal = self.read_models.reveal if current_call().sees_personal_data else _redact
        while True:
            chunk = list(
                customer_summary.customers(reader, reveal, tier=tier, after=after, limit=SCAN_CHUNK)
            )
            yield from chunk
            if len(chunk) < SCAN_CHUNK:
                return
            after = chunk[-1]["customer_id"]

    def _summary_message(
        self, doc: Doc, stage: str | None, segment_of: dict[str, str | None]
    ) -> insight_pb2.CustomerSummary:
        return insight_pb2.CustomerSummary(
            customer_id=doc["customer_id"],
            version=doc["version"],
            external_ref=doc["external_ref"],
            display_name=doc["display_name"],
            kind=enum_out(common_pb2.CustomerKind, doc["kind"]),
            industry=doc["industry"],
            region=doc["region"],
            size=enum_out(common_pb2.CompanySize, doc["size"]),
            source=doc["source"],
            potential_value=enum_out(common_pb2.PotentialValue, doc["potential_value"]),
            tier=enum_out(common_pb2.Tier, doc["tier"]),
            registered_at=timestamp_out(doc["registered_at"]),
            contact_count=len(doc["contacts"]),
            interaction_count=doc["interactions"],
            purchase_count=doc["purchases"],
            refund_count=doc["refunds"],
            net_purchases=money_out(doc["net_purchases"], self.accord.settings.base_currency),
            last_interaction_at=timestamp_out(doc["last_interaction_at"]),
            share_count=doc["shares"],
            refused_share_count=doc["refused_shares"],
            erased=doc["erased"],
            lifecycle_stage=enum_out(insight_pb2.LifecycleStage, stage),
            segment=_segment_out(segment_of.get(doc["customer_id"])),
        )

    def GetSegmentSummary(
        self, request: insight_pb2.GetSegmentSummaryRequest, _: Any
    ) -> insight_pb2.GetSegmentSummaryResponse:
        moment = self._as_of(request.as_of, request.HasField("as_of"))
        with read_view(self.read_models, segments.NAME, request.min_position) as reader:
            counts = segments.summary(reader, moment)
            position = reader.position
        numbers = sorted(insight_pb2.Segment.DESCRIPTOR.values_by_number)
        return insight_pb2.GetSegmentSummaryResponse(
            segments=[
                insight_pb2.SegmentCount(
                    segment=insight_pb2.Segment.ValueType(number),
                    customers=counts[segments.Segment[name].value],
                )
                for number in numbers
                if (name := enum_in(insight_pb2.Segment.DESCRIPTOR, number)) is not None
            ],
            as_of=timestamp_out(moment),
            position=position,
        )

    def GetLifecycleFunnel(
        self, request: insight_pb2.GetLifecycleFunnelRequest, _: Any
    ) -> insight_pb2.GetLifecycleFunnelResponse:
        moment = self._as_of(request.as_of, request.HasField("as_of"))
        with read_view(self.read_models, lifecycle.NAME, request.min_position) as reader:
            counts = lifecycle.funnel(reader, moment)
            position = reader.position
        numbers = sorted(insight_pb2.LifecycleStage.DESCRIPTOR.values_by_number)
        return insight_pb2.GetLifecycleFunnelResponse(
            stages=[
                insight_pb2.StageCount(
                    stage=insight_pb2.LifecycleStage.ValueType(number), customers=counts[name]
                )
                for number in numbers
                if (name := enum_in(insight_pb2.LifecycleStage.DESCRIPTOR, number)) is not None
            ],
            as_of=timestamp_out(moment),
            position=position,
        )

    def GetPartnerScorecard(
        self, request: insight_pb2.GetPartnerScorecardRequest, _: Any
    ) -> insight_pb2.GetPartnerScorecardResponse:
        partner_id = str(required_uuid("partner_id", request.partner_id))
        at = instant_in("at", request.at) if request.HasField("at") else self.accord.clock.now()
        with read_view(self.read_models, partner_scorecard.NAME, request.min_position) as reader:
            card = partner_scorecard.scorecard(reader, partner_id, at)
            position = reader.position
        if card is None:
            raise NotFoundError("partner", partner_id)
        return insight_pb2.GetPartnerScorecardResponse(
            scorecard=_scorecard_message(card, self.accord.settings.base_currency),
            position=position,
        )


def _redact(value: Any) -> Any:
    """Stands in for ``reveal`` for callers without personal data: nothing is decrypted."""
    return value if value is None or value == ERASED else REDACTED
