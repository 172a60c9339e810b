"""The broker: the storage parts and broker services composed once, shared by every
protocol (the Kafka listener and the gRPC service call the same objects)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from fetch.chunk_cache import ChunkCache
from fetch.index_cache import RemoteIndexCache
from fetch.reader import Reader
from fetch.remote import RemoteReader
from hotlog.errors import InvalidConfigError, InvalidTopicError
from hotlog.manager import LogManager, Topic
from hotlog.open_files import OpenFiles
from tiering.manager import TieringManager
from tiering.store import ObjectStore

from .durability import Durability
from .errors import InvalidPartitionsError, InvalidRequestError, RefusedError
from .groups.coordinator import GroupCoordinator
from .internal_topics import is_internal, place
from .produce import WritePath
from .security.authorizer import Authorizer
from .security.documents import KeptDocument
from .security.users import UserStore
from .settings import BrokerSettings
from .txn.coordinator import TransactionCoordinator
from .wal.manager import WriteAheadLog

# A topic's partitions cost memory and folders (not descriptors: segment files are opened
# on demand, hotlog.open_files); one request must not make more than this.
MAX_PARTITIONS = 10_000
WAL_DRAIN_SECONDS = 5.0  # at a clean stop, for windows still open or uploading


class Broker:
    """Event loop only."""

    def __init__(self, data_dir: str, settings: BrokerSettings) -> None:
        self.settings = settings
        self.logs = LogManager(data_dir, settings.log_defaults,
                               producer_expiration_ms=settings.producer_id_expiration_ms,
                               open_files=OpenFiles(settings.log_segment_open_files_max),
                               cleaner=settings.log_cleaner)
        self.reader = Reader(self.logs)
        self.durability = Durability()  # fsyncs, and with an object store the WAL
        # Consumer groups and their committed offsets (in `__consumer_offsets`).
        self.groups = GroupCoordinator(self.logs, self.reader, settings, self.durability)
        # Producer ids and transactions (in `__transaction_state`).
        self.txns = TransactionCoordinator(self.logs, self.reader, self.groups.offsets, settings, self.durability)
        self.write = WritePath(self.logs, self.txns, self.durability)
        self.users = UserStore(data_dir)  # SASL's credentials, kept in the data folder and the bucket
        # Who may do what: the ACLs, kept in the data folder and the bucket.
        self.authorizer = Authorizer(settings.authorizer, KeptDocument(data_dir, "acls"))
        self._background: list[asyncio.Task[None]] = []
        self.tiering: TieringManager | None = None
        self.wal: WriteAheadLog | None = None

    def attach_tiering(self, tiering: TieringManager, store: ObjectStore) -> None:
        """Serve offsets below the local log start from the object store."""
        settings = self.settings
        if settings.remote_log_chunk_cache_bytes < settings.remote_log_chunk_bytes:
            raise InvalidConfigError("remote.log.chunk.cache.bytes must hold at least one chunk")
        cache = ChunkCache.for_store(
            # A folder of its own, even inside a given one: the cache empties it at start.
            os.path.join(settings.remote_log_chunk_cache_dir or self.logs.data_dir, "remote-chunk-cache"), store,
            chunk_bytes=settings.remote_log_chunk_bytes, max_bytes=settings.remote_log_chunk_cache_bytes,
            max_concurrent_gets=settings.remote_log_max_concurrent_gets,
        )
        indexes = RemoteIndexCache(store, max_bytes=settings.remote_log_index_cache_bytes)
        self.reader.tiering = tiering
        self.reader.remote = RemoteReader(cache, indexes, readahead_chunks=settings.remote_log_prefetch_chunks)
        self.tiering = tiering
        self.wal = self.durability.wal = WriteAheadLog(self.logs, store, tiering, settings)
        self.txns.producer_ids.keep_in(store, settings.node_id)
        self.users.document.keep_in(store)
        self.authorizer.document.keep_in(store)

    async def start(self) -> None:
        """Open the logs; with an object store, restore what the bucket holds past them
        (tiered segments, then the WAL); then read the internal topics back."""
        self.logs.open()
        place(self.logs)
        if self.tiering is not None:
            await self.tiering.open()  # restores the tiered topics this folder lacks
        if self.wal is not None:
            await self.wal.open()
            self._background.append(asyncio.create_task(self.wal.run()))
        await self.authorizer.load()
        await self.users.load()
        await self.groups.load()
        await self.txns.load(unclean=not self.logs.opened_clean)
        self._background.append(asyncio.create_task(self.txns.run()))
        self._background.append(
            asyncio.create_task(
                self.logs.run(
                    flush_check_ms=self.settings.log_flush_scheduler_interval_ms,
                    retention_check_ms=self.settings.log_retention_check_interval_ms,
                    producer_expiration_check_ms=self.settings.producer_id_expiration_check_interval_ms,
                )
            )
        )

    def create_topic(self, name: str, partitions: int, configs: Mapping[str, Any], *,
                     validate_only: bool = False, replication_factor: int = -1) -> Topic:
        """Create a topic for a client. The internal topics' names are the broker's own: it
        creates those itself, with their own configs (as Kafka refuses them too). A
        replication factor above 1 asks that no acknowledged write rest on one disk: it is
        taken for topics written through the bucket's WAL, which keeps them (the bucket is
        their replicas), and refused otherwise."""
        if is_internal(name):
            raise InvalidRequestError(f"creation of internal topic {name} is prohibited")
        check_partition_count(partitions)
        if replication_factor < -1 or replication_factor == 0:
            raise RefusedError(ErrorCode.invalid_replication_factor,
                               f"replication factor {replication_factor}: at least 1 (or -1, the default)")
        if replication_factor > 1 and not self.logs.config_of(configs).remote_wal_enable:
            raise RefusedError(ErrorCode.invalid_replication_factor,
                               f"replication factor {replication_factor} on one broker: only for topics written "
                               f"through the bucket's write-ahead log (remote.wal.enable=true), which keeps their "
                               f"acknowledged writes beyond this disk")
        return self.logs.create_topic(name, partitions, configs, validate_only=validate_only)

    async def delete_topic(self, name: str) -> Topic:
        """Delete a topic and its groups' committed offsets (a topic made again starts with
        none). Internal topics are the broker's own: refused."""
        if is_internal(name):
            raise InvalidTopicError(f"{name} is an internal topic")
        topic = self.logs.delete_topic(name)
        await self.groups.offsets.forget_topic(name)
        return topic

    def delete_records(self, topic: str, partition: int, before: int) -> int:
        """Kafka's DeleteRecords for one partition: the records below `before` (-1: the high
        watermark) go; returns the partition's first offset from now on (its low watermark).
        The internal topics are the broker's own: refused."""
        if is_internal(topic):
            raise InvalidTopicError(f"{topic} is an internal topic")
        self.logs.delete_records(topic, partition, before)
        return self.reader.log_start_offset(topic, partition)  # either tier's, retention's too

    async def stop(self) -> None:
        """Stop background work, flush, and write the clean-shutdown checkpoint."""
        if self.wal is not None:  # what acks=1 producers were told is written goes to the bucket too
            await self.wal.writer.drain(WAL_DRAIN_SECONDS)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.reader.remote is not None:
            await self.reader.remote.close()
        self.groups.close()
        self.users.close()
        self.logs.close()


def check_partition_count(count: int) -> None:
    """Raise InvalidPartitionsError unless a topic may have `count` partitions."""
    if not 1 <= count <= MAX_PARTITIONS:
        raise InvalidPartitionsError(f"{count} partitions: a topic has 1 to {MAX_PARTITIONS}")
