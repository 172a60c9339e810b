"""Fetch: whole batches through the fetch layer, spliced into the response as they lie
on disk (local ones as their FileSlice, which the connection sendfiles); long polling
(`fetch.max.wait.ms`) waits on the logs' append listeners.

Fetch sessions (KIP-227, fetch_sessions.py): a full fetch with epoch 0 starts one; the
incremental fetches after it name only what changed, and their responses hold only the
partitions with something new."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from broker.errors import HANDLED, kafka_code
from broker.metrics import BYTES_OUT, count_storage_error, labelled
from broker.security.acls import AclOperation
from broker.security.authorizer import Access
from hotlog.errors import LogError, OffsetOutOfRangeError
from hotlog.log import PartitionLog
from hotlog.segment import FileSlice

from .acls import access
from .codec import build, has_field, nested
from .context import NO_THROTTLE, Call, KafkaContext
from .fetch_sessions import FINAL_EPOCH, INITIAL_EPOCH, FetchSession

READ_COMMITTED = 1


@dataclass
class _PartitionRead:
    topic: str
    partition: int
    fetch_offset: int
    max_bytes: int
    code: ErrorCode = ErrorCode.none
    records: bytes | FileSlice = b""  # a FileSlice goes to the socket from the page cache
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    aborted: tuple[tuple[int, int], ...] | None = None


class _FetchPlan:
    def __init__(self, kafka: KafkaContext, request: Any, who: Access, session: FetchSession | None = None) -> None:
        """What a request reads: its partitions, or for an incremental fetch its session's
        (a session's partitions are checked again each fetch: ACLs may have changed)."""
        self.reader = kafka.broker.reader
        self.read_committed = getattr(request, "isolation_level", 0) == READ_COMMITTED
        # The broker's fetch.max.bytes bounds what a response holds, whatever a client asks
        # (KIP-74 may still pass it by the first partition's first batch).
        cap = kafka.broker.settings.fetch_max_bytes
        self.max_bytes = min(request.max_bytes, cap)
        self.min_bytes = request.min_bytes
        if session is None:
            self.partitions = [
                _PartitionRead(topic.topic, p.partition, p.fetch_offset, min(p.partition_max_bytes, cap))
                for topic in request.topics for p in topic.partitions
            ]
        else:
            self.partitions = [_PartitionRead(topic, partition, p.fetch_offset, min(p.max_bytes, cap))
                               for (topic, partition), p in session.partitions.items()]
        self.unreadable = who.refused_topics(AclOperation.READ, (p.topic for p in self.partitions))

    async def read_all(self) -> int:
        """Read every partition within the response's byte budget; returns bytes read. Only
        the first partition with data may pass it, by its first batch (KIP-74): the others
        get what fits in what is left, possibly nothing."""
        total = 0
        for part in self.partitions:
            budget = min(part.max_bytes, self.max_bytes - total)
            total += await self._read(part, budget if budget > 0 or total == 0 else 0, min_one=total == 0)
        return total

    async def _read(self, part: _PartitionRead, max_bytes: int, *, min_one: bool) -> int:
        part.code, part.records = ErrorCode.none, b""
        if part.topic in self.unreadable:
            part.code = ErrorCode.topic_authorization_failed
            return 0
        reader = self.reader
        try:
            if max_bytes <= 0:  # budget spent: offsets only, the client asks again
                part.high_watermark = reader.high_watermark(part.topic, part.partition)
                part.log_start_offset = reader.log_start_offset(part.topic, part.partition)
                part.last_stable_offset = reader.last_stable_offset(part.topic, part.partition)
                return 0
            found = await reader.read(part.topic, part.partition, part.fetch_offset, max_bytes,
                                      read_committed=self.read_committed, min_one=min_one, in_file=True)
        except OffsetOutOfRangeError as exc:
            part.code = ErrorCode.offset_out_of_range
            part.high_watermark, part.log_start_offset = exc.log_end_offset, exc.log_start_offset
            part.last_stable_offset = exc.log_end_offset
            return 0
        except HANDLED as exc:  # a disk or a bucket that failed is retriable: this partition only
            count_storage_error("kafka", "Fetch", exc)
            part.code = kafka_code(exc)
            return 0
        part.records = found.records if found.file is None else found.file
        part.high_watermark = found.high_watermark
        part.last_stable_offset = found.last_stable_offset
        part.log_start_offset = found.log_start_offset
        if self.read_committed:
            # Once per transaction: clients skip a producer's batches from each entry's first
            # offset until an ABORT marker, so a repeated entry would hide later committed data.
            part.aborted = tuple(dict.fromkeys((t.producer_id, t.first_offset) for t in found.aborted))
        return found.size

    def satisfied(self, total: int) -> bool:
        return total >= self.min_bytes or any(p.code for p in self.partitions)


async def _long_poll(kafka: KafkaContext, plan: _FetchPlan, deadline: float) -> None:
    """Wait until appends bring `min_bytes` or the deadline passes; no polling loop: the
    logs call back on every append."""
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake(_: PartitionLog) -> None:
        woken.set()

    watched: list[tuple[PartitionLog, int]] = []
    for part in plan.partitions:
        try:
            plog = kafka.broker.logs.log(part.topic, part.partition)
        except LogError:
            continue
        plog.add_listener(wake)
        watched.append((plog, part.high_watermark))
    try:
        while True:
            # An append while the last read was in flight has already happened: no wait.
            if not any(plog.log_end_offset != seen for plog, seen in watched):
                try:
                    await asyncio.wait_for(woken.wait(), deadline - loop.time())
                except TimeoutError:
                    return
            woken.clear()
            total = await plan.read_all()
            if plan.satisfied(total) or loop.time() >= deadline:
                return
            watched = [(plog, plog.log_end_offset) for plog, _ in watched]
    finally:
        for plog, _ in watched:
            plog.remove_listener(wake)


async def handle_fetch(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    session_id = getattr(request, "session_id", 0)
    epoch = getattr(request, "session_epoch", FINAL_EPOCH)
    sessions = kafka.fetch_sessions
    session, incremental = None, False
    if epoch in (FINAL_EPOCH, INITIAL_EPOCH):  # a full fetch: a named session ends
        sessions.close(session_id)
        if epoch == INITIAL_EPOCH and has_field(response, "session_id"):
            session = sessions.new()
            if session is not None:
                sessions.resized(session, session.update(_wanted(request), ()))
    else:
        session = sessions.get(session_id)
        if session is None or session.epoch != epoch:
            code = ErrorCode.fetch_session_id_not_found if session is None else ErrorCode.invalid_fetch_session_epoch
            return build(response, throttle_time=NO_THROTTLE, error_code=code, session_id=0, responses=())
        forgotten = ((t.topic, p) for t in request.forgotten_topics_data for p in t.partitions)
        sessions.resized(session, session.update(_wanted(request), forgotten))
        session.advance()
        incremental = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.max_wait.total_seconds()
    plan = _FetchPlan(kafka, request, access(kafka, call), session if incremental else None)
    total = await plan.read_all()
    if not plan.satisfied(total) and loop.time() < deadline:
        await _long_poll(kafka, plan, deadline)
    parts = plan.partitions if session is None else _told(session, plan.partitions, incremental)
    topic_entity = nested(response, "responses")
    partition_entity = nested(topic_entity, "partitions")
    aborted_entity = nested(partition_entity, "aborted_transactions")
    by_topic: dict[str, list[Any]] = {}
    sent = 0
    for part in parts:
        sent += len(part.records)
        aborted = None if part.aborted is None else tuple(
            build(aborted_entity, producer_id=pid, first_offset=first) for pid, first in part.aborted
        )
        by_topic.setdefault(part.topic, []).append(build(
            partition_entity, partition_index=part.partition, error_code=part.code,
            high_watermark=part.high_watermark, last_stable_offset=part.last_stable_offset,
            log_start_offset=part.log_start_offset, aborted_transactions=aborted,
            preferred_read_replica=-1, records=part.records,
        ))
    labelled(BYTES_OUT, "kafka").inc(sent)  # what the response carries, not reads a long poll redid
    return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                 session_id=0 if session is None else session.session_id,
                 responses=tuple(build(topic_entity, topic=t, partitions=tuple(ps)) for t, ps in by_topic.items()))


def _wanted(request: Any) -> list[tuple[str, int, int, int]]:
    return [(t.topic, p.partition, p.fetch_offset, p.partition_max_bytes) for t in request.topics
            for p in t.partitions]


def _told(session: FetchSession, parts: list[_PartitionRead], incremental: bool) -> list[_PartitionRead]:
    """The partitions a response to the session holds: all of a full fetch's, an
    incremental one's with records, an error or offsets the session was not told yet. Those
    with records move to the end of the session's order, so that a fetch's byte budget
    does not keep serving the same partitions first (as Kafka rotates them)."""
    told = []
    for part in parts:
        key = (part.topic, part.partition)
        known = session.partitions.get(key)
        if known is None:
            continue
        changed = (part.records or part.code != ErrorCode.none or known.high_watermark != part.high_watermark
                   or known.last_stable_offset != part.last_stable_offset
                   or known.log_start_offset != part.log_start_offset)
        if changed or not incremental:
            told.append(part)
            known.high_watermark, known.last_stable_offset = part.high_watermark, part.last_stable_offset
            known.log_start_offset = part.log_start_offset
        if part.records:
            session.partitions.move_to_end(key)
    return told
