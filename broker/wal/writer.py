"""The WAL writer: batches of every WAL partition gathered over a window into one object
per broker, PUT, and committed in sequence order; acks=all producers wait for the commit.

A window closes `window_ms` after its first batch or at `window_bytes`, whichever comes
first, so PUTs per second stay at most 1/window however many partitions write. Up to
`max_in_flight` objects upload at once; each retries (same key, same bytes) until the
store takes it, and commits only after every object before it, so what the bucket holds
of a partition is always a prefix of what was acknowledged. While the store is down,
batches wait in memory up to `max_pending_bytes`; past it, appends to WAL topics are
refused with a retriable error (non-WAL topics go on as before)."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from typing import NamedTuple

from crc32c import crc32c

from hotlog.batch import set_log_append_time
from hotlog.end_waiters import EndWaiters
from hotlog.log import AppendInfo
from tiering.backoff import Backoff
from tiering.store import ObjectStore, ObjectStoreError

from ..errors import WalFullError
from . import metrics
from .objects import WalEntry, WalObject, WalTopic, object_key

log = logging.getLogger(__name__)

_BASE_OFFSET = struct.Struct(">q")


class WalPartition(NamedTuple):
    topic_id: uuid.UUID
    partition: int


def as_written(records: bytes | bytearray | memoryview, info: AppendInfo) -> bytearray:
    """A produce request's batches as the log wrote them: base offsets assigned, and
    LogAppendTime stamped (with its CRC) where the topic asks for it. Per batch, not per
    record; one copy of the bytes (the request's own may not be written to)."""
    data = bytearray(records)
    position = 0
    for header in info.batches:
        _BASE_OFFSET.pack_into(data, position, header.base_offset)
        if info.log_append_time >= 0:
            set_log_append_time(data, position, info.log_append_time)
        position += header.size
    return data


class _Window:
    def __init__(self, sequence: int, broker_id: int) -> None:
        self.object = WalObject(broker_id, sequence, object_key(broker_id, sequence), int(time.time() * 1000))
        self.chunks: list[bytes | bytearray] = []
        self.size = 0
        self.opened = time.monotonic()


class WalWriter:
    """Event loop only."""

    def __init__(self, store: ObjectStore, *, broker_id: int, window_ms: int, window_bytes: int,
                 max_pending_bytes: int, max_in_flight: int = 4, retry_backoff_ms: int = 50,
                 retry_backoff_max_ms: int = 5_000) -> None:
        self.store = store
        self.broker_id = broker_id
        self.window_s = window_ms / 1000
        self.window_bytes = window_bytes
        self.max_pending_bytes = max_pending_bytes
        self.retry_backoff_ms, self.retry_backoff_max_ms = retry_backoff_ms, retry_backoff_max_ms
        self.next_sequence = 0
        self.pending_bytes = 0  # in the open window or uploading
        self.committed: list[WalObject] = []  # in the bucket, batches dropped: what folding looks at
        self._window: _Window | None = None
        self._durable_end: dict[WalPartition, int] = {}
        self._waiters: dict[WalPartition, EndWaiters] = {}
        self._window_ready = asyncio.Event()
        self._window_full = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._last_commit: asyncio.Future[None] | None = None
        self._uploads: set[asyncio.Task[None]] = set()

    # -- the write path's side -----------------------------------------------------------

    def check_room(self) -> None:
        """Raise WalFullError when the WAL can take no more (before anything is appended)."""
        if self.pending_bytes >= self.max_pending_bytes:
            raise WalFullError(f"the write-ahead log holds {self.pending_bytes} bytes the object store has not "
                               "taken yet; retry when it has")

    def add(self, topic: WalTopic, partition: int, base_offset: int, next_offset: int,
            data: bytes | bytearray) -> None:
        """Put batches (as written, offsets assigned) into the open window."""
        if self._window is None:
            self._window = _Window(self.next_sequence, self.broker_id)
            self.next_sequence += 1
            self._window_ready.set()
        window = self._window
        window.object.topics.setdefault(topic.topic_id, topic)
        window.object.entries.append(WalEntry(topic.topic_id, partition, base_offset, next_offset, window.size,
                                              len(data), crc32c(data)))
        window.chunks.append(data)
        window.size += len(data)
        self.pending_bytes += len(data)
        if window.size >= self.window_bytes:
            self._window_full.set()

    def durable_end(self, topic_id: uuid.UUID, partition: int) -> int:
        """One past the highest offset of the partition the bucket holds (0: none)."""
        return self._durable_end.get(WalPartition(topic_id, partition), 0)

    def mark_durable(self, topic_id: uuid.UUID, partition: int, end: int) -> None:
        """The bucket holds the partition below `end` (a restore found it there)."""
        key = WalPartition(topic_id, partition)
        if end > self._durable_end.get(key, 0):
            self._durable_end[key] = end
            self._wake(key)

    def waiter(self, topic_id: uuid.UUID, partition: int, end: int) -> asyncio.Future[None] | None:
        """A future done once the bucket holds the partition's offsets below `end`, or None
        if it already does."""
        key = WalPartition(topic_id, partition)
        if self._durable_end.get(key, 0) >= end:
            return None
        waiting = self._waiters.get(key)
        if waiting is None:
            waiting = self._waiters[key] = EndWaiters()
        return waiting.add(end)

    def _wake(self, key: WalPartition) -> None:
        waiting = self._waiters.get(key)
        if waiting is None:
            return
        waiting.release(self._durable_end.get(key, 0))
        if not waiting:
            del self._waiters[key]

    async def drain(self, timeout_s: float) -> None:
        """Close the open window and let uploads finish (a clean stop), for at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.pending_bytes and time.monotonic() < deadline:
            self._window_full.set()
            await asyncio.sleep(0.01)

    # -- the background side -------------------------------------------------------------

    async def run(self) -> None:
        """Close windows and upload them until cancelled."""
        try:
            while True:
                await self._window_ready.wait()
                window = self._window
                assert window is not None
                remaining = window.opened + self.window_s - time.monotonic()
                if remaining > 0 and not self._window_full.is_set():
                    try:
                        await asyncio.wait_for(self._window_full.wait(), remaining)
                    except TimeoutError:
                        pass
                await self._slots.acquire()  # the window keeps filling while uploads are all busy
                self._window, window = None, self._window
                assert window is not None
                self._window_ready.clear()
                self._window_full.clear()
                window.object.data = b"".join(window.chunks)
                window.chunks = []
                previous = self._last_commit
                self._last_commit = asyncio.get_running_loop().create_future()
                task = asyncio.create_task(self._upload(window, previous, self._last_commit))
                self._uploads.add(task)
                task.add_done_callback(self._uploads.discard)
        finally:
            for task in list(self._uploads):
                task.cancel()
            await asyncio.gather(*self._uploads, return_exceptions=True)

    async def _upload(self, window: _Window, previous: asyncio.Future[None] | None,
                      done: asyncio.Future[None]) -> None:
        wal = window.object
        body = wal.encode_index() + wal.data
        backoff = Backoff(self.retry_backoff_ms, self.retry_backoff_max_ms)
        began = time.perf_counter()
        try:
            while True:
                try:
                    await self.store.put(wal.key, body)  # the commit point: in whole, or not at all
                    break
                except ObjectStoreError as exc:
                    metrics.WAL_ERRORS.inc()
                    delay = backoff.failed()
                    log.warning("WAL object %s: PUT failed, retrying in %.2fs: %s", wal.key, delay, exc)
                    await asyncio.sleep(delay)
        finally:
            self._slots.release()
        if previous is not None:
            await previous  # commits in sequence order
        self._commit(window, time.perf_counter() - began)
        done.set_result(None)

    def _commit(self, window: _Window, seconds: float) -> None:
        wal = window.object
        self.pending_bytes -= window.size
        metrics.WAL_OBJECTS.inc()
        metrics.WAL_BYTES.inc(window.size)
        metrics.WAL_COMMIT_SECONDS.observe(seconds)
        for entry in wal.entries:
            key = WalPartition(entry.topic_id, entry.partition)
            if entry.next_offset > self._durable_end.get(key, 0):
                self._durable_end[key] = entry.next_offset
            self._wake(key)
        wal.data = b""
        self.committed.append(wal)
