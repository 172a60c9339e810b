"""The transaction coordinator in-process: what a restart finishes and what it aborts."""

from __future__ import annotations

import asyncio
import time

from broker.groups.coordinator import GroupCoordinator
from broker.groups.offset_store import TopicPartition
from broker.settings import BrokerSettings
from broker.txn.coordinator import TransactionCoordinator
from broker.txn.state_log import TxnMetadata, TxnState
from fetch.reader import Reader
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch


def test_restart_finishes_prepared_transactions_and_aborts_open_ones_only_after_a_crash(tmp_path) -> None:
    async def scenario() -> None:
        settings = BrokerSettings.parse({"transaction.state.log.num.partitions": "1",
                                         "offsets.topic.num.partitions": "1"})
        logs = LogManager(str(tmp_path))
        logs.open()
        logs.create_topic("t", 1, {})
        reader = Reader(logs)
        groups = GroupCoordinator(logs, reader, settings)

        def coordinator() -> TransactionCoordinator:
            return TransactionCoordinator(logs, reader, groups.offsets, settings)

        plog = logs.log("t", 0)
        for producer_id, value in ((7, b"to commit"), (8, b"to abort"), (9, b"open")):
            plog.append(build_batch([Record(None, value)], producer_id=producer_id, producer_epoch=0, base_sequence=0,
                                    transactional=True))
        now = int(time.time() * 1000)
        for name, producer_id, state in (("commit-me", 7, TxnState.PREPARE_COMMIT),
                                         ("abort-me", 8, TxnState.PREPARE_ABORT), ("open", 9, TxnState.ONGOING)):
            await coordinator().store.write(TxnMetadata(name, producer_id, 0, 60_000, state, {TopicPartition("t", 0)}, now, now))
        assert plog.last_stable_offset == 0

        clean = coordinator()
        await clean.load(unclean=False)
        assert plog.last_stable_offset == 2  # the open transaction still holds it
        assert [t.producer_id for t in plog.aborted_transactions(0, 10)] == [8]
        assert {n: m.state for n, m in clean.txns.items()} == {
            "commit-me": TxnState.COMPLETE_COMMIT, "abort-me": TxnState.COMPLETE_ABORT, "open": TxnState.ONGOING}

        crashed = coordinator()
        await crashed.load(unclean=True)
        assert plog.last_stable_offset == plog.high_watermark == 6  # 3 batches, 3 markers
        assert [t.producer_id for t in plog.aborted_transactions(0, 10)] == [8, 9]
        assert (crashed.txns["open"].state, crashed.txns["open"].producer_epoch) == (TxnState.COMPLETE_ABORT, 1)
        logs.close()

    asyncio.run(scenario())
