"""Copy one sealed local segment's files to the object store and describe them in a
(not yet committed) metadata record."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import AsyncIterator

from crc32c import crc32c

from hotlog.log import PartitionLog
from hotlog.segment import LogSegment

from . import metrics
from .metadata import RemoteSegment, SegmentFile, segment_key
from .quota import ByteRateLimiter
from .store import ObjectStore


class SegmentGoneError(Exception):
    """The local segment was deleted (its topic too) before its upload could read it."""


def segment_files(plog: PartitionLog, segment: LogSegment) -> list[tuple[str, str]]:
    """(extension, path) of the files that make up a sealed segment in the bucket. The
    producer snapshot is the one taken when the segment rolled (state as of its end)."""
    files = [("log", segment.log_path), ("index", segment.offset_index.path),
             ("timeindex", segment.time_index.path)]
    snapshot = plog.snapshot_path(segment.next_offset)
    if os.path.exists(snapshot):
        files.append(("snapshot", snapshot))
    if os.path.exists(segment.txn_index.path) and os.path.getsize(segment.txn_index.path) > 0:
        files.append(("txnindex", segment.txn_index.path))
    return files


class SegmentUploader:
    def __init__(self, store: ObjectStore, quota: ByteRateLimiter) -> None:
        self.store = store
        self.quota = quota

    async def upload(self, plog: PartitionLog, segment: LogSegment, topic_id: uuid.UUID,
                     segment_id: uuid.UUID) -> RemoteSegment:
        """Upload the segment's files under keys named for `segment_id`; return the record
        that commits them once written."""
        try:
            log_fd = await asyncio.to_thread(os.open, segment.log_path, os.O_RDONLY)
        except FileNotFoundError:
            raise SegmentGoneError(f"{plog.topic}-{plog.partition}: segment {segment.base_offset} was deleted") from None
        try:
            def key(extension: str) -> str:
                return segment_key(plog.topic, topic_id, plog.partition, segment.base_offset, segment_id, extension)

            local_files = segment_files(plog, segment)
            uploads = [self._upload_fd(key("log"), log_fd, segment.size)]
            uploads += [self._upload_path(key(ext), path) for ext, path in local_files[1:]]
            files = await asyncio.gather(*uploads)
        finally:
            os.close(log_fd)
        return RemoteSegment(
            topic=plog.topic, topic_id=topic_id, partition=plog.partition, segment_id=segment_id,
            base_offset=segment.base_offset, next_offset=segment.next_offset, max_timestamp=segment.max_timestamp,
            files={ext: f for (ext, _), f in zip(local_files, files)}, uploaded_ms=int(time.time() * 1000),
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
        """The first `size` bytes of an open file: one PUT, or a multipart upload in
        `part_bytes` parts read one at a time (memory stays at a few parts)."""
        part_bytes = self.store.part_bytes
        if size <= part_bytes:
            data, crc = await asyncio.to_thread(_read_part, fd, 0, size, 0)
            await self.quota.acquire(size)
            await self.store.put(key, data)
        else:
            crc = 0

            async def parts() -> AsyncIterator[bytes]:
                nonlocal crc
                for position in range(0, size, part_bytes):
                    part, crc = await asyncio.to_thread(_read_part, fd, position, min(part_bytes, size - position), crc)
                    await self.quota.acquire(len(part))
                    yield part

            await self.store.put_multipart(key, parts())
        metrics.UPLOAD_BYTES.inc(size)
        return SegmentFile(key, size, crc)


def _read_part(fd: int, position: int, size: int, crc: int) -> tuple[bytes, int]:
    """`size` bytes at `position`, and the running CRC-32C extended over them."""
    data = os.pread(fd, size, position)
    while len(data) < size:  # pread may return short; rare, so the copy below is too
        more = os.pread(fd, size - len(data), position + len(data))
        if not more:
            raise OSError(f"segment file ended {size - len(data)} bytes early at position {position + len(data)}")
        data += more
    return data, crc32c(data, crc)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
