"""Produce requests appended as they are read: large ones straight from the receive buffer
(their records never copied), small ones and those behind other requests decoded by kio.
Whichever way, pipelined requests are appended in the order they were sent."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from hotlog.records import decode_batches

from .cluster import KafkaServer
from .test_protocol import FETCH, METADATA, PRODUCE, batch, create, fetch, metadata, produce
from .wire import Wire, request_frame

LARGE = 100 * 1024  # past the size from which records stay in the frame


def values(n: int, size: int) -> list[bytes]:
    return [(b"%05d." % n) * (size // 6) + bytes(j) for j in range(3)]


def test_pipelined_produces_large_small_and_behind_metadata_are_appended_in_order(kafka_server: KafkaServer) -> None:
    create(kafka_server, "in-place")
    sent: list[bytes] = []
    frames = b""
    expected: list[tuple[int, int]] = []  # (correlation id, api key) in the order sent
    for n in range(12):
        if n == 5:  # a request of another API: the Produce requests after it wait for it
            frames += request_frame(metadata("in-place"), 100)
            expected.append((100, METADATA))
        batch_values = values(n, LARGE if n % 3 else 100)
        sent += batch_values
        frames += request_frame(produce("in-place", batch(*batch_values), acks=-1 if n % 2 else 1), n)
        expected.append((n, PRODUCE))
    wire = Wire(kafka_server.bootstrap)
    wire.send_raw(frames)
    offsets = []
    for correlation_id, api_key in expected:
        got, response = wire.receive(api_key, 9 if api_key == PRODUCE else 12)
        assert got == correlation_id
        if api_key == PRODUCE:
            part = response.responses[0].partition_responses[0]
            assert part.error_code == ErrorCode.none
            offsets.append(part.base_offset)
    assert offsets == [3 * n for n in range(12)]  # three records each, appended in the order sent
    read: list[bytes] = []
    while len(read) < len(sent):
        wire.send(fetch("in-place", len(read), 100, partition_max_bytes=8 << 20), 200)
        _, response = wire.receive(FETCH, 12)
        read += [r.value for b in decode_batches(response.responses[0].partitions[0].records) for r in b.records]
    assert read == sent
    wire.close()


def test_a_large_produce_with_a_bad_batch_changes_nothing(kafka_server: KafkaServer) -> None:
    create(kafka_server, "in-place-bad")
    good = batch(*values(1, LARGE))
    bad = bytearray(batch(*values(2, LARGE)))
    bad[-1] ^= 0xFF  # its CRC no longer matches
    wire = Wire(kafka_server.bootstrap)
    wire.send_raw(request_frame(produce("in-place-bad", bytes(bad)), 1) + request_frame(produce("in-place-bad", good), 2))
    assert wire.receive(PRODUCE, 9)[1].responses[0].partition_responses[0].error_code == ErrorCode.corrupt_message
    answer = wire.receive(PRODUCE, 9)[1].responses[0].partition_responses[0]
    assert (answer.error_code, answer.base_offset) == (ErrorCode.none, 0)  # the bad one took no offsets
    wire.close()
