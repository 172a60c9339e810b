"""Fetch sessions (KIP-227): a consumer of many partitions names them once; its later
fetches send only the partitions whose fetch position changed (and those it drops), and
the broker answers only partitions with something new: records, an error, or a moved
high watermark, last stable offset or log start.

A session is this broker's (any connection may use it), numbered by a random id, and
checked by its epoch, which each incremental fetch moves on by one. The cache holds at
most `SLOTS` sessions, Kafka's `max.incremental.fetch.session.cache.slots`, holding at most
`MAX_PARTITIONS` partitions between them; past either, the least recently used go. A client whose session is gone gets
FETCH_SESSION_ID_NOT_FOUND and starts a new one with a full fetch."""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import Gauge

FINAL_EPOCH = -1  # a full fetch, closing the session it names
INITIAL_EPOCH = 0  # a full fetch, asking for a new session
SLOTS = 1000
MAX_PARTITIONS = 200_000  # across all sessions: some 30 MB of session state at most
_EPOCH_MAX = 2**31 - 1

SESSIONS = Gauge("tierlog_kafka_fetch_sessions", "Fetch sessions (KIP-227) the broker holds")


@dataclass
class SessionPartition:
    fetch_offset: int
    max_bytes: int
    # What the last response to the session told of it (-2: never told).
    high_watermark: int = -2
    last_stable_offset: int = -2
    log_start_offset: int = -2


@dataclass
class FetchSession:
    session_id: int
    epoch: int = 1  # the next incremental fetch's
    partitions: OrderedDict[tuple[str, int], SessionPartition] = field(default_factory=OrderedDict)
    last_used: float = field(default_factory=time.monotonic)

    def update(self, wanted: Iterable[tuple[str, int, int, int]], forgotten: Iterable[tuple[str, int]]) -> int:
        """An incremental fetch's changes: (topic, partition, fetch offset, max bytes) to
        add or move on, and partitions to drop. Returns how many more partitions it holds."""
        before = len(self.partitions)
        for topic, partition, offset, max_bytes in wanted:
            known = self.partitions.get((topic, partition))
            if known is None:
                self.partitions[(topic, partition)] = SessionPartition(offset, max_bytes)
            else:
                known.fetch_offset, known.max_bytes = offset, max_bytes
        for key in forgotten:
            self.partitions.pop(key, None)
        return len(self.partitions) - before

    def advance(self) -> None:
        self.epoch = 1 if self.epoch == _EPOCH_MAX else self.epoch + 1
        self.last_used = time.monotonic()


class FetchSessionCache:
    def __init__(self, slots: int = SLOTS, max_partitions: int = MAX_PARTITIONS) -> None:
        self.slots = slots
        self.max_partitions = max_partitions
        self.sessions: OrderedDict[int, FetchSession] = OrderedDict()  # least recently used first
        self.partitions = 0  # held by all sessions

    def resized(self, session: FetchSession, change: int) -> None:
        """`session` holds `change` more partitions: the least recently used others go
        while all hold more than `max_partitions` (bounded memory, whatever clients ask)."""
        self.partitions += change
        for other in list(self.sessions.values()):
            if self.partitions <= self.max_partitions:
                break
            if other is not session:
                self.close(other.session_id)

    def new(self) -> FetchSession | None:
        """A new session, or None when the cache holds none (0 slots)."""
        if self.slots <= 0:
            return None
        while len(self.sessions) >= self.slots:
            self.close(next(iter(self.sessions)))
        session_id = 0
        while session_id == 0 or session_id in self.sessions:
            session_id = random.randint(1, _EPOCH_MAX)
        session = self.sessions[session_id] = FetchSession(session_id)
        SESSIONS.inc()
        return session

    def get(self, session_id: int) -> FetchSession | None:
        session = self.sessions.get(session_id)
        if session is not None:
            self.sessions.move_to_end(session_id)
        return session

    def close(self, session_id: int) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            self.partitions -= len(session.partitions)
            SESSIONS.dec()
