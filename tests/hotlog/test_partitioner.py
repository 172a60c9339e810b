"""Kafka's default partitioner: murmur2 against the Java client's vectors and kafka-python."""

import random

import pytest
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from hotlog.partitioner import murmur2, partition_for_key

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit results).
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key, expected", JAVA_VECTORS.items(), ids=[k.decode()[:12] for k in JAVA_VECTORS])
def test_murmur2_matches_the_java_client(key, expected):
    assert murmur2(key) == expected


def test_murmur2_matches_kafka_python_on_random_keys():
    rng = random.Random(2024)
    keys = [b"", b"\x00", b"\xff" * 7] + [rng.randbytes(rng.randrange(0, 64)) for _ in range(2000)]
    for key in keys:
        ours = murmur2(key)
        assert -(2**31) <= ours < 2**31
        assert ours & 0xFFFFFFFF == kafka_python_murmur2(key), key


class OneTopicCluster:
    """The three questions kafka-python's partitioner asks its cluster metadata."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self):
        return {"t"}

    def partitions_for_topic(self, topic):
        return self.partitions

    def available_partitions_for_topic(self, topic):
        return self.partitions


def test_keys_land_on_the_partition_kafka_python_picks():
    rng = random.Random(5)
    for _ in range(500):
        key = rng.randbytes(rng.randrange(1, 40))
        partitions = rng.randrange(1, 100)
        theirs = DefaultPartitioner().partition("t", key, key, None, None, OneTopicCluster(partitions))
        assert partition_for_key(key, partitions) == theirs
