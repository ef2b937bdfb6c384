"""The gRPC baseline: one no-op unary method on raw bytes, served like Accord serves.

Run: python -m bench.noop_server  (prints "noop listening on 127.0.0.1:PORT", stops on SIGTERM)

Same grpcio, same synchronous server with a thread pool of Accord's default
size and the same message limits, loopback only, no proto: the request and
response are raw bytes (``grpc.method_handlers_generic_handler``). What a
call costs here is what gRPC itself costs; Accord's servicers add to it.
"""

from __future__ import annotations

import signal
import threading
from concurrent import futures
from types import FrameType
from typing import Any

import grpc

from adapters.grpc.server import MAX_MESSAGE_BYTES, ServerOptions

SERVICE = "bench.Noop"
METHOD = f"/{SERVICE}/Call"


def _noop(request: bytes, context: Any) -> bytes:
    return b""


def main() -> None:
    options = ServerOptions()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.threads, thread_name_prefix="noop-rpc"),
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(_noop)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    print(f"noop listening on 127.0.0.1:{port}", flush=True)
    stop.wait()
    server.stop(2).wait()


if __name__ == "__main__":
    main()
