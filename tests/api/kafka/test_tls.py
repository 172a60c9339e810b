"""Kafka listeners over TLS, with real clients: confluent-kafka, kcat, kafka-python, aiokafka."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography import x509
from cryptography.x509.oid import NameOID
from kafka import KafkaConsumer, KafkaProducer

from api.tls import rfc2253

from ..security_support import (  # noqa: F401 (certs_fixture: a fixture)
    CLIENT_PRINCIPAL,
    Certs,
    SecureKafkaServer,
    certs_fixture,
    make_certs,
)
from ..server import http_get
from .test_kcat import END_AT_ONCE

LISTENERS = {"PLAINTEXT": "PLAINTEXT", "SSL": "SSL", "MTLS": "SSL"}


@pytest.fixture(scope="module")
def server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafkaServer]:
    """Three listeners at once: PLAINTEXT, SSL, and MTLS (SSL that requires a client
    certificate), MTLS advertised under another name."""
    server = SecureKafkaServer(str(tmp_path_factory.mktemp("tls") / "data"), LISTENERS,
                               "listener.name.mtls.ssl.client.auth=required", certs=certs)
    server.conf += (f"advertised.listeners=MTLS://localhost:{server.ports['MTLS']}",)
    server.start()
    yield server
    assert server.stop() == 0, server.log()


def metadata_broker(bootstrap: str, **config: str) -> str:
    """The broker address a Metadata answer gives a confluent-kafka client."""
    brokers = AdminClient({"bootstrap.servers": bootstrap, **config}).list_topics(timeout=10).brokers
    broker = next(iter(brokers.values()))
    return f"{broker.host}:{broker.port}"


def refused(bootstrap: str, **config: str) -> bool:
    try:
        AdminClient({"bootstrap.servers": bootstrap, **config}).list_topics(timeout=3)
    except KafkaException:
        return True
    return False


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def metric(server: SecureKafkaServer, name: str, listener: str) -> float:
    status, text = http_get(f"{server.http_url}/metrics")
    assert status == 200
    found = re.search(rf'^{name}{{listener="{listener}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_each_listener_answers_metadata_with_its_own_advertised_address(server: SecureKafkaServer,
                                                                        certs: Certs) -> None:
    assert metadata_broker(server.address("PLAINTEXT")) == server.address("PLAINTEXT")
    assert metadata_broker(server.address("SSL"), **certs.confluent_ssl()) == server.address("SSL")
    assert metadata_broker(server.address("MTLS"), **certs.confluent_ssl(client_cert=True)) == \
        f"localhost:{server.ports['MTLS']}"


def test_confluent_produces_and_consumes_in_a_group_over_ssl(server: SecureKafkaServer, certs: Certs) -> None:
    """The group's coordinator (FindCoordinator) is the SSL listener too: a PLAINTEXT port
    there would fail the consumer's handshake."""
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": server.address("SSL"), **certs.confluent_ssl()})
    for i in range(10):
        producer.produce(topic, f"v{i}".encode(), key=b"k")
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": server.address("SSL"), "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", **certs.confluent_ssl()})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 15
    while len(values) < 10 and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            values.append(message.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    assert values == [f"v{i}".encode() for i in range(10)]


def test_a_client_trusting_another_ca_cannot_connect(server: SecureKafkaServer, certs: Certs) -> None:
    failures = metric(server, "tierlog_kafka_tls_handshake_failures_total", "SSL")
    assert refused(server.address("SSL"), **{**certs.confluent_ssl(), "ssl.ca.location": certs.other_ca_file})
    wait_for(lambda: metric(server, "tierlog_kafka_tls_handshake_failures_total", "SSL") > failures)
    # A plaintext client on the TLS port gets no Kafka answer either.
    assert refused(server.address("SSL"))


def test_the_mtls_listener_requires_a_client_certificate(server: SecureKafkaServer, certs: Certs) -> None:
    assert refused(server.address("MTLS"), **certs.confluent_ssl())
    assert not refused(server.address("MTLS"), **certs.confluent_ssl(client_cert=True))
    # The SSL listener (no ssl.client.auth) takes the same client with or without one.
    assert not refused(server.address("SSL"), **certs.confluent_ssl(client_cert=True))


def test_kcat_over_ssl_checks_the_server_certificate(server: SecureKafkaServer, certs: Certs) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not on PATH: install it (tests/run.sh does)"
    topic = f"kcat-tls-{uuid.uuid4().hex[:8]}"

    def run(*args: str, ca: str = certs.ca_file, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([kcat, "-b", server.address("SSL"), "-X", "security.protocol=ssl",
                               "-X", f"ssl.ca.location={ca}", *args], input=stdin, capture_output=True,
                              text=True, timeout=30)

    produced = run("-P", "-t", topic, stdin="a\nb\n")
    assert produced.returncode == 0, produced.stderr
    consumed = run("-C", "-t", topic, "-e", *END_AT_ONCE, "-q", "-f", "%s\n")
    assert consumed.returncode == 0 and consumed.stdout.split() == ["a", "b"], consumed.stderr
    wrong = run("-L", "-m", "3", ca=certs.other_ca_file)
    assert wrong.returncode != 0 and "certificate verify failed" in wrong.stderr


def test_kafka_python_over_ssl(server: SecureKafkaServer, certs: Certs) -> None:
    topic = f"kp-tls-{uuid.uuid4().hex[:8]}"
    ssl_settings = {"bootstrap_servers": server.address("SSL"), "security_protocol": "SSL",
                    "ssl_cafile": certs.ca_file}
    producer = KafkaProducer(**ssl_settings)
    producer.send(topic, b"over tls").get(timeout=15)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10_000, **ssl_settings)
    assert next(iter(consumer)).value == b"over tls"
    consumer.close()


def test_aiokafka_over_mtls(server: SecureKafkaServer, certs: Certs) -> None:
    topic = f"aio-tls-{uuid.uuid4().hex[:8]}"

    async def round_trip() -> bytes:
        context = create_ssl_context(cafile=certs.ca_file, certfile=certs.cert("client"), keyfile=certs.key("client"))
        settings = {"bootstrap_servers": f"localhost:{server.ports['MTLS']}", "security_protocol": "SSL",
                    "ssl_context": context}
        producer = AIOKafkaProducer(**settings)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"mutual")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **settings)
        await consumer.start()
        try:
            return (await asyncio.wait_for(consumer.getone(), 15)).value
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(round_trip(), 30)) == b"mutual"


def produce_error(bootstrap: str, topic: str, **config: str) -> int | None:
    """The error code of producing one record, None if it was written."""
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 10_000, **config})
    producer.produce(topic, b"v", on_delivery=lambda err, _: errors.append(err))
    producer.flush(15)
    assert len(errors) == 1
    return None if errors[0] is None else errors[0].code()


def test_the_verified_client_certificate_is_the_principal(tmp_path: Path, certs: Certs) -> None:
    """alice, by her certificate on the MTLS listener, is a super user; the same client on
    the SSL listener (no client authentication) is ANONYMOUS, and refused. OPT asks for a
    certificate without requiring one: alice with hers, ANONYMOUS without."""
    server = SecureKafkaServer(str(tmp_path / "data"), {"MTLS": "SSL", "SSL": "SSL", "OPT": "SSL"},
                               "listener.name.mtls.ssl.client.auth=required",
                               "listener.name.opt.ssl.client.auth=requested", "authorizer.class.name=tierlog",
                               f"super.users={CLIENT_PRINCIPAL}", certs=certs).start()
    try:
        alice = AdminClient({"bootstrap.servers": server.address("MTLS"), **certs.confluent_ssl(client_cert=True)})
        alice.create_topics([NewTopic("alices", 1)])["alices"].result(timeout=10)
        assert produce_error(server.address("MTLS"), "alices", **certs.confluent_ssl(client_cert=True)) is None
        assert produce_error(server.address("SSL"), "alices", **certs.confluent_ssl(client_cert=True)) == \
            KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert produce_error(server.address("OPT"), "alices", **certs.confluent_ssl(client_cert=True)) is None
        assert produce_error(server.address("OPT"), "alices", **certs.confluent_ssl()) == \
            KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        assert server.stop() == 0, server.log()


def test_principal_names_are_written_as_java_writes_them() -> None:
    """Kafka's principal is Java's X500Principal.getName(): the most specific part first,
    keywords for CN, O and the like, other attributes as OID=#hex of their DER value."""
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@x.com")])
    assert rfc2253(name) == r"1.2.840.113549.1.9.1=#16076140782e636f6d,CN=alice,O=Example\, Inc,C=US"


def served_certificate(address: str, context: ssl.SSLContext) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def file_certificate(path: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(Path(path).read_bytes()).public_bytes(Encoding.DER)


def test_a_rotated_certificate_reaches_new_connections(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    server = SecureKafkaServer(str(tmp_path / "data"), {"SSL": "SSL"}, certs=certs).start()
    try:
        context = certs.client_context()
        first = served_certificate(server.address("SSL"), context)
        assert first == file_certificate(certs.cert("server"))
        certs.issue_server()
        rotated = file_certificate(certs.cert("server"))
        assert rotated != first
        wait_for(lambda: served_certificate(server.address("SSL"), context) == rotated)
        assert not refused(server.address("SSL"), **certs.confluent_ssl())
        # A broken new file: logged (files are looked at as connections arrive), and the
        # last good certificate goes on being served.
        Path(certs.pem("server")).write_text("not a certificate\n")
        wait_for(lambda: served_certificate(server.address("SSL"), context) == rotated
                 and "do not load, serving the previous certificate" in server.log())
    finally:
        assert server.stop() == 0, server.log()


def test_a_client_that_never_says_hello_is_closed_and_frees_its_place(tmp_path: Path, certs: Certs) -> None:
    server = SecureKafkaServer(str(tmp_path / "data"), {"SSL": "SSL"}, "ssl.handshake.timeout.ms=1000",
                               "max.connections.per.ip=2", certs=certs).start()
    try:
        host, port = "127.0.0.1", server.ports["SSL"]
        opened = time.monotonic()
        silent = [socket.create_connection((host, port), timeout=5) for _ in range(2)]
        # Both silent clients hold their places: a third connection is closed at once.
        wait_for(lambda: closed_by_server(socket.create_connection((host, port), timeout=5), 1.0))
        # ... until the handshake timeout (1 s) closes them.
        assert all(closed_by_server(sock, 5.0) for sock in silent)
        assert 0.9 < time.monotonic() - opened < 5.0
        assert metric(server, "tierlog_kafka_tls_handshake_failures_total", "SSL") >= 2
        # Their places are free again: a TLS client gets in.
        assert served_certificate(server.address("SSL"), certs.client_context())
    finally:
        assert server.stop() == 0, server.log()


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True if the server closes `sock` (which sends nothing) within `within_s`."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


def test_protocol_versions_and_cipher_suites_per_listener(tmp_path: Path, certs: Certs) -> None:
    """TLS13 takes TLSv1.3 only; TLS12 is capped at TLSv1.2 by ssl.protocol, with one suite."""
    server = SecureKafkaServer(str(tmp_path / "data"), {"TLS13": "SSL", "TLS12": "SSL"},
                               "listener.name.tls13.ssl.enabled.protocols=TLSv1.3",
                               "listener.name.tls12.ssl.protocol=TLSv1.2",
                               "listener.name.tls12.ssl.cipher.suites=ECDHE-ECDSA-AES128-GCM-SHA256",
                               certs=certs).start()
    try:
        def negotiated(listener: str, context: ssl.SSLContext) -> tuple[str | None, str | None]:
            with socket.create_connection(("127.0.0.1", server.ports[listener]), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                cipher = tls.cipher()
                return tls.version(), cipher[0] if cipher else None

        assert negotiated("TLS12", certs.client_context()) == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
        assert negotiated("TLS13", certs.client_context())[0] == "TLSv1.3"
        only_12 = certs.client_context()
        only_12.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            negotiated("TLS13", only_12)
    finally:
        assert server.stop() == 0, server.log()
