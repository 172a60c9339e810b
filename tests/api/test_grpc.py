"""The gRPC API over a real channel to `tierlog serve` in a subprocess."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from api.proto import tierlog_pb2 as pb
from api.proto import tierlog_pb2_grpc as pb_grpc
from hotlog.partitioner import partition_for_key

from .server import TierlogServer, http_get


def create(stub: pb_grpc.TierlogStub, name: str, partitions: int = 1, **configs: str) -> pb.TopicDescription:
    return stub.CreateTopic(pb.CreateTopicRequest(name=name, partitions=partitions, configs=configs))


def record(value: bytes, key: bytes | None = None, timestamp_ms: int | None = None,
           headers: tuple[tuple[str, bytes | None], ...] = ()) -> pb.Record:
    return pb.Record(key=key, value=value, timestamp_ms=timestamp_ms,
                     headers=[pb.Header(key=k, value=v) for k, v in headers])


def fetch(stub: pb_grpc.TierlogStub, topic: str, partition: int, offset: int, **kw: int) -> pb.FetchResponse:
    return stub.Fetch(pb.FetchRequest(topic=topic, partitions=[pb.PartitionOffset(partition=partition, offset=offset)],
                                      **kw))


def status_of(call) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_produced_records_come_back_with_keys_headers_and_timestamps(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "orders", partitions=4)
    sent = [record(f"order {i}".encode(), key=f"customer-{i % 5}".encode(), timestamp_ms=1_700_000_000_000 + i,
                   headers=(("source", b"web"), ("trace", None))) for i in range(20)]
    response = grpc_stub.Produce(pb.ProduceRequest(topic="orders", records=sent))
    written = {p.partition: p for p in response.partitions}
    by_partition: dict[int, list[pb.Record]] = {}
    for r in sent:
        by_partition.setdefault(partition_for_key(r.key, 4), []).append(r)
    assert set(written) == set(by_partition)  # Kafka's murmur2 partitioner
    for partition, expected in by_partition.items():
        assert (written[partition].base_offset, written[partition].last_offset) == (0, len(expected) - 1)
        got = fetch(grpc_stub, "orders", partition, 0).partitions[0]
        assert [(r.key, r.value, r.timestamp_ms, r.offset) for r in got.records] == [
            (r.key, r.value, r.timestamp_ms, i) for i, r in enumerate(expected)
        ]
        assert [(h.key, h.HasField("value"), h.value) for h in got.records[0].headers] == [
            ("source", True, b"web"), ("trace", False, b"")
        ]
        assert got.next_offset == got.high_watermark == len(expected)


def test_fetch_from_the_middle_and_null_keys_and_values(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "middle")
    grpc_stub.Produce(pb.ProduceRequest(topic="middle", records=[record(b"a"), record(b"b"), pb.Record()]))
    got = fetch(grpc_stub, "middle", 0, 1).partitions[0]
    assert [r.offset for r in got.records] == [1, 2]
    assert not got.records[1].HasField("value") and not got.records[1].HasField("key")
    assert fetch(grpc_stub, "middle", 0, 3).partitions == []  # at the end, no wait asked


def test_records_without_key_go_to_one_partition_per_request_in_turn(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "spread", partitions=3)
    used = []
    for _ in range(3):
        response = grpc_stub.Produce(pb.ProduceRequest(topic="spread", records=[record(b"x"), record(b"y")]))
        assert len(response.partitions) == 1
        used.append(response.partitions[0].partition)
    assert sorted(used) == [0, 1, 2]


def test_a_produce_larger_than_max_message_bytes_is_split_into_batches(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "bulk", **{"max.message.bytes": "65536"})
    values = [bytes([i % 251]) * 1000 for i in range(500)]  # ~500 KB, 8x the batch limit
    response = grpc_stub.Produce(pb.ProduceRequest(topic="bulk", records=[record(v) for v in values],
                                                   compression=pb.COMPRESSION_ZSTD))
    assert (response.partitions[0].base_offset, response.partitions[0].last_offset) == (0, 499)
    got, offset = [], 0
    while offset < 500:
        part = fetch(grpc_stub, "bulk", 0, offset).partitions[0]
        got += [r.value for r in part.records]
        offset = part.next_offset
    assert got == values


def test_fetch_at_the_end_waits_for_a_produce(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "longpoll", partitions=2)
    started = time.monotonic()
    assert fetch(grpc_stub, "longpoll", 0, 0, max_wait_ms=300).partitions == []
    assert time.monotonic() - started >= 0.28

    def produce_later() -> None:
        time.sleep(0.4)
        grpc_stub.Produce(pb.ProduceRequest(topic="longpoll", partition=1, records=[record(b"woke")]))

    with ThreadPoolExecutor(1) as pool:
        pool.submit(produce_later)
        started = time.monotonic()
        response = grpc_stub.Fetch(pb.FetchRequest(topic="longpoll", max_wait_ms=10_000, partitions=[
            pb.PartitionOffset(partition=0, offset=0), pb.PartitionOffset(partition=1, offset=0)]))
        waited = time.monotonic() - started
    assert [(p.partition, [r.value for r in p.records]) for p in response.partitions] == [(1, [b"woke"])]
    assert 0.3 < waited < 5  # woken by the append, not by the 10 s limit


def test_subscribe_pushes_records_produced_after_subscribing(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "live", partitions=2)
    grpc_stub.Produce(pb.ProduceRequest(topic="live", partition=0, records=[record(b"before")]))
    stream = grpc_stub.Subscribe(pb.SubscribeRequest(topic="live", start=pb.StartPosition(beginning=True)))

    def produce_later() -> None:
        time.sleep(0.5)
        for i in range(3):
            grpc_stub.Produce(pb.ProduceRequest(topic="live", partition=i % 2, records=[record(b"after %d" % i)]))

    threading.Thread(target=produce_later, daemon=True).start()
    seen: list[tuple[int, int, bytes]] = []
    started = time.monotonic()
    for message in stream:
        seen += [(message.partition, r.offset, r.value) for r in message.records]
        if len(seen) == 4:
            break
    stream.cancel()
    assert sorted(seen) == [(0, 0, b"before"), (0, 1, b"after 0"), (0, 2, b"after 2"), (1, 0, b"after 1")]
    assert time.monotonic() - started < 5


def test_subscribe_from_latest_offset_and_timestamp(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "starts")
    grpc_stub.Produce(pb.ProduceRequest(topic="starts", records=[
        record(b"t1000", timestamp_ms=1000), record(b"t2000", timestamp_ms=2000), record(b"t3000", timestamp_ms=3000)]))

    def first(start: pb.StartPosition) -> bytes:
        stream = grpc_stub.Subscribe(pb.SubscribeRequest(topic="starts", start=start))
        value = next(iter(stream)).records[0].value
        stream.cancel()
        return value

    assert first(pb.StartPosition(offset=1)) == b"t2000"
    assert first(pb.StartPosition(timestamp_ms=2500)) == b"t3000"
    stream = grpc_stub.Subscribe(pb.SubscribeRequest(topic="starts", start=pb.StartPosition(latest=True)))
    time.sleep(0.3)  # the server resolves "latest" on receipt
    grpc_stub.Produce(pb.ProduceRequest(topic="starts", records=[record(b"new")]))
    assert [r.value for r in next(iter(stream)).records] == [b"new"]
    stream.cancel()


def test_a_subscription_ends_when_its_topic_is_deleted(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "doomed")
    grpc_stub.Produce(pb.ProduceRequest(topic="doomed", records=[record(b"last words")]))
    stream = iter(grpc_stub.Subscribe(pb.SubscribeRequest(topic="doomed", start=pb.StartPosition(beginning=True))))
    assert next(stream).records[0].value == b"last words"  # subscribed and waiting
    grpc_stub.DeleteTopic(pb.DeleteTopicRequest(name="doomed"))
    started = time.monotonic()
    error = status_of(lambda: next(stream))
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "topic 'doomed' was deleted")
    assert time.monotonic() - started < 1  # woken by the delete, not by the periodic check


def test_list_offsets_earliest_latest_and_by_timestamp(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "times")
    grpc_stub.Produce(pb.ProduceRequest(topic="times", records=[
        record(b"a", timestamp_ms=1000), record(b"b", timestamp_ms=2000), record(b"c", timestamp_ms=3000)]))

    def offsets(spec: int, timestamp_ms: int = 0) -> tuple[int, int]:
        found = grpc_stub.ListOffsets(pb.ListOffsetsRequest(topic="times", spec=spec, timestamp_ms=timestamp_ms))
        return found.partitions[0].offset, found.partitions[0].timestamp_ms

    assert offsets(pb.OFFSET_SPEC_EARLIEST) == (0, -1)
    assert offsets(pb.OFFSET_SPEC_LATEST) == (3, -1)
    assert offsets(pb.OFFSET_SPEC_TIMESTAMP, 1500) == (1, 2000)
    assert offsets(pb.OFFSET_SPEC_TIMESTAMP, 3000) == (2, 3000)
    assert offsets(pb.OFFSET_SPEC_TIMESTAMP, 3001) == (-1, -1)


def test_topic_admin(grpc_stub: pb_grpc.TierlogStub) -> None:
    created = create(grpc_stub, "admin-a", partitions=3, **{"retention.ms": "3600000", "segment.bytes": "1048576"})
    assert [p.partition for p in created.partitions] == [0, 1, 2]
    configs = {c.name: (c.value, c.is_default) for c in created.configs}
    assert configs["retention.ms"] == ("3600000", False)
    assert configs["segment.bytes"] == ("1048576", False)
    assert configs["cleanup.policy"] == ("delete", True)
    dry = grpc_stub.CreateTopic(pb.CreateTopicRequest(name="admin-dry", partitions=2, validate_only=True))
    assert len(dry.partitions) == 2
    names = [t.name for t in grpc_stub.ListTopics(pb.ListTopicsRequest()).topics]
    assert "admin-a" in names and "admin-dry" not in names
    described = grpc_stub.DescribeTopic(pb.DescribeTopicRequest(name="admin-a"))
    assert described.topic_id == created.topic_id and len(described.partitions) == 3
    grpc_stub.DeleteTopic(pb.DeleteTopicRequest(name="admin-a"))
    assert "admin-a" not in [t.name for t in grpc_stub.ListTopics(pb.ListTopicsRequest()).topics]
    error = status_of(lambda: grpc_stub.DescribeTopic(pb.DescribeTopicRequest(name="admin-a")))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "admin-a" in error.details()
    recreated = create(grpc_stub, "admin-a")
    assert recreated.topic_id != created.topic_id and recreated.partitions[0].high_watermark == 0


@pytest.mark.parametrize("request_, code, words", [
    (pb.CreateTopicRequest(name="bad-config", configs={"retention.ms": "soon"}),
     grpc.StatusCode.INVALID_ARGUMENT, "retention.ms"),
    (pb.CreateTopicRequest(name="bad-config", configs={"no.such.config": "1"}),
     grpc.StatusCode.INVALID_ARGUMENT, "no.such.config"),
    (pb.CreateTopicRequest(name="bad/name"), grpc.StatusCode.INVALID_ARGUMENT, "not legal"),
    (pb.CreateTopicRequest(name="bad-partitions", partitions=-1), grpc.StatusCode.INVALID_ARGUMENT, "partition"),
    # Each partition holds open files: the Kafka listener's cap holds for gRPC too (one code path).
    (pb.CreateTopicRequest(name="too-many-partitions", partitions=10_001), grpc.StatusCode.INVALID_ARGUMENT,
     "a topic has 1 to 10000"),
])
def test_bad_topic_requests_are_refused_and_create_nothing(grpc_stub: pb_grpc.TierlogStub, request_: pb.CreateTopicRequest,
                                                           code: grpc.StatusCode, words: str) -> None:
    error = status_of(lambda: grpc_stub.CreateTopic(request_))
    assert error.code() == code and words in error.details()
    assert request_.name not in [t.name for t in grpc_stub.ListTopics(pb.ListTopicsRequest()).topics]


def test_errors_map_to_status_codes(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "errors", partitions=2, **{"max.message.bytes": "10000"})
    grpc_stub.Produce(pb.ProduceRequest(topic="errors", partition=0, records=[record(b"one")]))
    cases = [
        (lambda: grpc_stub.Produce(pb.ProduceRequest(topic="nope", records=[record(b"x")])),
         grpc.StatusCode.NOT_FOUND, "unknown topic 'nope'"),
        (lambda: grpc_stub.Produce(pb.ProduceRequest(topic="errors", partition=7, records=[record(b"x")])),
         grpc.StatusCode.NOT_FOUND, "no partition 7"),
        (lambda: grpc_stub.Produce(pb.ProduceRequest(topic="errors")), grpc.StatusCode.INVALID_ARGUMENT, "no records"),
        (lambda: grpc_stub.Produce(pb.ProduceRequest(topic="errors", records=[record(b"x")], compression=9)),
         grpc.StatusCode.INVALID_ARGUMENT, "compression"),
        (lambda: grpc_stub.Produce(pb.ProduceRequest(topic="errors", partition=0, records=[
            record(b"ok"), record(b"x" * 20_000)])), grpc.StatusCode.RESOURCE_EXHAUSTED, "batch of 10000 bytes"),
        (lambda: fetch(grpc_stub, "errors", 0, 5), grpc.StatusCode.OUT_OF_RANGE, "errors-0: offset 5 is out of range [0, 1]"),
        (lambda: fetch(grpc_stub, "errors", 0, 0, max_wait_ms=-1), grpc.StatusCode.INVALID_ARGUMENT, "max_wait_ms"),
        (lambda: grpc_stub.Fetch(pb.FetchRequest(topic="errors")), grpc.StatusCode.INVALID_ARGUMENT, "partition"),
        (lambda: next(iter(grpc_stub.Subscribe(pb.SubscribeRequest(topic="errors", offsets={1: 9})))),
         grpc.StatusCode.OUT_OF_RANGE, "errors-1: offset 9"),
        (lambda: next(iter(grpc_stub.Subscribe(pb.SubscribeRequest(topic="gone")))), grpc.StatusCode.NOT_FOUND, "gone"),
        (lambda: grpc_stub.CreateTopic(pb.CreateTopicRequest(name="errors")), grpc.StatusCode.ALREADY_EXISTS, "exists"),
        (lambda: grpc_stub.TierStatus(pb.TierStatusRequest(topic="nope")), grpc.StatusCode.NOT_FOUND, "nope"),
        (lambda: grpc_stub.CommitOffsets(pb.CommitOffsetsRequest(topic="errors", offsets=[
            pb.CommittedOffset(partition=0, offset=1)])), grpc.StatusCode.INVALID_ARGUMENT, "group"),
        (lambda: grpc_stub.CommitOffsets(pb.CommitOffsetsRequest(group="g", topic="errors", offsets=[
            pb.CommittedOffset(partition=0, offset=-2)])), grpc.StatusCode.INVALID_ARGUMENT, "negative"),
        (lambda: grpc_stub.FetchCommittedOffsets(pb.FetchCommittedOffsetsRequest(group="g", topic="errors",
                                                                                 partitions=[3])),
         grpc.StatusCode.NOT_FOUND, "no partition 3"),
    ]
    for call, code, words in cases:
        error = status_of(call)
        assert (error.code(), words in error.details()) == (code, True), error.details()
    # The refused produce with a too-large record appended nothing, not even the small one.
    assert fetch(grpc_stub, "errors", 0, 0).partitions[0].high_watermark == 1


def test_tier_status_reports_both_tiers(grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "tiers", partitions=2, **{"segment.bytes": "4096"})
    for _ in range(8):  # ~8 KB into 4 KB segments: rolled segments to upload
        grpc_stub.Produce(pb.ProduceRequest(topic="tiers", partition=1, records=[record(b"v" * 100)] * 10))
    status = grpc_stub.TierStatus(pb.TierStatusRequest(topic="tiers"))
    rows = {(p.topic, p.partition): p for p in status.partitions}
    assert set(rows) == {("tiers", 0), ("tiers", 1)} and status.tiering_enabled
    assert (rows["tiers", 1].local_log_start_offset, rows["tiers", 1].log_end_offset) == (0, 80)
    assert rows["tiers", 1].local_bytes > 8000 and rows["tiers", 0].local_bytes == 0
    assert (rows["tiers", 0].remote_log_start_offset, rows["tiers", 0].remote_bytes) == (-1, 0)
    deadline = time.monotonic() + 15
    while rows["tiers", 1].copy_lag_segments or not rows["tiers", 1].remote_bytes:  # tiering passes every 200 ms
        assert time.monotonic() < deadline, rows["tiers", 1]
        time.sleep(0.1)
        rows = {(p.topic, p.partition): p for p in grpc_stub.TierStatus(pb.TierStatusRequest(topic="tiers")).partitions}
    tiered = rows["tiers", 1]
    assert tiered.remote_log_start_offset == 0 and 0 < tiered.remote_log_end_offset < 80
    assert 4000 < tiered.remote_bytes < tiered.local_bytes  # the active segment stays local only
    everything = grpc_stub.TierStatus(pb.TierStatusRequest())
    assert {("tiers", 0), ("tiers", 1)} <= {(p.topic, p.partition) for p in everything.partitions}


def test_health_checking_and_reflection(grpc_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", "tierlog.v1.Tierlog"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING
    database = ProtoReflectionDescriptorDatabase(grpc_channel)
    assert {"tierlog.v1.Tierlog", "grpc.health.v1.Health"} <= set(database.get_services())
    service = DescriptorPool(database).FindServiceByName("tierlog.v1.Tierlog")
    assert {"Produce", "Fetch", "Subscribe", "ListOffsets", "TierStatus"} <= {m.name for m in service.methods}
    assert service.methods_by_name["Subscribe"].server_streaming


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    raise AssertionError(f"no sample {name} {labels} in /metrics")


def test_metrics_and_healthz(tierlog_server: TierlogServer, grpc_stub: pb_grpc.TierlogStub) -> None:
    create(grpc_stub, "metered", partitions=2)
    grpc_stub.Produce(pb.ProduceRequest(topic="metered", partition=0, records=[record(b"m" * 1000)]))
    fetch(grpc_stub, "metered", 0, 0)
    status_of(lambda: grpc_stub.DescribeTopic(pb.DescribeTopicRequest(name="unmetered")))
    code, body = http_get(f"{tierlog_server.http_url}/metrics")
    assert code == 200
    assert _sample(body, "tierlog_api_requests_total", protocol="grpc", api="Produce", code="OK") >= 1
    assert _sample(body, "tierlog_api_requests_total", api="DescribeTopic", code="NOT_FOUND") >= 1
    assert _sample(body, "tierlog_api_request_seconds_count", protocol="grpc", api="Fetch") >= 1
    assert _sample(body, "tierlog_bytes_in_total", protocol="grpc") > 1000
    assert _sample(body, "tierlog_bytes_out_total", protocol="grpc") > 1000
    assert _sample(body, "tierlog_log_size_bytes", topic="metered", partition="0", tier="local") > 1000
    assert _sample(body, "tierlog_log_end_offset", topic="metered", partition="0") == 1
    assert re.search(r"^tierlog_partitions \d+", body, re.M)
    assert http_get(f"{tierlog_server.http_url}/healthz") == (200, '{"status": "serving"}')


def test_committed_offsets_are_shared_with_kafka_clients(tierlog_server: TierlogServer,
                                                         grpc_stub: pb_grpc.TierlogStub) -> None:
    from confluent_kafka import Consumer, TopicPartition

    create(grpc_stub, "shared-offsets", partitions=2)
    bootstrap = f"127.0.0.1:{tierlog_server.kafka_port}"
    kafka = Consumer({"bootstrap.servers": bootstrap, "group.id": "from-kafka", "enable.auto.commit": False})
    try:
        kafka.commit(offsets=[TopicPartition("shared-offsets", 1, 7)], asynchronous=False)
        seen = grpc_stub.FetchCommittedOffsets(pb.FetchCommittedOffsetsRequest(group="from-kafka",
                                                                               topic="shared-offsets"))
        assert [(o.partition, o.offset) for o in seen.offsets] == [(0, -1), (1, 7)]
    finally:
        kafka.close()
    grpc_stub.CommitOffsets(pb.CommitOffsetsRequest(group="from-grpc", topic="shared-offsets", offsets=[
        pb.CommittedOffset(partition=0, offset=3, metadata="by grpc")]))
    kafka = Consumer({"bootstrap.servers": bootstrap, "group.id": "from-grpc", "enable.auto.commit": False})
    try:
        [committed] = kafka.committed([TopicPartition("shared-offsets", 0)], timeout=10)
        assert (committed.offset, committed.metadata) == (3, "by grpc")
    finally:
        kafka.close()
    error = status_of(lambda: grpc_stub.CommitOffsets(pb.CommitOffsetsRequest(
        group="from-grpc", topic="shared-offsets", offsets=[pb.CommittedOffset(partition=0, offset=4,
                                                                               metadata="m" * 5000)])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in error.details()
