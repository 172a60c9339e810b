"""What admin tools ask a broker to describe, as named values any protocol can answer
with: its log folder and the partitions in it, a partition's active producers, and the
transactions its coordinator holds (Kafka's DescribeLogDirs, DescribeProducers,
ListTransactions and DescribeTransactions)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from hotlog.manager import LogManager

from .txn.state_log import TxnMetadata, TxnState

# Kafka's names of the transaction states, as ListTransactions filters and reports them.
TXN_STATE_NAMES = {
    TxnState.EMPTY: "Empty", TxnState.ONGOING: "Ongoing", TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort", TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort",
}
# Kafka's other states, which a filter may name though no transaction here is ever in them.
_OTHER_STATE_NAMES = frozenset({"Dead", "PrepareEpochFence"})


class PartitionSize(NamedTuple):
    topic: str
    partition: int
    size_bytes: int  # of its segments on local disk (the bucket's are not in the folder)


class LogDir(NamedTuple):
    path: str
    total_bytes: int
    usable_bytes: int
    partitions: list[PartitionSize]


class ActiveProducer(NamedTuple):
    producer_id: int
    epoch: int
    last_sequence: int
    last_timestamp: int
    coordinator_epoch: int
    txn_start_offset: int  # -1 (hotlog's NO_TXN): no open transaction


class TxnListing(NamedTuple):
    transactions: list[TxnMetadata]
    unknown_state_filters: list[str]


def log_dir(logs: LogManager, wanted: Mapping[str, Iterable[int]] | None) -> LogDir:
    """The data folder and the sizes of `wanted`'s partitions (all when None); partitions
    this broker does not hold are left out, as Kafka leaves out those on other brokers."""
    found = []
    for (topic, partition), plog in sorted(logs.logs.items()):
        if wanted is None or partition in set(wanted.get(topic, ())):
            found.append(PartitionSize(topic, partition, plog.size_bytes))
    stats = os.statvfs(logs.data_dir)
    return LogDir(logs.data_dir, stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize, found)


def active_producers(logs: LogManager, topic: str, partition: int) -> list[ActiveProducer]:
    """The producers whose state the partition keeps (LogError for a partition not here)."""
    plog = logs.log(topic, partition)
    return [ActiveProducer(p.producer_id, p.epoch, p.last_seq, p.last_timestamp, p.coordinator_epoch,
                           p.txn_first_offset)
            for p in sorted(plog.producers.producers.values(), key=lambda p: p.producer_id)]


def list_transactions(txns: Mapping[str, TxnMetadata], state_filters: Iterable[str], producer_ids: Iterable[int],
                      longer_than_ms: int, now_ms: int) -> TxnListing:
    """Transactions in any of the states named (all when none is), of any of the producer
    ids (all when none is), running longer than `longer_than_ms` (-1: any)."""
    names = set(state_filters)
    known = set(TXN_STATE_NAMES.values()) | _OTHER_STATE_NAMES
    pids = set(producer_ids)
    picked = [
        meta for meta in txns.values()
        if (not names or TXN_STATE_NAMES[meta.state] in names) and (not pids or meta.producer_id in pids)
        and (longer_than_ms < 0 or (meta.start_ms >= 0 and now_ms - meta.start_ms > longer_than_ms))
    ]
    return TxnListing(sorted(picked, key=lambda m: m.transactional_id), sorted(names - known))
