"""Restore from the WAL objects in the bucket, before the broker serves: after tiering
has brought back the tiered segments, every WAL partition continues with the batches
past its log end, in sequence order, none twice. Topics the bucket has no record of yet
(made less than a tiering pass before the machine was lost) come from the objects'
own topic descriptions, with their ids.

A partition takes a WAL entry only where it continues the log; an entry past a gap is
not taken (acks=all answers in sequence order, so no acknowledged batch lies past one)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from hotlog.errors import CorruptRecordError, LogError
from hotlog.log import PartitionLog
from hotlog.manager import LogManager
from tiering.store import ObjectStore

from . import metrics
from .objects import WalObject, broker_prefix, decode

log = logging.getLogger(__name__)

_CONCURRENT_GETS = 8


async def restore(store: ObjectStore, logs: LogManager, broker_id: int) -> tuple[list[WalObject], list[PartitionLog]]:
    """Replay the broker's WAL objects in sequence order (keys sort by it), GETting up to
    8 ahead of the one being replayed, so the restore reads and appends at once and holds
    at most those in memory. Returns the objects (their batches dropped) and the logs
    that took batches (to flush). An object that fails its check is logged and left out
    (its batches are lost, and the log says so)."""
    keys = sorted(info.key for info in await store.list(broker_prefix(broker_id)))
    ahead: deque[asyncio.Task[bytes]] = deque()
    objects: list[WalObject] = []
    touched: dict[int, PartitionLog] = {}
    try:
        for i, key in enumerate(keys):
            while len(ahead) < _CONCURRENT_GETS and i + len(ahead) < len(keys):
                ahead.append(asyncio.create_task(store.get(keys[i + len(ahead)])))
            raw = await ahead.popleft()
            try:
                wal = decode(key, raw)
            except CorruptRecordError as exc:
                log.error("WAL object %s is unreadable and was skipped: %s", key, exc)
                continue
            for plog in replay(logs, [wal]):
                touched[id(plog)] = plog
            wal.data = b""
            objects.append(wal)
    finally:
        for task in ahead:
            task.cancel()
        await asyncio.gather(*ahead, return_exceptions=True)
    return objects, list(touched.values())


def replay(logs: LogManager, objects: list[WalObject]) -> list[PartitionLog]:
    """Append each object's batches that continue their partition's log; returns the logs
    that took any (to flush)."""
    touched: dict[int, PartitionLog] = {}
    for wal in objects:
        for topic in wal.topics.values():
            if topic.name not in logs.topics:
                logs.create_topic(topic.name, topic.partitions, topic.configs, topic_id=topic.topic_id)
                log.info("restored topic %s (%d partitions) from WAL object %s", topic.name, topic.partitions, wal.key)
        for entry in wal.entries:
            name = wal.topics[entry.topic_id].name
            local = logs.topics.get(name)
            if local is None or local.topic_id != entry.topic_id or entry.partition >= local.partitions:
                continue  # deleted (or made again) since
            plog = logs.log(name, entry.partition)
            if entry.next_offset <= plog.log_end_offset:
                continue  # tiered, or still on this disk
            if entry.base_offset != plog.log_end_offset:
                log.warning("%s-%d: WAL object %s continues at %d, the log ends at %d: not taken", name,
                            entry.partition, wal.key, entry.base_offset, plog.log_end_offset)
                continue
            try:
                plog.append_restored(wal.batches(entry))
            except LogError as exc:
                log.error("%s-%d: batches of WAL object %s not restored: %s", name, entry.partition, wal.key, exc)
                continue
            metrics.WAL_RESTORED_BATCH_BYTES.inc(entry.size)
            touched[id(plog)] = plog
    return list(touched.values())
