"""Where each partition's data lives: offsets and bytes per tier, and what waits for upload.

The local side comes from the log manager, the remote side from a `RemoteTierView` (the
tiering manager); without one it reads as empty."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from broker.internal_topics import is_internal
from hotlog.manager import LogManager
from tiering.partition_state import RemoteStatus


class RemoteTierView(Protocol):
    def remote_status(self, topic: str, partition: int) -> RemoteStatus: ...


class PartitionTierStatus(NamedTuple):
    topic: str
    partition: int
    local_log_start_offset: int
    log_end_offset: int
    local_bytes: int
    remote: RemoteStatus


NO_REMOTE = RemoteStatus()


def tier_status(logs: LogManager, remote: RemoteTierView | None, topic: str | None = None, *,
                include_internal: bool = False) -> list[PartitionTierStatus]:
    """Every partition of `topic` (default: of every topic, the broker's own only if asked),
    in topic and partition order. An unknown topic raises UnknownTopicOrPartitionError."""
    names = [topic] if topic else [n for n in sorted(logs.topics) if include_internal or not is_internal(n)]
    topics = [logs.topic(name) for name in names]
    rows = []
    for t in topics:
        for partition in range(t.partitions):
            plog = logs.log(t.name, partition)
            rows.append(PartitionTierStatus(
                t.name, partition, plog.log_start_offset, plog.log_end_offset, plog.size_bytes,
                remote.remote_status(t.name, partition) if remote is not None else NO_REMOTE,
            ))
    return rows
