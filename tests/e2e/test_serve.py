"""`accord serve` as a real process: where it listens, health, reflection, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from adapters.store import StoreConfig
from application.personal_data import MasterKey

ROOT = Path(__file__).parents[2]


def _serve(store: StoreConfig, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ACCORD_MASTER_KEY": MasterKey.generate().to_base64(),
        "ACCORD_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "--database-url", store.url, "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_server_says_where_it_listens_serves_health_and_reflection_and_stops_on_sigterm(
    store: StoreConfig,
) -> None:
    server = _serve(store, "--port", "0")
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith("Accord listening on 127.0.0.1:"), banner
        port = int(banner.split("127.0.0.1:")[1].split(" ")[0])

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            # The stub packages' types lag the generated code; these two are used untyped.
            health: Any = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

            reflect: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
            [answer] = list(
                reflect.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
                )
            )
            names = {s.name for s in answer.list_services_response.service}
            assert "grpc.health.v1.Health" in names

        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
        assert server.returncode == 0
        assert "Accord stopped" in out
    finally:
        if server.poll() is None:
            server.kill()


def test_without_tokens_the_server_refuses_to_listen_beyond_loopback(store: StoreConfig) -> None:
    server = _serve(store, "--host", "0.0.0.0", "--port", "0")
    _, err = server.communicate(timeout=60)
    assert server.returncode == 2
    assert "refusing to listen on 0.0.0.0" in err


def test_a_port_in_use_is_one_line_and_exit_2(store: StoreConfig) -> None:
    first = _serve(store, "--port", "0")
    try:
        assert first.stdout is not None
        banner = first.stdout.readline()
        port = banner.split("127.0.0.1:")[1].split(" ")[0]

        second = _serve(store, "--port", port)
        out, err = second.communicate(timeout=60)

        assert second.returncode == 2
        assert f"accord: cannot listen on 127.0.0.1:{port}" in err
        assert "Traceback" not in err
        assert "Accord listening" not in out
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
