"""Authorization against a real server with confluent-kafka: every check answers Kafka's
error code to a principal without the ACL and succeeds once the ACL is granted.

The principal is User:ANONYMOUS (a PLAINTEXT listener's). The authorizing server starts
with one ACL seeded in its data folder, ANONYMOUS's ALTER on the cluster (which implies
DESCRIBE), so the tests can grant themselves what each scenario needs, as an admin would."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, ElectionType, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka import errors as kafka_errors
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as KafkaPythonResourceType
from kio.schema.errors import ErrorCode
from kio.schema.list_offsets.v9 import request as list_offsets_v9

from broker.security import acls as model

from ..security_support import SecureKafkaServer
from .cluster import KafkaServer
from .eos_support import LIST_OFFSETS
from .test_sasl import LISTENERS, add_user, sasl_config
from .wire import Wire

ANONYMOUS = "User:ANONYMOUS"
ON = "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
TOPIC, GROUP, CLUSTER, TXN = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER, \
    ResourceType.TRANSACTIONAL_ID
EVERY_ACL = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                             AclPermissionType.ANY)
SEED = model.AclBinding(model.ResourceType.CLUSTER, model.CLUSTER_NAME, model.PatternType.LITERAL, ANONYMOUS, "*",
                        model.AclOperation.ALTER, model.AclPermissionType.ALLOW)


def seed_acls(data_dir: str) -> str:
    """ANONYMOUS allowed to manage ACLs (and users), in the data folder before the first start."""
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "acls.json"), "w") as f:
        json.dump({"version": 1, "acls": [SEED.to_json()]}, f)
    return data_dir


def authorizing_server(data_dir: str, *conf: str) -> KafkaServer:
    """A server with authorization on, ANONYMOUS allowed to manage ACLs (seeded)."""
    return KafkaServer(seed_acls(data_dir), ON, *conf)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    found = authorizing_server(str(tmp_path_factory.mktemp("acl") / "data")).start()
    yield found
    assert found.stop() == 0, found.log()


@functools.cache  # one per server, kept: a client dropped before its futures resolve cancels them
def admin(server: KafkaServer) -> AdminClient:
    return AdminClient({"bootstrap.servers": server.bootstrap})


@pytest.fixture(autouse=True)
def admins_dropped() -> Iterator[None]:
    """The test's admin clients go with it: a cached one would live on, its threads calling
    a stopped server's port, to the end of the whole run."""
    yield
    admin.cache_clear()


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def grant(server: KafkaServer, resource_type: ResourceType, resource: str, *operations: AclOperation,
          pattern: ResourcePatternType = LITERAL, permission: AclPermissionType = ALLOW,
          principal: str = ANONYMOUS) -> None:
    bindings = [AclBinding(resource_type, resource, pattern, principal, "*", op, permission) for op in operations]
    for future in admin(server).create_acls(bindings).values():
        future.result(timeout=10)


def refused_code(call: Callable[[], Any]) -> int:
    with pytest.raises(KafkaException) as refused:
        call()
    return int(refused.value.args[0].code())


def create_topic(server: KafkaServer, topic: str, partitions: int = 1) -> None:
    """Made by the test as an admin with CREATE on the topic."""
    grant(server, TOPIC, topic, AclOperation.CREATE)
    admin(server).create_topics([NewTopic(topic, partitions)])[topic].result(timeout=10)


def produce_error(server: KafkaServer, topic: str, **config: Any) -> KafkaError | None:
    """Produce one record (`config` may name another listener); the delivery report's error."""
    errors: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": server.bootstrap, "message.timeout.ms": 5000, **config})
    producer.produce(topic, b"v", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    assert len(errors) == 1
    return errors[0]


def consumer(server: KafkaServer, group: str, **config: Any) -> Consumer:
    return Consumer({"bootstrap.servers": server.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, **config})


def first_poll(c: Consumer, seconds: float = 10) -> Any:
    """The first message or error the consumer gets."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None:
            return msg
    raise AssertionError("nothing polled")


def describe_refusal(server: KafkaServer) -> type[Exception]:
    """What DescribeAcls answers, by kafka-python (librdkafka ignores DescribeAcls' error code)."""
    client = KafkaAdminClient(bootstrap_servers=server.bootstrap)
    every = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
                      resource_pattern=ResourcePatternFilter(KafkaPythonResourceType.ANY, None,
                                                             ACLResourcePatternType.ANY))
    try:
        with pytest.raises(kafka_errors.KafkaError) as refused:
            client.describe_acls(every)
    finally:
        client.close()
    return type(refused.value)


def denials(server: KafkaServer, resource_type: str, operation: str) -> float:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = f'tierlog_authorization_denials_total{{operation="{operation}",resource_type="{resource_type}"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted))


# -- the ACL APIs ---------------------------------------------------------------------------


def test_acls_are_created_described_by_filter_and_deleted(server: KafkaServer) -> None:
    client = admin(server)
    orders = AclBinding(TOPIC, "orders", LITERAL, "User:alice", "*", AclOperation.READ, ALLOW)
    pay = AclBinding(TOPIC, "pay-", PREFIXED, "User:bob", "10.0.0.1", AclOperation.WRITE, DENY)
    for future in client.create_acls([orders, pay]).values():
        future.result(timeout=10)
    # MATCH: every pattern that applies to a name
    applying = AclBindingFilter(TOPIC, "pay-2026", ResourcePatternType.MATCH, None, None, AclOperation.ANY,
                                AclPermissionType.ANY)
    assert client.describe_acls(applying).result(timeout=10) == [pay]
    by_principal = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None,
                                    AclOperation.ANY, AclPermissionType.ANY)
    assert client.describe_acls(by_principal).result(timeout=10) == [orders]
    deleted = client.delete_acls([by_principal])[by_principal].result(timeout=10)
    assert deleted == [orders]
    assert orders not in client.describe_acls(EVERY_ACL).result(timeout=10)
    assert pay in client.describe_acls(EVERY_ACL).result(timeout=10)


def test_a_bad_binding_is_refused_and_the_good_ones_created(server: KafkaServer) -> None:
    client = admin(server)
    bad = AclBinding(CLUSTER, "not-the-cluster", LITERAL, ANONYMOUS, "*", AclOperation.ALTER, ALLOW)
    good = AclBinding(TOPIC, "good-one", LITERAL, ANONYMOUS, "*", AclOperation.READ, ALLOW)
    futures = client.create_acls([bad, good])
    assert refused_code(lambda: futures[bad].result(timeout=10)) == KafkaError.INVALID_REQUEST
    futures[good].result(timeout=10)
    assert bad not in client.describe_acls(EVERY_ACL).result(timeout=10)


def test_a_change_the_bucket_refuses_changes_nothing(server: KafkaServer) -> None:
    client = admin(server)
    kept = os.path.join(server.objects_dir, "_cluster", "acls.json")
    assert os.path.isfile(kept)
    os.remove(kept)
    os.mkdir(kept)  # a folder in the document's place: the bucket refuses the next write
    binding = AclBinding(TOPIC, name("refused"), LITERAL, ANONYMOUS, "*", AclOperation.READ, ALLOW)
    try:
        assert refused_code(lambda: client.create_acls([binding])[binding].result(timeout=10)) == \
            KafkaError.KAFKA_STORAGE_ERROR
        assert binding not in client.describe_acls(EVERY_ACL).result(timeout=10)
    finally:
        os.rmdir(kept)
    client.create_acls([binding])[binding].result(timeout=10)  # retried: taken
    assert binding in client.describe_acls(EVERY_ACL).result(timeout=10)


def test_without_an_authorizer_the_acl_apis_answer_security_disabled(kafka_server: KafkaServer) -> None:
    client = admin(kafka_server)
    binding = AclBinding(TOPIC, "t", LITERAL, ANONYMOUS, "*", AclOperation.READ, ALLOW)
    code = refused_code(lambda: client.create_acls([binding])[binding].result(timeout=10))
    assert code == KafkaError.SECURITY_DISABLED
    assert describe_refusal(kafka_server) is kafka_errors.SecurityDisabledError


def test_an_unknown_authorizer_refuses_to_start(tmp_path: Any) -> None:
    with pytest.raises(AssertionError, match="authorizer.class.name"):
        KafkaServer(str(tmp_path / "data"), "authorizer.class.name=com.example.Mine").start()


def test_without_acls_nothing_is_allowed_not_even_the_acl_apis(tmp_path: Any) -> None:
    bare = KafkaServer(str(tmp_path / "data"), ON).start()
    try:
        client = admin(bare)
        assert describe_refusal(bare) is kafka_errors.ClusterAuthorizationFailedError
        binding = AclBinding(TOPIC, "t", LITERAL, ANONYMOUS, "*", AclOperation.READ, ALLOW)
        assert refused_code(lambda: client.create_acls([binding])[binding].result(timeout=10)) == \
            KafkaError.CLUSTER_AUTHORIZATION_FAILED
        topic = name("none")
        assert refused_code(lambda: client.create_topics([NewTopic(topic, 1)])[topic].result(timeout=10)) == \
            KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert client.list_topics(timeout=10).topics == {}  # the internal topics are hidden too
        elected = client.elect_leaders(ElectionType.PREFERRED, [TopicPartition("any", 0)])
        assert refused_code(lambda: elected.result(timeout=10)) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    finally:
        assert bare.stop() == 0, bare.log()


def test_super_users_may_do_anything(tmp_path: Any) -> None:
    superuser = KafkaServer(str(tmp_path / "data"), ON, f"super.users=User:admin;{ANONYMOUS}").start()
    try:
        topic = name("super")
        admin(superuser).create_topics([NewTopic(topic, 1)])[topic].result(timeout=10)
        assert produce_error(superuser, topic) is None
        assert admin(superuser).describe_acls(EVERY_ACL).result(timeout=10) == []
    finally:
        assert superuser.stop() == 0, superuser.log()


# -- the checks ------------------------------------------------------------------------------


def test_produce_needs_write_on_the_topic(server: KafkaServer) -> None:
    topic = name("produce")
    create_topic(server, topic)
    grant(server, TOPIC, topic, AclOperation.DESCRIBE)  # metadata, so the producer gets to Produce
    before = denials(server, "TOPIC", "WRITE")
    error = produce_error(server, topic)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert denials(server, "TOPIC", "WRITE") > before
    grant(server, TOPIC, topic, AclOperation.WRITE)
    assert produce_error(server, topic) is None


def test_fetch_needs_read_on_the_topic(server: KafkaServer) -> None:
    topic, group = name("fetch"), name("fetch-group")
    create_topic(server, topic)
    grant(server, TOPIC, topic, AclOperation.WRITE)  # implies DESCRIBE
    grant(server, GROUP, group, AclOperation.READ)
    assert produce_error(server, topic) is None
    c = consumer(server, group)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        msg = first_poll(c)
        assert msg.error() is not None and msg.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        grant(server, TOPIC, topic, AclOperation.READ)
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 10
        while True:
            msg = first_poll(c)
            if msg.error() is None:
                break
            assert time.monotonic() < deadline, msg.error()
        assert msg.value() == b"v"
    finally:
        c.close()


def test_a_group_needs_read_to_join_and_commit(server: KafkaServer) -> None:
    topic, group = name("group-topic"), name("group")
    create_topic(server, topic)
    grant(server, TOPIC, topic, AclOperation.WRITE, AclOperation.READ)
    assert produce_error(server, topic) is None
    c = consumer(server, group)
    try:
        c.subscribe([topic])
        msg = first_poll(c)  # FindCoordinator: DESCRIBE on the group
        assert msg.error() is not None and msg.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        c.close()
    grant(server, GROUP, group, AclOperation.READ)  # implies DESCRIBE
    c = consumer(server, group)
    try:
        c.subscribe([topic])
        msg = first_poll(c, 20)
        assert msg.error() is None and msg.value() == b"v"
        c.commit(msg, asynchronous=False)
        assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 1
    finally:
        c.close()


def test_the_consumer_group_protocol_needs_read_on_the_group_and_describe_on_its_topics(
        server: KafkaServer) -> None:
    topic, group = name("kip848-topic"), name("kip848-group")
    create_topic(server, topic)
    grant(server, TOPIC, topic, AclOperation.WRITE)
    assert produce_error(server, topic) is None

    def first_error_then_grant(expected: int, resource_type: ResourceType, resource: str) -> None:
        c = consumer(server, group, **{"group.protocol": "consumer"})
        try:
            c.subscribe([topic])
            msg = first_poll(c)
            assert msg.error() is not None and msg.error().code() == expected, msg.error()
        finally:
            c.close()
        grant(server, resource_type, resource, AclOperation.READ)

    first_error_then_grant(KafkaError.GROUP_AUTHORIZATION_FAILED, GROUP, group)
    removed = AclBindingFilter(TOPIC, topic, LITERAL, None, None, AclOperation.WRITE, AclPermissionType.ANY)
    admin(server).delete_acls([removed])[removed].result(timeout=10)  # no DESCRIBE on the topic now
    first_error_then_grant(KafkaError.TOPIC_AUTHORIZATION_FAILED, TOPIC, topic)
    c = consumer(server, group, **{"group.protocol": "consumer"})
    try:
        c.subscribe([topic])
        msg = first_poll(c, 20)
        assert msg.error() is None and msg.value() == b"v"
    finally:
        c.close()


def commit_group(server: KafkaServer, group: str, topic: str) -> None:
    """Make `group` by committing an offset of `topic` (standalone, no join)."""
    c = consumer(server, group)
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        c.close()


def test_describing_and_deleting_a_group_need_describe_and_delete(server: KafkaServer) -> None:
    topic, group = name("gadmin"), name("gadmin-group")
    create_topic(server, topic)
    grant(server, TOPIC, topic, AclOperation.READ)
    grant(server, GROUP, group, AclOperation.READ)
    commit_group(server, group, topic)
    client = admin(server)
    removed = AclBindingFilter(GROUP, group, LITERAL, None, None, AclOperation.ANY, AclPermissionType.ANY)
    client.delete_acls([removed])[removed].result(timeout=10)
    described = client.describe_consumer_groups([group])[group]
    assert refused_code(lambda: described.result(timeout=10)) == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert refused_code(lambda: client.delete_consumer_groups([group])[group].result(timeout=10)) == \
        KafkaError.GROUP_AUTHORIZATION_FAILED
    grant(server, GROUP, group, AclOperation.DELETE)  # implies DESCRIBE
    assert client.describe_consumer_groups([group])[group].result(timeout=10).group_id == group
    client.delete_consumer_groups([group])[group].result(timeout=10)


def test_listing_groups_shows_those_the_principal_may_describe(tmp_path: Any) -> None:
    """Without DESCRIBE on the cluster (which lists every group, as Kafka)."""
    data = str(tmp_path / "data")
    shown, hidden, topic = name("shown-group"), name("hidden-group"), name("listing")
    first = KafkaServer(data, ON, f"super.users={ANONYMOUS}").start()  # an admin makes both groups
    try:
        admin(first).create_topics([NewTopic(topic, 1)])[topic].result(timeout=10)
        commit_group(first, shown, topic)
        commit_group(first, hidden, topic)
        grant(first, GROUP, shown, AclOperation.DESCRIBE)
    finally:
        assert first.stop() == 0, first.log()
    second = KafkaServer(data, ON).start()  # the same ACLs; ANONYMOUS no longer a super user
    try:
        listed = {g.group_id for g in admin(second).list_consumer_groups().result(timeout=10).valid}
        assert shown in listed and hidden not in listed
    finally:
        assert second.stop() == 0, second.log()


def test_authorized_operations_say_what_the_principal_may_do(server: KafkaServer, kafka_server: KafkaServer) -> None:
    """Kafka's include_authorized_operations (Metadata, DescribeCluster, DescribeGroups):
    what the ACLs allow, implied DESCRIBE included; every supported operation without an
    authorizer (librdkafka's 0081 DescribeTopics and DescribeCluster count them)."""
    from confluent_kafka import TopicCollection

    client = admin(server)
    topic, group = name("ops"), name("ops-group")
    create_topic(server, topic)  # CREATE on the topic
    grant(server, TOPIC, topic, AclOperation.READ)
    grant(server, GROUP, group, AclOperation.DELETE)
    [described] = client.describe_topics(TopicCollection([topic]), include_authorized_operations=True).values()
    assert set(described.result(10).authorized_operations) == {AclOperation.CREATE, AclOperation.READ,
                                                              AclOperation.DESCRIBE}
    cluster = client.describe_cluster(include_authorized_operations=True).result(10)
    assert set(cluster.authorized_operations) == {AclOperation.ALTER, AclOperation.DESCRIBE}  # the seeded ALTER
    [group_future] = client.describe_consumer_groups([group], include_authorized_operations=True).values()
    assert set(group_future.result(10).authorized_operations) == {AclOperation.DELETE, AclOperation.DESCRIBE}
    client = AdminClient({"bootstrap.servers": kafka_server.bootstrap})  # no authorizer: everything supported
    client.create_topics([NewTopic("acl-open", 1)])["acl-open"].result(10)
    [described] = client.describe_topics(TopicCollection(["acl-open"]), include_authorized_operations=True).values()
    assert len(described.result(10).authorized_operations) == 8
    assert len(client.describe_cluster(include_authorized_operations=True).result(10).authorized_operations) == 7


def test_metadata_shows_only_topics_the_principal_may_describe(server: KafkaServer) -> None:
    shown, hidden = name("shown"), name("hidden")
    create_topic(server, shown)
    create_topic(server, hidden)
    grant(server, TOPIC, shown, AclOperation.READ)  # READ implies DESCRIBE
    listed = admin(server).list_topics(timeout=10).topics
    assert shown in listed and hidden not in listed
    named = admin(server).list_topics(hidden, timeout=10).topics[hidden]
    assert named.error is not None and named.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # a topic that does not exist answers the same: the name tells nothing
    missing = name("missing")
    grant(server, TOPIC, missing, AclOperation.DESCRIBE)  # DESCRIBE, but no CREATE to auto-create it
    named = admin(server).list_topics(missing, timeout=10).topics[missing]
    assert named.error is not None and named.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert missing not in admin(server).list_topics(timeout=10).topics


def test_deny_beats_allow_and_prefixes_cover_their_names(server: KafkaServer) -> None:
    prefix = name("team")
    allowed, denied = f"{prefix}-allowed", f"{prefix}-denied"
    grant(server, TOPIC, prefix, AclOperation.CREATE, AclOperation.WRITE, pattern=PREFIXED)
    grant(server, TOPIC, denied, AclOperation.WRITE, permission=DENY)
    for topic in (allowed, denied):
        admin(server).create_topics([NewTopic(topic, 1)])[topic].result(timeout=10)
    assert produce_error(server, allowed) is None
    error = produce_error(server, denied)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    other = name("elsewhere")  # outside the prefix: no CREATE
    assert refused_code(lambda: admin(server).create_topics([NewTopic(other, 1)])[other].result(timeout=10)) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_admin_operations_need_their_acls(server: KafkaServer) -> None:
    client = admin(server)
    topic = name("admin")
    assert refused_code(lambda: client.create_topics([NewTopic(topic, 1)])[topic].result(timeout=10)) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_topic(server, topic)
    resource = ConfigResource("TOPIC", topic)
    assert refused_code(lambda: client.describe_configs([resource])[resource].result(timeout=10)) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(server, TOPIC, topic, AclOperation.DESCRIBE_CONFIGS)
    assert "retention.ms" in client.describe_configs([resource])[resource].result(timeout=10)
    altered = ConfigResource("TOPIC", topic, incremental_configs=[
        ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)])
    assert refused_code(lambda: client.incremental_alter_configs([altered])[altered].result(timeout=10)) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(server, TOPIC, topic, AclOperation.ALTER_CONFIGS)
    client.incremental_alter_configs([altered])[altered].result(timeout=10)
    assert client.describe_configs([resource])[resource].result(timeout=10)["retention.ms"].value == "60000"
    broker = ConfigResource("BROKER", "0")
    assert refused_code(lambda: client.describe_configs([broker])[broker].result(timeout=10)) == \
        KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert refused_code(lambda: client.delete_topics([topic])[topic].result(timeout=10)) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(server, TOPIC, topic, AclOperation.DELETE)
    client.delete_topics([topic])[topic].result(timeout=10)


def list_offsets_error(server: KafkaServer, topic: str, source: str | None = None) -> ErrorCode:
    """ListOffsets' answer for partition 0, by a raw request (librdkafka asks Metadata first),
    from the loopback address `source`."""
    wire = Wire(server.bootstrap, source=source)
    try:
        wire.send(list_offsets_v9.ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=(
            list_offsets_v9.ListOffsetsTopic(name=topic, partitions=(list_offsets_v9.ListOffsetsPartition(
                partition_index=0, current_leader_epoch=-1, timestamp=-1),)),)), 1)
        return ErrorCode(wire.receive(LIST_OFFSETS, 9)[1].topics[0].partitions[0].error_code)
    finally:
        wire.sock.close()


def test_an_acl_of_one_host_is_not_another_hosts(server: KafkaServer) -> None:
    topic = name("host")
    create_topic(server, topic)
    binding = AclBinding(TOPIC, topic, LITERAL, ANONYMOUS, "127.0.0.2", AclOperation.DESCRIBE, ALLOW)
    admin(server).create_acls([binding])[binding].result(timeout=10)
    assert list_offsets_error(server, topic, source="127.0.0.2") is ErrorCode.none
    assert list_offsets_error(server, topic, source="127.0.0.3") is ErrorCode.topic_authorization_failed


def test_partition_admin_needs_describe_alter_and_delete_on_the_topic(server: KafkaServer) -> None:
    client = admin(server)
    topic = name("partitions")
    create_topic(server, topic)
    first = TopicPartition(topic, 0, 0)
    assert list_offsets_error(server, topic) is ErrorCode.topic_authorization_failed
    grant(server, TOPIC, topic, AclOperation.DESCRIBE)
    assert list_offsets_error(server, topic) is ErrorCode.none
    grown = NewPartitions(topic, 2)
    assert refused_code(lambda: client.create_partitions([grown])[topic].result(timeout=10)) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(server, TOPIC, topic, AclOperation.ALTER)
    client.create_partitions([grown])[topic].result(timeout=10)
    assert len(client.list_topics(topic, timeout=10).topics[topic].partitions) == 2
    assert refused_code(lambda: client.delete_records([first])[first].result(timeout=10)) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(server, TOPIC, topic, AclOperation.DELETE)
    assert client.delete_records([first])[first].result(timeout=10).low_watermark == 0


def test_transactions_need_write_on_the_transactional_id_its_topics_and_read_on_its_group(
        server: KafkaServer) -> None:
    topic, txn, group = name("txn"), name("txn-id"), name("txn-group")
    create_topic(server, topic)
    grant(server, TOPIC, topic, AclOperation.DESCRIBE)
    config = {"bootstrap.servers": server.bootstrap, "transactional.id": txn, "transaction.timeout.ms": 10000}
    producer = Producer(config)
    with pytest.raises(KafkaException) as refused:
        producer.init_transactions(10)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    grant(server, TXN, txn, AclOperation.WRITE)
    producer = Producer(config)
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, b"not written")  # AddPartitionsToTxn: WRITE on the topic
    with pytest.raises(KafkaException) as refused:
        producer.commit_transaction(10)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # (librdkafka would now abort with an EndTxn Kafka refuses too: nothing was added.)
    grant(server, TOPIC, topic, AclOperation.WRITE)
    producer = Producer(config)
    producer.init_transactions(10)
    group_metadata = consumer(server, group).consumer_group_metadata()

    def offsets_in_a_transaction() -> None:
        producer.begin_transaction()
        producer.produce(topic, b"in a transaction")
        producer.send_offsets_to_transaction([TopicPartition(topic, 0, 1)], group_metadata, 10)

    assert refused_code(offsets_in_a_transaction) == KafkaError.GROUP_AUTHORIZATION_FAILED  # AddOffsetsToTxn
    producer.abort_transaction(10)
    grant(server, GROUP, group, AclOperation.READ)
    assert refused_code(offsets_in_a_transaction) == KafkaError.TOPIC_AUTHORIZATION_FAILED  # TxnOffsetCommit
    producer.abort_transaction(10)
    grant(server, TOPIC, topic, AclOperation.READ)
    offsets_in_a_transaction()
    producer.commit_transaction(10)


def test_an_idempotent_producer_needs_write_on_some_topic(tmp_path: Any) -> None:
    fresh = authorizing_server(str(tmp_path / "data")).start()
    try:
        topic = name("idem")
        create_topic(fresh, topic)
        grant(fresh, TOPIC, topic, AclOperation.DESCRIBE)
        config = {"bootstrap.servers": fresh.bootstrap, "enable.idempotence": True}
        producer = Producer(config)
        producer.produce(topic, b"v")
        with pytest.raises(KafkaException) as refused:  # InitProducerId's answer: fatal to the producer
            for _ in range(50):
                producer.poll(0.2)
        assert refused.value.args[0].fatal()
        assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
        grant(fresh, TOPIC, topic, AclOperation.WRITE)
        assert produce_error(fresh, topic, **{"enable.idempotence": True}) is None
    finally:
        assert fresh.stop() == 0, fresh.log()


def test_acls_survive_a_restart_and_a_restore_from_the_bucket(tmp_path: Any) -> None:
    data = str(tmp_path / "data")
    restored = authorizing_server(data).start()
    try:
        kept = AclBinding(TOPIC, "kept", PREFIXED, "User:alice", "*", AclOperation.READ, ALLOW)
        admin(restored).create_acls([kept])[kept].result(timeout=10)
        restored.restart()
        assert kept in admin(restored).describe_acls(EVERY_ACL).result(timeout=10)
        assert restored.stop() == 0, restored.log()
        shutil.rmtree(data)  # a new machine: the bucket alone
        restored.start()
        assert kept in admin(restored).describe_acls(EVERY_ACL).result(timeout=10)
    finally:
        if restored.running:
            assert restored.stop() == 0, restored.log()


# -- principals authenticated by SASL ----------------------------------------------------------


@pytest.fixture(scope="module")
def sasl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafkaServer]:
    """PLAINTEXT (ANONYMOUS, who may manage ACLs and users) beside SASL_PLAINTEXT; alice and
    bob are users, admin a super user."""
    data = seed_acls(str(tmp_path_factory.mktemp("acl-sasl") / "data"))
    found = SecureKafkaServer(data, LISTENERS, ON, "super.users=User:admin").start()
    for user in ("alice", "bob", "admin"):
        add_user(admin(found), user, f"{user}-secret")
    yield found
    assert found.stop() == 0, found.log()


def as_user(server: SecureKafkaServer, user: str) -> dict[str, Any]:
    return sasl_config(server, "PLAIN", user, f"{user}-secret")


def test_acls_name_authenticated_principals(sasl_server: SecureKafkaServer) -> None:
    topic = name("sasl")
    create_topic(sasl_server, topic)
    for user in ("alice", "bob"):
        error = produce_error(sasl_server, topic, **as_user(sasl_server, user))
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, user
    grant(sasl_server, TOPIC, topic, AclOperation.WRITE, principal="User:alice")
    assert produce_error(sasl_server, topic, **as_user(sasl_server, "alice")) is None
    error = produce_error(sasl_server, topic, **as_user(sasl_server, "bob"))  # alice's ACL is not bob's
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(sasl_server, topic, **as_user(sasl_server, "admin")) is None  # a super user


def test_user_credentials_need_describe_and_alter_on_the_cluster(sasl_server: SecureKafkaServer) -> None:
    alice = AdminClient(as_user(sasl_server, "alice"))
    described = alice.describe_user_scram_credentials(["bob"])
    assert refused_code(lambda: described["bob"].result(timeout=10)) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    upsertion = UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                             b"carol-secret")
    altered = alice.alter_user_scram_credentials([upsertion])
    assert refused_code(lambda: altered["carol"].result(timeout=10)) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    grant(sasl_server, CLUSTER, "kafka-cluster", AclOperation.ALTER, principal="User:alice")  # implies DESCRIBE
    alice.alter_user_scram_credentials([upsertion])["carol"].result(timeout=10)
    assert alice.describe_user_scram_credentials(["carol"])["carol"].result(timeout=10).user == "carol"
