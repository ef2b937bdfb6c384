"""`accord customers|consent|partners|segments|funnel|audit|stats`: ask a running Accord
server over gRPC and print rich tables, or JSON with ``--json`` (registered by
``adapters.cli``).

Exit status: 0 done; 1 `consent check` refused; 2 bad input or an error status from the
server (one line on stderr: the status code and the server's message); 3 the server is
not reachable, or says it is unavailable. The bearer token is sent as metadata only,
never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

import grpc
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_status import rpc_status

from adapters import cli_render as render
from adapters.grpc.errors import error_details_pb2
from adapters.grpc.generated.accord.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    compliance_pb2,
    compliance_pb2_grpc,
    customer_pb2,
    customer_pb2_grpc,
    insight_pb2,
    insight_pb2_grpc,
)

DEFAULT_SERVER = "127.0.0.1:50051"
REFUSED, FAILED, UNREACHABLE, INTERRUPTED = 1, 2, 3, 130
MAX_PAGE = 1000
DEFAULT_TAIL = 20

Req = TypeVar("Req")
Resp = TypeVar("Resp")


# ------------------------------------------------------------- argument types


def _uuid(text: str) -> str:
    try:
        return str(UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date or date-time: {text!r} (e.g. 2025-01-01 or "
            "2025-01-01T09:30:00+08:00)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _pem(text: str) -> bytes:
    try:
        return Path(text).read_bytes()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {error.strerror}") from None


def _enum(descriptor: EnumDescriptor) -> tuple[Callable[[str], int], str]:
    """An argument type taking a value name, any case, ``-`` for ``_``, prefix optional."""
    names = render.enum_names(descriptor)
    prefix = render.enum_prefix(descriptor)

    def parse(text: str) -> int:
        name = text.strip().upper().replace("-", "_").removeprefix(prefix)
        if name not in names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(names)}")
        return names[name]

    return parse, ", ".join(names)


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


# ---------------------------------------------------------------- connection


class Connection:
    """One channel to the server and the metadata, deadline and read position of every call."""

    def __init__(self, args: argparse.Namespace, token: str | None) -> None:
        self.server: str = args.server or os.environ.get("ACCORD_SERVER") or DEFAULT_SERVER
        ca: bytes | None = args.tls_ca
        self.channel = (
            grpc.secure_channel(self.server, grpc.ssl_channel_credentials(ca))
            if ca is not None
            else grpc.insecure_channel(self.server)
        )
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout: float = args.timeout
        self.min_position: int = args.min_position
        self.customers = customer_pb2_grpc.CustomerServiceStub(self.channel)
        self.compliance = compliance_pb2_grpc.ComplianceServiceStub(self.channel)
        self.insight = insight_pb2_grpc.InsightServiceStub(self.channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channel)

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.channel.close()  # also cancels a stream left unfinished

    def unary(self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        return method(request, timeout=self.timeout, metadata=self.metadata)

    def stream(
        self,
        method: grpc.UnaryStreamMultiCallable[Req, Resp],
        request: Req,
        *,
        deadline: bool = True,
    ) -> Iterator[Resp]:
        return method(request, timeout=self.timeout if deadline else None, metadata=self.metadata)


def _status_line(error: grpc.RpcError, server: str, timeout: float) -> tuple[str, int]:
    """One line for stderr, and the exit status, for a failed call."""
    status: Any = None
    if isinstance(error, grpc.Call):
        try:
            status = rpc_status.from_call(error)
        except ValueError:  # details that contradict the status: show the status alone
            status = None
    code = error.code()
    message = error.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE and status is None:
        return f"the server is not reachable at {server} (UNAVAILABLE: {message})", UNREACHABLE
    notes: list[str] = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            notes += [f"{v.field}: {v.description}" for v in bad_request.field_violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.reason != code.name:
                notes.append(f"reason {info.reason}")
    missing = [note for note in notes if note not in message]
    line = f"{code.name}: {message}" + (f" ({'; '.join(missing)})" if missing else "")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        line += f" (no answer within --timeout {timeout:g} s)"
    return line, UNREACHABLE if code is grpc.StatusCode.UNAVAILABLE else FAILED


Handler = Callable[[argparse.Namespace, Connection, render.Output], int]


def _client(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Run ``handler`` on a connection; a failed call becomes one line on stderr."""

    def run(args: argparse.Namespace) -> int:
        output = render.Output(args.json)
        token = args.token or os.environ.get("ACCORD_TOKEN")
        if token is not None and not (token.isascii() and token.isprintable()):
            print(
                "accord: the token (--token or $ACCORD_TOKEN) is not printable ASCII",
                file=sys.stderr,
            )
            return FAILED
        with Connection(args, token) as connection:
            try:
                return handler(args, connection, output)
            except grpc.RpcError as error:
                line, status = _status_line(error, connection.server, connection.timeout)
                print(f"accord: {' '.join(line.split())}", file=sys.stderr)  # one line
                return status
            except KeyboardInterrupt:
                return INTERRUPTED
            except BrokenPipeError:  # the reader left (`| head`): stop quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # final flush too
                return 0

    return run


# ------------------------------------------------------------------ commands


def _customers_list(args: argparse.Namespace, conn: Connection, out: render.Output) -> int:
    request = insight_pb2.ListCustomersRequest(
        tier=common_pb2.Tier.ValueType(args.tier or 0),
        segment=insight_pb2.Segment.ValueType(args.segment or 0),
        lifecycle_stage=insight_pb2.LifecycleStage.ValueType(args.lifecycle_stage or 0),
        as_of=_timestamp(args.as_of),
        min_position=conn.min_position,
    )
    found: list[render.Data] = []
    position = 0
    while True:
        request.page_size = min(args.limit - len(found), MAX_PAGE)
        page = conn.unary(conn.insight.ListCustomers, request)
        found += [render.to_data(c) for c in page.customers]
        position = page.position
        request.page_token = page.next_page_token
        if not request.page_token or len(found) >= args.limit:
            break
    more = bool(request.page_token)
    if out.json:
        out.document({"customers": found, "more": more, "position": position})
    else:
        out.show(render.customers(found))
        if more:
            print(f"accord: more customers match; raise --limit ({args.limit})", file=sys.stderr)
    return 0


def _customers_show(args: argparse.Namespace, conn: Connection, out: render.Output) -> int:
    request = customer_pb2.GetCustomerRequest(
        customer_id=args.id,
        as_of_version=args.as_of_version,
        as_of_time=_timestamp(args.as_of),
        min_position=conn.min_position,
    )
    found = conn.unary(conn.customers.GetCustomer, request)
    insight = conn.unary(
        conn.insight.GetCustomerInsight,
        insight_pb2.GetCustomerInsightRequest(
            customer_id=args.id,
            as_of=_timestamp(args.as_of),
            # read-your-writes: the analysis reflects at least the state shown
            min_position=max(found.position, conn.min_position),
        ),
    )
    data = {
        "customer": render.to_data(found.customer),
        "position": found.position,
        "insight": render.to_data(insight),
    }
    out.emit(data, render.customer)
    return 0


def _consent_check(args: argparse.Namespace, conn: Connection, out: render.Output) -> int:
    answer = conn.unary(
        conn.compliance.CheckConsent,
        compliance_pb2.CheckConsentRequest(
            customer_id=args.customer,
            partner_id=args.partner,
            purpose=common_pb2.Purpose.ValueType(args.purpose),
            data_categories=[common_pb2.DataCategory.ValueType(c) for c in args.category],
            at=_timestamp(args.at),
            as_known_now=args.as_known_now,
            min_position=conn.min_position,
        ),
    )
    out.emit(render.to_data(answer), render.consent)
    return 0 if answer.allowed else REFUSED


def _partners_scorecard(args: argparse.Namespace, conn: Connection, out: render.Output) -> int:
    answer = conn.unary(
        conn.insight.GetPartnerScorecard,
        insight_pb2.GetPartnerScorecardRequest(
            partner_id=args.id,
            at=_timestamp(args.at),
            min_position=conn.min_position,
        ),
    )
    out.emit(render.to_data(answer), render.scorecard)
    return 0


def _segments(args: argparse.Namespace, conn: Connection, out: render.Output) -> int:
    request = insight_pb2.GetSegmentSummaryRequest(
        as_of=_timestamp(args.as_of), min_position=conn.min_position
    )
    out.emit(render.to_data(conn.unary(conn.insight.GetSegmentSummary, request)), render.segments)
    return 0


def _funnel(args: argparse.Namespace, conn: Connection, out: render.Output) -> int:
    request = insight_pb2.GetLifecycleFunnelRequest(
        as_of=_timestamp(args.as_of), min_position=conn.min_position
    )
    out.emit(render.to_data(conn.unary(conn.insight.GetLifecycleFunnel, request)), render.funnel)
    return 0


def _events(
    conn: Connection, request: audit_pb2.ReadEventsRequest, *, follow: bool = False
) -> Iterator[tuple[list[audit_pb2.Event], int]]:
    """Each batch's events and the last position it examined; following has no deadline."""
    ask = audit_pb2.ReadEventsRequest()
    ask.CopyFrom(request)
    ask.follow = follow
    for batch in conn.stream(conn.audit.ReadEvents, ask, deadline=not follow):
        yield list(batch.events), batch.position


def _last_events(
    conn: Connection, request: audit_pb2.ReadEventsRequest, limit: int
) -> tuple[list[audit_pb2.Event], int]:
    """The last ``limit`` matching events, reading back from the head in widening windows."""
    head = conn.unary(
        conn.audit.GetDigest, audit_pb2.GetDigestRequest(min_position=request.min_position)
    ).position
    window = limit
    while True:
        request.from_position = max(1, head - window + 1)
        found: list[audit_pb2.Event] = []
        reached = head
        for events, position in _events(conn, request):
            found.extend(events)
            reached = position
        if len(found) >= limit or request.from_position == 1:
            return found[-limit:], reached
        window *= 4


def _audit_tail(args: argparse.Namespace, conn: Connection, out: render.Output) -> int:
    request = audit_pb2.ReadEventsRequest(
        aggregate_id=args.aggregate_id or "",
        types=args.event_type or [],
        min_position=conn.min_position,
    )
    show = render.EventRows(out)
    left: int | None = args.limit
    if args.from_position is None:
        events, reached = _last_events(conn, request, args.limit or DEFAULT_TAIL)
        show([render.event(e) for e in events])
        if not args.follow:
            return 0
        request.from_position, left = reached + 1, None
        batches = _events(conn, request, follow=True)
    else:
        request.from_position = args.from_position
        batches = _events(conn, request, follow=args.follow)
    for events, _ in batches:
        if left is not None:
            events, left = events[:left], left - min(left, len(events))
        show([render.event(e) for e in events])
        if left == 0:
            return 0
    if args.follow:
        print("accord: the server ended the stream (is it shutting down?)", file=sys.stderr)
        return UNREACHABLE
    return 0


def _stats(args: argparse.Namespace, conn: Connection, out: render.Output) -> int:
    digest = conn.unary(
        conn.audit.GetDigest, audit_pb2.GetDigestRequest(min_position=conn.min_position)
    )
    segments = conn.unary(
        conn.insight.GetSegmentSummary,
        insight_pb2.GetSegmentSummaryRequest(min_position=conn.min_position),
    )
    funnel = conn.unary(
        conn.insight.GetLifecycleFunnel,
        insight_pb2.GetLifecycleFunnelRequest(min_position=conn.min_position),
    )
    registrations = audit_pb2.ReadEventsRequest(
        types=["partner.registered"], batch_size=5000, min_position=conn.min_position
    )
    partners = sum(len(events) for events, _ in _events(conn, registrations))
    by_segment = {s["segment"]: s["customers"] for s in render.to_data(segments)["segments"]}
    by_stage = {s["stage"]: s["customers"] for s in render.to_data(funnel)["stages"]}
    data = {
        "server": conn.server,
        "position": digest.position,
        "hash": digest.hash,
        "customers": sum(by_stage.values()),
        "partners": partners,
        "as_of": funnel.as_of.ToJsonString(),
        "segments": by_segment,
        "funnel": by_stage,
    }
    out.emit(data, render.stats)
    return 0


# -------------------------------------------------------------------- parsers


def _shared() -> argparse.ArgumentParser:
    """Connection and output options every client subcommand takes."""
    shared = argparse.ArgumentParser(add_help=False)
    group = shared.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        metavar="HOST:PORT",
        help=f"the Accord server (default $ACCORD_SERVER or {DEFAULT_SERVER})",
    )
    group.add_argument(
        "--token",
        help="bearer token (default $ACCORD_TOKEN, which keeps it out of the process list); "
        "sent as `authorization: Bearer ...`, never printed",
    )
    group.add_argument(
        "--tls-ca",
        metavar="FILE",
        type=_pem,
        help="use TLS, verifying the server against this PEM CA (default: plaintext, "
        "as `accord serve` offers on loopback without TLS)",
    )
    group.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="deadline of each call (default 10)",
    )
    group.add_argument(
        "--min-position",
        type=_count,
        default=0,
        metavar="N",
        help="read-your-writes: the server first waits (within the deadline) until its "
        "read models have reached this log position (e.g. one a write returned)",
    )
    group.add_argument(
        "--json", action="store_true", help="print JSON instead of tables (enums by short name)"
    )
    return shared


EXIT_HELP = "exit status: 0 done, 2 error (one line on stderr), 3 server not reachable"
TIME_HELP = "ISO 8601 date or date-time (a date means 00:00 UTC; no offset means UTC)"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shared = [_shared()]

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Handler,
        summary: str,
        **extra: Any,
    ) -> argparse.ArgumentParser:
        extra.setdefault("epilog", EXIT_HELP)
        parser = group.add_parser(name, help=summary, description=summary, parents=shared, **extra)
        parser.set_defaults(handler=_client(handler))
        return parser

    def as_of(parser: argparse._ActionsContainer, what: str) -> None:
        parser.add_argument("--as-of", type=_moment, metavar="TIME", help=f"{what}; {TIME_HELP}")

    def enum_option(parser: argparse.ArgumentParser, flag: str, descriptor: EnumDescriptor) -> None:
        parse, names = _enum(descriptor)
        metavar = flag.rsplit("-", 1)[-1].upper()
        parser.add_argument(flag, type=parse, metavar=metavar, help=f"one of {names}")

    customers = commands.add_parser("customers", help="list customers, or show one (over gRPC)")
    customer_commands = customers.add_subparsers(dest="customers_command", required=True)
    listing = command(
        customer_commands,
        "list",
        _customers_list,
        "customers with their tier, lifecycle stage and segment, filtered (all filters AND)",
    )
    enum_option(listing, "--segment", insight_pb2.Segment.DESCRIPTOR)
    enum_option(listing, "--lifecycle-stage", insight_pb2.LifecycleStage.DESCRIPTOR)
    enum_option(listing, "--tier", common_pb2.Tier.DESCRIPTOR)
    as_of(listing, "judge segment and stage at this date (default today)")
    listing.add_argument(
        "--limit", type=_positive, default=100, metavar="N", help="at most N (default 100)"
    )

    show = command(
        customer_commands,
        "show",
        _customers_show,
        "one customer's state and its analysis (lifecycle stage, RFM, segment, value "
        "quadrant, recommended tier, CLV)",
    )
    show.add_argument("id", type=_uuid, help="the customer_id")
    moment = show.add_mutually_exclusive_group()
    as_of(moment, "the state as recorded at this time, analysed at its date")
    moment.add_argument(
        "--as-of-version",
        type=_positive,
        metavar="N",
        help="the state right after version N (the analysis is today's)",
    )

    consent = commands.add_parser("consent", help="consent questions (over gRPC)")
    consent_commands = consent.add_subparsers(dest="consent_command", required=True)
    check = command(
        consent_commands,
        "check",
        _consent_check,
        "may this partner receive these categories of this customer's data for this purpose? "
        "Prints the decision per category, the reasons and the evidence (consent ids and "
        "their log positions); records nothing. Needs the compliance role.",
        epilog=EXIT_HELP.replace("0 done", "0 allowed, 1 refused"),
    )
    check.add_argument("--customer", type=_uuid, required=True, metavar="ID", help="customer_id")
    check.add_argument("--partner", type=_uuid, required=True, metavar="ID", help="partner_id")
    purpose, purposes = _enum(common_pb2.Purpose.DESCRIPTOR)
    check.add_argument(
        "--purpose", type=purpose, required=True, metavar="P", help=f"one of {purposes}"
    )
    category, categories = _enum(common_pb2.DataCategory.DESCRIPTOR)
    check.add_argument(
        "--category",
        type=category,
        required=True,
        action="append",
        metavar="C",
        help=f"repeat for several: {categories}",
    )
    check.add_argument("--at", type=_moment, metavar="TIME", help=f"default now; {TIME_HELP}")
    check.add_argument(
        "--as-known-now",
        action="store_true",
        help="judge --at with everything recorded since (a withdrawal expressed before it that "
        "reached us later refuses); default: only what had been recorded by then",
    )

    partners = commands.add_parser("partners", help="partner scorecards (over gRPC)")
    partner_commands = partners.add_subparsers(dest="partners_command", required=True)
    scorecard = command(
        partner_commands,
        "scorecard",
        _partners_scorecard,
        "a partner's standing, agreements, evaluation, reviews, shares and weighted score",
    )
    scorecard.add_argument("id", type=_uuid, help="the partner_id")
    scorecard.add_argument(
        "--at", type=_moment, metavar="TIME", help=f"judge agreements at (default now); {TIME_HELP}"
    )

    segments = command(commands, "segments", _segments, "customers per RFM segment (over gRPC)")
    as_of(segments, "the date analysed (default today)")
    funnel = command(commands, "funnel", _funnel, "customers per lifecycle stage (over gRPC)")
    as_of(funnel, "the date analysed (default today)")

    audit = commands.add_parser("audit", help="the event log (over gRPC; auditor role)")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    tail = command(
        audit_commands,
        "tail",
        _audit_tail,
        "events of the log, one row each (position, recorded_at, type, aggregate, actor, "
        "hash prefix); with --json one JSON object a line. Needs the auditor role.",
    )
    tail.add_argument(
        "--from-position",
        type=_positive,
        metavar="N",
        help=f"start at this position; default: the last --limit ({DEFAULT_TAIL}) events",
    )
    tail.add_argument(
        "--follow",
        action="store_true",
        help="then keep printing new events as they are recorded (Ctrl-C stops; no deadline)",
    )
    tail.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="at most N events (with --from-position: the first N from there, following "
        "included; without: the last N before following)",
    )
    tail.add_argument("--aggregate-id", type=_uuid, metavar="ID", help="one aggregate's events")
    tail.add_argument(
        "--event-type",
        action="append",
        metavar="T",
        help="only this type, e.g. customer.consent_granted (repeat for several)",
    )

    command(
        commands,
        "stats",
        _stats,
        "one screen: log position, customers, partners, segments and lifecycle funnel "
        "(over gRPC; needs the auditor role, or admin)",
    )
