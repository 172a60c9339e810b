"""One read path for every front end (Kafka protocol, gRPC, CLI).

Today it serves the local tier; the remote tier plugs in behind the same calls, so
callers never learn which tier held an offset."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hotlog.log import PartitionLog
from hotlog.manager import LogManager
from hotlog.txn_index import AbortedTxn


@dataclass(frozen=True)
class ReadResult:
    records: bytes  # whole record batches, back to back; empty at the end of the log
    high_watermark: int
    log_start_offset: int
    last_stable_offset: int
    aborted: tuple[AbortedTxn, ...] = ()  # with read_committed: aborted transactions in range


class Reader:
    def __init__(self, logs: LogManager) -> None:
        self.logs = logs

    def _log(self, topic: str, partition: int) -> PartitionLog:
        return self.logs.log(topic, partition)

    def log_start_offset(self, topic: str, partition: int) -> int:
        return self._log(topic, partition).log_start_offset

    def high_watermark(self, topic: str, partition: int) -> int:
        return self._log(topic, partition).high_watermark

    def last_stable_offset(self, topic: str, partition: int) -> int:
        return self._log(topic, partition).last_stable_offset

    async def read(self, topic: str, partition: int, offset: int, max_bytes: int,
                   *, max_offset: int | None = None, read_committed: bool = False) -> ReadResult:
        """Whole batches from `offset` on, at least one even past `max_bytes` (KIP-74).
        Raises OffsetOutOfRangeError outside [log start, log end]."""
        plog = self._log(topic, partition)
        lso = plog.last_stable_offset
        if read_committed:
            max_offset = lso if max_offset is None else min(max_offset, lso)
        found = plog.read(offset, max_bytes, max_offset=max_offset)
        # Local reads come from the page cache: cheaper inline than a hop to a thread.
        records = b"" if found is None else found.read()
        aborted: tuple[AbortedTxn, ...] = ()
        if read_committed and found is not None:
            aborted = tuple(plog.aborted_transactions(offset, found.end_offset))
        return ReadResult(records, plog.high_watermark, plog.log_start_offset, lso, aborted)

    async def offset_for_timestamp(self, topic: str, partition: int, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after `timestamp`, or None."""
        return await asyncio.to_thread(self._log(topic, partition).offset_for_timestamp, timestamp)
