"""When an append is durable, for every writer in the broker (client produce, committed
offsets, transaction state and markers): fsynced on this disk, or, for partitions the
write-ahead log covers, committed in a WAL object in the bucket."""

from __future__ import annotations

import asyncio

from hotlog.log import AppendInfo, PartitionLog

from .wal.manager import WriteAheadLog


class Durability:
    """Event loop only. Without an object store (`wal` None) every append waits for its fsync."""

    def __init__(self) -> None:
        self.wal: WriteAheadLog | None = None

    def check_room(self, plog: PartitionLog) -> None:
        """Raise WalFullError before an append the WAL has no room for."""
        if self.wal is not None:
            self.wal.check_room(plog)

    def appended(self, plog: PartitionLog, info: AppendInfo, records: bytes | bytearray | memoryview | None = None) -> None:
        """Hand what was just appended to the WAL where it covers the partition (`records`:
        the batches as given to the log; None reads them back from it, for batches the log
        built itself, such as transaction markers)."""
        if self.wal is not None:
            self.wal.appended(plog, info, records)

    def beyond_this_disk(self, plog: PartitionLog) -> bool:
        """Whether the partition's acknowledged appends are in the bucket (its WAL), not on
        this disk only: the broker's answer to replication."""
        return self.wal is not None and self.wal.covers(plog)

    def waiter(self, plog: PartitionLog, end: int) -> asyncio.Future[None] | None:
        """A future done once the partition is durable below `end` (failed with
        LogStorageError if the disk refused), or None if it already is."""
        if self.wal is not None and self.wal.covers(plog):
            return self.wal.waiter(plog, end)
        return plog.durable_waiter(end)

    async def wait(self, plog: PartitionLog, end: int) -> None:
        """Until the partition is durable below `end`; raises LogStorageError if the disk refused."""
        waiter = self.waiter(plog, end)
        if waiter is not None:
            await waiter
