"""The scrubber: what is at rest, checked against its CRCs in the background at a bounded
rate, so that rot is found and mended before a reader needs the bytes.

- Uploaded objects: each file of a committed remote segment against the CRC-32C its
  segment record holds. A corrupt object whose local copy still exists, and matches the
  record, is uploaded again under the same key; one without a good local copy is counted
  and logged (readers already refuse it: fetch checks every chunk it gets).
- Sealed local segments: every batch's CRC-32C. A corrupt segment whose offsets are
  committed in the bucket is replaced by the bucket's copy, once that copy matches its
  record; otherwise it stays marked corrupt, and reads of it answer a storage error.

A pass reads everything once, paced by `log.scrubber.io.max.bytes.per.second`
(shared by both tiers); passes start `log.scrubber.interval.ms` apart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import BinaryIO, NamedTuple

from hotlog.errors import CorruptSegmentError, LogError
from hotlog.log import PartitionLog
from hotlog.manager import LogManager
from hotlog.segment import LogSegment

from . import metrics
from .download import object_crc32c
from .manager import TieringManager
from .metadata import RemoteSegment, SegmentFile, SegmentState
from .quota import ByteRateLimiter
from .store import ObjectStoreError
from .uploader import file_crc32c, segment_files

log = logging.getLogger(__name__)



class ScrubReport(NamedTuple):
    """What one pass found, per tier: bytes read, corrupt items found, corrupt items mended."""

    remote_bytes: int = 0
    remote_corrupt: int = 0
    remote_repaired: int = 0
    local_bytes: int = 0
    local_corrupt: int = 0
    local_repaired: int = 0


class Scrubber:
    def __init__(self, logs: LogManager, tiering: TieringManager | None, *, bytes_per_second: int,
                 interval_ms: int) -> None:
        self.logs = logs
        self.tiering = tiering
        self.interval_ms = interval_ms
        self._pace = ByteRateLimiter(bytes_per_second)
        self._task: asyncio.Task[None] | None = None
        # Objects found corrupt and not mended: reported once, not at every pass.
        self._known_corrupt: set[str] = set()

    def run_in_background(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                report = await self.scrub_once()
                log.info("scrub pass: %s", report)
            except (ObjectStoreError, OSError, LogError) as exc:  # the store or the disk failing: the next pass retries
                metrics.ERRORS.labels("scrub").inc()
                log.warning("scrub pass stopped early: %s", exc)
            await asyncio.sleep(max(0.0, self.interval_ms / 1000 - (time.monotonic() - started)))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def scrub_once(self) -> ScrubReport:
        """Check every committed remote object, then every sealed local segment, once."""
        report = ScrubReport()
        if self.tiering is not None:
            for state in list(self.tiering.partitions.values()):
                for segment in list(state.segments):
                    if segment.state is SegmentState.COPY_FINISHED:
                        report = _add(report, await self._scrub_remote(segment))
        for plog in list(self.logs.logs.values()):
            for local in [s for s in plog.segments if s.sealed and not s.deleted]:
                report = _add(report, await self._scrub_local(plog, local))
        return report

    # -- this disk -------------------------------------------------------------------------

    async def _scrub_local(self, plog: PartitionLog, segment: LogSegment) -> ScrubReport:
        try:
            bad = await segment.check(self._pace.acquire, again=True)
        except FileNotFoundError:  # deleted by retention meanwhile
            return ScrubReport()
        metrics.SCRUBBED_BYTES.labels("local").inc(segment.size)
        where = segment.log_path
        if bad is None:
            self._known_corrupt.discard(where)
            return ScrubReport(local_bytes=segment.size)
        if await self._restore_local(plog, segment):
            metrics.SCRUB_REPAIRED.labels("local").inc()
            self._known_corrupt.discard(where)
            log.warning("scrub: %s had a corrupt batch at position %d; replaced by the bucket's copy", where, bad)
            return ScrubReport(local_bytes=segment.size, local_corrupt=1, local_repaired=1)
        if where not in self._known_corrupt:
            self._known_corrupt.add(where)
            metrics.SCRUB_CORRUPT.labels("local").inc()
            log.error("scrub: %s has a corrupt batch at position %d and the bucket has no good copy; "
                      "reads from there on are refused", where, bad)
        return ScrubReport(local_bytes=segment.size, local_corrupt=1)

    async def _restore_local(self, plog: PartitionLog, segment: LogSegment) -> bool:
        """Replace a corrupt local segment by its committed remote copy, if the bucket has
        one that matches its record; whether it did."""
        if self.tiering is None:
            return False
        state = self.tiering.remote_partition(plog.topic, plog.partition)
        twin = None if state is None else next(
            (r for r in state.segments if r.state is SegmentState.COPY_FINISHED
             and (r.base_offset, r.next_offset) == (segment.base_offset, segment.next_offset)), None)
        if twin is None:
            return False
        file = twin.files["log"]
        path = segment.replacement_path
        try:
            with open(path, "wb") as copy:
                crc = await self._remote_crc(file, copy)
            if crc != file.crc32c:  # the bucket's copy is bad too: its own check reports it
                os.remove(path)
                return False
            try:
                return await segment.replace_log(path)
            except CorruptSegmentError as exc:  # the record's CRC matched bad batches: keep refusing them
                log.error("scrub: %s", exc)
                return False
        except BaseException:
            if os.path.exists(path):
                os.remove(path)
            raise

    # -- the bucket ------------------------------------------------------------------------

    async def _scrub_remote(self, segment: RemoteSegment) -> ScrubReport:
        read = corrupt = repaired = 0
        for extension, file in segment.files.items():
            crc = await self._remote_crc(file)
            read += file.size
            metrics.SCRUBBED_BYTES.labels("remote").inc(file.size)
            if crc == file.crc32c:
                self._known_corrupt.discard(file.key)
                continue
            corrupt += 1
            if await self._reupload(segment, extension):
                repaired += 1
                metrics.SCRUB_REPAIRED.labels("remote").inc()
                self._known_corrupt.discard(file.key)
                log.warning("scrub: object %s did not match its CRC; uploaded again from the local copy", file.key)
            elif file.key not in self._known_corrupt:
                self._known_corrupt.add(file.key)
                metrics.SCRUB_CORRUPT.labels("remote").inc()
                log.error("scrub: object %s does not match its CRC and no good local copy is left", file.key)
        return ScrubReport(remote_bytes=read, remote_corrupt=corrupt, remote_repaired=repaired)

    async def _remote_crc(self, file: SegmentFile, keep: BinaryIO | None = None) -> int:
        assert self.tiering is not None
        return await object_crc32c(self.tiering.store, file, keep, self._pace.acquire)

    async def _reupload(self, segment: RemoteSegment, extension: str) -> bool:
        """Upload one file of a remote segment again from the local segment it was made of,
        if that still exists and matches the record; whether it did."""
        assert self.tiering is not None
        plog = self.logs.logs.get((segment.topic, segment.partition))
        local = None if plog is None else _local_twin(plog, segment)
        if plog is None or local is None:
            return False
        file = segment.files[extension]
        if extension == "log":  # through the log's open files: never closed under the upload
            try:
                with local.pinned_log() as fd:
                    return await self._put_if_matching(file, fd)
            except FileNotFoundError:  # retention removed it meanwhile
                return False
        path = next((f.path for f in segment_files(plog, local) if f.extension == extension), None)
        if path is None:
            return False
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            return await self._put_if_matching(file, fd)
        finally:
            os.close(fd)

    async def _put_if_matching(self, file: SegmentFile, fd: int) -> bool:
        assert self.tiering is not None
        if os.fstat(fd).st_size < file.size or await asyncio.to_thread(file_crc32c, fd, file.size) != file.crc32c:
            return False
        await self.tiering.store.put_file(file.key, fd, file.size, pace=self._pace.acquire)
        return True


def _local_twin(plog: PartitionLog, segment: RemoteSegment) -> LogSegment | None:
    """The sealed local segment a remote segment was uploaded from, if still there."""
    for local in plog.segments:
        if local.base_offset == segment.base_offset and local.next_offset == segment.next_offset and local.sealed:
            return local
    return None


def _add(a: ScrubReport, b: ScrubReport) -> ScrubReport:
    return ScrubReport(*(x + y for x, y in zip(a, b)))
