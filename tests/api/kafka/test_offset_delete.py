"""OffsetDelete through kafka-python's admin client (`delete_group_offsets`): a group's
committed offsets of a topic its members do not consume go; those of a topic they consume
stay (GROUP_SUBSCRIBED_TO_TOPIC); an unknown group is GROUP_ID_NOT_FOUND."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import GroupIdNotFoundError, GroupSubscribedToTopicError, NoError

from .cluster import KafkaServer


def test_offsets_of_topics_the_group_does_not_consume_are_deleted(tmp_path: Path) -> None:
    server = KafkaServer(str(tmp_path / "data")).start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        for future in admin.create_topics([NewTopic("old", 1, 1), NewTopic("live", 1, 1)]).values():
            future.result(10)
        member = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "workers", "enable.auto.commit": False})
        member.subscribe(["live"])
        deadline = time.monotonic() + 15
        while not member.assignment():
            assert time.monotonic() < deadline, "no assignment"
            member.poll(0.2)
        member.commit(offsets=[TopicPartition("old", 0, 7), TopicPartition("live", 0, 9)], asynchronous=False)

        client = KafkaAdminClient(bootstrap_servers=server.bootstrap)
        result = client.delete_group_offsets("workers", [KTopicPartition("old", 0), KTopicPartition("live", 0)])
        assert result[KTopicPartition("old", 0)] is NoError
        assert result[KTopicPartition("live", 0)] is GroupSubscribedToTopicError
        committed = member.committed([TopicPartition("old", 0), TopicPartition("live", 0)], timeout=10)
        assert [tp.offset for tp in committed] == [-1001, 9]  # OFFSET_INVALID: none committed
        member.close()
        # Empty now: the rest goes too; and it stays gone after a restart.
        result = client.delete_group_offsets("workers", [KTopicPartition("live", 0)])
        assert result[KTopicPartition("live", 0)] is NoError
        with pytest.raises(GroupIdNotFoundError):
            client.delete_group_offsets("nobody", [KTopicPartition("old", 0)])
        client.close()
        server.restart()
        checker = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "workers"})
        committed = checker.committed([TopicPartition("old", 0), TopicPartition("live", 0)], timeout=10)
        checker.close()
        assert [tp.offset for tp in committed] == [-1001, -1001]
    finally:
        assert server.stop() == 0, server.log()
