"""Offsets committed by the gRPC API's consumer groups.

Kept apart from the Kafka protocol's `__consumer_offsets`, in one small JSON file in the
data folder, rewritten atomically on each commit (concurrent commits share one write).
Entries remember the topic id, so a deleted and recreated topic starts with no offsets.
The interface (`commit`, `committed`) is all callers use, so the store can later move
onto the Kafka groups' topic without touching them."""

from __future__ import annotations

import asyncio
import json
import os
from typing import NamedTuple

from hotlog.manager import write_atomically

FILE_NAME = "grpc-committed-offsets.json"


class CommittedOffset(NamedTuple):
    offset: int
    metadata: str


class CommittedOffsetStore:
    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, FILE_NAME)
        # group -> topic -> {"topic_id": str, "partitions": {partition: [offset, metadata]}}
        self._groups: dict[str, dict[str, dict]] = {}
        self._changes = 0  # commits made in memory
        self._saved = 0  # commits on disk
        self._save_task: asyncio.Task[None] | None = None

    def load(self) -> "CommittedOffsetStore":
        try:
            with open(self.path) as f:
                self._groups = json.load(f)["groups"]
        except FileNotFoundError:
            self._groups = {}
        return self

    def committed(self, group: str, topic: str, topic_id: str) -> dict[int, CommittedOffset]:
        entry = self._groups.get(group, {}).get(topic)
        if entry is None or entry["topic_id"] != topic_id:
            return {}
        return {int(p): CommittedOffset(o, m) for p, (o, m) in entry["partitions"].items()}

    async def commit(self, group: str, topic: str, topic_id: str, offsets: dict[int, CommittedOffset]) -> None:
        """Record the offsets and return once they are on disk."""
        topics = self._groups.setdefault(group, {})
        entry = topics.get(topic)
        if entry is None or entry["topic_id"] != topic_id:
            entry = topics[topic] = {"topic_id": topic_id, "partitions": {}}
        for partition, committed in offsets.items():
            entry["partitions"][str(partition)] = [committed.offset, committed.metadata]
        self._changes += 1
        target = self._changes
        while self._saved < target:
            if self._save_task is None:
                self._save_task = asyncio.get_running_loop().create_task(self._save())
            await asyncio.shield(self._save_task)

    async def _save(self) -> None:
        try:
            changes = self._changes
            data = json.dumps({"version": 1, "groups": self._groups}, separators=(",", ":")).encode()
            await asyncio.to_thread(write_atomically, self.path, data)
            self._saved = changes
        finally:
            self._save_task = None
