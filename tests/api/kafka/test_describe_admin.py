"""Admin APIs tools call to look at a broker, through kafka-python's and confluent-kafka's
admin clients: DescribeLogDirs, ElectLeaders, DescribeProducers, ListTransactions and
DescribeTransactions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from confluent_kafka import ElectionType, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import TransactionalIdNotFoundError

from ..server import http_get
from .cluster import KafkaServer


def test_log_dirs_producers_and_transactions_are_described(kafka_server: KafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    admin.create_topics([NewTopic("jobs", 2, 1)])["jobs"].result(10)
    idempotent = Producer({"bootstrap.servers": kafka_server.bootstrap, "enable.idempotence": True})
    for i in range(10):
        idempotent.produce("jobs", b"job %d" % i, partition=0)
    assert idempotent.flush(10) == 0
    open_txn = Producer({"bootstrap.servers": kafka_server.bootstrap, "transactional.id": "billing"})
    open_txn.init_transactions(10)
    open_txn.begin_transaction()
    open_txn.produce("jobs", b"invoice", partition=1)
    assert open_txn.flush(10) == 0

    client = KafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
    dirs = _log_dirs(client.describe_log_dirs())
    assert dirs[("jobs", 0)] > 0 and dirs[("jobs", 1)] > 0  # bytes on disk
    assert _log_dirs(client.describe_log_dirs({"jobs": [1]})).keys() == {("jobs", 1)}

    producers = client.describe_producers([KTopicPartition("jobs", 0), KTopicPartition("jobs", 1)])
    [on_0] = producers[KTopicPartition("jobs", 0)].active_producers
    assert on_0.last_sequence == 9 and on_0.current_transaction_start_offset == -1
    [on_1] = producers[KTopicPartition("jobs", 1)].active_producers
    assert on_1.current_transaction_start_offset == 0  # the open transaction's first offset

    assert _listed(client.list_transactions()) == [("billing", "Ongoing")]
    assert _listed(client.list_transactions(state_filters=["CompleteCommit"])) == []
    billing = client.describe_transactions(["billing"])["billing"]
    assert billing.state.value == "Ongoing" and billing.producer_id == on_1.producer_id
    assert billing.topic_partitions == {KTopicPartition("jobs", 1)} and billing.transaction_timeout_ms == 60_000
    with pytest.raises(TransactionalIdNotFoundError):
        client.describe_transactions(["nobody"])
    open_txn.commit_transaction(10)
    assert _listed(client.list_transactions()) == [("billing", "CompleteCommit")]
    client.close()


def test_elect_leaders_answers_that_no_election_is_needed(kafka_server: KafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    admin.create_topics([NewTopic("elected", 2, 1)])["elected"].result(10)
    result = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("elected", 0), TopicPartition("nope", 0)])
    errors = {(tp.topic, tp.partition): err for tp, err in result.result(10).items()}
    assert errors[("elected", 0)].code() == KafkaError.ELECTION_NOT_NEEDED
    assert errors[("nope", 0)].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def _log_dirs(response: Any) -> dict[tuple[str, int], int]:
    sizes = {}
    for broker in response:
        for log_dir in broker["log_dirs"]:
            assert log_dir["error_code"] == 0 and log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0
            for topic in log_dir["topics"]:
                for part in topic["partitions"]:
                    sizes[(topic["name"], part["partition_index"])] = part["partition_size"]
    return {k: v for k, v in sizes.items() if not k[0].startswith("__")}


def _listed(response: Any) -> list[tuple[str, str]]:
    return sorted((t.transactional_id, t.state.value) for listings in response.values() for t in listings)


def _answered_ok(server: KafkaServer, api: str) -> float:
    _, text = http_get(f"{server.http_url}/metrics")
    found = re.search(rf'^tierlog_api_requests_total\{{api="{api}",code="ok",protocol="kafka"\}} (\S+)$', text,
                      re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_kafka_requests_are_counted_by_api_in_the_metrics(kafka_server: KafkaServer) -> None:
    apis = ("CreateTopics", "ElectLeaders", "Metadata")
    before = {api: _answered_ok(kafka_server, api) for api in apis}  # the module's other tests made some
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    admin.create_topics([NewTopic("counted", 1, 1)])["counted"].result(10)
    admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("counted", 0)]).result(10)
    for api in apis:
        assert _answered_ok(kafka_server, api) > before[api], api
