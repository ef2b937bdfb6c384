"""docs/api.md cannot rot: every grpcurl example in it runs against a real server.

Each ```sh block holding a grpcurl command is parsed as the shell would read
it (flags, headers, a `-d '...'` body or a `-d @` heredoc), its `$VARIABLES`
are expanded from the tokens the harness issued and from values captured
from earlier responses (CAPTURES below), the JSON body is parsed into the
method's request message with json_format.Parse (an unknown field or method
fails), and the call is made on the wire. The block that follows shows the
outcome: a ```json response, whose keys (and booleans, enum names and
redaction markers) the real response must have, or a ```text grpcurl error,
whose code, ErrorInfo reason and field violations the real error must have.
The role table is checked against the access rules and the protos.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status

from adapters.grpc.access import ALLOWED_ROLES, sees_personal_data
from adapters.grpc.errors import error_details_pb2
from adapters.grpc.generated.accord.v1 import (
    audit_pb2,
    compliance_pb2,
    customer_pb2,
    insight_pb2,
    partner_pb2,
)
from adapters.grpc.tokens import ROLES, Principal
from tests.e2e.harness import Served

DOC = Path(__file__).parents[2] / "docs" / "api.md"
FILES = (customer_pb2, partner_pb2, compliance_pb2, insight_pb2, audit_pb2)
assert health_pb2.DESCRIPTOR.services_by_name  # grpc.health.v1 in the default pool

CAPTURES: dict[str, dict[str, str]] = {
    "accord.v1.PartnerService/RegisterPartner": {"PARTNER_ID": "partnerId"},
    "accord.v1.PartnerService/SignAgreement": {"AGREEMENT_ID": "agreementId"},
    "accord.v1.CustomerService/RegisterCustomer": {"CUSTOMER_ID": "customerId"},
    "accord.v1.CustomerService/GrantConsent": {"CONSENT_ID": "consentId"},
    "accord.v1.CustomerService/ShareData": {"SHARE_POSITION": "position"},
    "accord.v1.AuditService/GetDigest": {"DIGEST_POSITION": "position", "DIGEST_HASH": "hash"},
}
"""After a call to the method: shell variable -> the response field (as grpcurl prints it)."""

TOKEN_VARIABLES = {f"{role.upper()}_TOKEN": role for role in ROLES}
"""`$WRITER_TOKEN` etc.: the token the harness issued for that role."""

TIME_DEPENDENT = frozenset({"lifecycleStage", "segment", "valueQuadrant", "recommendedTier"})
"""Enum fields whose value depends on today's date, compared by key only."""

_FLAGS_WITH_VALUE = frozenset(
    {"-H", "-d", "-cacert", "-cert", "-key", "-max-time", "-authority", "-connect-timeout"}
)
_BOOLEAN_FLAGS = frozenset({"-plaintext", "-insecure", "-emit-defaults", "-v"})
_VARIABLE = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)\}?")
_ENUM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_MARKERS = frozenset({"[redacted]", "[erased]"})


# --------------------------------------------------------------- the document


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    start: int
    end: int


def fenced_blocks(doc: str) -> list[Block]:
    pattern = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
    return [Block(m.group(1), m.group(2), m.start(), m.end()) for m in pattern.finditer(doc)]


@dataclass(frozen=True)
class Command:
    """One grpcurl invocation, as the shell would pass it (variables not yet expanded)."""

    headers: tuple[tuple[str, str], ...]
    body: str | None
    verb: str  # "call" or "list"
    target: str  # "pkg.Service/Method" for a call; a service name or "" for list
    max_time: float | None


def parse_command(text: str) -> Command:
    heredoc = re.search(r"<<-?\s*(\w+)[ \t]*\n(.*?)\n\1[ \t]*$", text, re.DOTALL | re.MULTILINE)
    assert not re.search(r"<<-?\s*['\"]", text), "a quoted heredoc would not expand $VARIABLES"
    line = text[: heredoc.start()] if heredoc else text
    line = "\n".join(x for x in line.replace("\\\n", " ").splitlines() if x.strip())
    assert "\n" not in line.strip(), f"one grpcurl command per block:\n{text}"
    words = shlex.split(line)
    assert words[0] == "grpcurl", f"the block must start with grpcurl: {line}"
    headers: list[tuple[str, str]] = []
    body: str | None = None
    max_time: float | None = None
    positional: list[str] = []
    rest = iter(words[1:])
    for word in rest:
        if word in _BOOLEAN_FLAGS:
            continue
        if word in _FLAGS_WITH_VALUE:
            value = next(rest)
            if word == "-H":
                name, _, header_value = value.partition(":")
                headers.append((name.strip().lower(), header_value.strip()))
            elif word == "-d":
                if value == "@":
                    assert heredoc, "-d @ reads the request from a heredoc"
                    body = heredoc.group(2)
                else:
                    assert "$" not in value, "single quotes do not expand $VARIABLES: use -d @"
                    body = value
            elif word == "-max-time":
                max_time = float(value)
            continue
        assert not word.startswith("-"), f"grpcurl has no flag {word} (or the test lacks it)"
        positional.append(word)
    assert len(positional) >= 2, f"grpcurl needs an address and a method: {line}"
    _address, what, *more = positional
    if what == "list":
        return Command(tuple(headers), body, "list", more[0] if more else "", max_time)
    assert not more, f"unexpected arguments {more}"
    assert "/" in what, f"not a method (package.Service/Method): {what}"
    return Command(tuple(headers), body, "call", what, max_time)


@dataclass(frozen=True)
class Example:
    command: Command
    outcome: Block | None
    prose_after: str
    source: str


def examples(doc: str) -> list[Example]:
    blocks = fenced_blocks(doc)
    for block in blocks:
        if "grpcurl" in block.text and block.lang != "sh":
            assert block.lang in ("json", "text"), f"grpcurl outside a ```sh block: {block.text}"
    calls = [i for i, b in enumerate(blocks) if b.lang == "sh" and "grpcurl" in b.text]
    found: list[Example] = []
    for n, i in enumerate(calls):
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        outcome = (
            following
            if following is not None
            and following.lang in ("json", "text")
            and (n + 1 == len(calls) or i + 1 < calls[n + 1])
            else None
        )
        after = outcome.end if outcome else blocks[i].end
        until = blocks[calls[n + 1]].start if n + 1 < len(calls) else len(doc)
        found.append(
            Example(parse_command(blocks[i].text), outcome, doc[after:until], blocks[i].text)
        )
    return found


def fails(example: Example) -> bool:
    """Whether the doc shows the example failing (a grpcurl ERROR block after it)."""
    shown = example.outcome
    return shown is not None and shown.lang == "text" and shown.text.startswith("ERROR:")


def expand(text: str, variables: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in variables, f"${name} is neither a token nor captured from an earlier example"
        return variables[name]

    return _VARIABLE.sub(value, text)


# ------------------------------------------------------------------- the wire


def method_descriptor(full_name: str) -> MethodDescriptor:
    service_name, _, method_name = full_name.partition("/")
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        raise AssertionError(f"no service {service_name}") from None
    method = service.methods_by_name.get(method_name)
    assert method is not None, f"{service_name} has no method {method_name}"
    return method


def request_for(command: Command, variables: Mapping[str, str]) -> Message:
    method = method_descriptor(command.target)
    request = message_factory.GetMessageClass(method.input_type)()
    json_format.Parse(expand(command.body or "{}", variables), request)
    return request


@dataclass(frozen=True)
class Outcome:
    responses: list[Message]
    error: grpc.RpcError | None


def call(channel: grpc.Channel, command: Command, variables: Mapping[str, str]) -> Outcome:
    method = method_descriptor(command.target)
    request = request_for(command, variables)
    response_class = message_factory.GetMessageClass(method.output_type)
    metadata = tuple((name, expand(value, variables)) for name, value in command.headers)
    path = f"/{command.target}"
    timeout = command.max_time or 15.0
    responses: list[Message] = []
    try:
        if method.server_streaming:
            stream = channel.unary_stream(
                path,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_class.FromString,
            )
            try:
                for response in stream(request, metadata=metadata, timeout=timeout):
                    responses.append(response)
            except grpc.RpcError as error:
                # A follower stops at its deadline; the batches before it are the answer.
                late = command.max_time is not None and responses
                if not (late and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
        else:
            unary = channel.unary_unary(
                path,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_class.FromString,
            )
            responses.append(unary(request, metadata=metadata, timeout=timeout))
    except grpc.RpcError as error:
        return Outcome(responses, error)
    return Outcome(responses, None)


def listed(channel: grpc.Channel, service: str) -> list[str]:
    """What `grpcurl list [service]` prints, asked through server reflection."""
    info = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = info(iter([request]), timeout=15)
    services = [s.name for s in answer.list_services_response.service]
    if not service:
        return services
    assert service in services, f"reflection does not list {service}"
    found = descriptor_pool.Default().FindServiceByName(service)
    return [f"{service}.{m.name}" for m in found.methods]


# ------------------------------------------------------------------ comparing


def assert_shown(shown: Any, actual: Any, where: str) -> None:
    """Every key the doc shows is in the response; booleans, enums and markers match."""
    if isinstance(shown, dict):
        assert isinstance(actual, dict), f"{where}: the doc shows an object, got {actual!r}"
        for key, value in shown.items():
            assert key in actual, f"{where}: no `{key}` in the response {sorted(actual)}"
            if key in TIME_DEPENDENT:
                continue
            assert_shown(value, actual[key], f"{where}.{key}")
    elif isinstance(shown, list):
        assert isinstance(actual, list), f"{where}: the doc shows a list, got {actual!r}"
        assert len(shown) <= len(actual), f"{where}: the doc shows more items than came back"
        for n, (item, real) in enumerate(zip(shown, actual, strict=False)):
            assert_shown(item, real, f"{where}[{n}]")
    elif isinstance(shown, bool) or (
        isinstance(shown, str) and (_ENUM_NAME.match(shown) or shown in _MARKERS)
    ):
        assert shown == actual, f"{where}: the doc shows {shown!r}, the server said {actual!r}"


def error_details(error: grpc.RpcError) -> tuple[set[str], set[str]]:
    """(ErrorInfo reasons, BadRequest field violation fields) of an error."""
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    reasons: set[str] = set()
    fields: set[str] = set()
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "accord"
            reasons.add(info.reason)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields |= {v.field for v in bad.field_violations}
    return reasons, fields


def assert_error_shown(shown: str, outcome: Outcome, where: str) -> None:
    code = re.search(r"^\s*Code: (\w+)", shown, re.MULTILINE)
    assert code, f"{where}: not a grpcurl error: {shown}"
    assert outcome.error is not None, f"{where}: the doc shows an error, the call succeeded"
    expected = re.sub(r"(?<!^)(?=[A-Z])", "_", code.group(1)).upper()
    assert outcome.error.code().name == expected, f"{where}: {outcome.error}"
    reasons, fields = error_details(outcome.error)
    for reason in re.findall(r'"reason": "(\w+)"', shown):
        assert reason in reasons, f"{where}: no ErrorInfo reason {reason}: {reasons}"
    for field in re.findall(r'"field": "([\w.\[\]]+)"', shown):
        assert field in fields, f"{where}: no field violation for {field}: {fields}"


# ---------------------------------------------------------------------- tests


def role_table(doc: str) -> dict[str, frozenset[str]]:
    """The doc's role table: full method name -> the roles it names (admin aside)."""
    table: dict[str, frozenset[str]] = {}
    lines = iter(doc.splitlines())
    for line in lines:
        if line.replace(" ", "").startswith("|service|RPCs|roles|"):
            break
    else:
        raise AssertionError("no role table (| service | RPCs | roles |) in the doc")
    next(lines)  # the |---| row
    for line in lines:
        if not line.startswith("|"):
            break
        service, rpcs, roles = (cell.strip().strip("`") for cell in line.strip("|").split("|"))
        names = frozenset(r.strip(" `") for r in roles.split(",")) - {"admin"}
        for rpc in rpcs.split(","):
            table[f"/accord.v1.{service}/{rpc.strip(' `')}"] = names
    return table


def test_the_role_table_names_every_rpc_with_the_roles_the_server_admits() -> None:
    table = role_table(DOC.read_text(encoding="utf-8"))
    contract = {
        f"/{service.full_name}/{method.name}"
        for module in FILES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert set(table) == contract, (
        f"missing: {sorted(contract - set(table))}, unknown: {sorted(set(table) - contract)}"
    )
    assert table == ALLOWED_ROLES


def test_the_personal_data_column_matches_the_access_rules() -> None:
    doc = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \|[^|\n]*\| (yes|no)\b", doc, re.MULTILINE)
    assert {role for role, _ in rows} == set(ROLES), rows
    for role, sees in rows:
        assert sees_personal_data(Principal("x", frozenset({role}))) == (sees == "yes"), role


def test_every_example_names_a_real_method_and_valid_json() -> None:
    """Without a server: methods exist, bodies parse, variables are defined before use."""
    found = examples(DOC.read_text(encoding="utf-8"))
    assert len(found) >= 20
    defined = dict.fromkeys(TOKEN_VARIABLES, "token")
    for example in found:
        if example.command.verb == "call":
            request_for(example.command, dict.fromkeys(defined, "1"))
            for _, value in example.command.headers:
                expand(value, defined)
            if fails(example):
                continue
            for variable, field in CAPTURES.get(example.command.target, {}).items():
                if variable in defined:
                    continue
                defined[variable] = "1"
                assert f"${variable}" in example.prose_after, (
                    f"the doc should say after {example.command.target} that "
                    f"`${variable}` is its `{field}`"
                )
                assert f"`{field}`" in example.prose_after, example.source


def test_every_example_works_on_a_real_server(served: Served) -> None:
    channel = served.client(None).channel
    variables = {name: served.tokens[role] for name, role in TOKEN_VARIABLES.items()}
    for n, example in enumerate(examples(DOC.read_text(encoding="utf-8")), start=1):
        command = example.command
        where = f"example {n} ({command.verb} {command.target})"
        if command.verb == "list":
            names = listed(channel, command.target)
            if example.outcome is not None:
                for line in example.outcome.text.split():
                    assert line in names, f"{where}: {line} is not listed: {names}"
            continue
        outcome = call(channel, command, variables)
        if fails(example):
            assert example.outcome is not None
            assert_error_shown(example.outcome.text, outcome, where)
            continue
        assert outcome.error is None, f"{where}: {outcome.error}\n{example.source}"
        assert outcome.responses, f"{where}: no response"
        first = json_format.MessageToDict(outcome.responses[0])
        if example.outcome is not None:
            assert example.outcome.lang == "json", f"{where}: show a response as ```json"
            assert_shown(json.loads(example.outcome.text), first, where)
        for variable, field in CAPTURES.get(command.target, {}).items():
            assert field in first, f"{where}: nothing to capture as ${variable}"
            variables[variable] = str(first[field])


@pytest.mark.parametrize(
    "body",
    ['{"external_ref": "C-1", "no_such_field": 1}', '{"kind": "CUSTOMER_KIND_NONSENSE"}'],
)
def test_a_body_naming_what_the_message_lacks_is_caught(body: str) -> None:
    command = Command((), body, "call", "accord.v1.CustomerService/RegisterCustomer", None)
    with pytest.raises(json_format.ParseError):
        request_for(command, {})


@pytest.mark.parametrize(
    "method", ["accord.v1.CustomerService/GetCustomers", "accord.v1.CustomerServices/GetCustomer"]
)
def test_a_method_that_does_not_exist_is_caught(method: str) -> None:
    with pytest.raises(AssertionError):
        method_descriptor(method)
