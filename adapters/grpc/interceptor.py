"""One interceptor for every Accord RPC: who is calling, may they, what happened.

For each call it takes (or makes) the correlation id and returns it in the
initial metadata, authenticates the bearer token, checks the role table,
takes a stream slot for a streaming call (``adapters.grpc.limits``: refused
with RESOURCE_EXHAUSTED when all are held), runs the servicer with the
call's principal available to it, maps any error
to its status with rich details, and writes one access-log line (method,
principal, status, duration: never request content).
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc_status import rpc_status

from adapters.grpc.access import is_open, may_call, sees_personal_data
from adapters.grpc.errors import Failure, RpcError, failure_for
from adapters.grpc.limits import StreamSlots
from adapters.grpc.tokens import LOCAL_ADMIN, Authenticator, Principal
from adapters.grpc.translate import undecodable_request
from adapters.metrics import Metrics
from application.context import CallContext
from application.randomness import new_uuid

logger = structlog.get_logger("accord.rpc")

CORRELATION_HEADER = "x-correlation-id"
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Call:
    """What a servicer may know about the call it is serving."""

    method: str
    principal: Principal
    correlation_id: str
    context: grpc.ServicerContext

    @property
    def ctx(self) -> CallContext:
        return CallContext(actor=self.principal.name, correlation_id=self.correlation_id)

    @property
    def sees_personal_data(self) -> bool:
        return sees_personal_data(self.principal)

    def time_left(self, cap: float) -> float:
        """Seconds the call may still wait: its deadline, bounded by ``cap``."""
        remaining = self.context.time_remaining()
        return cap if remaining is None else max(0.0, min(cap, remaining - 0.05))


ANONYMOUS = Principal("anonymous", frozenset())

_current: ContextVar[Call] = ContextVar("accord_call")


def current_call() -> Call:
    return _current.get()


@dataclass(frozen=True)
class _Undecodable:
    """Request bytes that are not the method's message: refused as INVALID_ARGUMENT.

    Left to grpc, a request that does not deserialize fails as INTERNAL ("Exception
    deserializing request!") before the interceptor sees the call.
    """

    data: bytes


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError, or whatever else hostile bytes make the parser raise
            return _Undecodable(data)

    return parse


def _written(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """The method's serializer, passing on as they are the responses a servicer wrote itself.

    A replay's batch is written in its serialised form (``AuditServicer.
    ReadEvents``): parsed into a message, only for it to be serialised again
    here, it cost a replay about a tenth of the server's time.
    """
    if serialize is None:
        return None

    def write(response: Any) -> bytes:
        return response if type(response) is bytes else serialize(response)

    return write


def _decoded(method: str, requests: Iterator[Any]) -> Iterator[Any]:
    """A request stream whose undecodable message ends the call as INVALID_ARGUMENT."""
    for request in requests:
        if isinstance(request, _Undecodable):
            raise undecodable_request(method, request.data)
        yield request


def _bearer(metadata: dict[str, str]) -> str | None:
    value = metadata.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class AccordInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator | None,
        *,
        metrics: Metrics | None = None,
        streams: StreamSlots | None = None,
    ) -> None:
        """``None``: no tokens configured, every (loopback) caller is a local admin.

        ``metrics``: where each call's duration goes (by method and status code).
        ``streams``: the slots a streaming call must hold (None: no limit).
        """
        self.authenticator = authenticator
        self.metrics = metrics
        self.streams = streams

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        method: str = details.method
        if handler is None or is_open(method):
            return handler
        metadata = {k: v for k, v in details.invocation_metadata or () if isinstance(v, str)}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, metadata, handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=_written(handler.response_serializer),
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, metadata, handler.unary_stream),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=_written(handler.response_serializer),
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(method, metadata, handler.stream_stream, streaming_request=True),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=_written(handler.response_serializer),
            )
        return handler  # Accord has no client-streaming-only RPCs

    # ------------------------------------------------------------------ calls

    def _begin(self, method: str, metadata: dict[str, str], context: grpc.ServicerContext) -> Call:
        given = metadata.get(CORRELATION_HEADER, "")
        correlation_id = given if _CORRELATION_ID.match(given) else str(new_uuid())
        context.send_initial_metadata(((CORRELATION_HEADER, correlation_id),))
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        principal = self._authenticate(metadata)
        return Call(method, principal or ANONYMOUS, correlation_id, context)

    @staticmethod
    def _authorize(call: Call) -> None:
        if call.principal is ANONYMOUS:
            raise RpcError(
                Failure(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "a valid bearer token is required (metadata `authorization: Bearer <token>`)",
                )
            )
        if not may_call(call.principal, call.method):
            raise RpcError(
                Failure(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"principal {call.principal.name} may not call "
                    f"{call.method.rsplit('/', 1)[-1]}",
                )
            )

    def _authenticate(self, metadata: dict[str, str]) -> Principal | None:
        if self.authenticator is None:
            return LOCAL_ADMIN
        token = _bearer(metadata)
        return self.authenticator.principal(token) if token else None

    @staticmethod
    def _fail(method: str, error: BaseException) -> Failure:
        """The status for ``error``; a bug is logged by type and line and becomes INTERNAL."""
        failure = failure_for(error)
        if failure is None:
            frame = traceback.extract_tb(error.__traceback__)[-1:]
            logger.error(
                "rpc_internal_error",
                method=method,
                error_type=type(error).__name__,
                where=f"{frame[0].filename}:{frame[0].lineno}" if frame else "?",
            )
            failure = Failure(
                grpc.StatusCode.INTERNAL,
                "internal error; quote the x-correlation-id to the operator",
            )
        return failure

    def _log(self, method: str, call: Call | None, code: grpc.StatusCode, started: float) -> None:
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.observe_rpc(method, code.name, elapsed)
        logger.info(
            "rpc",
            method=method,
            principal=call.principal.name if call else None,
            code=code.name,
            ms=round(elapsed * 1000, 2),
        )
        structlog.contextvars.unbind_contextvars("correlation_id")

    def _unary(
        self, method: str, metadata: dict[str, str], behaviour: Callable[[Any, Any], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            call: Call | None = None
            code = grpc.StatusCode.OK
            try:
                call = self._begin(method, metadata, context)
                self._authorize(call)
                if isinstance(request, _Undecodable):
                    raise undecodable_request(method, request.data)
                token = _current.set(call)
                try:
                    return behaviour(request, context)
                finally:
                    _current.reset(token)
            except Exception as error:
                failure = self._fail(method, error)
                code = failure.code
                context.abort_with_status(rpc_status.to_status(failure.to_status()))
            finally:
                self._log(method, call, code, started)

        return handle

    def _stream(
        self,
        method: str,
        metadata: dict[str, str],
        behaviour: Callable[[Any, Any], Iterator[Any]],
        *,
        streaming_request: bool = False,
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            call: Call | None = None
            code = grpc.StatusCode.OK
            try:
                call = self._begin(method, metadata, context)
                self._authorize(call)
                if isinstance(request, _Undecodable):
                    raise undecodable_request(method, request.data)
                if streaming_request:
                    request = _decoded(method, request)
                with self.streams.slot() if self.streams else nullcontext():
                    responses = behaviour(request, context)
                    try:
                        while True:
                            token = _current.set(call)
                            try:
                                response = next(responses)
                            except StopIteration:
                                break
                            finally:
                                _current.reset(token)
                            yield response
                    finally:
                        responses.close()  # type: ignore[attr-defined]
            except GeneratorExit:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as error:
                failure = self._fail(method, error)
                code = failure.code
                context.abort_with_status(rpc_status.to_status(failure.to_status()))
            finally:
                self._log(method, call, code, started)

        return handle
