"""DeleteTopics on a disk that cannot take the topic list's rewrite (a full 8 MiB tmpfs as
the data folder), through confluent-kafka: KAFKA_STORAGE_ERROR for that topic, the topic
left whole, the connection kept, and the deletion done once there is room."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import KafkaError, KafkaException

from .cluster import KafkaServer
from .test_confluent import admin, create_topic, produce
from .test_storage_errors import fill, small_disk  # noqa: F401 - small_disk: the fixture this test takes


def test_deleting_a_topic_on_a_full_disk_answers_a_storage_error_and_changes_nothing(small_disk: str) -> None:  # noqa: F811
    server = KafkaServer(small_disk).start()
    try:
        create_topic(server, "doomed", 2)
        produce(server, "doomed", [b"kept"])
        client = admin(server)
        filler = fill(small_disk, 0)
        with pytest.raises(KafkaException) as refused:
            client.delete_topics(["doomed"], operation_timeout=10)["doomed"].result(10)
        assert refused.value.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR, refused.value
        assert "doomed" in client.list_topics(timeout=10).topics, "still there, as the disk says"
        assert {"doomed-0", "doomed-1"} <= set(os.listdir(small_disk))
        os.unlink(filler)
        client.delete_topics(["doomed"], operation_timeout=10)["doomed"].result(10)
        assert "doomed" not in client.list_topics(timeout=10).topics
        assert not [n for n in os.listdir(small_disk) if n.startswith("doomed")]
    finally:
        assert server.stop() == 0, server.log()
    assert "closing connection" not in server.log()
