"""`tierlog users`: offline, in the data folder and bucket before the server starts (as the
Terraform user data runs it), and online through the gRPC API; users it adds log in over
SASL, users it removes no longer do, and refusals are Kafka's, one line, exit 1."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, Producer

from .security_support import SecureKafkaServer
from .server import tierlog_command
from .test_cli import one_line, tierlog

LISTENERS = {"PLAINTEXT": "PLAINTEXT", "SASL_PLAINTEXT": "SASL_PLAINTEXT"}


def logs_in(server: SecureKafkaServer, mechanism: str, user: str, password: str) -> bool:
    """Whether a produce with these credentials is delivered. A client that cannot log in
    is told so (librdkafka's authentication error) and would retry until its message times
    out: the first refusal answers False, a delivery before it True."""
    config = {"bootstrap.servers": server.address("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
              "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password,
              "message.timeout.ms": 3000}
    delivered: list[bool] = []
    refused: list[KafkaError] = []

    def report(error: KafkaError | None, _: Message) -> None:
        delivered.append(error is None)

    def on_error(error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            refused.append(error)

    producer = Producer({**config, "error_cb": on_error})
    producer.produce("users-cli", b"v", on_delivery=report)
    deadline = time.monotonic() + 10
    while not delivered and not refused and time.monotonic() < deadline:
        producer.poll(0.05)
    return delivered == [True]


def test_the_first_user_added_offline_logs_in_once_the_server_starts_from_the_bucket(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    password = tmp_path / "admin-password"
    password.write_text("admin-secret\n")
    added = tierlog("users", "add", "admin", "--mechanism", "SCRAM-SHA-512", "--password-file", str(password),
                    "--data-dir", data, "--object-store", f"file://{data}-objects")
    assert added.returncode == 0, added.stderr
    listed = tierlog("users", "list", "--data-dir", data, "--object-store", f"file://{data}-objects")
    assert listed.stdout.split("\n")[1].split() == ["admin", "SCRAM-SHA-512", "8192"]
    shutil.rmtree(data)  # the bucket's copy alone brings it back
    server = SecureKafkaServer(data, LISTENERS).start()
    try:
        assert logs_in(server, "SCRAM-SHA-512", "admin", "admin-secret")
        assert logs_in(server, "PLAIN", "admin", "admin-secret")
    finally:
        server.stop()


def test_offline_refusals_are_kafkas_and_change_nothing(tmp_path: Path) -> None:
    offline = ("--data-dir", str(tmp_path / "data"), "--object-store", f"file://{tmp_path}/objects")
    few = tierlog("users", "add", "bob", "--iterations", "1000", *offline, input=b"pw\n")
    assert few.returncode == 1 and "UNACCEPTABLE_CREDENTIAL" in one_line(few.stderr)
    unknown = tierlog("users", "add", "bob", "--mechanism", "MD5", *offline, input=b"pw\n")
    assert unknown.returncode == 1 and "unknown SCRAM mechanism" in one_line(unknown.stderr)
    empty = tierlog("users", "add", "bob", *offline, input=b"\n")
    assert empty.returncode == 1 and "password is empty" in one_line(empty.stderr)
    ghost = tierlog("users", "remove", "ghost", *offline)
    assert ghost.returncode == 1 and "RESOURCE_NOT_FOUND" in one_line(ghost.stderr)
    assert tierlog("users", "list", *offline).stdout.strip() == "USER  MECHANISM  ITERATIONS"


def test_offline_changes_go_to_the_bucket_serve_would_read_by_default(tmp_path: Path) -> None:
    """Without --object-store, serve's default bucket (./tierlog-objects): a change made in
    the data folder alone would be undone at start by the bucket's copy."""
    added = subprocess.run([*tierlog_command(), "users", "add", "erin", "--data-dir", "data"], cwd=tmp_path,
                           input=b"pw-secret\n", capture_output=True, timeout=30)
    assert added.returncode == 0, added.stderr
    assert "erin" in (tmp_path / "tierlog-objects" / "_cluster" / "scram-credentials.json").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafkaServer]:
    server = SecureKafkaServer(str(tmp_path_factory.mktemp("users-cli") / "data"), LISTENERS).start()
    yield server
    assert server.stop() == 0, server.log()


def test_users_added_listed_and_removed_through_the_server(server: SecureKafkaServer) -> None:
    grpc = ("--server", server.grpc_address)
    added = tierlog("users", "add", "carol", "--mechanism", "SCRAM-SHA-256", "--iterations", "4096", *grpc,
                    input=b"carol-secret\n")
    assert added.returncode == 0, added.stderr
    assert logs_in(server, "SCRAM-SHA-256", "carol", "carol-secret")
    assert not logs_in(server, "SCRAM-SHA-512", "carol", "carol-secret")  # no credential of that mechanism
    listed = tierlog("users", "list", *grpc)
    assert ["carol", "SCRAM-SHA-256", "4096"] in [line.split() for line in listed.stdout.splitlines()]
    removed = tierlog("users", "remove", "carol", *grpc)
    assert removed.returncode == 0, removed.stderr
    assert not logs_in(server, "PLAIN", "carol", "carol-secret")
    again = tierlog("users", "remove", "carol", *grpc)
    assert again.returncode == 1 and "RESOURCE_NOT_FOUND" in one_line(again.stderr)
    few = tierlog("users", "add", "dave", "--iterations", "20000", *grpc, input=b"x\n")
    assert few.returncode == 1 and "too many iterations" in one_line(few.stderr)
