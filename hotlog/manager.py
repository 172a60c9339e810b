"""The log manager: topics, their partitions and configs, and the background duties
(flush policy, retention, recovery checkpoints) of every log in one data folder."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .cleaner import CleanerConfig, CleaningAbortedError, CleanResult, LogCleaner, replace_on_loop
from .config import TOPIC_CONFIGS, LogConfig, check_combined, parse_topic_configs
from .durable import write_atomically
from .errors import (
    InvalidConfigError,
    InvalidTopicError,
    LogError,
    LogStorageError,
    OffsetOutOfRangeError,
    PolicyViolationError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
)
from .log import PartitionLog
from .names import fit_name
from .open_files import OpenFiles
from .retention import count_below, expired_segment_count

log = logging.getLogger(__name__)

TOPICS_FILE = "topics.json"
CHECKPOINT_FILE = "recovery-point-offset-checkpoint"
CLEANER_CHECKPOINT_FILE = "cleaner-offset-checkpoint"  # each compacted log's first dirty offset
# Each partition's first offset past records deleted by DeleteRecords (Kafka's file): only
# the partitions whose records start later than their first segment.
RECORDS_START_FILE = "log-start-offset-checkpoint"
CLEAN_SHUTDOWN_FILE = ".clean-shutdown"
PARTITION_METADATA_FILE = "partition.metadata"
_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


@dataclass
class Topic:
    name: str
    topic_id: uuid.UUID
    partitions: int
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.topic_id), "partitions": self.partitions, "configs": self.overrides}


class LogManager:
    def __init__(
        self, data_dir: str, defaults: Mapping[str, Any] | None = None, *, producer_expiration_ms: int = 86_400_000,
        open_files: OpenFiles | None = None, cleaner: CleanerConfig | None = None,
    ) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.cleaner = LogCleaner(cleaner or CleanerConfig())
        # Segment files' descriptors, bounded for every log here: partitions cost no descriptor each.
        self.open_files = OpenFiles() if open_files is None else open_files
        self.producer_expiration_ms = producer_expiration_ms
        self.defaults = dict(defaults or {})
        self.topics: dict[str, Topic] = {}
        self.logs: dict[tuple[str, int], PartitionLog] = {}
        self.records_start: dict[tuple[str, int], int] = {}  # deleted before (DeleteRecords)
        # Tiering takes over local retention of the logs it answers True for.
        self.retention_delegate: Callable[[PartitionLog], bool] | None = None
        self.opened_clean = False

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> LogManager:
        os.makedirs(self.data_dir, exist_ok=True)
        marker = os.path.join(self.data_dir, CLEAN_SHUTDOWN_FILE)
        self.opened_clean = os.path.exists(marker)
        checkpoints = self._read_checkpoint(CHECKPOINT_FILE)
        first_dirty = self._read_checkpoint(CLEANER_CHECKPOINT_FILE)
        records_start = self._read_checkpoint(RECORDS_START_FILE)
        topics_path = os.path.join(self.data_dir, TOPICS_FILE)
        if os.path.exists(topics_path):
            with open(topics_path) as f:
                for name, entry in json.load(f).items():
                    self.topics[name] = Topic(name, uuid.UUID(entry["id"]), entry["partitions"], entry["configs"])
        for topic in self.topics.values():
            for partition in range(topic.partitions):
                plog = self._open_log(topic, partition, clean=self.opened_clean,
                                      recovery_point=checkpoints.get((topic.name, partition), 0))
                plog.first_dirty_offset = first_dirty.get((topic.name, partition), 0)
        self.records_start = {k: v for k, v in records_start.items() if k in self.logs}
        self._remove_deleted_dirs()
        if self.opened_clean:
            os.unlink(marker)
        self.write_checkpoint()
        return self

    def close(self) -> None:
        """Flush every log, write the checkpoint and the clean-shutdown marker. A log that a
        failed fsync took offline is not flushed again, and without the marker the next
        start checks it (recovery) before trusting it. A clean under way stops before its
        next swap (one committed already is completed by the next start)."""
        self.cleaner.stop.set()
        clean = True
        for partition_log in self.logs.values():
            try:
                if partition_log.storage_error is None:
                    partition_log.flush()
            except LogStorageError:
                pass
            clean = clean and partition_log.storage_error is None
        self.write_checkpoint()
        self.write_cleaner_checkpoint()
        for partition_log in self.logs.values():
            partition_log.close()
        if clean:
            write_atomically(os.path.join(self.data_dir, CLEAN_SHUTDOWN_FILE), b"")

    def _open_log(self, topic: Topic, partition: int, *, clean: bool, recovery_point: int = 0) -> PartitionLog:
        directory = self.partition_dir(topic.name, partition)
        metadata_path = os.path.join(directory, PARTITION_METADATA_FILE)
        expected = f"version: 0\ntopic_id: {topic.topic_id}\n"
        if os.path.isdir(directory):
            try:
                with open(metadata_path) as f:
                    stale = f.read() != expected
            except FileNotFoundError:
                stale = True
            if stale:  # left behind by a deleted topic of the same name
                shutil.rmtree(directory)
        if not os.path.isdir(directory):
            os.makedirs(directory)
            write_atomically(metadata_path, expected.encode())
            clean = True
        partition_log = PartitionLog.open(
            directory, topic.name, partition, self.config_for(topic), clean=clean, recovery_point=recovery_point,
            files=self.open_files,
        )
        self.logs[(topic.name, partition)] = partition_log
        return partition_log

    def _remove_deleted_dirs(self) -> None:
        for name in os.listdir(self.data_dir):
            if name.endswith("-delete"):
                shutil.rmtree(os.path.join(self.data_dir, name), ignore_errors=True)

    def partition_dir(self, topic: str, partition: int) -> str:
        """`<topic>-<partition>`, as Kafka names it (249 characters fit; a partition
        number past 99999 would not, and is shortened)."""
        return os.path.join(self.data_dir, fit_name(topic, f"-{partition}"))

    # -- checkpoints -------------------------------------------------------------------

    def _read_checkpoint(self, name: str) -> dict[tuple[str, int], int]:
        path = os.path.join(self.data_dir, name)
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            lines = f.read().splitlines()
        points = {}
        for line in lines[2:]:
            topic, partition, offset = line.rsplit(" ", 2)
            points[(topic, int(partition))] = int(offset)
        return points

    def write_checkpoint(self) -> None:
        self._write_checkpoint(CHECKPOINT_FILE, {key: plog.recovery_point for key, plog in self.logs.items()})

    def records_start_offset(self, topic: str, partition: int) -> int:
        """The first offset not deleted by DeleteRecords (0: none deleted); reads begin at
        the later of it and the first segment's base."""
        return self.records_start.get((topic, partition), 0)

    def delete_records(self, topic: str, partition: int, before: int) -> int:
        """Kafka's DeleteRecords: the records below `before` (-1: the high watermark) are
        gone for readers from now on, durably; whole segments below it are deleted (by
        tiering for the logs it owns, once they are off the bucket too). Returns where the
        records start now (retention may have taken more). PolicyViolationError for a topic without the `delete` policy,
        OffsetOutOfRangeError past the high watermark."""
        plog = self.log(topic, partition)
        if not plog.config.delete:
            raise PolicyViolationError(f"{topic}-{partition}: records of a topic without cleanup.policy=delete "
                                       f"cannot be deleted")
        start = self.records_start_offset(topic, partition)
        target = plog.high_watermark if before == -1 else before
        if target < 0 or target > plog.high_watermark:
            raise OffsetOutOfRangeError(target, max(start, plog.log_start_offset), plog.high_watermark)
        if target > start:
            self.records_start[(topic, partition)] = target
            self.write_records_start_checkpoint()
            if not self._delegated(plog) and not plog.cleaning:  # else retention's next run
                self.delete_segments_below_records_start(plog)
        return max(start, target)

    def adopt_records_start(self, topic: str, partition: int, offset: int) -> None:
        """A records' start learnt elsewhere (the bucket's topic record, at a restore): kept
        where it is later than this folder's."""
        if offset > self.records_start_offset(topic, partition):
            self.records_start[(topic, partition)] = offset
            self.write_records_start_checkpoint()

    def delete_segments_below_records_start(self, plog: PartitionLog) -> int:
        """Delete the sealed segments wholly below the records' start; returns how many."""
        count = count_below(plog.segments[:-1], self.records_start_offset(plog.topic, plog.partition))
        return len(plog.delete_oldest_segments(count)) if count else 0

    def write_records_start_checkpoint(self) -> None:
        self._write_checkpoint(RECORDS_START_FILE, self.records_start)

    def write_cleaner_checkpoint(self) -> None:
        self._write_checkpoint(CLEANER_CHECKPOINT_FILE, {
            key: plog.first_dirty_offset for key, plog in list(self.logs.items()) if plog.config.compact
        })

    def _write_checkpoint(self, name: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """Kafka's checkpoint layout: version, count, then `topic partition offset` lines."""
        lines = ["0", str(len(offsets))]
        lines += [f"{t} {p} {offset}" for (t, p), offset in sorted(offsets.items())]
        write_atomically(os.path.join(self.data_dir, name), ("\n".join(lines) + "\n").encode())

    def _save_topics(self) -> None:
        data = {name: topic.to_json() for name, topic in sorted(self.topics.items())}
        write_atomically(os.path.join(self.data_dir, TOPICS_FILE), json.dumps(data, indent=1).encode())

    # -- topics ------------------------------------------------------------------------

    def config_for(self, topic: Topic) -> LogConfig:
        return LogConfig.build(self.defaults, topic.overrides)

    def config_of(self, configs: Mapping[str, Any]) -> LogConfig:
        """What a topic made with these overrides would have (InvalidConfigError if bad)."""
        return LogConfig.build(self.defaults, parse_topic_configs(configs))

    def create_topic(
        self, name: str, partitions: int, configs: Mapping[str, Any] | None = None, *,
        topic_id: uuid.UUID | None = None, validate_only: bool = False,
    ) -> Topic:
        if not _LEGAL_TOPIC.fullmatch(name) or name in (".", ".."):  # match() lets "$" pass a trailing newline
            raise InvalidTopicError(
                f"topic name {name!r} is not legal: 1 to 249 characters of ASCII letters, digits, '.', '_' and '-'"
            )
        if name in self.topics:
            raise TopicExistsError(f"topic {name!r} already exists")
        if partitions < 1:
            raise InvalidConfigError(f"a topic needs at least one partition, not {partitions}")
        overrides = parse_topic_configs(configs or {})
        check_combined(LogConfig.build(self.defaults, overrides))
        topic = Topic(name, topic_id or uuid.uuid4(), partitions, overrides)
        if validate_only:
            return topic
        self.topics[name] = topic
        self._save_topics()
        for partition in range(partitions):
            self._open_log(topic, partition, clean=True)
        return topic

    def delete_topic(self, name: str) -> Topic:
        topic = self.topic(name)
        del self.topics[name]
        try:
            self._save_topics()  # the commit point: from here on the topic is gone
        except BaseException:  # not written (a full disk): the topic stays, as the file says
            self.topics[name] = topic
            raise
        for partition in range(topic.partitions):
            partition_log = self.logs.pop((name, partition))
            partition_log.close()
            self._remove_partition_dir(topic, partition)
            self.records_start.pop((name, partition), None)
        self.write_checkpoint()
        return topic

    def _remove_partition_dir(self, topic: Topic, partition: int) -> None:
        """Kafka's way: rename to `<topic>-<partition>.<id>-delete` (the topic cut short to
        fit one file name), so a crash midway leaves a folder the next start removes, then
        remove it. The topic is already deleted: a disk that refuses is logged, not raised."""
        directory = self.partition_dir(topic.name, partition)
        doomed = os.path.join(self.data_dir, fit_name(topic.name, f"-{partition}.{topic.topic_id.hex}-delete"))
        try:
            os.replace(directory, doomed)
        except OSError as exc:
            log.warning("%s-%d: could not rename %s for deletion (%s); removing it in place",
                        topic.name, partition, directory, exc)
            doomed = directory
        shutil.rmtree(doomed, ignore_errors=True)

    def alter_topic_configs(self, name: str, set_configs: Mapping[str, Any], delete: tuple[str, ...] = ()) -> Topic:
        topic = self.topic(name)
        for config_name in delete:
            if config_name not in TOPIC_CONFIGS:
                raise InvalidConfigError(f"unknown topic config {config_name!r}")
        overrides = {k: v for k, v in topic.overrides.items() if k not in delete}
        overrides.update(parse_topic_configs(set_configs))
        check_combined(LogConfig.build(self.defaults, overrides))
        topic.overrides = overrides
        self._save_topics()
        config = self.config_for(topic)
        for partition in range(topic.partitions):
            self.logs[(name, partition)].config = config
        return topic

    def add_partitions(self, name: str, total: int) -> Topic:
        topic = self.topic(name)
        if total <= topic.partitions:
            raise InvalidConfigError(f"topic {name!r} has {topic.partitions} partitions; the new count must be larger")
        old = topic.partitions
        topic.partitions = total
        self._save_topics()
        for partition in range(old, total):
            self._open_log(topic, partition, clean=True)
        return topic

    def topic(self, name: str) -> Topic:
        try:
            return self.topics[name]
        except KeyError:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}") from None

    def log(self, topic: str, partition: int) -> PartitionLog:
        try:
            return self.logs[(topic, partition)]
        except KeyError:
            raise UnknownTopicOrPartitionError(f"unknown topic or partition {topic}-{partition}") from None

    # -- background duties -------------------------------------------------------------

    async def flush_due(self, now_ms: int | None = None) -> None:
        """Flush logs whose flush.ms has passed with data unflushed. An offline log is not
        tried again; a flush the disk refuses fails its own waiters and is tried at the next
        check, without stopping the flushes of the others."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        due = [
            plog for plog in list(self.logs.values())
            if plog.storage_error is None and plog.recovery_point < plog.log_end_offset
            and now - plog.last_flush_ms >= plog.config.flush_ms
        ]
        results = await asyncio.gather(*(plog.flush_async() for plog in due), return_exceptions=True)
        for failed in results:
            if isinstance(failed, BaseException) and not isinstance(failed, LogStorageError):
                raise failed

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete expired segments of the logs tiering does not own. Returns segments deleted."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        deleted = 0
        for plog in list(self.logs.values()):
            if not plog.config.delete or plog.cleaning or self._delegated(plog):  # compacted only, cleaning
                continue
            deleted += self.delete_segments_below_records_start(plog)
            count = expired_segment_count(
                plog.segments, retention_ms=plog.config.retention_ms,
                retention_bytes=plog.config.retention_bytes, now_ms=now,
            )
            if count:
                deleted += len(plog.delete_oldest_segments(count))
        return deleted

    def _delegated(self, plog: PartitionLog) -> bool:
        """Whether tiering owns the log's retention, and so its compaction (in the bucket)."""
        return self.retention_delegate is not None and self.retention_delegate(plog)

    async def clean_once(self, now_ms: int | None = None) -> CleanResult | None:
        """Clean the compacted log with the largest dirty share, if any is due (Kafka's
        filthiest log), in a worker thread; None when none is."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        compacted = [(plog, plog.last_stable_offset) for plog in list(self.logs.values())
                     if plog.config.compact and not self._delegated(plog)]
        if not compacted:
            return None
        due = await asyncio.to_thread(self._filthiest, compacted, now)
        if due is None or due.closed:
            return None
        replace = replace_on_loop(asyncio.get_running_loop(), due.replace_segments)
        due.cleaning = True
        try:
            result = await asyncio.to_thread(self.cleaner.clean, due, now, producers=due.producers.last_records(),
                                             last_stable_offset=due.last_stable_offset, replace=replace)
        finally:
            due.cleaning = False
        if result is not None:
            await asyncio.to_thread(self.write_cleaner_checkpoint)
        return result

    def _filthiest(self, logs: list[tuple[PartitionLog, int]], now_ms: int) -> PartitionLog | None:
        found = [(r.dirty_ratio, plog) for plog, lso in logs if (r := self.cleaner.due(plog, now_ms, lso)) is not None]
        return max(found, key=lambda f: f[0])[1] if found else None

    async def run_cleaner(self) -> None:
        """The log cleaner's background task (log.cleaner.threads=1): clean what is due,
        then wait log.cleaner.backoff.ms when nothing is. Cancel to stop."""
        while True:
            try:
                result = await self.clean_once()
            except CleaningAbortedError:
                return
            except (OSError, LogError):
                log.exception("log cleaning failed; trying again after log.cleaner.backoff.ms")
                result = None
            if result is None:
                await asyncio.sleep(self.cleaner.config.backoff_ms / 1000)

    async def run(self, *, flush_check_ms: int = 100, retention_check_ms: int = 300_000,
                  checkpoint_ms: int = 60_000, producer_expiration_check_ms: int = 600_000) -> None:
        """Background loop: flush policy, retention, producer expiry, recovery checkpoints,
        and the log cleaner's task beside it. Cancel to stop."""
        cleaner = asyncio.create_task(self.run_cleaner()) if self.cleaner.config.enable else None
        try:
            await self._run(flush_check_ms, retention_check_ms, checkpoint_ms, producer_expiration_check_ms)
        finally:
            if cleaner is not None:
                cleaner.cancel()

    async def _run(self, flush_check_ms: int, retention_check_ms: int, checkpoint_ms: int,
                   producer_expiration_check_ms: int) -> None:
        last_retention = last_checkpoint = last_expiry = time.monotonic()
        while True:
            await asyncio.sleep(flush_check_ms / 1000)
            await self.flush_due()
            now = time.monotonic()
            if (now - last_retention) * 1000 >= retention_check_ms:
                self.apply_retention()
                last_retention = now
            if (now - last_expiry) * 1000 >= producer_expiration_check_ms:
                wall_ms = int(time.time() * 1000)
                for plog in list(self.logs.values()):
                    plog.expire_producers(wall_ms, self.producer_expiration_ms)
                last_expiry = now
            if (now - last_checkpoint) * 1000 >= checkpoint_ms:
                await asyncio.to_thread(self.write_checkpoint)
                last_checkpoint = now
