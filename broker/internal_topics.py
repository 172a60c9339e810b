"""Internal topics (`__consumer_offsets`, `__transaction_state`): written by the broker
only, whatever the protocol; created on first use; read back whole at start-up through
the fetch layer, so they survive restarts.

They are compacted, as in Kafka, and stay whole on local disk. With the broker's
`log.remote.wal.enable` on they are also tiered (compacted in the bucket, which swaps the
cleaned segments in locally too) and written through the WAL, so a new machine restores
them from the bucket: the broker restores tiered segments and WAL objects before it reads
them back. A record
that cannot be parsed at start-up is logged, counted and skipped: one bad record must
not keep the broker from starting."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from prometheus_client import Counter

from fetch.reader import Reader
from hotlog.config import parse_topic_configs
from hotlog.errors import CorruptRecordError
from hotlog.manager import LogManager
from hotlog.markers import read_marker
from hotlog.records import DecodedBatch, Record, decode_batches

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
TXN_STATE_TOPIC = "__transaction_state"
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TXN_STATE_TOPIC})

SKIPPED_RECORDS = Counter("tierlog_internal_records_skipped_total",
                          "Records of an internal topic that start-up could not parse and skipped", ["topic"])

_LOAD_READ_BYTES = 1024 * 1024


def is_internal(topic: str) -> bool:
    return topic in INTERNAL_TOPICS


def _placement(logs: LogManager) -> dict[str, Any]:
    """The internal topics' configs beyond their own: compacted, as in Kafka, so start-up
    reads one record per group offset and transactional id rather than every commit ever
    made; whole on local disk always; with the broker's `log.remote.wal.enable` on, tiered
    (and through the WAL, whose setting they inherit)."""
    in_bucket = bool(logs.defaults.get("remote.wal.enable", False))
    return {"remote.storage.enable": in_bucket, "cleanup.policy": "compact",
            "local.retention.ms": -1, "local.retention.bytes": -1}


def place(logs: LogManager) -> None:
    """Give existing internal topics today's placement: made under another setting of
    `log.remote.wal.enable` (or by an older version), their configs change; moving to the
    bucket, their active segments are rolled (and sealed by a flush) so that tiering
    uploads what they held before, too."""
    placement = parse_topic_configs(_placement(logs))
    for name in INTERNAL_TOPICS:
        topic = logs.topics.get(name)
        if topic is None or all(topic.overrides.get(k) == v for k, v in placement.items()):
            continue
        to_bucket = placement["remote.storage.enable"] and not logs.config_for(topic).remote_storage_enable
        logs.alter_topic_configs(name, placement)
        if to_bucket:
            for partition in range(topic.partitions):
                logs.log(name, partition).seal_active_segment()
            log.info("%s: tiered and written through the WAL from now on (log.remote.wal.enable)", name)
        else:
            log.info("%s: %s from now on", name, "compacted" if logs.config_for(topic).compact else "kept whole")


def partitions_of(logs: LogManager, topic: str, default_partitions: int, configs: Mapping[str, Any]) -> int:
    """The topic's partition count, creating it with `default_partitions` if missing. With
    the broker's `log.remote.wal.enable` on it is tiered and uses the WAL, so the bucket
    alone restores it, and kept whole on local disk (start-up reads it all); else it stays
    on local disk only."""
    entry = logs.topics.get(topic)
    if entry is None:
        entry = logs.create_topic(topic, default_partitions, {**configs, **_placement(logs)})
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


def control_marker_commits(batch: DecodedBatch) -> bool:
    """Whether a control batch replayed from an internal topic is a COMMIT marker; an
    unreadable one counts as an abort, and is logged and counted."""
    try:
        return read_marker(batch).commit
    except CorruptRecordError as exc:
        log.warning("skipping an unreadable transaction marker at offset %d of an internal topic: %s",
                    batch.header.base_offset, exc)
        return False


def skipped(topic: str, record: Record, exc: CorruptRecordError) -> None:
    """Log and count a record of an internal topic that start-up cannot parse."""
    SKIPPED_RECORDS.labels(topic).inc()
    log.warning("%s: skipping an unparseable record at offset %d: %s", topic, record.offset, exc)
