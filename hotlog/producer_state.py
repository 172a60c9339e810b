"""Per-partition producer state: what makes producers idempotent and transactions atomic.

For each producer id the log keeps its epoch and the sequence and offset ranges of its
last five batches (a retried batch is recognised and answered with its first offsets),
plus the first offset of its open transaction. All of it comes from batch headers (and,
for markers, the control record's key), so the append path never decodes records.

Snapshots use Kafka's layout (`<offset>.snapshot`): version int16, CRC-32C uint32 of what
follows, then per producer: producer id int64, epoch int16, last sequence int32, last
offset int64, offset delta int32, timestamp int64, coordinator epoch int32, current
transaction first offset int64.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from crc32c import crc32c

from .batch import BatchHeader
from .durable import write_atomically
from .errors import (
    CorruptRecordError,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    UnknownProducerIdError,
)

SNAPSHOT_SUFFIX = ".snapshot"
CACHED_BATCHES = 5
INT32_MAX = 2**31 - 1
_SNAPSHOT_HEAD = struct.Struct(">hI")
_SNAPSHOT_ENTRY = struct.Struct(">qhiqiqiq")
NO_TXN = -1
NO_SEQUENCE = -1


@dataclass(frozen=True)
class BatchRecord:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int


@dataclass
class ProducerEntry:
    producer_id: int
    epoch: int
    batches: deque[BatchRecord] = field(default_factory=lambda: deque(maxlen=CACHED_BATCHES))
    last_timestamp: int = -1
    coordinator_epoch: int = -1
    txn_first_offset: int = NO_TXN

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


@dataclass(frozen=True)
class CompletedTxn:
    producer_id: int
    first_offset: int
    last_offset: int  # the marker's offset
    aborted: bool


class LastRecord(NamedTuple):
    """What the log cleaner keeps of a producer so its idempotence survives a clean: the
    batch ending at `last_data_offset` (its last sequence), or, with none known, its
    markers of `epoch` (the epoch that fences older producers)."""

    last_data_offset: int | None
    epoch: int


def next_sequence(seq: int, records: int) -> int:
    """Sequences wrap from int32 max to 0."""
    return (seq + records) % (INT32_MAX + 1)


class ProducerStateManager:
    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

    # -- checks before an append -------------------------------------------------------

    def find_duplicate(self, header: BatchHeader) -> BatchRecord | None:
        """The earlier write of this batch if it is a retry the log already holds."""
        entry = self.producers.get(header.producer_id)
        if entry is None or entry.epoch != header.producer_epoch:
            return None
        last_seq = next_sequence(header.base_sequence, header.last_offset_delta)
        for batch in entry.batches:
            if batch.first_seq == header.base_sequence and batch.last_seq == last_seq:
                return batch
        return None

    def check(self, header: BatchHeader) -> None:
        """Raise if the batch may not be appended: fenced epoch or a sequence gap."""
        entry = self.producers.get(header.producer_id)
        if entry is None:  # a new producer starts at 0; one whose state is gone cannot continue
            if header.base_sequence not in (0, NO_SEQUENCE) and not header.is_control:
                raise UnknownProducerIdError(
                    f"no state for producer {header.producer_id}: its sequence {header.base_sequence} continues nothing"
                )
            return
        if header.producer_epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"producer {header.producer_id} epoch {header.producer_epoch} is older than {entry.epoch}"
            )
        if header.producer_epoch > entry.epoch:
            if header.base_sequence not in (0, NO_SEQUENCE) and not header.is_control:
                raise OutOfOrderSequenceError(
                    f"producer {header.producer_id} new epoch {header.producer_epoch} must start at sequence 0, "
                    f"got {header.base_sequence}"
                )
            return
        if header.is_control or entry.last_seq < 0 or header.base_sequence == NO_SEQUENCE:
            return  # NO_SEQUENCE: the broker's own transactional writes (offset commits)
        expected = next_sequence(entry.last_seq, 1)
        if header.base_sequence != expected:
            raise OutOfOrderSequenceError(
                f"producer {header.producer_id} sent sequence {header.base_sequence}, expected {expected}"
            )

    # -- updates after an append -------------------------------------------------------

    def _entry_for(self, header: BatchHeader) -> ProducerEntry:
        entry = self.producers.get(header.producer_id)
        if entry is None or header.producer_epoch > entry.epoch:
            txn = entry.txn_first_offset if entry is not None else NO_TXN
            entry = ProducerEntry(header.producer_id, header.producer_epoch, txn_first_offset=txn)
            self.producers[header.producer_id] = entry
        return entry

    def on_batch(self, header: BatchHeader) -> None:
        """Record a data batch written at `header.base_offset`."""
        entry = self._entry_for(header)
        if header.base_sequence >= 0:
            entry.batches.append(
                BatchRecord(
                    header.base_sequence, next_sequence(header.base_sequence, header.last_offset_delta),
                    header.base_offset, header.last_offset,
                )
            )
        entry.last_timestamp = max(entry.last_timestamp, header.max_timestamp)
        if header.is_transactional and entry.txn_first_offset == NO_TXN:
            entry.txn_first_offset = header.base_offset

    def on_marker(self, header: BatchHeader, commit: bool, coordinator_epoch: int) -> CompletedTxn | None:
        """Record a transaction marker written at `header.base_offset`; returns the ended txn."""
        entry = self.producers.get(header.producer_id)
        if entry is not None and header.producer_epoch < entry.epoch:
            raise InvalidTxnStateError(f"marker for producer {header.producer_id} carries a stale epoch")
        entry = self._entry_for(header)
        entry.coordinator_epoch = coordinator_epoch
        entry.last_timestamp = max(entry.last_timestamp, header.max_timestamp)
        if entry.txn_first_offset == NO_TXN:
            return None
        completed = CompletedTxn(header.producer_id, entry.txn_first_offset, header.base_offset, not commit)
        entry.txn_first_offset = NO_TXN
        return completed

    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest open transaction, if any."""
        firsts = [e.txn_first_offset for e in self.producers.values() if e.txn_first_offset != NO_TXN]
        return min(firsts) if firsts else None

    def open_transactions(self) -> dict[int, int]:
        return {pid: e.txn_first_offset for pid, e in self.producers.items() if e.txn_first_offset != NO_TXN}

    def last_records(self) -> dict[int, LastRecord]:
        """Each producer's LastRecord: a copy, for a cleaner working in another thread."""
        return {
            pid: LastRecord(e.batches[-1].last_offset if e.batches else None, e.epoch)
            for pid, e in self.producers.items()
        }

    def expire(self, now_ms: int, expiration_ms: int) -> list[int]:
        """Forget producers idle for `expiration_ms` that have no open transaction."""
        gone = [
            pid for pid, e in self.producers.items()
            if e.txn_first_offset == NO_TXN and now_ms - e.last_timestamp >= expiration_ms
        ]
        for pid in gone:
            del self.producers[pid]
        return gone

    # -- snapshots ---------------------------------------------------------------------

    def snapshot_bytes(self) -> bytes:
        body = b"".join(
            _SNAPSHOT_ENTRY.pack(
                e.producer_id, e.epoch, e.last_seq,
                e.batches[-1].last_offset if e.batches else -1,
                (e.batches[-1].last_offset - e.batches[-1].first_offset) if e.batches else 0,
                e.last_timestamp, e.coordinator_epoch, e.txn_first_offset,
            )
            for e in self.producers.values()
        )
        return _SNAPSHOT_HEAD.pack(1, crc32c(body)) + body

    def write_snapshot(self, path: str, *, sync: bool = True) -> None:
        """Write `path` atomically. With `sync=False` (a segment roll, on the event loop)
        nothing is fsynced here: the flush that seals the segment calls `sync_written`. A
        crash before that may leave the file missing, empty or torn; loading deletes such a
        snapshot and replays the log instead."""
        write_atomically(path, self.snapshot_bytes(), sync=sync)

    @classmethod
    def from_snapshot(cls, data: bytes) -> ProducerStateManager:
        if len(data) < _SNAPSHOT_HEAD.size or (len(data) - _SNAPSHOT_HEAD.size) % _SNAPSHOT_ENTRY.size:
            raise CorruptRecordError("producer snapshot has a bad length")
        version, crc = _SNAPSHOT_HEAD.unpack_from(data)
        body = data[_SNAPSHOT_HEAD.size :]
        if version != 1 or crc32c(body) != crc:
            raise CorruptRecordError("producer snapshot failed its version or CRC check")
        state = cls()
        for pid, epoch, last_seq, last_offset, delta, ts, coord_epoch, txn_first in _SNAPSHOT_ENTRY.iter_unpack(body):
            entry = ProducerEntry(pid, epoch, last_timestamp=ts, coordinator_epoch=coord_epoch, txn_first_offset=txn_first)
            if last_seq >= 0:
                first_seq = (last_seq - delta) % (INT32_MAX + 1)
                entry.batches.append(BatchRecord(first_seq, last_seq, last_offset - delta, last_offset))
            state.producers[pid] = entry
        return state


def snapshot_file_name(offset: int) -> str:
    return f"{offset:020d}{SNAPSHOT_SUFFIX}"
