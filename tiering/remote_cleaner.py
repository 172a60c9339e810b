"""Compaction in the bucket: hotlog's log cleaner run over a partition's remote log, for
topics with `cleanup.policy=compact` and `remote.storage.enable=true` (Kafka refuses the
pair, KIP-405; the bucket's segments are what such a topic mostly is).

A clean:
1. finds the dirty section: from where the newest clean stopped (its cleaned segments'
   `cleaned_to`) to the first uncleanable offset (the remote end, the last stable offset,
   segments younger than min.compaction.lag.ms); it runs past min.cleanable.dirty.ratio
   of the remote bytes, or once a dirty segment is older than max.compaction.lag.ms;
2. downloads the segments up to there into a scratch folder under the data folder,
   checking each object's CRC-32C against its record and every batch's own;
3. maps the dirty section's keys and rewrites the segments group by group, as the local
   cleaner does (several passes when the map fills);
4. uploads each cleaned group under a new segment id and commits it with one PUT: its
   record names the segments it replaces. Tombstones for those follow, their objects
   kept `file.delete.delay.ms` for readers still on them. The chunk cache is keyed by
   object key, which holds the segment id, so it never serves a replaced segment's bytes;
5. swaps the cleaned segment in for the local copies of the group, where the local log
   still holds exactly its offsets, so the local tier is compacted too (an internal
   topic's start-up reads its compacted log).
A crash before a commit leaves orphans (the orphan cleaner removes them); after it, the
replaced records read as tombstones (RemotePartition.from_records). The local log is not
cleaned by hotlog's cleaner while tiering owns it: a local clean could merge a tiered
segment with one not uploaded yet, which could then never be tiered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from hotlog.clean_segment import CleanContext, CleanStats, clean_group
from hotlog.cleaner import CleanRange, LogCleaner, group_by_size, replace_on_loop, swap_in
from hotlog.cleaner_txns import CleanedTxns
from hotlog.config import LogConfig
from hotlog.log import PartitionLog
from hotlog.segment import LogSegment, segment_file_name
from hotlog.swap import CLEANED_SUFFIX, SEGMENT_SUFFIXES, discard_cleaned_segment
from hotlog.txn_index import AbortedTxn

from . import metrics
from .download import object_crc32c
from .metadata import RemoteSegment, SegmentState
from .partition_state import CleanCommit, RemotePartition
from .store import NotFoundError, ObjectStore
from .uploader import LocalSegmentFile, SegmentUploader

log = logging.getLogger(__name__)

SCRATCH_FOLDER = "remote-clean"  # under the data folder; never a partition's name (no `-<n>` end)


class CorruptRemoteSegmentError(Exception):
    """A segment downloaded for cleaning did not match its record or its batches' CRCs."""


class CleanAbandonedError(Exception):
    """What a clean was replacing left the remote log meanwhile (retention, or the topic was
    deleted): it stops, as if it had not been due."""


class RemoteCleanResult(NamedTuple):
    cleaned_to: int  # the first dirty offset now
    replaced: int  # remote segments replaced
    stats: CleanStats


def remote_clean_range(state: RemotePartition, config: LogConfig, last_stable_offset: int,
                       now_ms: int) -> CleanRange | None:
    """The remote log's dirty section if it should be cleaned now (Kafka's rules, over the
    committed segments, all sealed), else None. A segment's record holds its largest
    timestamp, not its first: max.compaction.lag.ms counts from that."""
    segments = state.segments
    if not (config.compact and config.remote_storage_enable and segments):
        return None
    first_dirty = state.first_dirty_offset
    uncleanable = min(last_stable_offset, state.end_offset)
    first_uncleanable = segments[-1].next_offset
    for segment in segments:
        if segment.next_offset <= first_dirty:
            continue
        too_young = config.min_compaction_lag_ms > 0 and segment.max_timestamp > now_ms - config.min_compaction_lag_ms
        if segment.next_offset > uncleanable or too_young:
            first_uncleanable = segment.base_offset
            break
    first_uncleanable = max(first_dirty, first_uncleanable)
    clean = sum(s.size_bytes for s in segments if s.next_offset <= first_dirty)
    dirty = [s for s in segments if s.next_offset > first_dirty and s.base_offset < first_uncleanable]
    overdue = config.max_compaction_lag_ms < now_ms and any(
        s.max_timestamp < now_ms - config.max_compaction_lag_ms for s in dirty)
    found = CleanRange(first_dirty, first_uncleanable, clean, sum(s.size_bytes for s in dirty), overdue)
    if found.cleanable_bytes and (found.overdue or found.dirty_ratio > config.min_cleanable_ratio):
        return found
    return None


class _Scratch:
    """The downloaded segments of one clean, in offset order, each with the remote record
    it is a copy of (a cleaned one: the record that committed it)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.segments: list[LogSegment] = []
        self.records: dict[int, RemoteSegment] = {}  # by base offset

    def aborted_in(self, start: int, end: int) -> list[AbortedTxn]:
        found: list[AbortedTxn] = []
        for segment in self.segments:  # markers may lie in later segments than the data
            if segment.next_offset > start:
                found.extend(segment.txn_index.overlapping(start, end))
        return found

    def replace(self, group: list[LogSegment], swapped: LogSegment) -> None:
        """`swapped` in place of `group`; its record is added once it is uploaded."""
        i = self.segments.index(group[0])
        self.segments[i : i + len(group)] = [swapped]
        for segment in group:
            del self.records[segment.base_offset]
            segment.close()


class RemoteCleaner:
    """Cleans one remote log at a time, with an offset map of its own (hotlog's cleaner
    may be cleaning a local log meanwhile)."""

    def __init__(self, cleaner: LogCleaner, store: ObjectStore, uploader: SegmentUploader, data_dir: str, *,
                 concurrency: int = 4) -> None:
        self.cleaner = cleaner
        self.concurrency = concurrency  # segments downloaded at once
        self.store = store
        self.uploader = uploader
        self.scratch_root = os.path.join(data_dir, SCRATCH_FOLDER)

    def remove_scratch(self) -> None:
        """What a clean a stop interrupted left behind."""
        shutil.rmtree(self.scratch_root, ignore_errors=True)

    async def clean(self, state: RemotePartition, plog: PartitionLog, now_ms: int) -> RemoteCleanResult | None:
        """Clean the partition's remote log if it is due; None if it is not."""
        async with state.lock:
            await self.resolve_uncertain(state, plog.config.file_delete_delay_ms)
        found = remote_clean_range(state, plog.config, plog.last_stable_offset, now_ms)
        if found is None:
            return None
        directory = os.path.join(self.scratch_root, f"{state.topic_id}-{state.partition}")
        await asyncio.to_thread(_fresh_folder, directory)
        scratch = _Scratch(directory)
        try:
            ctx = self.cleaner.context(plog.config, now_ms, plog.producers.last_records(), scratch.aborted_in,
                                       lambda: plog.closed)
            records = [s for s in state.segments if s.base_offset < found.first_uncleanable]
            scratch.segments = await self._download_all(records, directory, ctx)
            scratch.records = {r.base_offset: r for r in records}
            replaced = 0
            first_dirty, end = found.first_dirty, found.first_uncleanable
            while first_dirty < end:
                covered = await asyncio.to_thread(self.cleaner.map_dirty, scratch.segments, first_dirty, end, ctx)
                replaced += await self._clean_up_to(state, plog, scratch, covered + 1, ctx)
                first_dirty = covered + 1
                ctx.stats.passes += 1
        except CleanAbandonedError as exc:  # what was committed stays; the next clean starts from there
            log.info("%s", exc)
            return None
        finally:
            for segment in scratch.segments:
                segment.close()
            await asyncio.to_thread(shutil.rmtree, directory, True)
        stats = ctx.stats
        metrics.REMOTE_CLEANS.inc()
        metrics.REMOTE_CLEAN_BYTES.labels("read").inc(stats.bytes_read)
        metrics.REMOTE_CLEAN_BYTES.labels("written").inc(stats.bytes_written)
        log.info("%s-%d: cleaned in the bucket to offset %d in %d passes, %d segments replaced: "
                 "%d of %d records kept, %d of %d bytes", state.topic, state.partition, first_dirty, stats.passes,
                 replaced, stats.records_kept, stats.records_read, stats.bytes_written, stats.bytes_read)
        return RemoteCleanResult(first_dirty, replaced, stats)

    async def resolve_uncertain(self, state: RemotePartition, delete_delay_ms: int) -> None:
        """A cleaned segment whose commit may or may not have reached the store: ask it
        (call holding state.lock)."""
        if state.uncertain_clean is None:
            return
        record, old = state.uncertain_clean
        try:
            await self.store.head(record.metadata_key)
        except NotFoundError:
            state.in_flight.discard(record.segment_id)  # never committed: its objects are orphans
        else:
            await self._replaced(state, record, old, _now_ms() + delete_delay_ms)
        state.uncertain_clean = None

    # -- one clean ---------------------------------------------------------------------

    async def _download_all(self, records: list[RemoteSegment], directory: str,
                            ctx: CleanContext) -> list[LogSegment]:
        """The segments of `records` in `directory`, `concurrency` downloading at once."""
        slots = asyncio.Semaphore(self.concurrency)

        async def download(record: RemoteSegment) -> LogSegment:
            async with slots:
                return await self._download(record, directory, ctx)

        downloads = [asyncio.create_task(download(r)) for r in records]
        try:
            return list(await asyncio.gather(*downloads))
        except BaseException:
            for task in downloads:
                task.cancel()
            for done in await asyncio.gather(*downloads, return_exceptions=True):
                if isinstance(done, LogSegment):
                    done.close()
            raise

    async def _download(self, record: RemoteSegment, directory: str, ctx: CleanContext) -> LogSegment:
        """A committed segment's `.log` (and aborted transactions) as a sealed local segment
        in `directory`, its last modified time the record's (tombstones expire by it)."""
        base = record.base_offset
        log_path = os.path.join(directory, segment_file_name(base, ".log"))
        with await asyncio.to_thread(open, log_path, "wb") as out:
            crc = await object_crc32c(self.store, record.files["log"], out)
        if crc != record.files["log"].crc32c:
            raise CorruptRemoteSegmentError(f"{record.key('log')}: its CRC-32C does not match its record")
        if "txnindex" in record.files:
            data = await self.store.get(record.key("txnindex"))
            await asyncio.to_thread(_write, os.path.join(directory, segment_file_name(base, ".txnindex")), data)
        modified = record.last_modified_ms * 1_000_000

        def load() -> LogSegment:
            os.utime(log_path, ns=(modified, modified))
            segment = LogSegment(directory, base, index_interval_bytes=ctx.index_interval_bytes,
                                 index_max_bytes=ctx.index_max_bytes)
            if segment.recover(expected_base=base) or segment.next_offset != record.next_offset:
                segment.close()
                raise CorruptRemoteSegmentError(f"{record.key('log')}: its batches do not hold offsets "
                                                f"{base} to {record.next_offset - 1} whole")
            segment.roll()
            segment.sealed = True
            return segment

        return await asyncio.to_thread(load)

    async def _clean_up_to(self, state: RemotePartition, plog: PartitionLog, scratch: _Scratch, end: int,
                           ctx: CleanContext) -> int:
        """Rewrite, upload and commit every group of segments holding offsets below `end`,
        oldest first; returns the remote segments replaced. A group uploads while the next
        one is cleaned; the commits keep their order."""
        config = plog.config
        txns = CleanedTxns()
        groups = group_by_size([s for s in scratch.segments if s.base_offset < end], config.segment_bytes,
                               config.segment_index_bytes, end)
        published: asyncio.Task[int] | None = None  # the last group's upload and commit
        try:
            for i, group in enumerate(groups):
                if published is not None and published.done():
                    published.result()  # it failed: stop here
                cleaned = await asyncio.to_thread(clean_group, group, ctx, txns)
                if len(group) == 1 and cleaned.size == group[0].size and i < len(groups) - 1:
                    cleaned.delete()  # nothing to drop: a PUT saved (the next commit's cleaned_to covers it)
                    continue
                old = [scratch.records[s.base_offset] for s in group]
                swapped = await asyncio.to_thread(swap_in, scratch.directory, None, group, cleaned, ctx,
                                                  _retire)
                scratch.replace(group, swapped)
                # Clean up to its own end only until the later groups are committed too: a
                # stop before them leaves their segments as they were, duplicates and all.
                cleaned_to = min(end, swapped.next_offset)
                published = asyncio.create_task(
                    self._publish(state, plog, scratch, swapped, old, cleaned_to, ctx, published))
        except BaseException:
            if published is not None:  # a commit is not cut short: it may land all the same
                await asyncio.gather(published, return_exceptions=True)
            raise
        return 0 if published is None else await published

    async def _publish(self, state: RemotePartition, plog: PartitionLog, scratch: _Scratch, cleaned: LogSegment,
                       old: list[RemoteSegment], cleaned_to: int, ctx: CleanContext,
                       previous: asyncio.Task[int] | None) -> int:
        """Upload a cleaned group, then, once the group before it is committed, commit it and
        swap it in locally; returns the remote segments replaced by it and those before it."""
        record = await self._upload(state, cleaned, old, cleaned_to, scratch.directory)
        try:
            replaced_before = 0 if previous is None else await previous
        except BaseException:
            await self._discard(state, record)
            raise
        scratch.records[cleaned.base_offset] = record
        await self._commit(state, plog, record, old)
        await self._swap_local(plog, cleaned, ctx)
        return replaced_before + len(old)

    async def _upload(self, state: RemotePartition, cleaned: LogSegment, old: list[RemoteSegment], cleaned_to: int,
                      directory: str) -> RemoteSegment:
        files = [LocalSegmentFile("log", cleaned.log_path), LocalSegmentFile("index", cleaned.offset_index.path),
                 LocalSegmentFile("timeindex", cleaned.time_index.path)]
        if os.path.getsize(cleaned.txn_index.path):
            files.append(LocalSegmentFile("txnindex", cleaned.txn_index.path))
        if "snapshot" in old[-1].files:  # the producers' state as of its end, for a restore
            path = os.path.join(directory, segment_file_name(cleaned.next_offset, ".snapshot"))
            await asyncio.to_thread(_write, path, await self.store.get(old[-1].key("snapshot")))
            files.append(LocalSegmentFile("snapshot", path))
        segment_id = uuid.uuid4()
        state.in_flight.add(segment_id)
        try:
            record = await self.uploader.upload_files(cleaned, files, state.topic, state.partition, state.topic_id,
                                                      state.prefix, segment_id)
        except BaseException:
            state.in_flight.discard(segment_id)
            raise
        return replace(record, replaces=tuple(s.segment_id for s in old), cleaned_to=cleaned_to)

    async def _commit(self, state: RemotePartition, plog: PartitionLog, record: RemoteSegment,
                      old: list[RemoteSegment]) -> None:
        """One PUT swaps `record` in for `old` in the remote log, unless retention took one
        of them meanwhile or the topic went (then its objects go at once)."""
        async with state.lock:
            if plog.closed or not _consecutive_in(state.segments, old):
                await self._discard(state, record)
                raise CleanAbandonedError(f"{state.topic}-{state.partition}: the topic or segments from offset "
                                          f"{old[0].base_offset} left the remote log during a clean")
            delete_delay_ms = plog.config.file_delete_delay_ms
            try:
                await self.store.put(record.metadata_key, record.to_json())  # the commit point
            except Exception:  # it may have reached the store all the same
                state.uncertain_clean = CleanCommit(record, old)
                raise
            await self._replaced(state, record, old, _now_ms() + delete_delay_ms)

    async def _discard(self, state: RemotePartition, record: RemoteSegment) -> None:
        """Uploaded, never to be committed: its objects go now (else the orphan cleaner's)."""
        state.in_flight.discard(record.segment_id)
        with contextlib.suppress(Exception):
            await self.store.delete([f.key for f in record.files.values()])

    async def _replaced(self, state: RemotePartition, record: RemoteSegment, old: list[RemoteSegment],
                        delete_after_ms: int) -> None:
        """In memory, `record` committed in place of `old`; then their tombstones, whose
        objects stay file.delete.delay.ms (written by retention's next pass if these fail)."""
        if not _consecutive_in(state.segments, old):
            return
        i = state.segments.index(old[0])
        state.segments[i : i + len(old)] = [record]
        state.in_flight.discard(record.segment_id)
        tombstones = [s.with_state(SegmentState.DELETE_STARTED, delete_after_ms=delete_after_ms) for s in old]
        state.tombstones.extend(tombstones)
        # Failures are left alone: from_records reads replaced records as tombstones anyway.
        await asyncio.gather(*(self.store.put(t.metadata_key, t.to_json()) for t in tombstones),
                             return_exceptions=True)

    async def _swap_local(self, plog: PartitionLog, cleaned: LogSegment, ctx: CleanContext) -> None:
        """The cleaned segment in place of the local copies of its offsets, if the local log
        holds them as exactly those sealed segments (else they stay, uncleaned, until local
        retention)."""
        twins = _local_twins(plog, cleaned.base_offset, cleaned.next_offset)
        if twins is None or plog.cleaning:
            return
        plog.cleaning = True  # local retention waits
        try:
            await asyncio.to_thread(self._link_and_swap, plog, twins, cleaned, ctx,
                                    replace_on_loop(asyncio.get_running_loop(), plog.replace_segments))
        finally:
            plog.cleaning = False

    @staticmethod
    def _link_and_swap(plog: PartitionLog, twins: list[LogSegment], cleaned: LogSegment, ctx: CleanContext,
                       replace_segments: Callable[[list[LogSegment], LogSegment], None]) -> None:
        base = cleaned.base_offset
        discard_cleaned_segment(plog.directory, base)
        for suffix in SEGMENT_SUFFIXES:
            source = os.path.join(cleaned.directory, segment_file_name(base, suffix))
            target = os.path.join(plog.directory, segment_file_name(base, suffix) + CLEANED_SUFFIX)
            if os.path.exists(source):
                _link_or_copy(source, target)
        local = LogSegment(plog.directory, base, index_interval_bytes=ctx.index_interval_bytes,
                           index_max_bytes=ctx.index_max_bytes, suffix=CLEANED_SUFFIX)
        swap_in(plog.directory, plog.files, twins, local, ctx, replace_segments)


def _retire(old: list[LogSegment], _new: LogSegment) -> None:
    """In the worker that swaps: the replaced copies' descriptors close there as its pins
    go, so the kernel frees their pages off the event loop."""
    for segment in old:
        segment.close()


def _consecutive_in(segments: list[RemoteSegment], run: list[RemoteSegment]) -> bool:
    try:
        i = segments.index(run[0])
    except ValueError:
        return False
    return segments[i : i + len(run)] == run


def _local_twins(plog: PartitionLog, base: int, next_offset: int) -> list[LogSegment] | None:
    """The sealed local segments that hold exactly the offsets [base, next_offset)."""
    twins: list[LogSegment] = []
    for segment in list(plog.segments)[:-1]:  # never the active segment
        if segment.base_offset < base:
            continue
        if not twins and segment.base_offset != base:
            return None
        if not segment.sealed or segment.deleted:
            return None
        twins.append(segment)
        if segment.next_offset >= next_offset:
            return twins if segment.next_offset == next_offset else None
    return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fresh_folder(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _link_or_copy(source: str, target: str) -> None:
    """Fsynced by the swap's folder fsyncs (a link) or here (a copy, across file systems)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        with open(target, "rb+") as f:
            os.fsync(f.fileno())
