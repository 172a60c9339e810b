"""gRPC and HTTP over TLS: real channels, the client library's ClientTls, the CLI's flags."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from api.client import Admin, ClientTls, TierlogError

from .security_support import (  # noqa: F401 (certs_fixture: a fixture)
    CLIENT_PRINCIPAL,
    Certs,
    SecureKafkaServer,
    certs_fixture,
    make_certs,
)
from .test_cli import one_line, tierlog


@pytest.fixture(scope="module")
def server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafkaServer]:
    """gRPC over TLS without client certificates, HTTP over TLS."""
    server = SecureKafkaServer(str(tmp_path_factory.mktemp("grpc-tls") / "data"), {"PLAINTEXT": "PLAINTEXT"},
                               "grpc.listener.security.protocol=SSL", certs=certs, https=True).start()
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def mtls_server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafkaServer]:
    """gRPC over TLS that requires a client certificate (its own grpc.ssl.client.auth)."""
    server = SecureKafkaServer(str(tmp_path_factory.mktemp("grpc-mtls") / "data"), {"PLAINTEXT": "PLAINTEXT"},
                               "grpc.listener.security.protocol=SSL", "grpc.ssl.client.auth=required",
                               certs=certs).start()
    yield server
    assert server.stop() == 0, server.log()


def serving(channel: grpc.Channel) -> bool:
    """A health check over `channel`: False if the call fails (no TLS, wrong CA, no certificate)."""
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError:
        return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def credentials(ca: str, certs: Certs | None = None) -> grpc.ChannelCredentials:
    client = (Path(certs.key("client")).read_bytes(), Path(certs.cert("client")).read_bytes()) if certs else (None, None)
    return grpc.ssl_channel_credentials(Path(ca).read_bytes(), *client)


def test_grpc_over_tls_checks_the_server_certificate(server: SecureKafkaServer, certs: Certs) -> None:
    with grpc.secure_channel(server.grpc_address, credentials(certs.ca_file)) as channel:
        assert serving(channel)
    with grpc.secure_channel(server.grpc_address, credentials(certs.other_ca_file)) as channel:
        assert not serving(channel)
    with grpc.insecure_channel(server.grpc_address) as channel:
        assert not serving(channel)


def test_the_client_library_over_tls(server: SecureKafkaServer, certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    with Admin(server.grpc_address, tls=ClientTls(ca_file=certs.ca_file)) as admin:
        admin.create_topic("over-tls", partitions=2)
        assert "over-tls" in admin.list_topics()
    monkeypatch.setenv("TIERLOG_CA_FILE", certs.ca_file)  # the environment, as the CLI's flags set it
    with Admin(server.grpc_address) as admin:
        assert "over-tls" in admin.list_topics()
    monkeypatch.delenv("TIERLOG_CA_FILE")
    with Admin(server.grpc_address, timeout=5) as admin, pytest.raises(TierlogError):
        admin.list_topics()


def test_grpc_mtls_requires_a_client_certificate(mtls_server: SecureKafkaServer, certs: Certs) -> None:
    with grpc.secure_channel(mtls_server.grpc_address, credentials(certs.ca_file)) as channel:
        assert not serving(channel)
    with grpc.secure_channel(mtls_server.grpc_address, credentials(certs.ca_file, certs)) as channel:
        assert serving(channel)


def test_the_cli_reaches_a_tls_server_with_its_flags(mtls_server: SecureKafkaServer, certs: Certs) -> None:
    listed = tierlog("topics", "list", "--server", mtls_server.grpc_address, "--ca-file", certs.ca_file,
                     "--cert-file", certs.cert("client"), "--key-file", certs.key("client"))
    assert listed.returncode == 0, listed.stderr
    without = tierlog("topics", "list", "--server", mtls_server.grpc_address, "--ca-file", certs.ca_file)
    assert without.returncode == 1 and "UNAVAILABLE" in one_line(without.stderr)
    half = tierlog("topics", "list", "--server", mtls_server.grpc_address, "--cert-file", certs.cert("client"))
    assert half.returncode == 2 and "--cert-file and --key-file go together" in one_line(half.stderr)


def test_metrics_over_https(server: SecureKafkaServer, certs: Certs) -> None:
    assert server.http_url.startswith("https://")
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5, context=certs.client_context()) as answer:
        assert answer.status == 200 and b"tierlog_kafka_connections" in answer.read()
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{server.http_url}/healthz", timeout=5,
                               context=ssl.create_default_context(cafile=certs.other_ca_file))
    with pytest.raises((ConnectionError, urllib.error.URLError)):  # plain HTTP on the TLS port
        urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/healthz", timeout=5)


def test_the_grpc_client_certificate_is_the_principal(tmp_path: Path, certs: Certs) -> None:
    """alice's certificate makes her a super user; bob's, from the same CA, is someone else."""
    bob = certs.ca.issue_cert(common_name="bob")
    bob.private_key_pem.write_to_path(str(tmp_path / "bob.key"))
    bob.cert_chain_pems[0].write_to_path(str(tmp_path / "bob.crt"))
    server = SecureKafkaServer(str(tmp_path / "data"), {"PLAINTEXT": "PLAINTEXT"},
                               "grpc.listener.security.protocol=SSL", "grpc.ssl.client.auth=required",
                               "authorizer.class.name=tierlog", f"super.users={CLIENT_PRINCIPAL}", certs=certs).start()
    try:
        alice = ClientTls(certs.ca_file, certs.cert("client"), certs.key("client"))
        with Admin(server.grpc_address, tls=alice) as admin:
            admin.create_topic("alices")
        with Admin(server.grpc_address, tls=ClientTls(certs.ca_file, str(tmp_path / "bob.crt"),
                                                      str(tmp_path / "bob.key"))) as admin:
            with pytest.raises(TierlogError) as refused:
                admin.create_topic("bobs")
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        assert server.stop() == 0, server.log()


def test_grpc_and_https_serve_a_rotated_certificate(tmp_path: Path) -> None:
    """The server's files replaced by a certificate of another CA: new connections get it."""
    certs = make_certs(tmp_path / "certs")
    server = SecureKafkaServer(str(tmp_path / "data"), {"PLAINTEXT": "PLAINTEXT"},
                               "grpc.listener.security.protocol=SSL", certs=certs, https=True).start()
    try:
        new_ca = trustme.CA()
        new_ca.cert_pem.write_to_path(str(tmp_path / "new-ca.pem"))
        trusting_new = ssl.create_default_context(cafile=str(tmp_path / "new-ca.pem"))

        def grpc_serves_new() -> bool:
            with grpc.secure_channel(server.grpc_address, credentials(str(tmp_path / "new-ca.pem"))) as channel:
                return serving(channel)

        def https_serves_new() -> bool:
            try:
                with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=5, context=trusting_new) as answer:
                    return bool(answer.status == 200)
            except urllib.error.URLError:
                return False

        assert not grpc_serves_new() and not https_serves_new()
        certs.issue_server(new_ca)
        deadline = time.monotonic() + 10
        while not (grpc_serves_new() and https_serves_new()):
            assert time.monotonic() < deadline, "the new certificate was not served in time"
            time.sleep(0.1)
    finally:
        assert server.stop() == 0, server.log()


def test_a_certificate_is_the_same_principal_on_grpc_as_on_kafka() -> None:
    """gRPC writes the subject as the Kafka listeners do (Java's X500Principal form), an
    emailAddress attribute included, so one ACL covers the client on both protocols."""
    import datetime
    from typing import Any

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from api.grpc_identity import principal_of
    from api.tls import principal_of_certificate

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
                         x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@x.com")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))

    class Context:  # what grpc.aio hands a handler, as far as principal_of reads it
        def auth_context(self) -> dict[str, Any]:
            return {"x509_pem_cert": [certificate.public_bytes(serialization.Encoding.PEM)]}

    kafka_principal = principal_of_certificate(certificate.public_bytes(serialization.Encoding.DER))
    assert principal_of(Context()) == kafka_principal  # type: ignore[arg-type]
    assert str(kafka_principal) == r"User:1.2.840.113549.1.9.1=#16076140782e636f6d,CN=alice,O=Example\, Inc"
