"""Internal topics (`__consumer_offsets`, `__transaction_state`): created on first use,
read back whole at start-up through the fetch layer, so they survive restarts.

They stay whole on local disk and are never tiered (as in Kafka): start-up reads them
before the tiering manager knows any remote segment, so a segment tiered and deleted
locally would be lost state."""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Mapping

from fetch.reader import Reader
from hotlog.errors import CorruptRecordError
from hotlog.manager import LogManager
from hotlog.records import DecodedBatch, decode_batches

log = logging.getLogger(__name__)

_LOAD_READ_BYTES = 1024 * 1024


def partitions_of(logs: LogManager, topic: str, default_partitions: int, configs: Mapping[str, Any]) -> int:
    """The topic's partition count, creating it with `default_partitions` if missing."""
    entry = logs.topics.get(topic)
    if entry is None:
        entry = logs.create_topic(topic, default_partitions, {**configs, "remote.storage.enable": "false"})
        log.info("created %s with %d partitions", topic, entry.partitions)
    return entry.partitions


async def replay(logs: LogManager, reader: Reader, topic: str) -> AsyncIterator[tuple[int, DecodedBatch]]:
    """(partition, batch) for every batch of every partition of `topic`, oldest first per partition."""
    entry = logs.topics.get(topic)
    for partition in range(entry.partitions if entry else 0):
        offset = reader.log_start_offset(topic, partition)
        while offset < reader.high_watermark(topic, partition):
            found = await reader.read(topic, partition, offset, _LOAD_READ_BYTES)
            start = offset
            for batch in decode_batches(found.records):
                yield partition, batch
                offset = batch.header.next_offset
            if offset == start:
                raise CorruptRecordError(f"{topic}-{partition}: no whole batch at offset {offset}")
