"""gRPC call credentials: the same users as SASL (Basic credentials checked as PLAIN), mTLS
subjects, grpc.authentication=required refusing calls without them (health checks stay open),
and the caller they name reaching the authorizer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from api.client import Admin, ClientTls, ClientUser, Consumer, Producer, TierlogError

from .security_support import Certs, SecureKafkaServer, certs_fixture  # noqa: F401 (a fixture)
from .test_cli import one_line, tierlog

LISTENERS = {"PLAINTEXT": "PLAINTEXT"}
REQUIRED = ("grpc.authentication=required", "authorizer.class.name=tierlog", "super.users=User:alice")


def add_offline(data_dir: str, name: str, password: str) -> None:
    added = tierlog("users", "add", name, "--data-dir", data_dir, "--object-store", f"file://{data_dir}-objects",
                    input=f"{password}\n".encode())
    assert added.returncode == 0, added.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafkaServer]:
    """Plaintext gRPC that requires credentials (allowed in clear for the test), alice a super
    user and bob a user without ACLs."""
    data = str(tmp_path_factory.mktemp("grpc-auth") / "data")
    add_offline(data, "alice", "alice-secret")
    add_offline(data, "bob", "bob-secret")
    server = SecureKafkaServer(data, LISTENERS, *REQUIRED, "grpc.authentication.plaintext.allow=true").start()
    yield server
    assert server.stop() == 0, server.log()


def refusal(call: object) -> TierlogError:
    assert callable(call)
    with pytest.raises(TierlogError) as refused:
        call()
    return refused.value


def test_calls_without_credentials_are_refused_but_health_checks_answer(server: SecureKafkaServer) -> None:
    with Admin(server.grpc_address) as admin:
        refused = refusal(admin.list_topics)
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED and "credentials required" in refused.message
    with grpc.insecure_channel(server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_wrong_password_and_an_unknown_user_are_refused_alike(server: SecureKafkaServer) -> None:
    messages = set()
    for user in (ClientUser("alice", "wrong"), ClientUser("mallory", "alice-secret")):
        with Admin(server.grpc_address, user=user) as admin:
            refused = refusal(admin.list_topics)
        assert refused.code == grpc.StatusCode.UNAUTHENTICATED
        messages.add(refused.message)
    assert messages == {"authentication failed: invalid credentials"}


def test_a_user_produces_consumes_and_streams_with_credentials(server: SecureKafkaServer) -> None:
    alice = ClientUser("alice", "alice-secret")
    with Admin(server.grpc_address, user=alice) as admin:
        admin.create_topic("grpc-auth", partitions=1)
    with Producer(server.grpc_address, user=alice) as producer:
        producer.send("grpc-auth", b"authenticated")
    with Consumer("grpc-auth", server.grpc_address, start="beginning", user=alice) as consumer:
        assert [m.value for m in consumer.poll(timeout=5)] == [b"authenticated"]
    with Consumer("grpc-auth", server.grpc_address, start="beginning", user=alice) as streaming:
        assert next(iter(streaming)).value == b"authenticated"  # the server stream (Subscribe) too
    with Consumer("grpc-auth", server.grpc_address, start=0, partitions=[0]) as anonymous:  # Subscribe alone
        assert refusal(lambda: next(iter(anonymous))).code == grpc.StatusCode.UNAUTHENTICATED


def test_the_verified_user_is_the_principal_the_authorizer_sees(server: SecureKafkaServer) -> None:
    """alice is a super user, bob has no ACL: both authenticate, only alice may describe."""
    with Admin(server.grpc_address, user=ClientUser("alice", "alice-secret")) as admin:
        admin.create_topic("grpc-principal", partitions=1)
    with Admin(server.grpc_address, user=ClientUser("bob", "bob-secret")) as admin:
        refused = refusal(lambda: admin.describe_topic("grpc-principal"))
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED


def test_the_cli_takes_a_username_and_a_password_file(server: SecureKafkaServer, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("alice-secret\n")
    listed = tierlog("topics", "list", "--server", server.grpc_address, "--username", "alice",
                     "--password-file", str(password))
    assert listed.returncode == 0, listed.stderr
    refused = tierlog("topics", "list", "--server", server.grpc_address)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in one_line(refused.stderr)


def test_passwords_in_clear_are_refused_unless_allowed(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    add_offline(data, "alice", "alice-secret")
    server = SecureKafkaServer(data, LISTENERS, *REQUIRED).start()
    try:
        with Admin(server.grpc_address, user=ClientUser("alice", "alice-secret")) as admin:
            refused = refusal(admin.list_topics)
        assert refused.code == grpc.StatusCode.UNAUTHENTICATED and "TLS" in refused.message
    finally:
        server.stop()


def test_over_tls_passwords_work_and_a_client_certificate_alone_authenticates(certs: Certs, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    add_offline(data, "alice", "alice-secret")
    server = SecureKafkaServer(data, LISTENERS, *REQUIRED, "grpc.listener.security.protocol=SSL",
                               "grpc.ssl.client.auth=required", certs=certs).start()
    try:
        with_certificate = ClientTls(certs.ca_file, certs.cert("client"), certs.key("client"))
        with Admin(server.grpc_address, tls=with_certificate) as admin:  # User:CN=alice,...: no super user
            assert refusal(lambda: admin.create_topic("grpc-mtls")).code == grpc.StatusCode.PERMISSION_DENIED
        with Admin(server.grpc_address, tls=with_certificate, user=ClientUser("alice", "wrong")) as admin:
            assert refusal(admin.list_topics).code == grpc.StatusCode.UNAUTHENTICATED
        with Admin(server.grpc_address, tls=with_certificate, user=ClientUser("alice", "alice-secret")) as admin:
            admin.list_topics()
    finally:
        server.stop()
