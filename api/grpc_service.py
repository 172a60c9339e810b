"""The gRPC service (`tierlog.v1.Tierlog`): requests in, broker calls, responses out.

Errors are typed; broker/errors.py maps each to its gRPC status code (and its Kafka code). Readers at the end
of a log wait on append listeners (no polling). gRPC readers see committed records only:
reads stop at the last stable offset and skip aborted transactions and control batches."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

import grpc
from kio.schema.errors import ErrorCode

from broker.errors import (
    HANDLED,
    InvalidRequestError,
    PartitionOffsetOutOfRangeError,
    RefusedError,
    ShuttingDownError,
    grpc_status_name,
)
from broker.groups.offset_store import TopicPartition
from broker.groups.offsets import OffsetCommit
from broker.internal_topics import is_internal
from broker.metrics import BYTES_OUT, count_storage_error
from broker.node import Broker
from broker.produce import Appended
from broker.security.acls import AclOperation, ResourceType
from broker.security.authorizer import Access, AuthorizationError, enforce
from broker.security.documents import DocumentError
from broker.security.scram import type_of
from broker.security.users import Deletion, Upsertion, UserCredentials
from hotlog.config import TOPIC_CONFIGS
from hotlog.errors import OffsetOutOfRangeError, UnknownTopicOrPartitionError
from hotlog.log import PartitionLog
from hotlog.manager import Topic

from .grpc_identity import principal_of
from .metrics import REQUEST_SECONDS, REQUESTS
from .proto import tierlog_pb2 as pb
from .proto import tierlog_pb2_grpc as pb_grpc
from .records import build_batches, decode_read, from_proto, group_by_partition
from .tier_status import RemoteTierView, tier_status

DEFAULT_MAX_BYTES = 1024 * 1024
MAX_READ_BYTES = 8 * 1024 * 1024  # per response; a client's receive limit must allow more
# A waiting subscription wakes this often to notice that its topic was deleted (by the
# Kafka protocol; a gRPC delete wakes it at once).
TOPIC_CHECK_SECONDS = 2.0


def status_of(exc: Exception) -> grpc.StatusCode:
    """The status code of a typed error, from the broker's one error taxonomy."""
    return grpc.StatusCode[grpc_status_name(exc)]


Req = TypeVar("Req")
Resp = TypeVar("Resp")


@contextlib.asynccontextmanager
async def _served(api: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """Count and time a call; typed errors become status codes with their message."""
    started, code = time.perf_counter(), "UNKNOWN"
    try:
        yield
        code = "OK"
    except AuthorizationError as exc:  # the authorizer's: the message names the operation and resource
        code = "PERMISSION_DENIED"
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    except HANDLED as exc:
        count_storage_error("grpc", api, exc)
        status = status_of(exc)
        code = status.name
        await context.abort(status, str(exc))  # raises
    except asyncio.CancelledError:
        code = "CANCELLED"
        raise
    finally:
        REQUESTS.labels("grpc", api, code).inc()
        REQUEST_SECONDS.labels("grpc", api).observe(time.perf_counter() - started)


def unary(api: str) -> Callable[..., Callable[..., Awaitable[Resp]]]:
    def wrap(method: Callable[..., Awaitable[Resp]]) -> Callable[..., Awaitable[Resp]]:
        @functools.wraps(method)
        async def handler(self: TierlogService, request: Req, context: grpc.aio.ServicerContext) -> Resp:
            async with _served(api, context):
                return await method(self, request, context)
        return handler
    return wrap


def server_stream(api: str) -> Callable[..., Callable[..., AsyncIterator[Resp]]]:
    """The time recorded is the stream's lifetime."""
    def wrap(method: Callable[..., AsyncIterator[Resp]]) -> Callable[..., AsyncIterator[Resp]]:
        @functools.wraps(method)
        async def handler(self: TierlogService, request: Req, context: grpc.aio.ServicerContext) -> AsyncIterator[Resp]:
            async with _served(api, context):
                async for message in method(self, request, context):
                    yield message
        return handler
    return wrap


class AppendSignal:
    """Set when any watched partition takes an append, or when the service closes."""

    def __init__(self, logs: list[PartitionLog]) -> None:
        self.logs = logs
        self.event = asyncio.Event()

    def _on_append(self, _: PartitionLog) -> None:
        self.event.set()

    def __enter__(self) -> AppendSignal:
        for plog in self.logs:
            plog.add_listener(self._on_append)
        return self

    def __exit__(self, *_: object) -> None:
        for plog in self.logs:
            plog.remove_listener(self._on_append)

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            pass


def _check_partition(topic: Topic, partition: int) -> None:
    if not 0 <= partition < topic.partitions:
        raise UnknownTopicOrPartitionError(
            f"topic {topic.name!r} has {topic.partitions} partition(s); there is no partition {partition}"
        )


def _partitions(topic: Topic, requested: Iterable[int]) -> list[int]:
    """The partitions asked for, checked; none asked for means all of them."""
    partitions = list(requested) or list(range(topic.partitions))
    for partition in partitions:
        _check_partition(topic, partition)
    return partitions


def _byte_limit(name: str, value: int) -> int:
    if value < 0:
        raise InvalidRequestError(f"{name} must not be negative, got {value}")
    return min(value or DEFAULT_MAX_BYTES, MAX_READ_BYTES)


def _peer_host(peer: str) -> str:
    """The address in gRPC's peer (`ipv4:10.0.0.1:5000`, `ipv6:[::1]:5000`), as ACLs name hosts."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return address
    return address.rpartition(":")[0].strip("[]")


def _config_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class TierlogService(pb_grpc.TierlogServicer):
    def __init__(self, broker: Broker, remote: RemoteTierView | None = None) -> None:
        self.broker = broker
        self.logs = broker.logs
        self.reader = broker.reader
        self.remote = remote
        self._next_keyless: dict[str, int] = {}
        self._signals: set[AppendSignal] = set()
        self.closing = False

    def close(self) -> None:
        """Refuse new work and wake every waiting reader, so streams end before the server stops."""
        self.closing = True
        for signal in self._signals:
            signal.event.set()

    def _signal(self, topic: str, partitions: list[int]) -> AppendSignal:
        signal = AppendSignal([self.logs.log(topic, p) for p in partitions])
        self._signals.add(signal)
        return signal

    def _topic(self, name: str) -> Topic:
        if self.closing:
            raise ShuttingDownError("the server is shutting down")
        if not name:
            raise InvalidRequestError("a topic name is required")
        return self.logs.topic(name)

    def _access(self, context: grpc.aio.ServicerContext) -> Access:
        return Access(self.broker.authorizer, principal_of(context), _peer_host(context.peer()))

    def _group_topic(self, group: str, topic: str) -> Topic:
        if not group:
            raise InvalidRequestError("a consumer group name is required")
        return self._topic(topic)

    # -- produce ---------------------------------------------------------------------

    @unary("Produce")
    async def Produce(self, request: pb.ProduceRequest, context: grpc.aio.ServicerContext) -> pb.ProduceResponse:
        enforce(self._access(context).write_refusal(request.topic))
        topic = self._topic(request.topic)
        if not request.records:
            raise InvalidRequestError("no records to produce")
        if request.compression not in pb.Compression.values():
            raise InvalidRequestError(f"unknown compression {request.compression}")
        if request.ack not in pb.Ack.values():
            raise InvalidRequestError(f"unknown ack {request.ack}")
        if request.HasField("partition"):
            _check_partition(topic, request.partition)
            grouped = {request.partition: [from_proto(r) for r in request.records]}
        else:
            keyless = self._next_keyless.get(topic.name, 0) % topic.partitions
            self._next_keyless[topic.name] = keyless + 1
            grouped = group_by_partition(request.records, topic.partitions, keyless)
        # Build every batch before appending any, so a record too large changes nothing.
        plans = []
        for partition, records in grouped.items():
            config = self.logs.log(topic.name, partition).config
            # Batches the broker builds fit a segment too, so small segments roll at their size.
            limit = min(config.max_message_bytes, config.segment_bytes)
            plans.append((partition, build_batches(records, compression=request.compression, max_batch_bytes=limit)))
        response = pb.ProduceResponse()
        appended: list[Appended] = []
        for partition, batches in plans:
            # One append per batch, so a segment may roll between them.
            written = [self.broker.write.append(topic.name, partition, batch, protocol="grpc",
                                                durable=request.ack == pb.ACK_DURABLE) for batch in batches]
            infos = [w.info for w in written]
            appended.append(written[-1])  # durable up to the last batch means all of them
            response.partitions.append(pb.PartitionAppend(
                partition=partition, base_offset=infos[0].base_offset, last_offset=infos[-1].last_offset,
                log_append_time_ms=infos[0].log_append_time,
            ))
        if request.ack == pb.ACK_DURABLE:
            await self.broker.write.wait_durable(*appended)
        return response

    # -- reads -----------------------------------------------------------------------

    async def _read(self, topic: str, partition: int, offset: int, max_bytes: int) -> tuple[pb.PartitionRecords, int]:
        """Records from `offset`, and the record bytes read."""
        try:
            result = await self.reader.read(topic, partition, offset, max_bytes, read_committed=True)
        except OffsetOutOfRangeError as exc:
            raise PartitionOffsetOutOfRangeError(topic, partition, exc) from None
        records, next_offset = decode_read(result, offset)
        BYTES_OUT.labels("grpc").inc(len(result.records))
        return pb.PartitionRecords(
            partition=partition, records=records, next_offset=next_offset,
            high_watermark=result.high_watermark, log_start_offset=result.log_start_offset,
        ), len(result.records)

    @unary("Fetch")
    async def Fetch(self, request: pb.FetchRequest, context: grpc.aio.ServicerContext) -> pb.FetchResponse:
        enforce(self._access(context).read_refusal(request.topic))
        topic = self._topic(request.topic)
        if not request.partitions:
            raise InvalidRequestError("name at least one partition and the offset to fetch it from")
        for position in request.partitions:
            _check_partition(topic, position.partition)
        max_bytes = _byte_limit("max_bytes", request.max_bytes)
        if request.max_wait_ms < 0:
            raise InvalidRequestError(f"max_wait_ms must not be negative, got {request.max_wait_ms}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.max_wait_ms / 1000
        with self._signal(topic.name, [p.partition for p in request.partitions]) as signal:
            try:
                while True:
                    signal.event.clear()  # before reading: an append from here on wakes us
                    response = pb.FetchResponse()
                    budget = max_bytes
                    for position in request.partitions:
                        if budget <= 0:
                            break
                        found, size = await self._read(topic.name, position.partition, position.offset, budget)
                        if found.next_offset > position.offset:
                            response.partitions.append(found)
                            budget -= size
                    remaining = deadline - loop.time()
                    if response.partitions or remaining <= 0 or self.closing:
                        return response
                    await signal.wait(remaining)
            finally:
                self._signals.discard(signal)

    async def _start_offset(self, topic: str, partition: int, start: pb.StartPosition) -> int:
        which = start.WhichOneof("position")
        if which == "beginning":
            return self.reader.log_start_offset(topic, partition)
        if which == "offset":
            return start.offset
        if which == "timestamp_ms":
            found = await self.reader.offset_for_timestamp(topic, partition, start.timestamp_ms)
            if found is not None:
                return found.offset
        return self.reader.high_watermark(topic, partition)

    @server_stream("Subscribe")
    async def Subscribe(self, request: pb.SubscribeRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[pb.PartitionRecords]:
        enforce(self._access(context).read_refusal(request.topic))
        topic = self._topic(request.topic)
        partitions = _partitions(topic, request.partitions)
        for partition in request.offsets:
            _check_partition(topic, partition)
        max_bytes = _byte_limit("max_bytes", request.max_bytes)
        positions = {}
        for partition in partitions:
            offset = request.offsets.get(partition)
            if offset is None:
                offset = await self._start_offset(topic.name, partition, request.start)
            start, end = self.reader.log_start_offset(topic.name, partition), self.reader.high_watermark(topic.name, partition)
            if not start <= offset <= end:
                raise PartitionOffsetOutOfRangeError(topic.name, partition, OffsetOutOfRangeError(offset, start, end))
            positions[partition] = offset
        with self._signal(topic.name, partitions) as signal:
            try:
                while not self.closing:
                    current = self.logs.topics.get(topic.name)
                    if current is None or current.topic_id != topic.topic_id:
                        raise UnknownTopicOrPartitionError(f"topic {topic.name!r} was deleted")
                    signal.event.clear()
                    progressed = False
                    for partition in partitions:
                        offset = positions[partition]
                        if offset >= self.reader.last_stable_offset(topic.name, partition):
                            continue
                        found, _ = await self._read(topic.name, partition, offset, max_bytes)
                        positions[partition] = found.next_offset
                        progressed = progressed or found.next_offset > offset
                        if found.records:
                            yield found
                    if not progressed:
                        await signal.wait(TOPIC_CHECK_SECONDS)
            finally:
                self._signals.discard(signal)
        raise ShuttingDownError("the server is shutting down; subscribe again to resume")

    @unary("ListOffsets")
    async def ListOffsets(self, request: pb.ListOffsetsRequest,
                          context: grpc.aio.ServicerContext) -> pb.ListOffsetsResponse:
        enforce(self._access(context).describe_refusal(request.topic))
        topic = self._topic(request.topic)
        partitions = _partitions(topic, request.partitions)
        response = pb.ListOffsetsResponse()
        for partition in partitions:
            timestamp = -1
            if request.spec == pb.OFFSET_SPEC_LATEST:
                offset = self.reader.high_watermark(topic.name, partition)
            elif request.spec == pb.OFFSET_SPEC_EARLIEST:
                offset = self.reader.log_start_offset(topic.name, partition)
            elif request.spec == pb.OFFSET_SPEC_TIMESTAMP:
                found = await self.reader.offset_for_timestamp(topic.name, partition, request.timestamp_ms)
                offset, timestamp = found if found is not None else (-1, -1)
            else:
                raise InvalidRequestError(f"unknown offset spec {request.spec}")
            response.partitions.append(pb.PartitionListOffset(partition=partition, offset=offset,
                                                              timestamp_ms=timestamp))
        return response

    # -- topic admin -----------------------------------------------------------------

    def _describe(self, topic: Topic, who: Access, *, created: bool = True) -> pb.TopicDescription:
        """Its configs are shown to those who may DESCRIBE_CONFIGS it (as Kafka's CreateTopics)."""
        description = pb.TopicDescription(name=topic.name, topic_id=str(topic.topic_id))
        for partition in range(topic.partitions):
            if created:
                plog = self.logs.log(topic.name, partition)
                description.partitions.append(pb.PartitionDescription(
                    partition=partition, log_start_offset=self.reader.log_start_offset(topic.name, partition),
                    high_watermark=plog.high_watermark, local_bytes=plog.size_bytes,
                ))
            else:
                description.partitions.append(pb.PartitionDescription(partition=partition))
        if not who.may(AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, topic.name, count=False):
            return description
        config = self.logs.config_for(topic)
        for name in sorted(TOPIC_CONFIGS):
            description.configs.append(pb.ConfigEntry(
                name=name, value=_config_text(config[name]), is_default=name not in config.overrides
            ))
        return description

    @unary("CreateTopic")
    async def CreateTopic(self, request: pb.CreateTopicRequest,
                          context: grpc.aio.ServicerContext) -> pb.TopicDescription:
        if self.closing:
            raise ShuttingDownError("the server is shutting down")
        who = self._access(context)
        enforce(who.create_topic_refusal(request.name))
        partitions = request.partitions or self.broker.settings.num_partitions
        topic = self.broker.create_topic(request.name, partitions, dict(request.configs),
                                         validate_only=request.validate_only)
        return self._describe(topic, who, created=not request.validate_only)

    @unary("ListTopics")
    async def ListTopics(self, request: pb.ListTopicsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListTopicsResponse:
        who = self._access(context)  # the topics it may DESCRIBE, as Kafka's Metadata
        return pb.ListTopicsResponse(topics=[
            pb.TopicSummary(name=t.name, topic_id=str(t.topic_id), partitions=t.partitions,
                            internal=is_internal(t.name))
            for t in sorted(self.logs.topics.values(), key=lambda t: t.name)
            if who.may(AclOperation.DESCRIBE, ResourceType.TOPIC, t.name, count=False)
        ])

    @unary("DescribeTopic")
    async def DescribeTopic(self, request: pb.DescribeTopicRequest,
                            context: grpc.aio.ServicerContext) -> pb.TopicDescription:
        who = self._access(context)
        enforce(who.describe_refusal(request.name))
        return self._describe(self._topic(request.name), who)

    @unary("DeleteTopic")
    async def DeleteTopic(self, request: pb.DeleteTopicRequest,
                          context: grpc.aio.ServicerContext) -> pb.DeleteTopicResponse:
        enforce(self._access(context).delete_topic_refusal(request.name))
        self._topic(request.name)
        await self.broker.delete_topic(request.name)
        for signal in self._signals:  # subscribers of the topic learn at once
            signal.event.set()
        return pb.DeleteTopicResponse()

    # -- committed offsets -----------------------------------------------------------

    @unary("CommitOffsets")
    async def CommitOffsets(self, request: pb.CommitOffsetsRequest,
                            context: grpc.aio.ServicerContext) -> pb.CommitOffsetsResponse:
        enforce(self._access(context).commit_refusal(request.group, request.topic))
        topic = self._group_topic(request.group, request.topic)
        offsets = {}
        for entry in request.offsets:
            _check_partition(topic, entry.partition)
            if entry.offset < 0:
                raise InvalidRequestError(f"partition {entry.partition}: a committed offset must not be negative")
            offsets[TopicPartition(topic.name, entry.partition)] = OffsetCommit(entry.offset, -1, entry.metadata)
        # The Kafka groups' store (`__consumer_offsets`), committed as a standalone
        # consumer does: Kafka clients of the same group see these offsets, and vice versa.
        errors = await self.broker.groups.offsets.commit(request.group, -1, "", None, offsets)
        refused = {tp.partition: code for tp, code in errors.items() if code.value}
        if ErrorCode.offset_metadata_too_large in refused.values():
            raise InvalidRequestError(f"offset metadata too long: {refused}")
        if refused:
            code = next(iter(refused.values()))
            raise RefusedError(code, f"group {request.group!r} refused the commit (it may have live Kafka "
                                     f"members): {refused}")
        return pb.CommitOffsetsResponse()

    @unary("FetchCommittedOffsets")
    async def FetchCommittedOffsets(self, request: pb.FetchCommittedOffsetsRequest,
                                    context: grpc.aio.ServicerContext) -> pb.FetchCommittedOffsetsResponse:
        enforce(self._access(context).fetch_committed_refusal(request.group, request.topic))
        topic = self._group_topic(request.group, request.topic)
        partitions = _partitions(topic, request.partitions)
        committed = self.broker.groups.offsets.committed(request.group,
                                                         [TopicPartition(topic.name, p) for p in partitions])
        response = pb.FetchCommittedOffsetsResponse()
        for (_, partition), entry in committed.items():
            response.offsets.append(pb.CommittedOffset(partition=partition, offset=-1 if entry is None else entry.offset,
                                                       metadata="" if entry is None else entry.metadata or ""))
        return response

    # -- tiers -----------------------------------------------------------------------

    @unary("TierStatus")
    async def TierStatus(self, request: pb.TierStatusRequest,
                         context: grpc.aio.ServicerContext) -> pb.TierStatusResponse:
        who = self._access(context)  # the topics it may DESCRIBE
        rows = [row for row in tier_status(self.logs, self.remote, request.topic or None)
                if who.may(AclOperation.DESCRIBE, ResourceType.TOPIC, row.topic, count=False)]
        return pb.TierStatusResponse(tiering_enabled=self.remote is not None, partitions=[
            pb.PartitionTierStatus(
                topic=row.topic, partition=row.partition, local_log_start_offset=row.local_log_start_offset,
                log_end_offset=row.log_end_offset, local_bytes=row.local_bytes,
                remote_log_start_offset=row.remote.log_start_offset,
                remote_log_end_offset=row.remote.log_end_offset, remote_bytes=row.remote.size_bytes,
                copy_lag_segments=row.remote.copy_lag_segments, copy_lag_bytes=row.remote.copy_lag_bytes,
            )
            for row in rows
        ])

    # -- users -----------------------------------------------------------------------

    @unary("ListUsers")
    async def ListUsers(self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext) -> pb.ListUsersResponse:
        self._access(context).check_cluster(AclOperation.DESCRIBE)  # as DescribeUserScramCredentials
        return pb.ListUsersResponse(users=[
            pb.User(name=user.name, credentials=[pb.UserCredential(mechanism=m.name, iterations=i)
                                                 for m, i in user.mechanisms])
            for user in self.broker.users.describe(None) if isinstance(user, UserCredentials)
        ])

    @unary("AlterUsers")
    async def AlterUsers(self, request: pb.AlterUsersRequest,
                         context: grpc.aio.ServicerContext) -> pb.AlterUsersResponse:
        """Kafka's AlterUserScramCredentials: the same store, the same per-user checks."""
        self._access(context).check_cluster(AclOperation.ALTER)
        try:
            outcome = await self.broker.users.alter(
                [Upsertion(u.name, type_of(u.mechanism), u.iterations, u.salt, u.salted_password)
                 for u in request.upsertions],
                [Deletion(d.name, type_of(d.mechanism)) for d in request.deletions])
        except DocumentError as exc:  # the disk or the bucket refused: nothing changed, try again
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return pb.AlterUsersResponse(results=[
            pb.UserResult(name=name, error=error.code.name.upper() if error else "", message=error.message if error else "")
            for name, error in outcome.items()
        ])
