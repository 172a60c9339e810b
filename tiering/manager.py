"""The tiering manager: a background task that copies sealed segments to the object
store and applies local and remote retention, and that restores tiered topics from the
bucket when the local folder lacks them.

Per pass, for every partition of a tiered topic (`remote.storage.enable`):
1. copy: sealed segments past the remote end, in offset order; up to
   `upload_concurrency` segments upload at once (across all partitions), and their
   metadata records, the commit points, are written in offset order;
2. local retention: local segments go only once committed remotely and beyond
   `local.retention.ms` / `local.retention.bytes`;
3. remote retention: `retention.ms` / `retention.bytes` over the whole log (remote plus
   local segments not uploaded yet) of a `delete` policy; a tombstone first, then the
   objects; and the objects of segments a clean replaced, file.delete.delay.ms after;
4. now and then, orphans: objects of no committed segment, older than a grace period.
Topics deleted locally have their objects deleted. Beside the passes, a second task
compacts tiered compacted topics in the bucket (remote_cleaner.py), one partition at a
time; it and remote retention take turns on a partition (its lock). Whatever fails, fails
for one topic or partition and one task only: it is counted, logged at a bounded rate,
and retried after an exponential backoff while the others go on; produce never waits on
the store, the local tier just grows (and copy lag shows it).

One tiering manager writes under a store prefix; two servers must not share one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Iterator

from hotlog.cleaner import LogCleaner
from hotlog.durable import write_atomically
from hotlog.errors import CorruptRecordError, InvalidConfigError
from hotlog.log import PartitionLog
from hotlog.manager import LogManager, Topic
from hotlog.retention import count_below, count_expired, expired_segment_count
from hotlog.segment import LogSegment

from . import metrics
from .backoff import Backoff
from .failures import Failing, Failures
from .metadata import (
    META_FOLDER,
    TOPICS_PREFIX,
    RemoteSegment,
    SegmentState,
    TopicRecord,
    TopicState,
    parse_segment_name,
)
from .partition_state import RemotePartition, RemoteStatus
from .quota import ByteRateLimiter
from .remote_cleaner import RemoteCleaner, RemoteCleanResult, remote_clean_range
from .store import NotFoundError, ObjectStore
from .uploader import SegmentGoneError, SegmentUploader

log = logging.getLogger(__name__)

# Ids of the topics this data folder has held, so that a topic missing locally but
# present in the bucket can be told apart: deleted here (delete its objects) or never
# here (restore it).
KNOWN_TOPICS_FILE = "tiering-topic-ids.json"


class TieringManager:
    def __init__(
        self,
        logs: LogManager,
        store: ObjectStore,
        *,
        task_interval_ms: int = 30_000,
        upload_concurrency: int = 4,
        upload_bytes_per_sec: int = 0,
        orphan_grace_ms: int = 3_600_000,
        orphan_check_interval_ms: int = 1_800_000,
        retry_backoff_ms: int = 1_000,
        retry_backoff_max_ms: int = 60_000,
        metadata_concurrency: int = 16,
    ) -> None:
        if task_interval_ms < 1 or upload_concurrency < 1 or metadata_concurrency < 1:
            raise InvalidConfigError("task interval, upload concurrency and metadata concurrency must be at least 1")
        if min(upload_bytes_per_sec, orphan_grace_ms, orphan_check_interval_ms, retry_backoff_ms) < 0:
            raise InvalidConfigError("tiering quotas, grace periods and backoffs must not be negative")
        self.logs = logs
        self.store = store
        self.task_interval_ms = task_interval_ms
        self.upload_concurrency = upload_concurrency
        self.orphan_grace_ms = orphan_grace_ms
        self.orphan_check_interval_ms = orphan_check_interval_ms
        self.retry_backoff_ms = retry_backoff_ms
        self.retry_backoff_max_ms = max(retry_backoff_ms, retry_backoff_max_ms)
        self.partitions: dict[tuple[uuid.UUID, int], RemotePartition] = {}
        self.topic_records: dict[uuid.UUID, TopicRecord] = {}  # as written in the bucket
        self.known_topic_ids: set[uuid.UUID] = set()
        self._uploader = SegmentUploader(store, ByteRateLimiter(upload_bytes_per_sec))
        self._cleaner = RemoteCleaner(LogCleaner(logs.cleaner.config), store, self._uploader, logs.data_dir,
                                      concurrency=upload_concurrency)
        self._clean_task: asyncio.Task[None] | None = None
        self._upload_slots = asyncio.Semaphore(upload_concurrency)
        self._metadata_slots = asyncio.Semaphore(metadata_concurrency)
        self._pass_lock = asyncio.Lock()
        self._topic_backoffs: dict[uuid.UUID, Backoff] = {}  # writing or deleting a topic's record
        self.failures = Failures()
        self._last_orphan_check: float | None = None
        self._task: asyncio.Task[None] | None = None
        # From now on hotlog leaves the retention of tiered logs to us: nothing local is
        # deleted before its upload is committed.
        logs.retention_delegate = self.owns_retention

    def owns_retention(self, plog: PartitionLog) -> bool:
        return plog.config.remote_storage_enable

    # -- lifecycle ---------------------------------------------------------------------

    async def check_store(self) -> None:
        """Raise AccessDeniedError / BucketNotFoundError / TransientStoreError with a clear
        message unless the store can be listed, read and written."""
        await self.store.check()

    async def open(self) -> None:
        """Check the store, read what the bucket holds, restore the tiered topics this data
        folder lacks and delete those it deleted. Call after LogManager.open() and before
        serving (a restored partition's log must start at the remote end first)."""
        await self.check_store()
        await asyncio.to_thread(self._cleaner.remove_scratch)
        self.known_topic_ids = self._read_known_ids()
        records = await self._read_topic_records()
        local = {t.topic_id: t for t in self.logs.topics.values()}
        for record in records:
            self.topic_records[record.topic_id] = record
            if record.state is TopicState.DELETING or (
                record.topic_id not in local and record.topic_id in self.known_topic_ids
            ):
                await self._delete_remote_topic(record.topic_id)
            elif record.topic_id not in local:
                if record.name in self.logs.topics:
                    log.warning("the bucket holds topic %s with id %s, but the local topic of that name has id %s; "
                                "leaving the bucket's copy alone", record.name, record.topic_id,
                                self.logs.topics[record.name].topic_id)
                    del self.topic_records[record.topic_id]
                    continue
                self.logs.create_topic(record.name, record.partitions, record.configs, topic_id=record.topic_id)
                log.info("restored topic %s (%d partitions) from %s", record.name, record.partitions, self.store.url)
        loads = []
        for record in self.topic_records.values():
            topic = self.logs.topics[record.name]
            for partition in range(min(record.partitions, topic.partitions)):
                loads.append(self._load_partition(record, partition))
        for state in await asyncio.gather(*loads):
            self._track(state)
            record = self.topic_records[state.topic_id]
            if state.partition in record.records_start:  # deleted by DeleteRecords: stays deleted
                self.logs.adopt_records_start(state.topic, state.partition, record.records_start[state.partition])
            plog = self.logs.log(state.topic, state.partition)
            if plog.log_end_offset < state.end_offset:
                await self._restore_partition(state, plog)
        self._remember_local_topics()

    async def start(self) -> None:
        """open(), then run the background task until close()."""
        await self.open()
        self.run_in_background()

    def run_in_background(self) -> None:
        """Run the background task until close() (after open())."""
        self._task = asyncio.create_task(self.run())
        self._task.add_done_callback(_log_task_end)
        if self._cleaner.cleaner.config.enable:
            self._cleaner.cleaner.stop.clear()
            self._clean_task = asyncio.create_task(self.run_cleaner())
            self._clean_task.add_done_callback(_log_task_end)

    async def run(self) -> None:
        while True:
            more = False
            # Errors are caught per topic and partition; this is the net for anything else.
            with self._guarded(Failing(None, None, "pass"), "the tiering pass"):
                more = await self.run_once()
            if not more:  # a pass that left sealed segments behind goes again at once
                await asyncio.sleep(self.task_interval_ms / 1000)

    async def close(self) -> None:
        """Stop the background task. Uploads in flight are abandoned (their objects are
        orphans the next start cleans); the store stays open (its owner closes it)."""
        self._cleaner.cleaner.stop.set()  # a clean in a worker thread stops at its next read
        for task in (self._task, self._clean_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._clean_task = None
        if self.logs.retention_delegate == self.owns_retention:
            self.logs.retention_delegate = None

    # -- what the read path and tier status need ---------------------------------------

    def remote_partition(self, topic: str, partition: int) -> RemotePartition | None:
        local = self.logs.topics.get(topic)
        return None if local is None else self.partitions.get((local.topic_id, partition))

    def remote_segments(self, topic: str, partition: int) -> list[RemoteSegment]:
        """Committed remote segments, by base offset."""
        state = self.remote_partition(topic, partition)
        return [] if state is None else list(state.segments)

    def remote_segment_for(self, topic: str, partition: int, offset: int) -> RemoteSegment | None:
        state = self.remote_partition(topic, partition)
        return None if state is None else state.segment_for(offset)

    def remote_log_start_offset(self, topic: str, partition: int) -> int:
        state = self.remote_partition(topic, partition)
        return -1 if state is None else state.log_start_offset

    def remote_end_offset(self, topic: str, partition: int) -> int:
        """One past the highest tiered offset, or -1."""
        state = self.remote_partition(topic, partition)
        return -1 if state is None else state.end_offset

    def remote_status(self, topic: str, partition: int) -> RemoteStatus:
        state = self.remote_partition(topic, partition)
        if state is None:
            return RemoteStatus()
        return state.status(self.logs.logs.get((topic, partition)))

    # -- one pass ----------------------------------------------------------------------

    async def run_once(self, now_ms: int | None = None) -> bool:
        """Copy, then local retention, remote retention and (when due) orphan cleaning,
        for every tiered partition. Failures are logged, counted and retried later.
        Returns whether a partition uploaded and has more sealed segments waiting."""
        async with self._pass_lock:
            now = int(time.time() * 1000) if now_ms is None else now_ms
            synced = await self._sync_topics()
            orphans_due = (self._last_orphan_check is None
                           or (time.monotonic() - self._last_orphan_check) * 1000 >= self.orphan_check_interval_ms)
            try:
                passes = []
                for state in list(self.partitions.values()):
                    plog = self._local_log(state)
                    if plog is not None:
                        passes.append(self._partition_pass(state, plog, now, state.topic_id in synced, orphans_due))
                more = await asyncio.gather(*passes)
                if orphans_due:
                    self._last_orphan_check = time.monotonic()
                return any(more)
            finally:
                self._update_gauges()  # copy lag shows what waits, also when uploads fail

    async def _partition_pass(self, state: RemotePartition, plog: PartitionLog, now_ms: int, may_copy: bool,
                              orphans_due: bool) -> bool:
        """One partition's share of a pass; returns whether it uploaded and more waits."""
        copied = 0
        where = f"{state.topic}-{state.partition}"
        if may_copy and plog.config.remote_storage_enable and not plog.closed and not state.copy_backoff.waiting:
            with self._guarded(Failing(state.topic_id, state.partition, "copy"), where, state.copy_backoff):
                try:
                    copied = await self._copy_partition(state, plog)
                except SegmentGoneError as exc:  # its topic was deleted while we read it
                    log.info("%s", exc)
                    return False
        with self._guarded(Failing(state.topic_id, state.partition, "local_retention"), where):
            self._apply_local_retention(state, plog, now_ms)
        more = copied > 0 and state.copy_lag(plog).segments > 0
        if state.retention_backoff.waiting:
            return more
        with self._guarded(Failing(state.topic_id, state.partition, "remote_retention"), where,
                           state.retention_backoff):
            await self._apply_remote_retention(state, plog, now_ms)
            if orphans_due:
                await self._clean_orphans(state)
        return more

    async def run_cleaner(self) -> None:
        """The bucket's cleaner: clean what is due, one partition at a time, then wait
        log.cleaner.backoff.ms when nothing is."""
        while True:
            cleaned = None
            with self._guarded(Failing(None, None, "clean"), "the bucket's cleaner"):
                cleaned = await self.clean_once()
            if cleaned is None:
                await asyncio.sleep(self._cleaner.cleaner.config.backoff_ms / 1000)

    async def clean_once(self, now_ms: int | None = None) -> RemoteCleanResult | None:
        """Clean the remote log of the compacted tiered partition with the largest dirty
        share, if one is due; None when none is (or its clean failed: it backs off)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        due = []
        for state in list(self.partitions.values()):
            plog = self._local_log(state)
            if plog is None or plog.closed or state.clean_backoff.waiting:
                continue
            found = remote_clean_range(state, plog.config, plog.last_stable_offset, now)
            if found is not None:
                due.append((found.dirty_ratio, state, plog))
        if not due:
            return None
        _, state, plog = max(due, key=lambda d: d[0])
        result = None
        with self._guarded(Failing(state.topic_id, state.partition, "clean"), f"{state.topic}-{state.partition}",
                           state.clean_backoff):
            result = await self._cleaner.clean(state, plog, now)
        return result

    @contextlib.contextmanager
    def _guarded(self, what: Failing, where: str, backoff: Backoff | None = None) -> Iterator[None]:
        """Run the body as `what`: an exception ends the body but nothing else (counted,
        logged at a bounded rate; `backoff`, if any, says when to try again)."""
        try:
            yield
        except Exception as exc:  # whatever one topic's or partition's work raises, the others go on
            retry_s = backoff.failed() if backoff is not None else self.task_interval_ms / 1000
            self.failures.failed(what, where, exc, retry_s)
        else:
            if backoff is not None:
                backoff.succeeded()
            self.failures.succeeded(what, where)

    # -- topics ------------------------------------------------------------------------

    async def _sync_topics(self) -> set[uuid.UUID]:
        """Delete the remote objects of topics deleted locally; write the records of tiered
        topics (new, or with new partitions or configs). Returns the ids of topics whose
        record is in the bucket as it is locally: only those may upload. Each topic fails
        and backs off alone."""
        local = {t.topic_id: t for t in self.logs.topics.values()}
        for topic_id in (self.known_topic_ids | set(self.topic_records)) - set(local):
            backoff = self._topic_backoff(topic_id)
            if not backoff.waiting:
                record = self.topic_records.get(topic_id)
                where = f"topic {record.name if record else topic_id} (deleted)"
                with self._guarded(Failing(topic_id, None, "topics"), where, backoff):
                    await self._delete_remote_topic(topic_id)
        with self._guarded(Failing(None, None, "topics"), self._known_ids_path()):
            self._remember_local_topics()
        synced = set()
        for topic in local.values():
            if not self.logs.config_for(topic).remote_storage_enable and topic.topic_id not in self.topic_records:
                continue
            written = self.topic_records.get(topic.topic_id)
            # A written record keeps its folder: that is where its objects are.
            starts = {p: self.logs.records_start_offset(topic.name, p) for p in range(topic.partitions)}
            record = TopicRecord(topic.name, topic.topic_id, topic.partitions, dict(topic.overrides),
                                 folder=written.folder if written else "",
                                 records_start={p: offset for p, offset in starts.items() if offset > 0})
            for partition in range(topic.partitions):
                if (topic.topic_id, partition) not in self.partitions:
                    self._track(RemotePartition(topic.name, topic.topic_id, partition,
                                                record.partition_prefix(partition)))
            backoff = self._topic_backoff(topic.topic_id)
            if written != record and not backoff.waiting:
                with self._guarded(Failing(topic.topic_id, None, "topics"), f"topic {topic.name}", backoff):
                    await self.store.put(record.key, record.to_json())
                    self.topic_records[topic.topic_id] = record
            if self.topic_records.get(topic.topic_id) == record:
                synced.add(topic.topic_id)
        return synced

    def _topic_backoff(self, topic_id: uuid.UUID) -> Backoff:
        backoff = self._topic_backoffs.get(topic_id)
        if backoff is None:
            backoff = self._topic_backoffs[topic_id] = Backoff(self.retry_backoff_ms, self.retry_backoff_max_ms)
        return backoff

    def _track(self, state: RemotePartition) -> None:
        state.copy_backoff = Backoff(self.retry_backoff_ms, self.retry_backoff_max_ms)
        state.retention_backoff = Backoff(self.retry_backoff_ms, self.retry_backoff_max_ms)
        self.partitions[(state.topic_id, state.partition)] = state

    async def _delete_remote_topic(self, topic_id: uuid.UUID) -> None:
        """Tombstone the topic record, delete every object of the topic, then the record."""
        record = self.topic_records.get(topic_id)
        if record is not None:
            if record.state is not TopicState.DELETING:
                record = TopicRecord(record.name, topic_id, record.partitions, record.configs, TopicState.DELETING)
                await self.store.put(record.key, record.to_json())
                self.topic_records[topic_id] = record
            objects = await self.store.list(record.prefix)
            await self.store.delete([o.key for o in objects])
            await self.store.delete([record.key])
            deleted = sum(1 for o in objects if f"/{META_FOLDER}" in o.key)
            metrics.REMOTE_DELETED_SEGMENTS.inc(deleted)
            log.info("deleted topic %s (%s) from %s: %d objects", record.name, topic_id, self.store.url, len(objects))
            del self.topic_records[topic_id]
        for key in [k for k in self.partitions if k[0] == topic_id]:
            del self.partitions[key]
        if topic_id in self.known_topic_ids:
            self._save_known_ids(self.known_topic_ids - {topic_id})
        self._topic_backoffs.pop(topic_id, None)
        self.failures.forget_topic(topic_id)

    async def _read_topic_records(self) -> list[TopicRecord]:
        objects = await self.store.list(TOPICS_PREFIX)
        return list(await asyncio.gather(*(self._read_topic_record(o.key) for o in objects)))

    async def _read_topic_record(self, key: str) -> TopicRecord:
        async with self._metadata_slots:
            return TopicRecord.from_json(await self.store.get(key), f"{self.store.url} {key}")

    def _known_ids_path(self) -> str:
        return os.path.join(self.logs.data_dir, KNOWN_TOPICS_FILE)

    def _read_known_ids(self) -> set[uuid.UUID]:
        try:
            with open(self._known_ids_path()) as f:
                return {uuid.UUID(text) for text in json.load(f)["topic_ids"]}
        except FileNotFoundError:
            return set()

    def _save_known_ids(self, ids: set[uuid.UUID]) -> None:
        """Written, then kept: a write that fails is tried again at the next pass."""
        data = {"version": 1, "topic_ids": sorted(str(i) for i in ids)}
        write_atomically(self._known_ids_path(), json.dumps(data).encode())
        self.known_topic_ids = ids

    def _remember_local_topics(self) -> None:
        local = {t.topic_id for t in self.logs.topics.values()}
        if not local <= self.known_topic_ids:
            self._save_known_ids(self.known_topic_ids | local)

    def _local_log(self, state: RemotePartition) -> PartitionLog | None:
        topic: Topic | None = self.logs.topics.get(state.topic)
        if topic is None or topic.topic_id != state.topic_id:
            return None
        return self.logs.logs.get((state.topic, state.partition))

    # -- loading and restoring ---------------------------------------------------------

    async def _load_partition(self, topic: TopicRecord, partition: int) -> RemotePartition:
        prefix = topic.partition_prefix(partition)
        objects = await self.store.list(prefix + META_FOLDER)
        records = await asyncio.gather(*(self._read_segment_record(o.key) for o in objects))
        return RemotePartition.from_records(topic.name, topic.topic_id, partition, prefix, list(records))

    async def _read_segment_record(self, key: str) -> RemoteSegment:
        async with self._metadata_slots:
            return RemoteSegment.from_json(await self.store.get(key), f"{self.store.url} {key}")

    async def _restore_partition(self, state: RemotePartition, plog: PartitionLog) -> None:
        """The local log is behind the bucket (an empty machine, or a crash mid-restore):
        continue at the remote end, with the producer state of the last remote segment."""
        log.info("%s-%d: local log ends at %d, the bucket at %d: continuing from the bucket",
                 state.topic, state.partition, plog.log_end_offset, state.end_offset)
        plog.truncate_fully_and_start_at(state.end_offset)
        last = state.segments[-1] if state.segments else None
        if last is not None and last.next_offset == state.end_offset and "snapshot" in last.files:
            data = await self.store.get(last.key("snapshot"))
            try:
                plog.load_producer_snapshot(data)
            except CorruptRecordError as exc:
                log.warning("%s-%d: producer snapshot from the bucket unreadable, idempotence restarts: %s",
                            state.topic, state.partition, exc)

    # -- copy --------------------------------------------------------------------------

    async def _copy_partition(self, state: RemotePartition, plog: PartitionLog) -> int:
        """Upload sealed segments past the remote end. Up to `upload_concurrency` segments
        upload at once (across partitions); each is committed (its metadata written) only
        after every segment before it, so the remote log never has holes. Twice as many
        may be under way, so that uploads done early wait for their turn to commit without
        holding an upload slot. A pass copies only what was sealed when it began: under a
        producer that seals segments as fast as they upload, it still ends, and retention
        gets its turn (the next pass starts at once). Returns the segments committed."""
        if state.uncertain is not None:
            await self._resolve_uncertain(state)
        pending: deque[asyncio.Task[tuple[RemoteSegment, float]]] = deque()
        cursor = state.end_offset
        sealed_end = max((s.next_offset for s in plog.segments if s.sealed), default=cursor)
        committed = 0
        try:
            while True:
                while len(pending) < 2 * self.upload_concurrency:
                    segment = self._next_to_copy(state, plog, cursor) if cursor < sealed_end else None
                    if segment is None:
                        break
                    cursor = segment.next_offset
                    pending.append(asyncio.create_task(self._upload(state, plog, segment)))
                if not pending:
                    return committed
                remote, began = await pending.popleft()
                try:
                    await self.store.put(remote.metadata_key, remote.to_json())  # the commit point
                except Exception:  # it may have reached the store all the same
                    state.uncertain = remote
                    raise
                self._committed(state, remote, began)
                committed += 1
        finally:
            for task in pending:
                task.cancel()
            for outcome in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(outcome, tuple):  # uploaded, never committed: an orphan now
                    state.in_flight.discard(outcome[0].segment_id)

    async def _resolve_uncertain(self, state: RemotePartition) -> None:
        remote = state.uncertain
        assert remote is not None
        try:
            await self.store.head(remote.metadata_key)
        except NotFoundError:
            state.in_flight.discard(remote.segment_id)  # never committed: its objects are orphans
        else:
            self._committed(state, remote, None)
        state.uncertain = None

    def _next_to_copy(self, state: RemotePartition, plog: PartitionLog, cursor: int) -> LogSegment | None:
        for segment in plog.segments:
            if segment.base_offset >= cursor:
                return segment if segment.sealed else None
            if segment.next_offset > cursor:
                log.warning("%s-%d: local segment %d straddles the remote end %d; it cannot be tiered",
                            state.topic, state.partition, segment.base_offset, cursor)
        return None

    async def _upload(self, state: RemotePartition, plog: PartitionLog,
                      segment: LogSegment) -> tuple[RemoteSegment, float]:
        segment_id = uuid.uuid4()  # a retry uploads under new keys, never over a winner
        state.in_flight.add(segment_id)
        try:
            async with self._upload_slots:
                began = time.perf_counter()
                return await self._uploader.upload(plog, segment, state.topic_id, state.prefix, segment_id), began
        except BaseException:
            state.in_flight.discard(segment_id)
            raise

    def _committed(self, state: RemotePartition, remote: RemoteSegment, began: float | None) -> None:
        state.segments.append(remote)
        state.in_flight.discard(remote.segment_id)
        if state.end_marker is not None and remote.next_offset > state.end_marker.next_offset:
            state.stale_markers.append(state.end_marker)
            state.end_marker = None
        metrics.UPLOADED_SEGMENTS.inc()
        if began is not None:
            metrics.UPLOAD_SECONDS.observe(time.perf_counter() - began)

    # -- retention ---------------------------------------------------------------------

    def _apply_local_retention(self, state: RemotePartition, plog: PartitionLog, now_ms: int) -> None:
        """Delete the oldest local segments that are committed remotely and beyond local
        retention. Nothing is deleted that the bucket does not hold."""
        if plog.closed or plog.cleaning or not self.owns_retention(plog):  # a clean swaps its segments
            return
        end = state.end_offset
        uploaded = 0
        for segment in plog.segments:
            if not segment.sealed or segment.next_offset > end:
                break
            uploaded += 1
        if not uploaded:
            return
        config = plog.config
        expired = expired_segment_count(plog.segments, retention_ms=config.local_retention_ms,
                                        retention_bytes=config.local_retention_bytes, now_ms=now_ms)
        expired = max(expired, count_below(plog.segments, self.logs.records_start_offset(plog.topic, plog.partition)))
        count = min(uploaded, expired)
        if count:
            plog.delete_oldest_segments(count)
            metrics.LOCAL_DELETED_SEGMENTS.inc(count)

    async def _apply_remote_retention(self, state: RemotePartition, plog: PartitionLog, now_ms: int) -> None:
        """retention.ms / retention.bytes over the whole log (a `delete` policy's), oldest remote
        segments first; and the objects of segments a clean replaced, once they are due."""
        async with state.lock:
            await self._cleaner.resolve_uncertain(state, plog.config.file_delete_delay_ms)
            await self._finish_deletions(state, now_ms)
            if state.stale_markers:
                await self.store.delete([m.metadata_key for m in state.stale_markers])
                state.stale_markers.clear()
            if plog.config.delete:
                await self._apply_retention(state, plog, now_ms)

    async def _apply_retention(self, state: RemotePartition, plog: PartitionLog, now_ms: int) -> None:
        segments = state.segments
        config = plog.config
        end = state.end_offset
        not_uploaded = sum(s.size for s in plog.segments if s.base_offset >= end)
        doomed = count_expired(segments, total_bytes=state.size_bytes + not_uploaded, retention_ms=config.retention_ms,
                               retention_bytes=config.retention_bytes, now_ms=now_ms)
        doomed = max(doomed, count_below(segments, self.logs.records_start_offset(plog.topic, plog.partition)))
        if not doomed:
            return
        # Tombstones one by one, oldest first: after a crash the deleted ones are a prefix.
        for segment in segments[:doomed]:
            tombstone = segment.with_state(SegmentState.DELETE_STARTED)
            await self.store.put(tombstone.metadata_key, tombstone.to_json())
            state.segments.remove(segment)
            state.tombstones.append(tombstone)
        deleted_to = state.tombstones[-1].next_offset
        await self._finish_deletions(state, now_ms)
        # Local copies past the whole log's retention go too (local retention longer than
        # retention is a misconfiguration, but the log start must not stay behind).
        local = 0
        for local_segment in plog.segments[:-1]:
            if local_segment.next_offset > deleted_to:
                break
            local += 1
        if local:
            plog.delete_oldest_segments(local)

    async def _finish_deletions(self, state: RemotePartition, now_ms: int) -> None:
        """Delete the objects of tombstoned segments that are due, then their records; the
        newest keeps a DELETE_FINISHED record if it leaves the remote log empty."""
        doomed = [t for t in state.tombstones if t.delete_after_ms <= now_ms]
        if not doomed:
            return
        await self.store.delete([f.key for t in doomed for f in t.files.values()])
        newest = max(doomed, key=lambda t: t.next_offset)
        keep_marker = not state.segments and (
            state.end_marker is None or newest.next_offset > state.end_marker.next_offset
        )
        records = [t.metadata_key for t in doomed if not (keep_marker and t is newest)]
        if keep_marker:
            marker = newest.with_state(SegmentState.DELETE_FINISHED)
            await self.store.put(marker.metadata_key, marker.to_json())
            if state.end_marker is not None:
                records.append(state.end_marker.metadata_key)
            state.end_marker = marker
        await self.store.delete(records)
        state.tombstones = [t for t in state.tombstones if t not in doomed]
        metrics.REMOTE_DELETED_SEGMENTS.inc(len(doomed))

    # -- orphans -----------------------------------------------------------------------

    async def _clean_orphans(self, state: RemotePartition) -> None:
        """Delete segment objects that no record names (left by a crash mid-upload) once
        older than the grace period."""
        prefix = state.prefix
        objects = await self.store.list(prefix)
        recorded: set[uuid.UUID] = set()
        data = []
        for info in objects:
            name = info.key[len(prefix):]
            parsed = parse_segment_name(name.removeprefix(META_FOLDER))
            if parsed is None:
                continue
            if name.startswith(META_FOLDER):
                recorded.add(parsed.segment_id)
            else:
                data.append((info, parsed.segment_id))
        protected = recorded | state.protected_ids()
        cutoff = time.time() - self.orphan_grace_ms / 1000
        orphans = [info.key for info, segment_id in data if segment_id not in protected and info.last_modified < cutoff]
        if orphans:
            await self.store.delete(orphans)
            metrics.ORPHANS_DELETED.inc(len(orphans))
            log.info("%s-%d: deleted %d orphan objects", state.topic, state.partition, len(orphans))

    # -- metrics -----------------------------------------------------------------------

    def _update_gauges(self) -> None:
        lag_segments = lag_bytes = local_bytes = local_segments = remote_bytes = remote_segments = 0
        for state in self.partitions.values():
            remote_bytes += state.size_bytes
            remote_segments += len(state.segments)
            plog = self._local_log(state)
            if plog is None or not plog.config.remote_storage_enable:
                continue
            lag = state.copy_lag(plog)
            lag_segments += lag.segments
            lag_bytes += lag.size_bytes
            local_bytes += plog.size_bytes
            local_segments += len(plog.segments)
        metrics.COPY_LAG_SEGMENTS.set(lag_segments)
        metrics.COPY_LAG_BYTES.set(lag_bytes)
        metrics.TIER_BYTES.labels("local").set(local_bytes)
        metrics.TIER_BYTES.labels("remote").set(remote_bytes)
        metrics.TIER_SEGMENTS.labels("local").set(local_segments)
        metrics.TIER_SEGMENTS.labels("remote").set(remote_segments)


def _log_task_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the tiering task stopped", exc_info=task.exception())
