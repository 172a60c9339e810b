"""An exactly-once consume-transform-produce loop, run as its own process so tests can
SIGKILL it: reads `<in>` from the group's committed offsets, writes each value as
`out-<value>` to the same partition of `<out>` and commits the input offsets in the same
transaction. Exits 0 once every input up to the high watermarks seen at start is done.

usage: eos_worker.py BOOTSTRAP IN OUT GROUP TRANSACTIONAL_ID PARTITIONS
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

TIMEOUT_S = 30


def main(bootstrap: str, source: str, sink: str, group: str, transactional_id: str, partitions: int) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5,
                         "transaction.timeout.ms": 10_000})
    producer.init_transactions(TIMEOUT_S)  # fences an earlier incarnation and aborts its transaction
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    committed = consumer.committed([TopicPartition(source, p) for p in range(partitions)], TIMEOUT_S)
    positions = {tp.partition: max(tp.offset, 0) for tp in committed}
    consumer.assign([TopicPartition(source, p, o) for p, o in positions.items()])
    ends = {p: consumer.get_watermark_offsets(TopicPartition(source, p), TIMEOUT_S)[1] for p in positions}
    deadline = time.monotonic() + 4 * TIMEOUT_S
    while any(positions[p] < ends[p] for p in positions):
        if time.monotonic() > deadline:
            return 2
        messages = [m for m in consumer.consume(100, 0.5) if m.error() is None]
        if not messages:
            continue
        producer.begin_transaction()
        for message in messages:
            producer.produce(sink, value=b"out-" + message.value(), partition=message.partition())
            positions[message.partition()] = message.offset() + 1
        producer.send_offsets_to_transaction([TopicPartition(source, p, o) for p, o in positions.items()],
                                             consumer.consumer_group_metadata(), TIMEOUT_S)
        producer.commit_transaction(TIMEOUT_S)
    consumer.close()
    return 0


if __name__ == "__main__":
    bootstrap, source, sink, group, transactional_id, partitions = sys.argv[1:]
    sys.exit(main(bootstrap, source, sink, group, transactional_id, int(partitions)))
