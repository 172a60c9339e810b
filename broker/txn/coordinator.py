"""The transaction coordinator: Kafka's transaction protocol on one broker.

A transactional id moves Empty -> Ongoing (AddPartitionsToTxn / AddOffsetsToTxn) ->
PrepareCommit or PrepareAbort (EndTxn; durable before any marker) -> CompleteCommit or
CompleteAbort (a COMMIT or ABORT control batch in every partition of the transaction,
fsynced). Every state change is a record in `__transaction_state`, fsynced before the
client hears of it, so a restart finishes what a crash interrupted: Prepare* states get
their markers, and after an unclean stop Ongoing transactions are aborted. A new
producer with the same transactional id, and a transaction that outlives its timeout,
bump the epoch and abort: the old producer is fenced in every partition it touched.
Requests of one transactional id run one at a time (a lock per id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from kio.schema.errors import ErrorCode

from fetch.reader import Reader
from hotlog.errors import LogError
from hotlog.manager import LogManager

from ..durability import Durability
from ..groups.offset_store import TopicPartition
from ..groups.offsets import GroupOffsets
from ..internal_topics import OFFSETS_TOPIC
from ..settings import BrokerSettings
from .producer_ids import ProducerIdAllocator
from .state_log import TxnMetadata, TxnState, TxnStateStore

log = logging.getLogger(__name__)

MAX_EPOCH = 32767
_PREPARED = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)


class TransactionCoordinator:
    """Event loop only."""

    def __init__(self, logs: LogManager, reader: Reader, offsets: GroupOffsets, settings: BrokerSettings,
                 durability: Durability | None = None) -> None:
        self.logs = logs
        self.durability = durability or Durability()
        self.offsets = offsets  # TxnOffsetCommit offsets reach their groups at the COMMIT marker
        self.settings = settings
        self.store = TxnStateStore(logs, reader, settings.transaction_state_log_num_partitions, self.durability,
                                   segment_bytes=settings.transaction_state_log_segment_bytes)
        self.producer_ids = ProducerIdAllocator(logs.data_dir, self._above_known_producer_ids)
        self.txns: dict[str, TxnMetadata] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Transactional id -> the epoch of the session whose own InitProducerId made the last
        # bump: only that session's retry may get the bump's answer again (KIP-360). In memory:
        # after a restart such a retry is fenced and the producer starts over.
        self._bumped_from: dict[str, int] = {}

    def _above_known_producer_ids(self) -> int:
        known = [pid for plog in self.logs.logs.values() for pid in plog.producers.producers]
        known += [meta.producer_id for meta in self.txns.values()]
        return max(known, default=-1) + 1

    def _lock(self, transactional_id: str) -> asyncio.Lock:
        return self._locks.setdefault(transactional_id, asyncio.Lock())

    # -- start-up and background ---------------------------------------------------------

    async def load(self, *, unclean: bool) -> None:
        """Read the state back and finish what a stop interrupted."""
        self.txns = dict(await self.store.load())
        for meta in list(self.txns.values()):
            if meta.state in _PREPARED:
                log.info("transactional id %s: finishing its %s after a restart", meta.transactional_id,
                         meta.state.name)
                await self._complete(meta)
            elif meta.state is TxnState.ONGOING and unclean:
                await self._fence_and_abort(meta, "the broker stopped uncleanly")
        if self.txns:
            log.info("loaded the state of %d transactional ids", len(self.txns))

    async def run(self) -> None:
        """Abort transactions older than their timeout, and finish prepared ones whose
        markers failed (a disk error). Cancel to stop."""
        interval = self.settings.transaction_abort_timed_out_transaction_cleanup_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tidy(int(time.time() * 1000))
            except LogError as exc:  # the disk refused: try again next round
                log.error("ending transactions failed: %s", exc)

    async def tidy(self, now_ms: int) -> None:
        for transactional_id in [m.transactional_id for m in self.txns.values() if self._due(m, now_ms)]:
            async with self._lock(transactional_id):
                meta = self.txns[transactional_id]
                if meta.state in _PREPARED:
                    await self._complete(meta)
                elif self._due(meta, now_ms):
                    await self._fence_and_abort(meta, f"it outlived transaction.timeout.ms={meta.timeout_ms}")

    @staticmethod
    def _due(meta: TxnMetadata, now_ms: int) -> bool:
        timed_out = meta.state is TxnState.ONGOING and now_ms - meta.start_ms > meta.timeout_ms
        return timed_out or meta.state in _PREPARED

    # -- state changes -------------------------------------------------------------------

    async def _transition(self, meta: TxnMetadata, **changes: Any) -> TxnMetadata:
        """The new state, durable in `__transaction_state` before it is in memory."""
        changed = replace(meta, partitions=set(changes.pop("partitions", meta.partitions)),
                          last_update_ms=int(time.time() * 1000), **changes)
        await self.store.write(changed)
        self.txns[changed.transactional_id] = changed
        return changed

    async def _complete(self, meta: TxnMetadata) -> TxnMetadata:
        """Markers into every partition of a prepared transaction, then Complete*."""
        commit = meta.state is TxnState.PREPARE_COMMIT
        await self._write_markers(meta.producer_id, meta.producer_epoch, meta.partitions, commit)
        return await self._transition(
            meta, state=TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT, partitions=(), start_ms=-1
        )

    async def _write_markers(self, producer_id: int, producer_epoch: int, partitions: Iterable[TopicPartition],
                             commit: bool) -> None:
        durable = []
        for topic, partition in sorted(partitions):
            if not self._exists(TopicPartition(topic, partition)):  # deleted (or made again, smaller) since
                continue
            plog = self.logs.log(topic, partition)
            info = plog.append_marker(producer_id, producer_epoch, commit=commit, coordinator_epoch=0)
            self.durability.appended(plog, info)  # the log built the marker: read back for the WAL
            durable.append(self.durability.wait(plog, info.last_offset + 1))
            if topic == OFFSETS_TOPIC:
                self.offsets.end_txn(producer_id, commit)
        await asyncio.gather(*durable)

    async def _fence_and_abort(self, meta: TxnMetadata, reason: str) -> TxnMetadata:
        """Abort with a bumped epoch: the markers fence the old epoch in every partition."""
        log.info("transactional id %s: aborting producer %d epoch %d: %s", meta.transactional_id,
                 meta.producer_id, meta.producer_epoch, reason)
        self._bumped_from.pop(meta.transactional_id, None)
        prepared = await self._transition(meta, state=TxnState.PREPARE_ABORT,
                                          producer_epoch=min(meta.producer_epoch + 1, MAX_EPOCH))
        return await self._complete(prepared)

    # -- requests ------------------------------------------------------------------------

    async def init_producer_id(self, transactional_id: str | None, timeout_ms: int, producer_id: int,
                               producer_epoch: int) -> tuple[ErrorCode, int, int]:
        """(error, producer id, epoch) for a new producer session."""
        if transactional_id is None:  # idempotent only: a fresh id every time, as Kafka does
            return ErrorCode.none, await self.producer_ids.allocate(), 0
        if not transactional_id:
            return ErrorCode.invalid_request, -1, -1
        if not 0 < timeout_ms <= self.settings.transaction_max_timeout_ms:
            return ErrorCode.invalid_transaction_timeout, -1, -1
        async with self._lock(transactional_id):
            meta = self.txns.get(transactional_id)
            if meta is None:
                meta = TxnMetadata(transactional_id, await self.producer_ids.allocate(), 0, timeout_ms)
                meta = await self._transition(meta)
                return ErrorCode.none, meta.producer_id, meta.producer_epoch
            if producer_id >= 0 and (producer_id, producer_epoch) != (meta.producer_id, meta.producer_epoch):
                if meta.state is TxnState.EMPTY and producer_id == meta.producer_id and \
                        self._bumped_from.get(transactional_id) == producer_epoch:
                    return ErrorCode.none, meta.producer_id, meta.producer_epoch  # a retry whose answer was lost
                return ErrorCode.producer_fenced, -1, -1  # KIP-360: only the current session may bump
            if meta.state in _PREPARED:
                meta = await self._complete(meta)
            elif meta.state is TxnState.ONGOING:
                meta = await self._fence_and_abort(meta, "a new producer took over its transactional.id")
            if meta.producer_epoch + 1 >= MAX_EPOCH:  # epochs exhausted: a new producer id
                meta = replace(meta, producer_id=await self.producer_ids.allocate(), producer_epoch=-1)
            bumped_from = producer_epoch if producer_id == meta.producer_id else None
            meta = await self._transition(meta, producer_epoch=meta.producer_epoch + 1, timeout_ms=timeout_ms,
                                          state=TxnState.EMPTY, partitions=(), start_ms=-1)
            if bumped_from is None:  # a new producer: the session it replaced is fenced, retry or not
                self._bumped_from.pop(transactional_id, None)
            else:
                self._bumped_from[transactional_id] = bumped_from
            return ErrorCode.none, meta.producer_id, meta.producer_epoch

    def check(self, transactional_id: str, producer_id: int, producer_epoch: int) -> ErrorCode:
        """Whether this producer session owns the transactional id."""
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        if meta.producer_epoch != producer_epoch:
            return ErrorCode.producer_fenced
        return ErrorCode.none

    def check_in_transaction(self, transactional_id: str, producer_id: int, producer_epoch: int,
                             partition: TopicPartition) -> ErrorCode:
        """Whether a transactional write to `partition` belongs to the id's open transaction
        (a fenced or stray write would otherwise hold the partition's last stable offset)."""
        error = self.check(transactional_id, producer_id, producer_epoch)
        if error:
            return error
        meta = self.txns[transactional_id]
        if meta.state is not TxnState.ONGOING or partition not in meta.partitions:
            return ErrorCode.invalid_txn_state
        return ErrorCode.none

    async def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                             partitions: list[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        if transactional_id not in self.txns:  # no lock kept for ids nobody initialised
            return dict.fromkeys(partitions, ErrorCode.invalid_producer_id_mapping)
        async with self._lock(transactional_id):
            error = self.check(transactional_id, producer_id, producer_epoch)
            meta = self.txns.get(transactional_id)
            if not error and meta is not None and meta.state in _PREPARED:
                error = ErrorCode.concurrent_transactions
            if error:
                return dict.fromkeys(partitions, error)
            assert meta is not None
            unknown = {tp for tp in partitions if not self._exists(tp)}
            if unknown:
                return {tp: ErrorCode.unknown_topic_or_partition if tp in unknown else ErrorCode.operation_not_attempted
                        for tp in partitions}
            if meta.state is not TxnState.ONGOING:
                await self._transition(meta, state=TxnState.ONGOING, partitions=partitions,
                                       start_ms=int(time.time() * 1000))
            elif not meta.partitions.issuperset(partitions):
                await self._transition(meta, partitions=meta.partitions | set(partitions))
            return dict.fromkeys(partitions, ErrorCode.none)

    def _exists(self, tp: TopicPartition) -> bool:
        topic = self.logs.topics.get(tp.topic)
        return topic is not None and 0 <= tp.partition < topic.partitions

    async def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          group_id: str) -> ErrorCode:
        tp = TopicPartition(OFFSETS_TOPIC, self.offsets.store.partition_for(group_id))
        return (await self.add_partitions(transactional_id, producer_id, producer_epoch, [tp]))[tp]

    async def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool) -> ErrorCode:
        if transactional_id not in self.txns:
            return ErrorCode.invalid_producer_id_mapping
        async with self._lock(transactional_id):
            error = self.check(transactional_id, producer_id, producer_epoch)
            if error:
                return error
            meta = self.txns[transactional_id]
            if meta.state in _PREPARED:  # a marker write failed earlier: finish it first
                meta = await self._complete(meta)
            if meta.state is TxnState.ONGOING:
                prepared = await self._transition(
                    meta, state=TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
                )
                await self._complete(prepared)
                return ErrorCode.none
            if meta.state is (TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT):
                return ErrorCode.none  # a retry of the EndTxn that ended it
            return ErrorCode.invalid_txn_state
