"""SASL on Kafka listeners (SASL_PLAINTEXT, and SASL_SSL in test_sasl_ssl): PLAIN and SCRAM
with real clients, the admin APIs that manage users, and what an unauthenticated
connection may not do."""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import scramp
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.api_versions.v3 import request as api_versions_v3
from kio.schema.errors import ErrorCode
from kio.schema.sasl_authenticate.v2 import request as authenticate_v2
from kio.schema.sasl_handshake.v0 import request as handshake_v0
from kio.schema.sasl_handshake.v1 import request as handshake_v1

from api.kafka.codec import response_type
from api.kafka.context import Call
from api.kafka.sasl import SaslConfig, SaslSession
from broker.security.users import UserStore
from broker.settings import BrokerSettings
from hotlog.errors import InvalidConfigError

from ..security_support import Certs, SecureKafkaServer, certs_fixture  # noqa: F401 (a fixture)
from ..server import http_get
from .test_protocol import metadata
from .wire import SIZE, Wire

PASSWORD = "alice-secret"
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
LISTENERS = {"PLAINTEXT": "PLAINTEXT", "SASL_PLAINTEXT": "SASL_PLAINTEXT"}
FAST_AUTH = ("sasl.server.authn.timeout.ms=1500",)


def add_user(admin: AdminClient, name: str, password: str, iterations: int = 4096) -> None:
    upsertions = [UserScramCredentialUpsertion(name, ScramCredentialInfo(mechanism, iterations), password.encode())
                  for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)]
    for future in admin.alter_user_scram_credentials(upsertions).values():
        future.result(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafkaServer]:
    """PLAINTEXT (for the admin who adds users) beside SASL_PLAINTEXT, alice added."""
    server = SecureKafkaServer(str(tmp_path_factory.mktemp("sasl") / "data"), LISTENERS, *FAST_AUTH).start()
    add_user(AdminClient({"bootstrap.servers": server.address("PLAINTEXT")}), "alice", PASSWORD)
    yield server
    server.stop()


def sasl_config(server: SecureKafkaServer, mechanism: str, user: str = "alice", password: str = PASSWORD,
                **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": server.address("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password, **extra}


def counter(server: SecureKafkaServer, name: str, mechanism: str) -> float:
    _, text = http_get(f"{server.http_url}/metrics")
    found = re.search(rf'^{name}{{mechanism="{mechanism}"}} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


def produce_and_consume(config: dict[str, Any], topic: str) -> list[bytes]:
    producer = Producer(config)
    producer.produce(topic, b"over sasl")
    assert producer.flush(15) == 0
    consumer = Consumer({**config, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 15
    while not values and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(message.value())
    consumer.close()
    return values


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_produces_and_consumes_with_each_mechanism(server: SecureKafkaServer, mechanism: str) -> None:
    before = counter(server, "tierlog_kafka_authentications_total", mechanism)
    assert produce_and_consume(sasl_config(server, mechanism), f"sasl-{mechanism}") == [b"over sasl"]
    assert counter(server, "tierlog_kafka_authentications_total", mechanism) > before


def authentication_error(config: dict[str, Any]) -> str:
    """The error librdkafka reports for a client that cannot authenticate."""
    errors: list[str] = []
    producer = Producer({**config, "error_cb": lambda error: errors.append(error.str())})
    deadline = time.monotonic() + 10
    while not any("SASL" in e for e in errors) and time.monotonic() < deadline:
        producer.poll(0.1)
    return next(e for e in errors if "SASL" in e)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_a_wrong_password_and_an_unknown_user_fail_alike_and_are_counted(server: SecureKafkaServer,
                                                                         mechanism: str) -> None:
    before = counter(server, "tierlog_kafka_authentication_failures_total", mechanism)
    wrong = authentication_error(sasl_config(server, mechanism, password="wrong"))
    unknown = authentication_error(sasl_config(server, mechanism, user="mallory"))
    expected = f"invalid credentials with SASL mechanism {mechanism}"
    assert expected in wrong and expected in unknown
    assert re.sub(r"\(after \d+ms.*", "", wrong) == re.sub(r"\(after \d+ms.*", "", unknown)
    assert counter(server, "tierlog_kafka_authentication_failures_total", mechanism) >= before + 2


def test_kcat_produces_and_consumes_with_scram(server: SecureKafkaServer) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed"
    options = ["-b", server.address("SASL_PLAINTEXT"), "-X", "security.protocol=SASL_PLAINTEXT",
               "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=alice", "-X", f"sasl.password={PASSWORD}"]
    subprocess.run([kcat, *options, "-P", "-t", "sasl-kcat"], input=b"from kcat\n", check=True, timeout=20)
    consumed = subprocess.run([kcat, *options, "-C", "-t", "sasl-kcat", "-o", "beginning", "-c", "1", "-e"],
                              capture_output=True, check=True, timeout=20)
    assert consumed.stdout == b"from kcat\n"
    failed = subprocess.run([kcat, *options[:-1], "sasl.password=wrong", "-L", "-m", "2"], capture_output=True,
                            timeout=20)
    assert failed.returncode != 0 and b"Authentication failed" in failed.stderr


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_kafka_python_produces_and_consumes(server: SecureKafkaServer, mechanism: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError

    config = {"bootstrap_servers": server.address("SASL_PLAINTEXT"), "security_protocol": "SASL_PLAINTEXT",
              "sasl_mechanism": mechanism, "sasl_plain_username": "alice", "sasl_plain_password": PASSWORD}
    topic = f"sasl-kp-{mechanism}"
    producer = KafkaProducer(**config)
    producer.send(topic, b"from kafka-python").get(timeout=15)
    producer.close()
    consumer = KafkaConsumer(topic, **config, auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    assert next(iter(consumer)).value == b"from kafka-python"
    consumer.close()
    with pytest.raises(KafkaError):
        # api_version given: else the failing bootstrap probes versions for 30 s
        KafkaProducer(**{**config, "sasl_plain_password": "wrong"}, max_block_ms=3000, api_version=(3, 0)) \
            .send(topic, b"x").get(5)


def test_aiokafka_produces_and_consumes_with_scram(server: SecureKafkaServer) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    config = {"bootstrap_servers": server.address("SASL_PLAINTEXT"), "security_protocol": "SASL_PLAINTEXT",
              "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice", "sasl_plain_password": PASSWORD}

    async def scenario() -> bytes:
        producer = AIOKafkaProducer(**config)
        await producer.start()
        await producer.send_and_wait("sasl-aio", b"from aiokafka")
        await producer.stop()
        consumer = AIOKafkaConsumer("sasl-aio", **config, auto_offset_reset="earliest")
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), 15)
        finally:
            await consumer.stop()
        return message.value

    assert asyncio.run(scenario()) == b"from aiokafka"


# -- exact frames -----------------------------------------------------------------------------

def handshake(wire: Wire, mechanism: str) -> Any:
    wire.send(handshake_v1.SaslHandshakeRequest(mechanism=mechanism), 1)
    return wire.receive(17, 1)[1]


def authenticate(wire: Wire, token: bytes, correlation_id: int = 2) -> Any:
    wire.send(authenticate_v2.SaslAuthenticateRequest(auth_bytes=token), correlation_id)
    return wire.receive(36, 2)[1]


def scram_login(wire: Wire, password: str = PASSWORD) -> Any:
    """A SCRAM-SHA-256 exchange; the last SaslAuthenticate response."""
    assert handshake(wire, "SCRAM-SHA-256").error_code == ErrorCode.none
    client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", password)
    first = authenticate(wire, client.get_client_first().encode())
    client.set_server_first(first.auth_bytes.decode())
    return authenticate(wire, client.get_client_final().encode(), 3)


def test_requests_before_authentication_close_the_connection_but_api_versions_is_answered(
        server: SecureKafkaServer) -> None:
    wire = Wire(server.address("SASL_PLAINTEXT"))
    wire.send(api_versions_v3.ApiVersionsRequest(client_software_name="t", client_software_version="1"), 0)
    _, versions = wire.receive(18, 3)
    assert {17, 36, 50, 51} <= {key.api_key for key in versions.api_keys}
    wire.send(metadata("sasl-before"), 1)
    assert wire.is_closed_by_server()


def test_after_authentication_requests_run_and_the_session_lifetime_is_none(server: SecureKafkaServer) -> None:
    wire = Wire(server.address("SASL_PLAINTEXT"))
    final = scram_login(wire)
    assert final.error_code == ErrorCode.none and final.auth_bytes.startswith(b"v=")
    assert final.session_lifetime.total_seconds() == 0  # connections.max.reauth.ms=0: no re-authentication
    wire.send(metadata(), 4)
    assert wire.receive(3, 12)[0] == 4
    assert handshake(wire, "PLAIN").error_code == ErrorCode.illegal_sasl_state  # as Kafka's KafkaApis answers


def test_a_mechanism_not_enabled_is_refused_with_the_list(server: SecureKafkaServer) -> None:
    wire = Wire(server.address("SASL_PLAINTEXT"))
    response = handshake(wire, "GSSAPI")
    assert response.error_code == ErrorCode.unsupported_sasl_mechanism
    assert set(response.mechanisms) == set(MECHANISMS)
    assert wire.is_closed_by_server()


def test_authenticate_before_handshake_is_an_illegal_state_and_closes(server: SecureKafkaServer) -> None:
    wire = Wire(server.address("SASL_PLAINTEXT"))
    assert authenticate(wire, b"\0alice\0" + PASSWORD.encode()).error_code == ErrorCode.illegal_sasl_state
    assert wire.is_closed_by_server()


def test_a_failure_is_answered_after_the_delay_then_the_connection_closes(server: SecureKafkaServer) -> None:
    wire = Wire(server.address("SASL_PLAINTEXT"))
    assert handshake(wire, "PLAIN").error_code == ErrorCode.none
    started = time.monotonic()
    failed = authenticate(wire, b"\0alice\0wrong")
    assert time.monotonic() - started >= 0.1  # connection.failed.authentication.delay.ms
    assert failed.error_code == ErrorCode.sasl_authentication_failed
    assert "alice" not in (failed.error_message or "")
    assert wire.is_closed_by_server()


def test_an_unauthenticated_connection_is_closed_after_the_timeout(server: SecureKafkaServer) -> None:
    wire = Wire(server.address("SASL_PLAINTEXT"))
    assert handshake(wire, "PLAIN").error_code == ErrorCode.none
    started = time.monotonic()
    assert wire.is_closed_by_server(timeout=10)
    assert 1.0 < time.monotonic() - started < 5  # sasl.server.authn.timeout.ms=1500


def test_a_large_frame_before_authentication_closes_the_connection(server: SecureKafkaServer) -> None:
    wire = Wire(server.address("SASL_PLAINTEXT"))
    wire.send_raw(SIZE.pack(524_289) + b"\0" * 1024)  # sasl.server.max.receive.size + 1
    assert wire.is_closed_by_server()
    authenticated = Wire(server.address("SASL_PLAINTEXT"))
    assert scram_login(authenticated).error_code == ErrorCode.none
    large = api_versions_v3.ApiVersionsRequest(client_software_name="x" * 600_000, client_software_version="1")
    authenticated.send(large, 5)  # socket.request.max.bytes applies once authenticated
    assert authenticated.receive(18, 3)[0] == 5


def test_fuzzed_sasl_frames_never_take_the_server_down(server: SecureKafkaServer) -> None:
    rng = random.Random(17)
    client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD)
    first = client.get_client_first().encode()
    tokens = [rng.randbytes(rng.randint(0, 300)) for _ in range(40)]
    tokens += [first[:cut] for cut in range(0, len(first), 3)]
    tokens += [b"\0" * 5, b"\0\0\0", b"n,,n=alice,r=" + b"x" * 100_000, b"\0alice\0" + b"p" * 200_000,
               b"n,,n=alice,r=" + b"x" * 600_000]  # the last over sasl.server.max.receive.size
    for i, token in enumerate(tokens):
        wire = Wire(server.address("SASL_PLAINTEXT"))
        mechanism = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")[i % 3]
        assert handshake(wire, mechanism).error_code == ErrorCode.none
        wire.send(authenticate_v2.SaslAuthenticateRequest(auth_bytes=token), 2)
        try:
            response = wire.receive(36, 2)[1]
            if i % 3 == 0 or response.error_code != ErrorCode.none:  # PLAIN's one round, or a refusal
                assert response.error_code == ErrorCode.sasl_authentication_failed
        except (ConnectionError, OSError):  # a frame over sasl.server.max.receive.size closes at once
            assert len(token) > 524_288
        wire.close()
    assert scram_login(Wire(server.address("SASL_PLAINTEXT"))).error_code == ErrorCode.none


def test_a_v0_handshake_exchanges_bare_tokens(server: SecureKafkaServer) -> None:
    """SaslHandshake v0 (kept in Kafka 4): the tokens follow in size-prefixed frames, no header."""
    wire = Wire(server.address("SASL_PLAINTEXT"))
    wire.send(handshake_v0.SaslHandshakeRequest(mechanism="PLAIN"), 1)
    assert wire.receive(17, 0)[1].error_code == ErrorCode.none
    token = b"\0alice\0" + PASSWORD.encode()
    wire.send_raw(SIZE.pack(len(token)) + token)
    assert wire.receive_frame() == b""  # PLAIN's empty answer: authenticated
    wire.send(metadata(), 2)
    assert wire.receive(3, 12)[0] == 2
    short = Wire(server.address("SASL_PLAINTEXT"))  # a bare token may be shorter than a request header
    short.send(handshake_v0.SaslHandshakeRequest(mechanism="PLAIN"), 1)
    short.receive(17, 0)
    failures = counter(server, "tierlog_kafka_authentication_failures_total", "PLAIN")
    short.send_raw(SIZE.pack(5) + b"\0a\0bc")
    assert short.is_closed_by_server()
    assert counter(server, "tierlog_kafka_authentication_failures_total", "PLAIN") == failures + 1  # checked
    refused = Wire(server.address("SASL_PLAINTEXT"))
    refused.send(handshake_v0.SaslHandshakeRequest(mechanism="PLAIN"), 1)
    refused.receive(17, 0)
    refused.send_raw(SIZE.pack(len(token) + 1) + token + b"x")
    assert refused.is_closed_by_server()  # a bare token has no error field: a failure closes


def test_sessions_expire_after_connections_max_reauth_ms_and_librdkafka_reauthenticates(tmp_path: Path) -> None:
    server = SecureKafkaServer(str(tmp_path / "data"), LISTENERS, "connections.max.reauth.ms=1000").start()
    try:
        add_user(AdminClient({"bootstrap.servers": server.address("PLAINTEXT")}), "alice", PASSWORD)
        wire = Wire(server.address("SASL_PLAINTEXT"))
        assert scram_login(wire).session_lifetime.total_seconds() == 1.0
        started = time.monotonic()
        correlation_id = 10
        while time.monotonic() - started < 5:  # answered until the session ends, then closed
            correlation_id += 1
            try:
                wire.send(metadata(), correlation_id)
                wire.receive(3, 12)
            except (ConnectionError, OSError):
                break
        assert 1.0 <= time.monotonic() - started < 5
        producer = Producer(sasl_config(server, "SCRAM-SHA-512"))
        producer.produce("sasl-reauth", b"v")
        assert producer.flush(5) == 0
        logged_in = counter(server, "tierlog_kafka_authentications_total", "SCRAM-SHA-512")  # its connections'

        def reauthentications() -> float:
            return counter(server, "tierlog_kafka_authentications_total", "SCRAM-SHA-512") - logged_in

        while reauthentications() < 3 and time.monotonic() - started < 8:  # several lifetimes, the same connections
            producer.produce("sasl-reauth", b"v")
            assert producer.flush(5) == 0
        assert reauthentications() >= 3
    finally:
        server.stop()


def test_mechanisms_are_set_per_listener_and_unknown_ones_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="GSSAPI"):
        BrokerSettings.parse({"sasl.enabled.mechanisms": "PLAIN,GSSAPI"})
    listeners = {"PLAINTEXT": "PLAINTEXT", "SASL_PLAINTEXT": "SASL_PLAINTEXT", "ONLY_PLAIN": "SASL_PLAINTEXT"}
    server = SecureKafkaServer(str(tmp_path / "data"), listeners, "sasl.enabled.mechanisms=SCRAM-SHA-512",
                               "listener.name.only_plain.sasl.enabled.mechanisms=PLAIN").start()
    try:
        only_plain = Wire(server.address("ONLY_PLAIN"))
        refused = handshake(only_plain, "SCRAM-SHA-512")
        assert refused.error_code == ErrorCode.unsupported_sasl_mechanism and refused.mechanisms == ("PLAIN",)
        assert handshake(Wire(server.address("SASL_PLAINTEXT")), "SCRAM-SHA-512").error_code == ErrorCode.none
    finally:
        server.stop()


@settings(max_examples=300, deadline=None)
@given(tokens=st.lists(st.binary(max_size=200), min_size=1, max_size=3), mechanism=st.sampled_from(MECHANISMS),
       scram_prefix=st.booleans())
def test_random_tokens_only_ever_fail_authentication(tokens: list[bytes], mechanism: str, scram_prefix: bool) -> None:
    """In process, many more cases than over sockets: whatever the tokens (a real client-first
    message, then noise, or noise alone), each round answers, and never authenticates."""
    users = UserStore("/nonexistent")  # no users: nothing to find, nothing written
    session = SaslSession(SaslConfig(MECHANISMS, 0, 524_288, 10.0, 0.0), users, "/fuzz")

    def call(api_key: int, version: int) -> Call:
        return Call(version, "fuzz", "/fuzz", response_type(api_key, version))

    async def scenario() -> list[Any]:
        answers = [await session.handshake(None, call(17, 1), handshake_v1.SaslHandshakeRequest(mechanism=mechanism))]
        if scram_prefix and mechanism != "PLAIN":
            tokens.insert(0, scramp.ScramClient([mechanism], "alice", "x").get_client_first().encode())
        for token in tokens:
            answers.append(await session.authenticate(None, call(36, 2),
                                                      authenticate_v2.SaslAuthenticateRequest(auth_bytes=token)))
        return answers

    answers = asyncio.run(scenario())
    assert answers[0].error_code == ErrorCode.none
    assert session.principal is None
    assert all(a.error_code in (ErrorCode.none, ErrorCode.sasl_authentication_failed, ErrorCode.illegal_sasl_state)
               for a in answers[1:])


# -- users through the admin APIs ----------------------------------------------------------------

def test_users_added_and_removed_with_the_admin_client(server: SecureKafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": server.address("PLAINTEXT")})
    add_user(admin, "bob", "bob-secret", iterations=8192)
    described = admin.describe_user_scram_credentials(["bob"])["bob"].result(timeout=10)
    assert sorted((str(c.mechanism), c.iterations) for c in described.scram_credential_infos) == \
        [("ScramMechanism.SCRAM_SHA_256", 8192), ("ScramMechanism.SCRAM_SHA_512", 8192)]
    assert produce_and_consume(sasl_config(server, "SCRAM-SHA-256", "bob", "bob-secret"), "sasl-bob") == \
        [b"over sasl"]
    deletions = [UserScramCredentialDeletion("bob", m)
                 for m in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)]
    for future in admin.alter_user_scram_credentials(deletions).values():
        future.result(timeout=10)
    assert "bob" not in admin.describe_user_scram_credentials().result()
    assert "invalid credentials" in authentication_error(sasl_config(server, "PLAIN", "bob", "bob-secret"))


def test_the_admin_client_gets_kafkas_errors(server: SecureKafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": server.address("PLAINTEXT")})
    few = UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"p")
    with pytest.raises(KafkaException) as refused:
        admin.alter_user_scram_credentials([few])["carol"].result(timeout=10)
    assert "UNACCEPTABLE_CREDENTIAL" in str(refused.value) or "iterations" in str(refused.value)
    ghost = UserScramCredentialDeletion("ghost", ScramMechanism.SCRAM_SHA_512)
    with pytest.raises(KafkaException) as missing:
        admin.alter_user_scram_credentials([ghost])["ghost"].result(timeout=10)
    assert "RESOURCE_NOT_FOUND" in str(missing.value) or "no SCRAM-SHA-512 credential" in str(missing.value)
    with pytest.raises(KafkaException):
        admin.describe_user_scram_credentials(["ghost"])["ghost"].result(timeout=10)
    assert "carol" not in admin.describe_user_scram_credentials().result()


def test_a_broker_whose_data_folder_is_lost_keeps_its_users_from_the_bucket(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    first = SecureKafkaServer(data, LISTENERS).start()
    try:
        add_user(AdminClient({"bootstrap.servers": first.address("PLAINTEXT")}), "dave", "dave-secret")
    finally:
        assert first.stop() == 0
    credentials = json.loads((tmp_path / "data-objects" / "_cluster" / "scram-credentials.json").read_text())
    assert "dave" in credentials["users"] and "dave-secret" not in json.dumps(credentials)
    shutil.rmtree(data)
    restored = SecureKafkaServer(data, LISTENERS)
    restored.ports, restored.conf = first.ports, first.conf
    restored.start()
    try:
        assert produce_and_consume(sasl_config(restored, "SCRAM-SHA-512", "dave", "dave-secret"), "sasl-restored") \
            == [b"over sasl"]
    finally:
        restored.stop()


def test_sasl_ssl_with_scram_and_plain_for_four_clients(certs: Certs, tmp_path: Path) -> None:
    """SASL over TLS, the server's certificate checked against the test CA: confluent-kafka
    and kafka-python with SCRAM, kcat with SCRAM-SHA-256, aiokafka with PLAIN."""
    from aiokafka import AIOKafkaProducer
    from kafka import KafkaProducer

    server = SecureKafkaServer(str(tmp_path / "data"), {"PLAINTEXT": "PLAINTEXT", "SASL_SSL": "SASL_SSL"},
                               certs=certs).start()
    try:
        add_user(AdminClient({"bootstrap.servers": server.address("PLAINTEXT")}), "alice", PASSWORD)
        config = {"bootstrap.servers": server.address("SASL_SSL"), "security.protocol": "SASL_SSL",
                  "ssl.ca.location": certs.ca_file, "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
                  "sasl.password": PASSWORD}
        assert produce_and_consume(config, "sasl-ssl") == [b"over sasl"]
        producer = KafkaProducer(bootstrap_servers=server.address("SASL_SSL"), security_protocol="SASL_SSL",
                                 ssl_context=certs.client_context(), sasl_mechanism="SCRAM-SHA-256",
                                 sasl_plain_username="alice", sasl_plain_password=PASSWORD)
        producer.send("sasl-ssl", b"from kafka-python").get(timeout=15)
        producer.close()
        kcat = shutil.which("kcat")
        assert kcat, "kcat is not installed"
        subprocess.run([kcat, "-b", server.address("SASL_SSL"), "-X", "security.protocol=SASL_SSL",
                        "-X", f"ssl.ca.location={certs.ca_file}", "-X", "sasl.mechanism=SCRAM-SHA-256",
                        "-X", "sasl.username=alice", "-X", f"sasl.password={PASSWORD}", "-P", "-t", "sasl-ssl"],
                       input=b"from kcat\n", check=True, timeout=20)

        async def aiokafka_plain() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=server.address("SASL_SSL"), security_protocol="SASL_SSL",
                                        ssl_context=certs.client_context(), sasl_mechanism="PLAIN",
                                        sasl_plain_username="alice", sasl_plain_password=PASSWORD)
            await producer.start()
            try:
                await producer.send_and_wait("sasl-ssl", b"from aiokafka")
            finally:
                await producer.stop()

        asyncio.run(aiokafka_plain())
        consumer = Consumer({**config, "group.id": "four", "auto.offset.reset": "earliest"})
        consumer.subscribe(["sasl-ssl"])
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < 4 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
        consumer.close()
        assert sorted(values) == [b"from aiokafka", b"from kafka-python", b"from kcat", b"over sasl"]
    finally:
        server.stop()
