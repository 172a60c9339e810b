"""Copy one sealed local segment's files to the object store and describe them in a
(not yet committed) metadata record."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable
from typing import Any, NamedTuple

from crc32c import crc32c

from hotlog.log import PartitionLog
from hotlog.segment import LogSegment

from . import metrics
from .metadata import RemoteSegment, SegmentFile, segment_key
from .quota import ByteRateLimiter
from .store import ObjectStore


class SegmentGoneError(Exception):
    """The local segment was deleted (its topic too) before its upload could read it."""


class LocalSegmentFile(NamedTuple):
    extension: str  # of its object in the bucket
    path: str


def segment_files(plog: PartitionLog, segment: LogSegment) -> list[LocalSegmentFile]:
    """The files that make up a sealed segment in the bucket, `.log` first. The producer
    snapshot is the one taken when the segment rolled (state as of its end)."""
    files = [LocalSegmentFile("log", segment.log_path), LocalSegmentFile("index", segment.offset_index.path),
             LocalSegmentFile("timeindex", segment.time_index.path)]
    snapshot = plog.snapshot_path(segment.next_offset)
    if os.path.exists(snapshot):
        files.append(LocalSegmentFile("snapshot", snapshot))
    if os.path.exists(segment.txn_index.path) and os.path.getsize(segment.txn_index.path) > 0:
        files.append(LocalSegmentFile("txnindex", segment.txn_index.path))
    return files


class SegmentUploader:
    def __init__(self, store: ObjectStore, quota: ByteRateLimiter) -> None:
        self.store = store
        self.quota = quota

    async def upload(self, plog: PartitionLog, segment: LogSegment, topic_id: uuid.UUID, prefix: str,
                     segment_id: uuid.UUID) -> RemoteSegment:
        """Upload the segment's files under `prefix` (the partition's), with keys named for
        `segment_id`; return the record that commits them once written."""
        try:
            return await self.upload_files(segment, segment_files(plog, segment), plog.topic, plog.partition,
                                           topic_id, prefix, segment_id)
        except FileNotFoundError:
            raise SegmentGoneError(f"{plog.topic}-{plog.partition}: segment {segment.base_offset} "
                                   f"was deleted") from None

    async def upload_files(self, segment: LogSegment, local_files: list[LocalSegmentFile], topic: str,
                           partition: int, topic_id: uuid.UUID, prefix: str, segment_id: uuid.UUID) -> RemoteSegment:
        """Upload `local_files` (segment_files(): the `.log` first) as the segment's."""
        with segment.pinned_log() as log_fd:  # the descriptor through the log's LRU of open files
            def key(extension: str) -> str:
                return segment_key(prefix, segment.base_offset, segment_id, extension)

            uploads = [self._upload_fd(key("log"), log_fd, segment.size)]
            uploads += [self._upload_path(key(ext), path) for ext, path in local_files[1:]]
            files = await gather_all(*uploads)
            modified_ms = int(os.fstat(log_fd).st_mtime * 1000)
        return RemoteSegment(
            topic=topic, topic_id=topic_id, partition=partition, segment_id=segment_id,
            base_offset=segment.base_offset, next_offset=segment.next_offset, max_timestamp=segment.max_timestamp,
            files={local.extension: f for local, f in zip(local_files, files)}, uploaded_ms=int(time.time() * 1000),
            modified_ms=modified_ms,
        )

    async def _upload_path(self, key: str, path: str) -> SegmentFile:
        """An index or snapshot: small, read whole (a missing one is an empty object)."""
        try:
            data = await asyncio.to_thread(_read_file, path)
        except FileNotFoundError:
            data = b""
        await self.quota.acquire(len(data))
        await self.store.put(key, data)
        metrics.UPLOAD_BYTES.inc(len(data))
        return SegmentFile(key, len(data), crc32c(data))

    async def _upload_fd(self, key: str, fd: int, size: int) -> SegmentFile:
        """The first `size` bytes of an open file, paced by the quota; its CRC-32C is
        computed alongside from the page cache."""
        crc, _ = await gather_all(
            asyncio.to_thread(file_crc32c, fd, size),
            self.store.put_file(key, fd, size, pace=self.quota.acquire),
        )
        metrics.UPLOAD_BYTES.inc(size)
        return SegmentFile(key, size, crc)


async def gather_all(*calls: Awaitable[Any]) -> list[Any]:
    """Like asyncio.gather, but every call has ended before the first error is raised (they
    share file descriptors the caller closes afterwards)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def file_crc32c(fd: int, size: int, chunk_bytes: int = 1024 * 1024) -> int:
    """CRC-32C of the first `size` bytes of `fd`, through one reused buffer."""
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    crc = position = 0
    while position < size:
        n = os.preadv(fd, [view[: min(chunk_bytes, size - position)]], position)
        if n == 0:
            raise OSError(f"file ended {size - position} bytes early at position {position}")
        crc = crc32c(view[:n], crc)
        position += n
    return crc


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
