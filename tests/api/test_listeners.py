"""Listener settings: what `tierlog serve` refuses (one line, exit 2, nothing touched), and the
safe default that keeps listeners without TLS and authentication off the network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives import serialization

from testkit.ports import free_port

from .security_support import Certs, SecureKafkaServer, certs_fixture  # noqa: F401 (a fixture)
from .server import TierlogServer
from .test_cli import one_line, tierlog


def serve(data: Path, *flags: str) -> tuple[int, str]:
    result = tierlog("serve", "--data-dir", str(data), "--grpc-listen", f"127.0.0.1:{free_port()}",
                     "--http-listen", f"127.0.0.1:{free_port()}", *flags)
    return result.returncode, result.stderr


def conf(*settings: str) -> list[str]:
    return [arg for setting in settings for arg in ("--conf", setting)]


@pytest.mark.parametrize("settings, words", [
    (("listeners=CLIENT://127.0.0.1:{port}",), "listener CLIENT has no security protocol: add CLIENT:SSL"),
    (("listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{port}",), "two listeners on one port"),
    (("listeners=PLAINTEXT://127.0.0.1:{port},plaintext://127.0.0.1:1",), "listener PLAINTEXT is named twice"),
    (("listeners=127.0.0.1:{port}",), "listeners: expected NAME://HOST:PORT entries, got '127.0.0.1:"),
    (("listener.security.protocol.map=CLIENT:TLS",), "expected NAME:PROTOCOL entries with a protocol of"),
    (("advertised.listeners=SSL://example.com:9093",), "advertised.listeners names SSL, not a listener (PLAINTEXT)"),
    (("listeners=SSL://127.0.0.1:{port}",), "Kafka listener SSL: TLS needs ssl.keystore.location (a PEM file"),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.type=JKS", "ssl.keystore.location=/x.jks"),
     "ssl.keystore.type=JKS: tierlog reads PEM only"),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.location=/nonexistent.pem"),
     "ssl.keystore.location=/nonexistent.pem: No such file or directory"),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.location={server}", "ssl.enabled.protocols=TLSv1.1"),
     "ssl.enabled.protocols=TLSv1.1: expected TLSv1.2 and/or TLSv1.3"),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.location={server}", "ssl.enabled.protocols=TLSv1.3",
      "ssl.protocol=TLSv1.2"), "ssl.protocol=TLSv1.2 is below every version in ssl.enabled.protocols=TLSv1.3"),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.location={server}", "ssl.cipher.suites=NOPE"),
     "ssl.cipher.suites=NOPE: no cipher suite OpenSSL knows"),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.location={server}", "ssl.client.auth=maybe"),
     "ssl.client.auth=maybe: expected none, requested or required"),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.location={server}",
      "listener.name.ssl.ssl.client.auth=required"),
     "Kafka listener SSL: listener.name.ssl.ssl.client.auth=required needs ssl.truststore.location"),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.location={server}", "ssl.key.password=secret"),
     "ssl.keystore.location: Password was given but private key is not encrypted."),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.location={client_key}"),
     "ssl.keystore.location: no PEM certificate chain"),
    (("listeners=SSL://127.0.0.1:{port}", "ssl.keystore.location={server}", "ssl.truststore.location={client_key}"),
     "ssl.truststore.location: no PEM certificate in it"),
    (("ssl.principal.mapping.rules=RULE:^CN=(.*?)$/$1/",), "tierlog maps certificates by Kafka's DEFAULT rule only"),
    (("listener.name.external.ssl.client.auth=required",),
     "listener.name.external.ssl.client.auth: no listener EXTERNAL (listeners: PLAINTEXT)"),
    (("grpc.listener.security.protocol=TLS",), "grpc.listener.security.protocol=TLS: expected PLAINTEXT or SSL"),
    (("grpc.listener.security.protocol=SSL", "ssl.keystore.location={server}", "ssl.truststore.location={ca}",
      "ssl.client.auth=requested"), "ssl.client.auth=requested: gRPC asks for client certificates only as required"),
])
def test_bad_listener_settings_are_refused_in_one_line(tmp_path: Path, certs: Certs, settings: tuple[str, ...],
                                                       words: str) -> None:
    values = {"port": free_port(), "server": certs.pem("server"), "client_key": certs.key("client"),
              "ca": certs.ca_file}
    code, stderr = serve(tmp_path / "data", *conf(*(setting.format(**values) for setting in settings)))
    assert code == 2 and words in one_line(stderr)
    assert not (tmp_path / "data").exists()


def test_kafka_listen_and_listeners_together_are_refused(tmp_path: Path) -> None:
    code, stderr = serve(tmp_path / "data", "--kafka-listen", f"127.0.0.1:{free_port()}",
                         *conf(f"listeners=PLAINTEXT://127.0.0.1:{free_port()}"))
    assert code == 2 and "--kafka-listen and the listeners property both name Kafka listeners" in one_line(stderr)


@pytest.mark.parametrize("flag, words", [
    ("--kafka-listen", "Kafka listener PLAINTEXT (PLAINTEXT) on 0.0.0.0:"),
    ("--grpc-listen", "gRPC on 0.0.0.0:"),
    ("--http-listen", "HTTP on 0.0.0.0:"),
])
def test_a_listener_open_to_the_network_without_tls_is_refused(tmp_path: Path, flag: str, words: str) -> None:
    flags = {"--kafka-listen": f"127.0.0.1:{free_port()}", "--grpc-listen": f"127.0.0.1:{free_port()}",
             "--http-listen": f"127.0.0.1:{free_port()}"}
    flags[flag] = f"0.0.0.0:{free_port()}"
    result = tierlog("serve", "--data-dir", str(tmp_path / "data"), *(x for kv in flags.items() for x in kv))
    line = one_line(result.stderr)
    assert result.returncode == 2 and words in line
    assert "open to the network without TLS and authentication" in line and "--allow-insecure" in line
    assert not (tmp_path / "data").exists()


def test_allow_insecure_starts_and_warns_once(tmp_path: Path) -> None:
    server = TierlogServer(str(tmp_path / "data"), "--kafka-listen", f"0.0.0.0:{free_port()}", "--allow-insecure")
    server.start()
    try:
        warnings = [line for line in server.log().splitlines() if "--allow-insecure" in line]
        assert len(warnings) == 1 and "Kafka listener PLAINTEXT (PLAINTEXT) on 0.0.0.0:" in warnings[0]
    finally:
        assert server.stop() == 0, server.log()


def test_tls_with_client_certificates_may_listen_on_every_interface(tmp_path: Path, certs: Certs) -> None:
    """No flag needed: an SSL listener that requires client certificates authenticates."""
    server = SecureKafkaServer(str(tmp_path / "data"), {"MTLS": "SSL"}, certs=certs)
    server.conf += (f"listeners=MTLS://0.0.0.0:{server.ports['MTLS']}", "ssl.client.auth=required")
    server.start()
    try:
        assert "--allow-insecure" not in server.log()
        brokers = AdminClient({"bootstrap.servers": server.address("MTLS"), **certs.confluent_ssl(client_cert=True)}
                              ).list_topics(timeout=10).brokers
        assert len(brokers) == 1
    finally:
        assert server.stop() == 0, server.log()


def test_grpc_on_every_interface_needs_tls_with_authentication(tmp_path: Path, certs: Certs) -> None:
    """TLS alone is not enough; TLS with call credentials required (grpc.authentication) is."""
    tls = ("grpc.listener.security.protocol=SSL", f"ssl.keystore.location={certs.pem('server')}")
    code, stderr = serve(tmp_path / "refused", *conf(*tls), "--grpc-listen", f"0.0.0.0:{free_port()}")
    assert code == 2 and "gRPC on 0.0.0.0:" in one_line(stderr)
    server = SecureKafkaServer(str(tmp_path / "data"), {"PLAINTEXT": "PLAINTEXT"}, *tls, "grpc.authentication=required")
    server.grpc_host = "0.0.0.0"
    server.start()
    try:
        assert "--allow-insecure" not in server.log()
    finally:
        assert server.stop() == 0, server.log()


def test_an_encrypted_key_and_an_inline_keystore(tmp_path: Path, certs: Certs) -> None:
    key = serialization.load_pem_private_key(Path(certs.key("server")).read_bytes(), None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"s3cret")).decode()
    chain = Path(certs.cert("server")).read_text()
    keystore = tmp_path / "encrypted.pem"
    keystore.write_text(encrypted + chain)
    code, stderr = serve(tmp_path / "refused", *conf(f"listeners=SSL://127.0.0.1:{free_port()}",
                                                     f"ssl.keystore.location={keystore}", "ssl.key.password=wrong"))
    assert code == 2 and "ssl.keystore.location: no PEM private key that ssl.key.password decrypts" in one_line(stderr)
    for keystore_settings in ((f"ssl.keystore.location={keystore}",),
                              (f"ssl.keystore.key={encrypted}", f"ssl.keystore.certificate.chain={chain}")):
        server = SecureKafkaServer(str(tmp_path / f"data-{len(keystore_settings)}"), {"SSL": "SSL"},
                                   *keystore_settings, "ssl.key.password=s3cret")
        server.start()
        try:
            brokers = AdminClient({"bootstrap.servers": server.address("SSL"), **certs.confluent_ssl()}
                                  ).list_topics(timeout=10).brokers
            assert len(brokers) == 1
        finally:
            assert server.stop() == 0, server.log()


def test_every_listener_binds_before_the_log_opens(tmp_path: Path, certs: Certs) -> None:
    """The second listener's port is taken: nothing starts, the data folder is not made."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        code, stderr = serve(tmp_path / "data", *conf(
            f"listeners=PLAINTEXT://127.0.0.1:{free_port()},SSL://127.0.0.1:{port}",
            f"ssl.keystore.location={certs.pem('server')}"))
    assert code == 1
    assert one_line(stderr) == (f"tierlog serve: the Kafka listener SSL cannot listen on 127.0.0.1:{port}: "
                                f"Address already in use")
    assert not (tmp_path / "data").exists()
