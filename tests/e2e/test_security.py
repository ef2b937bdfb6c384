"""Tokens from `accord tokens add`, TLS, client certificates, and refusals to start unsafely."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.grpc.generated.accord.v1 import audit_pb2, audit_pb2_grpc
from adapters.store import StoreConfig
from tests.e2e.harness import ROOT, Client, serve
from tests.e2e.wire import register_customer


def accord(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def bearer(channel: grpc.Channel, token: str) -> Client:
    from tests.e2e.harness import _Metadata

    return Client(
        grpc.intercept_channel(channel, _Metadata([("authorization", f"Bearer {token}")]))
    )


def test_a_token_from_accord_tokens_add_works_and_names_the_actor(
    store: StoreConfig, tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens.toml"
    made = accord(
        "tokens",
        "add",
        "--tokens-file",
        str(tokens_file),
        "--principal",
        "crm-sync",
        "--role",
        "writer",
        "reader",
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("acc_")
    assert token not in tokens_file.read_text()
    audit = accord(
        "tokens",
        "add",
        "--tokens-file",
        str(tokens_file),
        "--principal",
        "auditor-1",
        "--role",
        "auditor",
    ).stdout.strip()

    server = serve(store, tmp_path, "--tokens-file", str(tokens_file), tokens=False)
    try:
        with grpc.insecure_channel(server.address) as channel:
            customer = register_customer(bearer(channel, token))
            events = list(
                audit_pb2_grpc.AuditServiceStub(channel).ReadEvents(
                    audit_pb2.ReadEventsRequest(
                        aggregate_id=customer.customer_id, min_position=customer.position
                    ),
                    metadata=(("authorization", f"Bearer {audit}"),),
                    timeout=15,
                )
            )
        [event] = [e for batch in events for e in batch.events]
        assert event.actor == "crm-sync"
    finally:
        server.stop()


def test_tokens_add_refuses_unknown_roles_and_a_missing_file_name(tmp_path: Path) -> None:
    unknown = accord(
        "tokens",
        "add",
        "--tokens-file",
        str(tmp_path / "t.toml"),
        "--principal",
        "x",
        "--role",
        "root",
    )
    assert unknown.returncode == 2
    assert "invalid choice" in unknown.stderr
    env = {k: v for k, v in os.environ.items() if k != "ACCORD_TOKENS_FILE"}
    nowhere = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "tokens",
            "add",
            "--principal",
            "x",
            "--role",
            "reader",
        ],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert nowhere.returncode == 2
    assert "tokens file" in nowhere.stderr


def test_the_server_will_not_send_tokens_in_clear_text_beyond_loopback(
    store: StoreConfig, tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens.toml"
    accord(
        "tokens", "add", "--tokens-file", str(tokens_file), "--principal", "x", "--role", "admin"
    )
    refused = accord(
        "--database-url",
        store.url,
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--tokens-file",
        str(tokens_file),
    )
    assert refused.returncode == 2
    assert "without TLS" in refused.stderr


def test_a_broken_tokens_file_stops_the_server_from_starting(
    store: StoreConfig, tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text('[[token]]\nprincipal = "x"\nroles = ["root"]\nsha256 = "00"\n')
    refused = accord(
        "--database-url", store.url, "serve", "--port", "0", "--tokens-file", str(tokens_file)
    )
    assert refused.returncode == 2
    assert "tokens file" in refused.stderr


# ----------------------------------------------------------------------- TLS


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    ca_pem: bytes
    client_pem: bytes
    client_key: bytes


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Accord Test CA", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue("localhost", server_key, (ca, ca_key))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("crm-sync", client_key, (ca, ca_key))
    (tmp_path / "ca.pem").write_bytes(_pem(ca))
    (tmp_path / "server.pem").write_bytes(_pem(server))
    (tmp_path / "server.key").write_bytes(_key_pem(server_key))
    return Pki(
        tmp_path / "ca.pem",
        tmp_path / "server.pem",
        tmp_path / "server.key",
        _pem(ca),
        _pem(client),
        _key_pem(client_key),
    )


def _outcome(channel: grpc.Channel, token: str) -> grpc.StatusCode:
    try:
        register_customer(bearer(channel, token))
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def test_tls_serves_encrypted_and_refuses_plaintext(
    store: StoreConfig, tmp_path: Path, pki: Pki
) -> None:
    server = serve(store, tmp_path / "srv", "--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
    try:
        token = server.tokens["writer"]
        secure = grpc.secure_channel(
            server.address, grpc.ssl_channel_credentials(root_certificates=pki.ca_pem)
        )
        assert _outcome(secure, token) == grpc.StatusCode.OK
        secure.close()
        with grpc.insecure_channel(server.address) as plain:
            assert _outcome(plain, token) == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_client_certificates_are_required_when_a_client_ca_is_given(
    store: StoreConfig, tmp_path: Path, pki: Pki
) -> None:
    server = serve(
        store,
        tmp_path / "srv",
        "--tls-cert",
        str(pki.cert),
        "--tls-key",
        str(pki.key),
        "--tls-client-ca",
        str(pki.ca),
    )
    try:
        token = server.tokens["writer"]
        ca, cert, key = pki.ca_pem, pki.client_pem, pki.client_key
        anonymous = grpc.secure_channel(
            server.address, grpc.ssl_channel_credentials(root_certificates=ca)
        )
        assert _outcome(anonymous, token) == grpc.StatusCode.UNAVAILABLE
        anonymous.close()
        with grpc.secure_channel(
            server.address,
            grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert
            ),
        ) as mutual:
            assert _outcome(mutual, token) == grpc.StatusCode.OK
    finally:
        server.stop()
