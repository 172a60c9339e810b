"""The protocol itself, frame by frame: version negotiation, ordering, acks=0, long
polling, KIP-74, bad frames, many idle consumers."""

from __future__ import annotations

import os
import socket
import struct
import time
import uuid
from datetime import timedelta
from typing import Any

from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fetch_v12
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.schema.join_group.v5 import request as join_v5
from kio.schema.metadata.v12 import request as metadata_v12
from kio.schema.produce.v9 import request as produce_v9

from hotlog.batch import parse_header
from hotlog.records import Record, build_batch

from .bounds_support import cpu_seconds, resident_mb
from .cluster import KafkaServer, own_kafka_server
from .wire import SIZE, Wire, request_frame

kafka_server = own_kafka_server()  # this module's own: it measures the broker process's CPU and memory

PRODUCE, FETCH, METADATA, FIND_COORDINATOR, JOIN_GROUP, API_VERSIONS = 0, 1, 3, 10, 11, 18


def metadata(*topics: str) -> Any:
    return metadata_v12.MetadataRequest(
        topics=tuple(metadata_v12.MetadataRequestTopic(topic_id=uuid.UUID(int=0), name=t) for t in topics),
        allow_auto_topic_creation=True, include_topic_authorized_operations=False,
    )


def produce(topic: str, records: bytes, acks: int = 1) -> Any:
    return produce_v9.ProduceRequest(acks=acks, timeout=timedelta(seconds=5), topic_data=(
        produce_v9.TopicProduceData(name=topic, partition_data=(
            produce_v9.PartitionProduceData(index=0, records=records),)),))


def fetch(topic: str, offset: int, max_wait_ms: int, partition_max_bytes: int = 1 << 20) -> Any:
    return fetch_v12.FetchRequest(
        max_wait=timedelta(milliseconds=max_wait_ms), min_bytes=1, forgotten_topics_data=(),
        topics=(fetch_v12.FetchTopic(topic=topic, partitions=(
            fetch_v12.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=partition_max_bytes),)),),
    )


def batch(*values: bytes) -> bytes:
    return build_batch([Record(None, v) for v in values])


def create(server: KafkaServer, topic: str) -> None:
    wire = Wire(server.bootstrap)
    wire.send(metadata(topic), 1)
    _, response = wire.receive(METADATA, 12)
    assert response.topics[0].error_code == ErrorCode.none
    wire.close()


def test_api_versions_answer_with_header_v0_and_the_table(kafka_server: KafkaServer) -> None:
    for version, request in ((0, ApiVersionsV0()),
                             (3, ApiVersionsRequest(client_software_name="wire", client_software_version="1"))):
        wire = Wire(kafka_server.bootstrap)
        wire.send(request, 42)
        correlation_id, response = wire.receive(API_VERSIONS, version)  # reads header v0: id only
        assert correlation_id == 42 and response.error_code == ErrorCode.none
        ranges = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
        assert ranges[PRODUCE] == (3, 12) and ranges[FETCH] == (4, 12) and ranges[API_VERSIONS] == (0, 4)
        assert ranges[22] == (0, 4) and ranges[26] == (0, 3)  # InitProducerId, EndTxn
        wire.close()


def test_an_unknown_api_versions_version_gets_unsupported_version_and_the_table(kafka_server: KafkaServer) -> None:
    wire = Wire(kafka_server.bootstrap)
    # ApiVersions v99: a header v2 frame with a body the broker cannot know.
    wire.send_raw(SIZE.pack(16) + struct.pack(">hhih", API_VERSIONS, 99, 7, 4) + b"wire" + b"\x00\x00")
    correlation_id, response = wire.receive(API_VERSIONS, 0)
    assert correlation_id == 7 and response.error_code == ErrorCode.unsupported_version
    assert any(k.api_key == METADATA and k.max_version == 12 for k in response.api_keys)
    wire.send(ApiVersionsRequest(client_software_name="wire", client_software_version="1"), 8)  # the retry
    assert wire.receive(API_VERSIONS, 3)[1].error_code == ErrorCode.none
    wire.close()


def test_pipelined_requests_are_answered_in_order(kafka_server: KafkaServer) -> None:
    create(kafka_server, "wire-order")
    wire = Wire(kafka_server.bootstrap)
    wire.send_raw(request_frame(fetch("wire-order", 0, 400), 1)  # long-polls 400 ms on an empty log
                  + request_frame(metadata("wire-order"), 2)
                  + request_frame(ApiVersionsRequest(client_software_name="w", client_software_version="1"), 3))
    assert wire.receive(FETCH, 12)[0] == 1
    assert wire.receive(METADATA, 12)[0] == 2
    assert wire.receive(API_VERSIONS, 3)[0] == 3
    wire.close()


def test_acks_zero_gets_no_response_but_is_written(kafka_server: KafkaServer) -> None:
    create(kafka_server, "wire-acks0")
    wire = Wire(kafka_server.bootstrap)
    wire.send(produce("wire-acks0", batch(b"fire", b"forget"), acks=0), 10)
    wire.send(fetch("wire-acks0", 0, 1000), 11)
    correlation_id, response = wire.receive(FETCH, 12)
    assert correlation_id == 11  # nothing came back for request 10
    partition = response.responses[0].partitions[0]
    assert partition.high_watermark == 2
    wire.close()


def test_fetched_batches_are_the_produced_bytes_and_kip74_returns_one_past_max_bytes(
        kafka_server: KafkaServer) -> None:
    create(kafka_server, "wire-bytes")
    produced = batch(os.urandom(40_000), os.urandom(40_000))
    wire = Wire(kafka_server.bootstrap)
    wire.send(produce("wire-bytes", produced), 1)
    assert wire.receive(PRODUCE, 9)[1].responses[0].partition_responses[0].error_code == ErrorCode.none
    wire.send(fetch("wire-bytes", 0, 0, partition_max_bytes=1000), 2)
    records = wire.receive(FETCH, 12)[1].responses[0].partitions[0].records
    assert len(records) == len(produced) > 1000  # a whole batch even above the limit
    assert records[8:] == produced[8:]  # as produced, only the base offset assigned
    assert parse_header(records).base_offset == 0
    wire.close()


def test_requests_larger_than_the_receive_buffer_are_served(kafka_server: KafkaServer) -> None:
    create(kafka_server, "wire-large")
    large = batch(*(os.urandom(1000) for _ in range(900)))  # about 0.9 MiB
    wire = Wire(kafka_server.bootstrap)
    wire.send_raw(request_frame(produce("wire-large", large), 1) + request_frame(produce("wire-large", large), 2))
    for correlation_id in (1, 2):
        got, response = wire.receive(PRODUCE, 9)
        partition = response.responses[0].partition_responses[0]
        assert (got, partition.error_code, partition.base_offset) == (correlation_id, ErrorCode.none,
                                                                       (correlation_id - 1) * 900)
    wire.close()



def test_long_poll_is_woken_by_an_append(kafka_server: KafkaServer) -> None:
    create(kafka_server, "wire-wake")
    waiting = Wire(kafka_server.bootstrap)
    waiting.send(fetch("wire-wake", 0, 10_000), 1)
    time.sleep(0.5)
    started = time.monotonic()
    producer = Wire(kafka_server.bootstrap)
    producer.send(produce("wire-wake", batch(b"wake up")), 2)
    producer.receive(PRODUCE, 9)
    _, response = waiting.receive(FETCH, 12)
    assert time.monotonic() - started < 2  # not the 10 s max wait
    assert parse_header(response.responses[0].partitions[0].records).record_count == 1
    waiting.close()
    producer.close()


def test_hundreds_of_idle_long_polls_cost_little_and_all_wake(kafka_server: KafkaServer) -> None:
    create(kafka_server, "wire-idle")
    assert kafka_server.process is not None
    pid = kafka_server.process.pid
    consumers = [Wire(kafka_server.bootstrap) for _ in range(200)]
    for i, wire in enumerate(consumers):
        wire.send(fetch("wire-idle", 0, 8_000), i)
    time.sleep(0.5)  # all parked
    before = cpu_seconds(pid)
    time.sleep(2)
    assert cpu_seconds(pid) - before < 0.2  # parked fetches do not spin
    producer = Wire(kafka_server.bootstrap)
    producer.send(produce("wire-idle", batch(b"for everyone")), 1)
    producer.receive(PRODUCE, 9)
    started = time.monotonic()
    for i, wire in enumerate(consumers):
        correlation_id, response = wire.receive(FETCH, 12)
        assert correlation_id == i and response.responses[0].partitions[0].high_watermark == 1
        wire.close()
    assert time.monotonic() - started < 3
    producer.close()


def test_bad_frames_close_only_their_connection(kafka_server: KafkaServer) -> None:
    bystander = Wire(kafka_server.bootstrap)
    bad_frames = {
        "unknown api key": SIZE.pack(10) + struct.pack(">hhih", 999, 0, 1, -1),
        "unsupported version": SIZE.pack(10) + struct.pack(">hhih", PRODUCE, 2, 1, -1),
        "malformed body": SIZE.pack(13) + struct.pack(">hhih", METADATA, 4, 1, -1) + b"\x00\x00\x00",
        "truncated array": SIZE.pack(14) + struct.pack(">hhih", METADATA, 4, 1, -1) + b"\x00\x00\x00\x05",
        "negative size": SIZE.pack(-5),
        "above socket.request.max.bytes": SIZE.pack(200 * 1024 * 1024),
    }
    for name, frame in bad_frames.items():
        wire = Wire(kafka_server.bootstrap)
        wire.send_raw(frame)
        assert wire.is_closed_by_server(), name
        wire.close()
    bystander.send(metadata(), 5)
    assert bystander.receive(METADATA, 12)[0] == 5
    bystander.close()


def test_join_group_v4_plus_asks_for_a_member_id_first(kafka_server: KafkaServer) -> None:
    def join(member_id: str) -> Any:
        return join_v5.JoinGroupRequest(
            group_id="wire-join", session_timeout=timedelta(seconds=10), rebalance_timeout=timedelta(seconds=10),
            member_id=member_id, protocol_type="consumer",
            protocols=(join_v5.JoinGroupRequestProtocol(name="range", metadata=b"meta"),),
        )

    wire = Wire(kafka_server.bootstrap)
    wire.send(join(""), 1)
    _, first = wire.receive(JOIN_GROUP, 5)
    assert first.error_code == ErrorCode.member_id_required and first.member_id.startswith("wire-test-")
    wire.send(join(first.member_id), 2)
    _, joined = wire.receive(JOIN_GROUP, 5)
    assert joined.error_code == ErrorCode.none
    assert (joined.generation_id, joined.leader, joined.protocol_name) == (1, first.member_id, "range")
    assert [(m.member_id, m.metadata) for m in joined.members] == [(first.member_id, b"meta")]
    wire.send(FindCoordinatorRequest(key_type=0, coordinator_keys=("wire-join", "other")), 3)
    _, found = wire.receive(FIND_COORDINATOR, 4)
    assert [(c.key, c.node_id, f"{c.host}:{c.port}") for c in found.coordinators] == \
        [("wire-join", 0, kafka_server.bootstrap), ("other", 0, kafka_server.bootstrap)]
    wire.close()


def test_list_offsets_v9_answers_max_timestamp_earliest_local_and_latest_tiered(kafka_server: KafkaServer) -> None:
    from kio.schema.list_offsets.v9 import request as list_v9

    create(kafka_server, "stamps")
    wire = Wire(kafka_server.bootstrap)
    stamped = build_batch([Record(None, b"a", timestamp=1_000), Record(None, b"b", timestamp=9_000),
                           Record(None, b"c", timestamp=5_000)])
    wire.send(produce("stamps", stamped), 1)
    wire.receive(PRODUCE, 9)
    answers = {}
    for spec in (-1, -2, -3, -4, -5, 4_000):
        wire.send(list_v9.ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=(
            list_v9.ListOffsetsTopic(name="stamps", partitions=(
                list_v9.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1, timestamp=spec),)),)), 2)
        _, response = wire.receive(2, 9)
        part = response.topics[0].partitions[0]
        assert part.error_code == ErrorCode.none
        answers[spec] = (part.offset, part.timestamp)
    wire.close()
    assert answers[-1][0] == 3 and answers[-2][0] == 0
    assert answers[-3] == (1, 9_000)  # the record with the largest timestamp, not the last one
    assert answers[-4][0] == 0  # nothing tiered yet: the local log starts at 0
    assert answers[-5][0] == -1  # and no offset is tiered
    assert answers[4_000] == (1, 9_000)


def test_the_brokers_fetch_max_bytes_bounds_what_a_client_asks(tmp_path: Any) -> None:
    """A client asking max_bytes 2^31-1 of a large partition gets at most fetch.max.bytes
    (plus one batch, KIP-74): the broker's memory does not follow the client's wish."""
    server = KafkaServer(str(tmp_path / "data"), "fetch.max.bytes=65536").start()
    try:
        create(server, "capped")
        wire = Wire(server.bootstrap)
        for i in range(64):  # 64 batches of ~10 KB
            wire.send(produce("capped", batch(os.urandom(10_000) + b"%d" % i)), i + 10)
            assert wire.receive(PRODUCE, 9)[1].responses[0].partition_responses[0].error_code == ErrorCode.none
        wire.send(fetch("capped", 0, 0, partition_max_bytes=2**31 - 1), 1)
        records = wire.receive(FETCH, 12)[1].responses[0].partitions[0].records
        assert 55_000 < len(records) <= 65_536 + 10_100
    finally:
        assert server.stop() == 0, server.log()


def test_a_frame_size_announced_but_not_sent_costs_no_memory(kafka_server: KafkaServer) -> None:
    """Twenty connections that each announce a 100 MB request and send nothing more: the
    receive buffers grow with the bytes received, not with what a frame declares."""
    assert kafka_server.process is not None
    before = resident_mb(kafka_server.process.pid)
    sockets = []
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", kafka_server.kafka_port))
            s.sendall(SIZE.pack(104_857_600) + b"\x00\x03\x00\x0c")  # a Metadata request, 100 MB long
            sockets.append(s)
        time.sleep(1.0)
        grown = resident_mb(kafka_server.process.pid) - before
        assert grown < 40, f"resident memory grew {grown:.0f} MB for 20 announced frames"
        wire = Wire(kafka_server.bootstrap)  # and the broker still serves
        wire.send(metadata(), 1)
        assert wire.receive(METADATA, 12)[1].topics is not None
    finally:
        for s in sockets:
            s.close()


def test_idle_connections_are_closed_after_connections_max_idle_ms(tmp_path: Any) -> None:
    server = KafkaServer(str(tmp_path / "data"), "connections.max.idle.ms=500").start()
    try:
        create(server, "idle")
        idle = [socket.create_connection(("127.0.0.1", server.kafka_port)) for _ in range(50)]
        polling = Wire(server.bootstrap)
        polling.send(fetch("idle", 0, 2500), 7)  # a long poll in flight is not idle
        time.sleep(1.5)
        for s in idle:
            s.settimeout(2)
            try:
                assert s.recv(1) == b"", "an idle connection should have been closed by the broker"
            except ConnectionResetError:
                pass  # closed with a reset
            s.close()
        correlation, answer = polling.receive(FETCH, 12)
        assert correlation == 7 and answer.responses[0].partitions[0].error_code == ErrorCode.none
    finally:
        assert server.stop() == 0, server.log()
