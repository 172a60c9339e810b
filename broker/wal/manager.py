"""The write-ahead log as the broker sees it: which partitions it covers, what an append
hands it, what acks=all waits for, the restore at start-up, and folding.

Folding: a WAL object may go once tiered segments hold all it holds. Data older than
`log.remote.wal.fold.ms` still in an active segment gets that segment rolled (and sealed
by a flush), so the tiering manager uploads it at its next pass; objects whose every
entry is then below its partition's remote end (or whose topic is gone) are deleted.
The bucket thus keeps a bounded number of WAL objects, and a restore reads a bounded
amount."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Protocol

from hotlog.errors import LogStorageError
from hotlog.log import AppendInfo, PartitionLog
from hotlog.manager import LogManager
from tiering.s3_store import MAX_DELETE_KEYS
from tiering.store import ObjectStore, ObjectStoreError

from ..settings import BrokerSettings
from . import metrics
from .objects import WalEntry, WalObject, WalTopic
from .restore import restore
from .writer import WalPartition, WalWriter, as_written

log = logging.getLogger(__name__)

_TAIL_READ_BYTES = 8 * 1024 * 1024
# Pending bytes allowed per window of room: enough to ride out a slow PUT or two.
_PENDING_WINDOWS = 8


class RemoteEnds(Protocol):
    """What folding needs of tiering: where each partition's tiered segments end."""

    def remote_end_offset(self, topic: str, partition: int) -> int: ...


class WriteAheadLog:
    """Event loop only."""

    def __init__(self, logs: LogManager, store: ObjectStore, remote: RemoteEnds, settings: BrokerSettings) -> None:
        self.logs = logs
        self.store = store
        self.remote = remote
        self.fold_ms = settings.log_remote_wal_fold_ms
        self.writer = WalWriter(
            store, broker_id=settings.node_id, window_ms=settings.log_remote_wal_window_ms,
            window_bytes=settings.log_remote_wal_window_bytes,
            max_pending_bytes=_PENDING_WINDOWS * settings.log_remote_wal_window_bytes,
        )

    def covers(self, plog: PartitionLog) -> bool:
        """A partition whose acks wait for the bucket: its topic asks for the WAL and is
        tiered (the WAL folds into tiered segments). The internal topics follow the broker
        property: made while it is on, they are tiered and use the WAL too."""
        config = plog.config
        return config.remote_wal_enable and config.remote_storage_enable

    # -- the write path ------------------------------------------------------------------

    def check_room(self, plog: PartitionLog) -> None:
        if self.covers(plog):
            self.writer.check_room()

    def appended(self, plog: PartitionLog, info: AppendInfo, records: bytes | bytearray | memoryview | None) -> None:
        """`records` None: read the batches back from the log (ones it built itself)."""
        if info.duplicate or not self.covers(plog):
            return
        if records is None:
            self._hand_over_tail(plog, info.base_offset, info.last_offset + 1)
            return
        self.writer.add(self._describe(plog), plog.partition, info.base_offset, info.last_offset + 1,
                        as_written(records, info))

    def waiter(self, plog: PartitionLog, end: int) -> asyncio.Future[None] | None:
        """A future done once the bucket holds the partition below `end`; None if it does."""
        return self.writer.waiter(self.logs.topic(plog.topic).topic_id, plog.partition, end)

    def _describe(self, plog: PartitionLog) -> WalTopic:
        topic = self.logs.topic(plog.topic)
        return WalTopic(topic.name, topic.topic_id, topic.partitions, dict(topic.overrides))

    # -- start-up ------------------------------------------------------------------------

    async def open(self) -> None:
        """Restore what the bucket's WAL objects hold past each log's end (after tiering
        restored its segments), then hand the WAL what this disk holds past the bucket (a
        crash left it acknowledged to nobody, but a retry must not be answered from one disk)."""
        objects, touched = await restore(self.store, self.logs, self.writer.broker_id)
        await asyncio.gather(*(plog.flush_async() for plog in touched))
        wal_end: dict[WalPartition, int] = {}
        for wal in objects:
            for entry in wal.entries:
                key = WalPartition(entry.topic_id, entry.partition)
                wal_end[key] = max(wal_end.get(key, 0), entry.next_offset)
        self.writer.committed = objects
        self.writer.next_sequence = max((o.sequence for o in objects), default=-1) + 1
        handed = 0
        for (name, partition), plog in list(self.logs.logs.items()):
            if plog.closed or not self.covers(plog):
                continue
            topic_id = self.logs.topic(name).topic_id
            bucket_end = max(self.remote.remote_end_offset(name, partition),
                             wal_end.get(WalPartition(topic_id, partition), 0))
            if bucket_end <= 0 or bucket_end >= plog.log_end_offset:
                self.writer.mark_durable(topic_id, partition, plog.log_end_offset)
                continue
            self.writer.mark_durable(topic_id, partition, bucket_end)
            handed += self._hand_over_tail(plog, max(bucket_end, plog.log_start_offset), plog.log_end_offset)
        if objects or handed:
            log.info("write-ahead log: %d objects in the bucket, %d bytes of local tails handed to it",
                     len(objects), handed)

    def _hand_over_tail(self, plog: PartitionLog, offset: int, end: int) -> int:
        """Hand the WAL the partition's batches in [offset, end), read from the log."""
        topic = self._describe(plog)
        handed = 0
        while offset < end:
            found = plog.read(offset, _TAIL_READ_BYTES, max_offset=end)
            if found is None:
                break
            data = found.read()
            self.writer.add(topic, plog.partition, offset, found.end_offset, data)
            handed += len(data)
            offset = found.end_offset
        return handed

    # -- background ----------------------------------------------------------------------

    async def run(self) -> None:
        """Write windows and fold, until cancelled."""
        writer = asyncio.create_task(self.writer.run())
        try:
            interval = min(self.fold_ms / 4, 10_000) / 1000
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.fold_once()
                except ObjectStoreError as exc:
                    log.warning("deleting folded WAL objects failed, retrying later: %s", exc)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def fold_once(self, now_ms: int | None = None) -> None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        kept: list[WalObject] = []
        folded: list[WalObject] = []
        for wal in self.writer.committed:
            waiting = [e for e in wal.entries if not self._tiered(wal, e)]
            if not waiting:
                folded.append(wal)
                continue
            kept.append(wal)
            if now - wal.created_ms >= self.fold_ms:
                for entry in waiting:
                    self._roll_if_active(wal, entry)
        if folded:
            await self.store.delete([wal.key for wal in folded])
            metrics.WAL_DELETED.inc(len(folded))
            metrics.WAL_DELETE_REQUESTS.inc(math.ceil(len(folded) / MAX_DELETE_KEYS))
        self.writer.committed = kept + self.writer.committed[len(kept) + len(folded):]  # commits made meanwhile
        metrics.WAL_PENDING_FOLD.set(len(self.writer.committed))
        oldest = min((w.created_ms for w in self.writer.committed), default=None)
        metrics.WAL_OLDEST_AGE.set(0 if oldest is None else max(0.0, (now - oldest) / 1000))

    def _partition(self, wal: WalObject, entry: WalEntry) -> PartitionLog | None:
        name = wal.topics[entry.topic_id].name
        topic = self.logs.topics.get(name)
        if topic is None or topic.topic_id != entry.topic_id:
            return None
        return self.logs.logs.get((name, entry.partition))

    def _tiered(self, wal: WalObject, entry: WalEntry) -> bool:
        plog = self._partition(wal, entry)
        if plog is None or plog.closed:
            return True  # its topic is gone: nothing to keep it for
        return self.remote.remote_end_offset(plog.topic, plog.partition) >= entry.next_offset

    def _roll_if_active(self, wal: WalObject, entry: WalEntry) -> None:
        plog = self._partition(wal, entry)
        if plog is None or plog.closed:
            return
        if plog.active_segment.base_offset < entry.next_offset:  # the entry's data is in it
            try:
                plog.seal_active_segment()
            except LogStorageError as exc:  # a full disk: the next fold tries again
                log.warning("%s-%d: cannot roll for folding: %s", plog.topic, plog.partition, exc)
