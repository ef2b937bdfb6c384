"""The gRPC server factory: health checking, reflection, limits, graceful shutdown.

Servicers are added by the caller (they only translate between protobuf and
the application); this module owns what every Accord server has in common.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

logger = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Requests and responses above this are refused with RESOURCE_EXHAUSTED."""

Register = Callable[[grpc.Server], None]

stopping = threading.Event()
"""Set when the server begins a graceful stop: long-lived streams end at once, cleanly."""


DEFAULT_WORKERS = min(32, (os.cpu_count() or 2) * 8)


def default_max_streams(workers: int = DEFAULT_WORKERS) -> int:
    """Half the worker threads: the other half stays free for unary calls."""
    return max(1, workers // 2)


class ListenError(OSError):
    """The server cannot bind its address; the message says which."""


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 50051
    workers: int = DEFAULT_WORKERS
    """Threads serving calls; streams and waits hold one each, so more than cores."""
    max_message_bytes: int = MAX_MESSAGE_BYTES
    grace_seconds: float = 10.0
    max_streams: int | None = None
    """Concurrent long-lived streams (ReadEvents, GetAggregateHistory); None: half the workers.

    A stream holds a worker thread for as long as it is open (a slow or stalled
    reader included), so beyond this a new one is refused with RESOURCE_EXHAUSTED
    (see ``adapters.grpc.limits``) and unary calls always find a thread.
    """

    @property
    def stream_limit(self) -> int:
        return (
            self.max_streams if self.max_streams is not None else default_max_streams(self.workers)
        )

    @property
    def threads(self) -> int:
        """The pool: ``workers``, or more when more streams are allowed than half of them."""
        return max(self.workers, self.stream_limit + self.workers // 2)

    @property
    def max_concurrent_rpcs(self) -> int:
        """Calls in flight (running or queued for a thread) beyond which gRPC refuses new ones.

        gRPC answers those RESOURCE_EXHAUSTED itself ("Concurrent RPC limit exceeded!"),
        so an overload queues a bounded amount of work instead of collapsing.
        """
        return 4 * self.threads


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: tuple[str, ...] = ()
    """The names health is reported for ("" is the whole server)."""

    def follow_store(self, probe: Callable[[], bool], stop: threading.Event, every: float) -> None:
        """Say NOT_SERVING while the store does not answer, SERVING again when it does.

        A load balancer or orchestrator asking the standard health service then
        routes around a server whose database is gone instead of sending it
        calls that can only fail. Runs until ``stop``; after a graceful stop
        began, the health servicer ignores changes.
        """
        serving: bool | None = True
        while not stop.wait(every):
            try:
                now = probe()
            except Exception:  # a probe that cannot tell says "not serving", and is logged
                logger.exception("health_probe_failed")
                now = False
            if now != serving:
                serving = now
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if now
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                for name in self.service_names:
                    self.health.set(name, status)

    def stop(self, grace: float) -> None:
        """Refuse new calls, let the ones in flight finish (up to ``grace`` seconds)."""
        self.health.enter_graceful_shutdown()
        stopping.set()
        self.server.stop(grace).wait()


def start_server(
    options: ServerOptions,
    registrations: Sequence[Register],
    service_names: Sequence[str],
    *,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> RunningServer:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.threads, thread_name_prefix="accord-rpc"),
        interceptors=list(interceptors),
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    for register in registrations:
        register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{options.host}:{options.port}"
    try:
        port = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError:  # grpcio's way of saying the address is taken or not ours
        port = 0
    if port == 0:
        raise ListenError(
            f"cannot listen on {address}: the port is in use or the address is not this host's"
        )
    server.start()
    names = ("", *service_names)
    for name in names:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer, names)
