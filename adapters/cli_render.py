"""How the client subcommands (``adapters.cli_client``) print: protobuf messages become
plain data (the ``--json`` output), and that data becomes rich tables.

Plain data: every field by its proto name; int64 as numbers; Timestamps as RFC 3339
strings; enums by value name without the type's prefix (``CONSENT_WITHDRAWN``, not
``SHARE_REASON_CONSENT_WITHDRAWN``); ``null`` for an unset optional field or message
and for an enum's UNSPECIFIED value.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

Data = dict[str, Any]


def enum_prefix(descriptor: EnumDescriptor) -> str:
    """``SEGMENT_`` for Segment: the zero value's name without ``UNSPECIFIED``."""
    return descriptor.values_by_number[0].name.removesuffix("UNSPECIFIED")


def enum_names(descriptor: EnumDescriptor) -> dict[str, int]:
    """Short name -> number, UNSPECIFIED left out."""
    prefix = enum_prefix(descriptor)
    return {v.name.removeprefix(prefix): v.number for v in descriptor.values if v.number}


def _enum(descriptor: EnumDescriptor, number: int) -> str | None:
    if number == 0:
        return None
    value = descriptor.values_by_number.get(number)
    return value.name.removeprefix(enum_prefix(descriptor)) if value else str(number)


def _value(enum: EnumDescriptor | None, value: Any) -> Any:
    if isinstance(value, Timestamp):
        return value.ToJsonString()
    if isinstance(value, Message):
        return to_data(value)
    return _enum(enum, value) if enum is not None else value


def to_data(message: Message) -> Data:
    """The message as JSON-ready data (see the module's docstring)."""
    data: Data = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        enum = cast("EnumDescriptor | None", field.enum_type)  # upb's type is the same class
        if field.is_repeated:
            data[field.name] = [_value(enum, item) for item in value]
        elif field.has_presence and not message.HasField(field.name):
            data[field.name] = None
        else:
            data[field.name] = _value(enum, value)
    return data


# ------------------------------------------------------------------ printing


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Leave it to the command (rich would exit 1 here)."""
        raise BrokenPipeError


class Output:
    """Where results go: JSON documents or lines, or tables on a rich console (stdout)."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        # Piped output is not cut to 80 columns (ids would wrap); a terminal keeps its width.
        wide = sys.stdout.isatty() or "COLUMNS" in os.environ
        self.console = _Console(highlight=False, width=None if wide else 200)

    def document(self, data: Data) -> None:
        print(json.dumps(data, indent=2, ensure_ascii=False), flush=True)

    def line(self, data: Data) -> None:
        print(json.dumps(data, ensure_ascii=False), flush=True)

    def show(self, *parts: RenderableType) -> None:
        self.console.print(Group(*parts))

    def emit(self, data: Data, tables: Callable[[Data], Sequence[RenderableType]]) -> None:
        """``data`` as one JSON document, or as the tables ``tables`` makes of it."""
        if self.json:
            self.document(data)
        else:
            self.show(*tables(data))


def when(value: str | None) -> str | None:
    """An RFC 3339 time to the second, for a table."""
    return f"{value[:10]} {value[11:19]}Z" if value else None


def cell(value: Any) -> Text:
    """A table cell, never interpreted as rich markup (``[erased]`` stays visible)."""
    if value is None or value == "":
        return Text("-")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        return Text(f"{value['amount']} {value['currency']}")
    if isinstance(value, list):
        return Text(", ".join(str(item) for item in value) or "-")
    return Text(str(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    grid = Table(*columns, title=title, title_justify="left", min_width=len(title or ""))
    for row in rows:
        grid.add_row(*(cell(value) for value in row))
    return grid


def fields(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    grid = Table("Field", "Value", title=title, title_justify="left", min_width=len(title))
    for name, value in rows:
        grid.add_row(Text(name), cell(value))
    return grid


# ------------------------------------------------------------------ commands


def customers(rows: Sequence[Data]) -> Table:
    return table(
        f"{len(rows)} customers",
        (
            "Customer",
            "Name",
            "Tier",
            "Stage",
            "Segment",
            "Purchases",
            "Net purchases",
            "Last interaction",
        ),
        (
            (
                c["customer_id"],
                c["display_name"],
                c["tier"],
                c["lifecycle_stage"],
                c["segment"],
                c["purchase_count"],
                c["net_purchases"],
                when(c["last_interaction_at"]),
            )
            for c in rows
        ),
    )


def customer(data: Data) -> list[RenderableType]:
    c, i = data["customer"], data["insight"]
    profile = fields(
        f"Customer {c['customer_id']} (version {c['version']}, position {data['position']})",
        [
            ("name", c["display_name"]),
            ("external ref", c["external_ref"]),
            ("kind", c["kind"]),
            ("industry / region", f"{c['industry']} / {c['region']}"),
            ("size", c["size"]),
            ("source", c["source"]),
            ("potential value", c["potential_value"]),
            ("tier", f"{c['tier']} since {when(c['tier_effective_from'])}"),
            ("contacts", len(c["contacts"])),
            ("interactions", c["interaction_count"]),
            ("purchases / refunds", f"{c['purchase_count']} / {c['refund_count']}"),
            ("purchased / refunded", f"{cell(c['purchased_total'])} / {cell(c['refunded_total'])}"),
            ("last purchase", when(c["last_purchase_at"])),
            ("shares / refused", f"{c['share_count']} / {c['refused_share_count']}"),
            ("erased", when(c["erased_at"]) if c["erased"] else False),
        ],
    )
    rfm = i["rfm"]
    insight = fields(
        f"Insight as of {i['as_of'][:10]} (position {i['position']})",
        [
            ("lifecycle stage", i["lifecycle_stage"]),
            ("RFM (r f m)", f"{rfm['r']} {rfm['f']} {rfm['m']}" if rfm else None),
            ("segment", i["segment"]),
            ("value quadrant", i["value_quadrant"]),
            ("recommended tier", i["recommended_tier"]),
            ("assigned tier", i["assigned_tier"]),
            ("CLV", f"{i['clv']} {i['currency']}"),
            ("recency (days)", i["recency_days"]),
            ("frequency (365 days)", i["frequency"]),
            ("monetary (365 days)", f"{i['monetary']} {i['currency']}"),
        ],
    )
    parts: list[RenderableType] = [profile, insight]
    if i["stage_history"]:
        parts.append(
            table(
                "Lifecycle history",
                ("Since", "Stage"),
                ((when(k["since"]), k["stage"]) for k in i["stage_history"]),
            )
        )
    if c["consents"]:
        parts.append(
            table(
                "Consents",
                ("Consent", "Partner", "Purpose", "Categories", "Status", "Granted at position"),
                (
                    (
                        k["consent_id"],
                        k["partner_id"],
                        k["purpose"],
                        k["data_categories"],
                        k["status"],
                        k["granted_position"],
                    )
                    for k in c["consents"]
                ),
            )
        )
    return parts


def consent(data: Data) -> list[RenderableType]:
    verdict = "ALLOWED" if data["allowed"] else "REFUSED: " + ", ".join(data["reasons"])
    mode = "as known now" if data["as_known_now"] else "as recorded then"
    return [
        Text(f"{verdict} (at {when(data['at'])}, {mode}; log position {data['position']})"),
        fields(
            "Decision",
            [
                ("allowed", data["allowed"]),
                ("reasons", data["reasons"]),
                ("agreement", data["agreement_id"]),
                ("partner version", data["partner_version"]),
            ],
        ),
        table(
            "Per category",
            ("Category", "Allowed", "Reasons", "Consents"),
            (
                (d["category"], d["allowed"], d["reasons"], d["consent_ids"])
                for d in data["category_decisions"]
            ),
        ),
        table(
            "Evidence",
            ("Consent", "Status", "Granted at position", "Withdrawn at position"),
            (
                (e["consent_id"], e["status"], e["granted_position"], e["withdrawn_position"])
                for e in data["evidence"]
            ),
        ),
    ]


def scorecard(data: Data) -> list[RenderableType]:
    s = data["scorecard"]
    evaluation = s["evaluation"]
    standing = f"{s['status']} ({s['status_reason']})" if s["status_reason"] else s["status"]
    parts: list[RenderableType] = [
        fields(
            f"Partner {s['partner_id']} (version {s['version']}, position {data['position']})",
            [
                ("name", s["name"]),
                ("external ref", s["external_ref"]),
                ("kind", s["kind"]),
                ("status", standing),
                ("tier", s["tier"]),
                ("regions", s["regions"]),
                ("capabilities", s["capabilities"]),
                ("registered", when(s["registered_at"])),
                ("weighted score", s["weighted_score"]),
                ("performance", s["performance"]),
                (
                    "evaluation (strength reputation fit protection)",
                    " ".join(
                        str(evaluation[k])
                        for k in ("strength", "reputation", "business_fit", "data_protection")
                    )
                    if evaluation
                    else None,
                ),
                ("linked customers", len(s["linked_customers"])),
                ("shares / refused", f"{s['share_count']} / {s['refused_share_count']}"),
                ("refusals", [f"{r['reason']}: {r['count']}" for r in s["refusal_reasons"]]),
            ],
        ),
    ]
    if s["agreements"]:
        parts.append(
            table(
                "Agreements",
                ("Agreement", "Kind", "In effect", "Confidential", "Purposes", "From", "To"),
                (
                    (
                        a["agreement_id"],
                        a["kind"],
                        a["in_effect"],
                        a["confidentiality"],
                        a["permitted_purposes"],
                        when(a["effective_from"]),
                        when(a["effective_to"]),
                    )
                    for a in s["agreements"]
                ),
            )
        )
    if s["reviews"]:
        parts.append(
            table(
                "Reviews",
                ("Period", "Revenue", "New customers", "Satisfaction", "Complaints"),
                (
                    (
                        r["period"],
                        r["revenue"],
                        r["new_customers"],
                        r["satisfaction"],
                        r["complaints"],
                    )
                    for r in s["reviews"]
                ),
            )
        )
    return parts


def counts(title: str, name: str, rows: Sequence[Data], key: str) -> Table:
    """Segments or lifecycle stages with their customer counts, and the total."""
    grid = table(title, (name, "Customers"), ((r[key], r["customers"]) for r in rows))
    grid.add_section()
    grid.add_row(Text("total"), Text(str(sum(r["customers"] for r in rows))))
    return grid


def segments(data: Data) -> list[RenderableType]:
    title = f"Segments as of {data['as_of'][:10]} (position {data['position']})"
    return [counts(title, "Segment", data["segments"], "segment")]


def funnel(data: Data) -> list[RenderableType]:
    title = f"Lifecycle funnel as of {data['as_of'][:10]} (position {data['position']})"
    return [counts(title, "Stage", data["stages"], "stage")]


def stats(data: Data) -> list[RenderableType]:
    overview = fields(
        f"Accord at {data['server']}",
        [
            ("log position", data["position"]),
            ("chain hash", data["hash"]),
            ("customers", data["customers"]),
            ("partners", data["partners"]),
        ],
    )
    as_of = f"as of {data['as_of'][:10]}"
    segments = [{"segment": k, "customers": v} for k, v in data["segments"].items()]
    stages = [{"stage": k, "customers": v} for k, v in data["funnel"].items()]
    return [
        overview,
        counts(f"Segments {as_of}", "Segment", segments, "segment"),
        counts(f"Lifecycle funnel {as_of}", "Stage", stages, "stage"),
    ]


EVENT_COLUMNS = (
    ("Position", 9),
    ("Recorded at", 20),
    ("Type", 34),
    ("Aggregate", 36),
    ("Actor", 24),
    ("Hash", 12),
)


class EventRows:
    """Prints events as they arrive: one JSON object a line, or table rows under one header."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.header = True

    def __call__(self, events: Sequence[Data]) -> None:
        if self.output.json:
            for event in events:
                self.output.line(event)
            return
        if not events:
            return
        grid = Table(show_header=self.header, box=None, pad_edge=False)
        for name, width in EVENT_COLUMNS:
            grid.add_column(name, width=width, no_wrap=True)
        for e in events:
            grid.add_row(
                *(
                    cell(value)
                    for value in (
                        e["position"],
                        when(e["recorded_at"]),
                        e["type"],
                        e["aggregate_id"],
                        e["actor"],
                        e["hash"][:12],
                    )
                )
            )
        self.output.console.print(grid)
        self.output.console.file.flush()
        self.header = False


def event(message: Message) -> Data:
    """An event's data with its JSON payload as an object."""
    data = to_data(message)
    with contextlib.suppress(ValueError):  # else kept as the string the server sent
        data["payload"] = json.loads(data["payload"])
    return data
