"""The gRPC API under the same authorizer as Kafka: PERMISSION_DENIED naming the operation
and the resource, then the call succeeds once the ACL is granted (through Kafka's
CreateAcls, as an admin would); listings show only what the principal may describe."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from confluent_kafka.admin import AclOperation

from api.client import Admin, ClientUser, TierlogError
from api.proto import tierlog_pb2 as pb
from api.proto import tierlog_pb2_grpc as pb_grpc

from .kafka.cluster import KafkaServer
from .kafka.test_acls import (  # noqa: F401 (admins_dropped: a fixture)
    GROUP,
    ON,
    TOPIC,
    admin,
    admins_dropped,
    authorizing_server,
    grant,
    name,
    seed_acls,
)
from .kafka.test_sasl import add_user
from .security_support import (  # noqa: F401 (certs_fixture: a fixture)
    CLIENT_PRINCIPAL,
    Certs,
    SecureKafkaServer,
    certs_fixture,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    found = authorizing_server(str(tmp_path_factory.mktemp("grpc-acl") / "data")).start()
    yield found
    assert found.stop() == 0, found.log()


@pytest.fixture(scope="module")
def stub(server: KafkaServer) -> Iterator[pb_grpc.TierlogStub]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield pb_grpc.TierlogStub(channel)


def denied(call: Callable[[Any], Any], request: Any) -> str:
    """The details of the call's PERMISSION_DENIED."""
    with pytest.raises(grpc.RpcError) as refused:
        call(request)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED, refused.value
    return str(refused.value.details())


def test_each_call_is_denied_then_granted(server: KafkaServer, stub: pb_grpc.TierlogStub) -> None:
    topic, group = name("grpc"), name("grpc-group")
    assert "User:ANONYMOUS may not CREATE TOPIC" in denied(stub.CreateTopic, pb.CreateTopicRequest(name=topic))
    grant(server, TOPIC, topic, AclOperation.CREATE)
    created = stub.CreateTopic(pb.CreateTopicRequest(name=topic, partitions=1))
    assert created.name == topic and not created.configs  # no DESCRIBE_CONFIGS: configs not shown

    produce = pb.ProduceRequest(topic=topic, records=[pb.Record(value=b"v")])
    assert f"may not WRITE TOPIC '{topic}'" in denied(stub.Produce, produce)
    grant(server, TOPIC, topic, AclOperation.WRITE)
    assert stub.Produce(produce).partitions[0].base_offset == 0

    fetch = pb.FetchRequest(topic=topic, partitions=[pb.PartitionOffset(partition=0, offset=0)])
    assert f"may not READ TOPIC '{topic}'" in denied(stub.Fetch, fetch)
    grant(server, TOPIC, topic, AclOperation.READ)
    assert [r.value for r in stub.Fetch(fetch).partitions[0].records] == [b"v"]

    commit = pb.CommitOffsetsRequest(group=group, topic=topic, offsets=[pb.CommittedOffset(partition=0, offset=1)])
    assert f"may not READ GROUP '{group}'" in denied(stub.CommitOffsets, commit)
    grant(server, GROUP, group, AclOperation.READ)
    stub.CommitOffsets(commit)
    committed = stub.FetchCommittedOffsets(pb.FetchCommittedOffsetsRequest(group=group, topic=topic))
    assert [o.offset for o in committed.offsets] == [1]

    assert f"may not DELETE TOPIC '{topic}'" in denied(stub.DeleteTopic, pb.DeleteTopicRequest(name=topic))
    grant(server, TOPIC, topic, AclOperation.DELETE)
    stub.DeleteTopic(pb.DeleteTopicRequest(name=topic))


def test_listings_show_only_topics_the_principal_may_describe(server: KafkaServer,
                                                              stub: pb_grpc.TierlogStub) -> None:
    shown, hidden = name("listed"), name("unlisted")
    for topic in (shown, hidden):
        grant(server, TOPIC, topic, AclOperation.CREATE)
        stub.CreateTopic(pb.CreateTopicRequest(name=topic, partitions=1))
    grant(server, TOPIC, shown, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS)
    listed = {t.name for t in stub.ListTopics(pb.ListTopicsRequest()).topics}
    assert shown in listed and hidden not in listed
    assert stub.DescribeTopic(pb.DescribeTopicRequest(name=shown)).configs  # DESCRIBE_CONFIGS: shown
    assert f"may not DESCRIBE TOPIC '{hidden}'" in denied(stub.DescribeTopic, pb.DescribeTopicRequest(name=hidden))


def test_an_mtls_callers_certificate_names_its_principal(certs: Certs, tmp_path: Path) -> None:
    data = seed_acls(str(tmp_path / "data"))
    secure = SecureKafkaServer(data, {"PLAINTEXT": "PLAINTEXT"}, ON, "grpc.listener.security.protocol=SSL",
                               "grpc.ssl.client.auth=required", certs=certs).start()
    try:
        topic = name("mtls")
        grant(secure, TOPIC, topic, AclOperation.CREATE)  # ANONYMOUS's: not the certificate's caller's
        channel_credentials = grpc.ssl_channel_credentials(
            Path(certs.ca_file).read_bytes(), Path(certs.key("client")).read_bytes(),
            Path(certs.cert("client")).read_bytes())
        with grpc.secure_channel(secure.grpc_address, channel_credentials) as channel:
            alice = pb_grpc.TierlogStub(channel)
            create = pb.CreateTopicRequest(name=topic, partitions=1)
            assert f"{CLIENT_PRINCIPAL} may not CREATE TOPIC '{topic}'" in denied(alice.CreateTopic, create)
            grant(secure, TOPIC, topic, AclOperation.CREATE, principal=CLIENT_PRINCIPAL)
            assert alice.CreateTopic(create).name == topic
    finally:
        assert secure.stop() == 0, secure.log()


def test_a_caller_with_credentials_is_its_users_principal(tmp_path: Path) -> None:
    data = seed_acls(str(tmp_path / "data"))
    secure = SecureKafkaServer(data, {"PLAINTEXT": "PLAINTEXT"}, ON, "grpc.authentication=required",
                               "grpc.authentication.plaintext.allow=true").start()
    try:
        add_user(admin(secure), "bob", "bob-secret")  # through Kafka, as ANONYMOUS (seeded ALTER on the cluster)
        topic = name("basic")
        grant(secure, TOPIC, topic, AclOperation.CREATE, principal="User:bob")
        with Admin(secure.grpc_address, user=ClientUser("bob", "bob-secret")) as bob:
            bob.create_topic(topic, partitions=1)
            with pytest.raises(TierlogError) as refused:
                bob.describe_topic(topic)  # CREATE does not imply DESCRIBE
            assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
            assert f"User:bob may not DESCRIBE TOPIC '{topic}'" in refused.value.message
            grant(secure, TOPIC, topic, AclOperation.DESCRIBE, principal="User:bob")
            assert bob.describe_topic(topic).name == topic
    finally:
        assert secure.stop() == 0, secure.log()
