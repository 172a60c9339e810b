"""A small synchronous Python client over tierlog's gRPC API: Producer, Consumer, Admin.

    from api.client import Admin, Consumer, Producer
    Admin().create_topic("events", partitions=3)
    Producer().send("events", b"hello", key=b"user-1")
    for message in Consumer("events", start="beginning").poll(timeout=1.0):
        print(message.partition, message.offset, message.value)

Calls that fail raise TierlogError, carrying the gRPC status code and the server's message.
A server with grpc.listener.security.protocol=SSL is reached with `tls=ClientTls(ca_file=...)`,
or the TIERLOG_CA_FILE, TIERLOG_CERT_FILE and TIERLOG_KEY_FILE environment variables; a
server with grpc.authentication=required with `user=ClientUser(name, password)` (or
TIERLOG_USERNAME and TIERLOG_PASSWORD) or a client certificate.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import grpc

from broker.security.scram import DEFAULT_ITERATIONS, mechanism_named
from broker.security.users import salted

from .proto import tierlog_pb2 as pb
from .proto import tierlog_pb2_grpc as pb_grpc

DEFAULT_SERVER = "127.0.0.1:9093"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
COMPRESSIONS = {"none": pb.COMPRESSION_NONE, "gzip": pb.COMPRESSION_GZIP, "snappy": pb.COMPRESSION_SNAPPY,
                "lz4": pb.COMPRESSION_LZ4, "zstd": pb.COMPRESSION_ZSTD}

# Where to start reading: "beginning", "latest", an offset, or the first record at or after a time.
Start = str | int | datetime


class TierlogError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, error: grpc.RpcError, server: str) -> TierlogError:
        code, details = error.code(), error.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
            details = f"cannot reach tierlog at {server} (is `tierlog serve` running?)"
        return cls(code, details)


@dataclass(frozen=True)
class ClientTls:
    """TLS to the gRPC listener: the CAs to check the server against (None: the system's),
    and a certificate and its key where the server asks for one (ssl.client.auth=required)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    ENVIRONMENT = {"ca_file": "TIERLOG_CA_FILE", "cert_file": "TIERLOG_CERT_FILE", "key_file": "TIERLOG_KEY_FILE"}

    @classmethod
    def from_environment(cls) -> ClientTls | None:
        """From TIERLOG_CA_FILE, TIERLOG_CERT_FILE and TIERLOG_KEY_FILE; None if none is set."""
        given = {field: os.environ[name] for field, name in cls.ENVIRONMENT.items() if os.environ.get(name)}
        return cls(**given) if given else None

    def credentials(self) -> grpc.ChannelCredentials:
        """Raises ValueError for a certificate without its key (or the reverse), OSError for a
        file that cannot be read."""
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs its key: give both the certificate and the key file")

        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()

        return grpc.ssl_channel_credentials(read(self.ca_file), read(self.key_file), read(self.cert_file))


@dataclass(frozen=True)
class ClientUser:
    """A user's name and password, sent with every call (`authorization: Basic ...`); the
    server checks them as SASL PLAIN (over TLS unless it allows otherwise)."""

    name: str
    password: str

    @classmethod
    def from_environment(cls) -> ClientUser | None:
        """From TIERLOG_USERNAME and TIERLOG_PASSWORD; None unless the name is set."""
        name = os.environ.get("TIERLOG_USERNAME")
        return cls(name, os.environ.get("TIERLOG_PASSWORD", "")) if name else None


class _Credentials(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the user's credentials to every call (the server reads them in grpc_identity.py)."""

    def __init__(self, user: ClientUser) -> None:
        self.metadata = ("authorization", "Basic " + base64.b64encode(f"{user.name}:{user.password}".encode()).decode())

    def _with_metadata(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), self.metadata])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_metadata(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_metadata(details), request)


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True)
class NewRecord:
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None  # None: the broker's clock


@dataclass(frozen=True)
class Appended:
    partition: int
    base_offset: int
    last_offset: int


def timestamp_ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def _to_proto(record: NewRecord) -> pb.Record:
    return pb.Record(key=record.key, value=record.value, timestamp_ms=record.timestamp_ms,
                     headers=[pb.Header(key=k, value=v) for k, v in record.headers])


def _message(topic: str, partition: int, record: pb.Record) -> Message:
    return Message(
        topic, partition, record.offset, record.timestamp_ms,
        record.key if record.HasField("key") else None,
        record.value if record.HasField("value") else None,
        tuple((h.key, h.value if h.HasField("value") else None) for h in record.headers),
    )


class _Client:
    def __init__(self, server: str = DEFAULT_SERVER, *, timeout: float = 30.0, tls: ClientTls | None = None,
                 user: ClientUser | None = None) -> None:
        self.server = server
        self.timeout = timeout
        tls = tls or ClientTls.from_environment()
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        self.channel = grpc.insecure_channel(server, options) if tls is None else \
            grpc.secure_channel(server, tls.credentials(), options)
        user = user or ClientUser.from_environment()
        self.stub = pb_grpc.TierlogStub(self.channel if user is None else
                                        grpc.intercept_channel(self.channel, _Credentials(user)))

    def _call(self, method: str, request: object, timeout: float | None = None) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise TierlogError.from_rpc(error, self.server) from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _list_offsets(client: _Client, topic: str, spec: Start, partitions: Sequence[int]) -> dict[int, int]:
    if isinstance(spec, int):
        if not partitions:
            description = client._call("DescribeTopic", pb.DescribeTopicRequest(name=topic))
            partitions = [p.partition for p in description.partitions]
        return {p: spec for p in partitions}
    request = pb.ListOffsetsRequest(topic=topic, partitions=partitions)
    if isinstance(spec, datetime):
        request.spec, request.timestamp_ms = pb.OFFSET_SPEC_TIMESTAMP, timestamp_ms(spec)
    elif spec in ("beginning", "earliest"):
        request.spec = pb.OFFSET_SPEC_EARLIEST
    elif spec in ("latest", "end"):
        request.spec = pb.OFFSET_SPEC_LATEST
    else:
        raise ValueError(f"start must be 'beginning', 'latest', an offset or a datetime, not {spec!r}")
    return {p.partition: p.offset for p in client._call("ListOffsets", request).partitions}


class Producer(_Client):
    def send(self, topic: str, value: bytes | None, *, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes | None]] = (), partition: int | None = None,
             timestamp_ms: int | None = None) -> Appended:
        """Append one record; returns where it went."""
        return self.send_many(topic, [NewRecord(value, key, tuple(headers), timestamp_ms)], partition=partition)[0]

    def send_many(self, topic: str, records: Iterable[NewRecord], *, partition: int | None = None,
                  compression: str = "none", durable: bool = True) -> list[Appended]:
        """Append records in one request. Without `partition`, keyed records go where Kafka's
        partitioner puts them and the others to one partition. `durable`: reply after fsync."""
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
        response = self._call("Produce", pb.ProduceRequest(
            topic=topic, partition=partition, records=[_to_proto(r) for r in records],
            compression=COMPRESSIONS[compression], ack=pb.ACK_DURABLE if durable else pb.ACK_APPENDED,
        ))
        return [Appended(p.partition, p.base_offset, p.last_offset) for p in response.partitions]


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    log_start_offset: int
    high_watermark: int
    local_bytes: int


@dataclass(frozen=True)
class TopicInfo:
    name: str
    topic_id: str
    partitions: list[PartitionInfo]
    configs: dict[str, str]  # every config's effective value
    overrides: frozenset[str]  # the configs the topic sets itself


def _topic_info(description: pb.TopicDescription) -> TopicInfo:
    return TopicInfo(
        description.name, description.topic_id,
        [PartitionInfo(p.partition, p.log_start_offset, p.high_watermark, p.local_bytes)
         for p in description.partitions],
        {c.name: c.value for c in description.configs},
        frozenset(c.name for c in description.configs if not c.is_default),
    )


class Admin(_Client):
    def create_topic(self, name: str, partitions: int = 0, configs: dict[str, str] | None = None, *,
                     validate_only: bool = False) -> TopicInfo:
        """Create a topic; `partitions` 0 takes the broker's num.partitions."""
        return _topic_info(self._call("CreateTopic", pb.CreateTopicRequest(
            name=name, partitions=partitions, configs={k: str(v) for k, v in (configs or {}).items()},
            validate_only=validate_only,
        )))

    def list_topics(self, *, internal: bool = False) -> list[str]:
        topics = self._call("ListTopics", pb.ListTopicsRequest()).topics
        return [t.name for t in topics if internal or not t.internal]

    def describe_topic(self, name: str) -> TopicInfo:
        return _topic_info(self._call("DescribeTopic", pb.DescribeTopicRequest(name=name)))

    def delete_topic(self, name: str) -> None:
        self._call("DeleteTopic", pb.DeleteTopicRequest(name=name))

    def list_offsets(self, topic: str, spec: Start, partitions: Sequence[int] = ()) -> dict[int, int]:
        """Offset per partition: "beginning" (earliest), "latest" (the log end), or for a datetime
        the first record at or after it (-1 when there is none). An int is returned as given."""
        return _list_offsets(self, topic, spec, partitions)

    def tier_status(self, topic: str | None = None) -> pb.TierStatusResponse:
        return self._call("TierStatus", pb.TierStatusRequest(topic=topic or ""))

    # Users, as Kafka's admin clients manage them: the password is salted here (KIP-554).

    def list_users(self) -> dict[str, dict[str, int]]:
        """Each user's mechanisms and their iterations."""
        return {u.name: {c.mechanism: c.iterations for c in u.credentials}
                for u in self._call("ListUsers", pb.ListUsersRequest()).users}

    def add_user(self, name: str, password: str, *, mechanism: str = "SCRAM-SHA-512",
                 iterations: int = DEFAULT_ITERATIONS) -> None:
        """Set the user's credential for `mechanism` (a new user, or a new password)."""
        upsertion = salted(name, mechanism_named(mechanism), password, iterations)
        self._alter_users(pb.AlterUsersRequest(upsertions=[pb.UserUpsertion(
            name=name, mechanism=mechanism.upper(), iterations=iterations, salt=upsertion.salt,
            salted_password=upsertion.salted_password)]))

    def remove_user(self, name: str, mechanism: str | None = None) -> None:
        """Remove one credential of the user, or (no mechanism) the user."""
        mechanisms = [mechanism] if mechanism else list(self.list_users().get(name, ())) or ["SCRAM-SHA-512"]
        self._alter_users(pb.AlterUsersRequest(deletions=[pb.UserDeletion(name=name, mechanism=m)
                                                           for m in mechanisms]))

    def _alter_users(self, request: pb.AlterUsersRequest) -> None:
        for result in self._call("AlterUsers", request).results:
            if result.error:
                code = grpc.StatusCode.NOT_FOUND if result.error == "RESOURCE_NOT_FOUND" else \
                    grpc.StatusCode.INVALID_ARGUMENT
                raise TierlogError(code, f"{result.error}: {result.message}")


class Consumer(_Client):
    """Reads one topic (all partitions or some). With a `group`, it starts where the group
    committed and `commit()` records its position; otherwise it starts at `start`."""

    def __init__(self, topic: str, server: str = DEFAULT_SERVER, *, start: Start = "latest",
                 partitions: Sequence[int] = (), group: str | None = None, max_bytes: int = 1024 * 1024,
                 timeout: float = 30.0, tls: ClientTls | None = None, user: ClientUser | None = None) -> None:
        super().__init__(server, timeout=timeout, tls=tls, user=user)
        self.topic = topic
        self.group = group
        self.max_bytes = max_bytes
        self._start = start
        self._partitions = list(partitions)
        self._positions: dict[int, int] | None = None
        self._stream: grpc.Future | None = None

    @property
    def positions(self) -> dict[int, int]:
        """The next offset to read, per partition (resolved on first use)."""
        if self._positions is None:
            positions = _list_offsets(self, self.topic, self._start, self._partitions)
            if self.group:
                for committed in self._call("FetchCommittedOffsets", pb.FetchCommittedOffsetsRequest(
                        group=self.group, topic=self.topic, partitions=list(positions))).offsets:
                    if committed.offset >= 0:
                        positions[committed.partition] = committed.offset
            if isinstance(self._start, datetime):  # nothing at or after the time: start at the end
                ends = _list_offsets(self, self.topic, "latest", self._partitions)
                positions = {p: ends[p] if o < 0 else o for p, o in positions.items()}
            self._positions = positions
        return self._positions

    def seek(self, partition: int, offset: int) -> None:
        self.positions[partition] = offset

    def pause(self, partition: int) -> None:
        """Stop reading a partition."""
        self.positions.pop(partition, None)

    def poll(self, timeout: float = 1.0) -> list[Message]:
        """What is there now; if nothing, wait up to `timeout` seconds for records to arrive."""
        positions = self.positions
        if not positions:
            return []
        response = self._call("Fetch", pb.FetchRequest(
            topic=self.topic, partitions=[pb.PartitionOffset(partition=p, offset=o) for p, o in positions.items()],
            max_bytes=self.max_bytes, max_wait_ms=int(timeout * 1000),
        ), timeout=self.timeout + timeout)
        messages: list[Message] = []
        for part in response.partitions:
            positions[part.partition] = part.next_offset
            messages.extend(_message(self.topic, part.partition, r) for r in part.records)
        return messages

    def __iter__(self) -> Iterator[Message]:
        """Records pushed by the server as they arrive, without end (break out, or close())."""
        positions = self.positions
        if not positions:  # every partition paused (an empty list would mean all of them)
            return
        self._stream = stream = self.stub.Subscribe(pb.SubscribeRequest(
            topic=self.topic, partitions=list(positions), offsets=positions, max_bytes=self.max_bytes,
        ))
        try:
            for part in stream:
                for record in part.records:
                    positions[part.partition] = record.offset + 1
                    yield _message(self.topic, part.partition, record)
                positions[part.partition] = part.next_offset
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise TierlogError.from_rpc(error, self.server) from None
        finally:
            stream.cancel()
            self._stream = None

    def commit(self) -> None:
        """Commit the current positions for the group."""
        if not self.group:
            raise ValueError("commit needs a consumer group")
        self._call("CommitOffsets", pb.CommitOffsetsRequest(group=self.group, topic=self.topic, offsets=[
            pb.CommittedOffset(partition=p, offset=o) for p, o in self.positions.items()
        ]))

    def close(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
        super().close()
