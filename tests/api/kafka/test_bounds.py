"""Hostile and broken clients against a real `tierlog serve`, over raw sockets: what one
client may hold (connections, memory of frames it has not finished, time for a frame,
the event loop while a huge request is served) is bounded, and the others are served."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from .bounds_support import metadata_v9_frame, metric, resident_mb
from .cluster import KafkaServer, own_kafka_server
from .test_descriptors import soft_nofile_limit
from .test_protocol import FETCH, METADATA, PRODUCE, batch, create, fetch, metadata, produce
from .wire import SIZE, Wire, request_frame

kafka_server = own_kafka_server()  # this module's own: it measures the broker process's memory


def answers(wire: Wire) -> bool:
    """Whether the broker serves this connection (a Metadata round trip)."""
    try:
        wire.send(metadata(), 99)
        return wire.receive(METADATA, 12)[0] == 99
    except OSError:
        return False


def connect(server: KafkaServer, source: str = "127.0.0.1") -> Wire:
    return Wire(server.bootstrap, timeout=5, source=source)


def wait_for_open(server: KafkaServer, count: int) -> None:
    """Until the broker counts `count` connections open (a closed one is counted out soon after)."""
    deadline = time.monotonic() + 5
    while metric(server, "tierlog_kafka_connections") != count:
        assert time.monotonic() < deadline, f"{metric(server, 'tierlog_kafka_connections')} open, not {count}"
        time.sleep(0.02)


def test_max_connections_and_per_ip_bounds_close_new_connections_at_once(tmp_path: Any) -> None:
    server = KafkaServer(str(tmp_path / "data"), "max.connections=8", "max.connections.per.ip=3",
                         "max.connections.per.ip.overrides=127.0.0.2:4").start()
    try:
        wait_for_open(server, 0)  # start() probed the port
        local = [connect(server) for _ in range(3)]
        assert all(answers(w) for w in local)
        fourth = connect(server)
        assert fourth.is_closed_by_server(2), "a fourth connection from 127.0.0.1 passes max.connections.per.ip"
        other = [connect(server, "127.0.0.2") for _ in range(4)]  # the override lets this address have 4
        assert all(answers(w) for w in other)
        assert connect(server, "127.0.0.2").is_closed_by_server(2)
        ninth = connect(server, "127.0.0.3")
        assert answers(ninth)  # 8 open now: 3 + 4 + 1
        assert connect(server, "127.0.0.4").is_closed_by_server(2), "a ninth connection passes max.connections"
        assert metric(server, 'tierlog_kafka_connections_refused_total{reason="max.connections.per.ip"}') == 2
        assert metric(server, 'tierlog_kafka_connections_refused_total{reason="max.connections"}') == 1
        assert metric(server, "tierlog_kafka_connections") == 8
        local.pop().close()  # a slot comes free
        wait_for_open(server, 7)
        assert answers(connect(server))
    finally:
        assert server.stop() == 0, server.log()


def test_out_of_descriptors_is_one_log_line_per_interval_and_refused_connections_close(tmp_path: Any) -> None:
    """With max.connections above what RLIMIT_NOFILE allows, connections past the limit
    are closed at once (not left hanging in the backlog) and logged once per interval, not
    a traceback each; the broker serves again once descriptors come free."""
    with soft_nofile_limit(160):
        server = KafkaServer(str(tmp_path / "data"), "max.connections=100000").start()
    try:
        holders, refused = [], 0
        started = time.monotonic()
        for _ in range(400):
            wire = connect(server)
            holders.append(wire)
        for wire in holders[-100:]:
            refused += wire.is_closed_by_server(2)
        assert refused == 100, "connections past the descriptor limit should be closed at once"
        assert time.monotonic() - started < 20
        log = server.log()
        assert "Traceback" not in log
        lines = [line for line in log.splitlines() if "out of file descriptors" in line]
        assert 1 <= len(lines) <= 2, lines
        for wire in holders:
            wire.close()
        wait_for_open(server, 0)  # /metrics answers again once descriptors are free
        assert metric(server, 'tierlog_kafka_connections_refused_total{reason="descriptors"}') >= 100
        assert answers(connect(server))
    finally:
        assert server.stop() == 0, server.log()


def test_the_default_max_connections_leaves_descriptors_for_the_broker(tmp_path: Any) -> None:
    """By default max.connections is a quarter of RLIMIT_NOFILE: refusal comes before the
    descriptors run out, so the broker never meets EMFILE on accept."""
    with soft_nofile_limit(256):
        server = KafkaServer(str(tmp_path / "data")).start()
    try:
        wait_for_open(server, 0)
        wires = [connect(server) for _ in range(100)]
        assert sum(w.is_closed_by_server(0.5) for w in wires[-30:]) == 30
        assert metric(server, 'tierlog_kafka_connections_refused_total{reason="max.connections"}') == 100 - 64
        assert metric(server, "tierlog_kafka_accept_errors_total") == 0
        assert "at most 64 connections" in server.log()
        for wire in wires:
            wire.close()
    finally:
        assert server.stop() == 0, server.log()


def _send_for(sock: socket.socket, data: bytes, seconds: float) -> int:
    """Send what the broker takes within `seconds`; the bytes sent."""
    sock.settimeout(0.2)
    sent, deadline, view = 0, time.monotonic() + seconds, memoryview(data)
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(view[sent : sent + (1 << 20)])
        except TimeoutError:
            continue
    return sent


def test_half_sent_frames_hold_at_most_queued_max_request_bytes(kafka_server: KafkaServer) -> None:
    """Twenty clients each sending half of a 100 MB frame: the pool (256 MiB) lets two read
    on, the others wait without memory; the broker grows by about the two frames' buffers,
    not 20 x 64 MiB, and still serves small requests."""
    assert kafka_server.process is not None
    pid = kafka_server.process.pid
    before = resident_mb(pid)
    half = os.urandom(1 << 20) * 50
    clients = [socket.create_connection(("127.0.0.1", kafka_server.kafka_port)) for _ in range(20)]
    try:
        with ThreadPoolExecutor(len(clients)) as senders:
            sent = list(senders.map(lambda c: _send_for(c, SIZE.pack(104_857_600) + b"\x00\x00\x00\x09" + half, 2.0),
                                    clients))
        grown = resident_mb(pid) - before
        assert grown < 300, f"resident memory grew {grown:.0f} MB for 20 half-sent 100 MB frames"
        assert sum(s > 40_000_000 for s in sent) >= 2  # two read on
        assert metric(kafka_server, "tierlog_kafka_queued_request_bytes") == 2 * (104_857_600 + 4)
        assert answers(Wire(kafka_server.bootstrap))
    finally:
        for c in clients:
            c.close()
    deadline = time.monotonic() + 5
    while metric(kafka_server, "tierlog_kafka_queued_request_bytes") != 0:
        assert time.monotonic() < deadline, "the pool was not given back when the clients went"
        time.sleep(0.05)


def test_a_frame_waits_for_the_pool_and_is_served_when_memory_comes_free(tmp_path: Any) -> None:
    server = KafkaServer(str(tmp_path / "data"), "socket.request.max.bytes=4194304",
                         "queued.max.request.bytes=8388608").start()
    try:
        create(server, "pooled")
        holders = [socket.create_connection(("127.0.0.1", server.kafka_port)) for _ in range(2)]
        for holder in holders:  # each holds 4 MiB of the 8 MiB pool
            holder.sendall(SIZE.pack(4_194_304) + b"\x00\x00\x00\x09" + b"\x00" * 1_000_000)
        time.sleep(0.3)
        producer = Wire(server.bootstrap)
        producer.send(produce("pooled", batch(os.urandom(600_000))), 1)  # > 256 KiB: needs the pool
        producer.sock.settimeout(1)
        try:
            producer.receive(PRODUCE, 9)
            raise AssertionError("a frame was read past queued.max.request.bytes")
        except TimeoutError:
            pass
        holders[0].close()
        producer.sock.settimeout(5)
        _, response = producer.receive(PRODUCE, 9)
        assert response.responses[0].partition_responses[0].error_code == ErrorCode.none
        holders[1].close()
    finally:
        assert server.stop() == 0, server.log()


def test_a_trickled_frame_is_cut_at_its_read_deadline_and_a_slow_honest_one_is_served(tmp_path: Any) -> None:
    server = KafkaServer(str(tmp_path / "data"), "socket.request.read.timeout.ms=1000",
                         "socket.request.read.min.bytes.per.second=524288").start()
    try:
        create(server, "slow")
        trickle = Wire(server.bootstrap)
        data = request_frame(metadata("slow"), 5)
        started = time.monotonic()
        cut = None
        trickle.sock.settimeout(0.1)
        for i in range(len(data) - 1):  # a byte every 0.1 s: 5 s for the frame
            try:
                trickle.sock.sendall(data[i : i + 1])
                if trickle.sock.recv(1) == b"":
                    cut = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                cut = time.monotonic() - started
                break
        assert cut is not None and cut < 2.5, f"a trickled frame was not cut off (after {cut})"
        # 1 MB in about 1.5 s: past the 1 s base, within it plus 1.9 s at the minimum rate.
        honest = Wire(server.bootstrap)
        frame_bytes = request_frame(produce("slow", batch(os.urandom(1_000_000))), 6)
        for offset in range(0, len(frame_bytes), 100_000):
            honest.send_raw(frame_bytes[offset : offset + 100_000])
            time.sleep(0.15)
        _, response = honest.receive(PRODUCE, 9)
        assert response.responses[0].partition_responses[0].error_code == ErrorCode.none
        lines = [line for line in server.log().splitlines() if "request frame still incomplete" in line]
        assert len(lines) == 1, lines
        assert metric(server, "tierlog_kafka_request_read_timeouts_total") == 1
    finally:
        assert server.stop() == 0, server.log()


def _produce_while(server: KafkaServer, busy: threading.Thread) -> list[float]:
    """acks=all produce round trips, one after another, while `busy` runs."""
    wire = Wire(server.bootstrap, timeout=5)
    latencies = []
    while busy.is_alive():
        started = time.monotonic()
        wire.send(produce("bystander", batch(b"still here"), acks=-1), len(latencies))
        _, response = wire.receive(PRODUCE, 9)
        assert response.responses[0].partition_responses[0].error_code == ErrorCode.none
        latencies.append(time.monotonic() - started)
        time.sleep(0.02)
    wire.close()
    return latencies


def _huge_metadata(server: KafkaServer, names: list[bytes], answer: list[bytes]) -> threading.Thread:
    """A thread sending one Metadata request for `names` and keeping the raw response
    (decoded after the produces: decoding it here would stall this process, not the broker's)."""
    frame = metadata_v9_frame(names, 7)

    def run() -> None:
        wire = Wire(server.bootstrap, timeout=60)
        wire.send_raw(frame)
        answer.append(wire.receive_frame())
        wire.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _metadata_v9(frame: bytes) -> tuple[int, Any]:
    response_type = load_response_schema(METADATA, 9)
    header, used = entity_reader(response_type.__header_schema__)(frame, 0)
    return header.correlation_id, entity_reader(response_type)(frame, used)[0]


def test_a_metadata_request_naming_two_million_topics_does_not_hold_up_a_produce(kafka_server: KafkaServer) -> None:
    """6 MB, 2,000,000 topic names (26 distinct, as Kafka answers each once): decoded off
    the event loop; another client's acks=all produces are answered meanwhile."""
    create(kafka_server, "bystander")
    letters = [bytes([c]) for c in range(ord("a"), ord("z") + 1)]
    answer: list[bytes] = []
    busy = _huge_metadata(kafka_server, letters * (2_000_000 // 26) + letters[:2_000_000 % 26], answer)
    latencies = _produce_while(kafka_server, busy)
    busy.join()
    correlation_id, response = _metadata_v9(answer[0])
    assert correlation_id == 7
    assert sorted(t.name for t in response.topics) == [n.decode() for n in letters]
    assert {t.error_code for t in response.topics} == {ErrorCode.unknown_topic_or_partition}
    assert len(latencies) >= 5, "the request was answered before the produces could overlap it"
    assert max(latencies) < 1.0, f"a produce waited {max(latencies):.2f} s behind the metadata request"


def test_a_metadata_request_naming_half_a_million_distinct_topics_is_answered_in_slices(
        kafka_server: KafkaServer) -> None:
    create(kafka_server, "bystander")
    names = [b"unknown-%06d" % i for i in range(500_000)]
    answer: list[bytes] = []
    busy = _huge_metadata(kafka_server, names, answer)
    latencies = _produce_while(kafka_server, busy)
    busy.join()
    response = _metadata_v9(answer[0])[1]
    assert len(response.topics) == 500_000 and response.topics[-1].name == "unknown-499999"
    assert len(latencies) >= 5 and max(latencies) < 1.0, max(latencies)


def test_a_client_that_does_not_read_holds_one_response(kafka_server: KafkaServer) -> None:
    """32 pipelined fetches of 8 MB each from a client that never reads: the broker keeps
    one response for it at a time, as Kafka does, not 32."""
    create(kafka_server, "unread")
    wire = Wire(kafka_server.bootstrap)
    for i in range(8):
        wire.send(produce("unread", batch(os.urandom(1_000_000))), i)
        assert wire.receive(PRODUCE, 9)[1].responses[0].partition_responses[0].error_code == ErrorCode.none
    assert kafka_server.process is not None
    before = resident_mb(kafka_server.process.pid)
    greedy = Wire(kafka_server.bootstrap)
    greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    greedy.send_raw(b"".join(request_frame(fetch("unread", 0, 0, partition_max_bytes=8 << 20), i)
                             for i in range(32)))
    time.sleep(2)
    grown = resident_mb(kafka_server.process.pid) - before
    assert grown < 60, f"resident memory grew {grown:.0f} MB for one client's unread fetches"
    greedy.sock.settimeout(10)
    for i in range(32):  # and every response comes, in order, once it reads
        correlation_id, response = greedy.receive(FETCH, 12)
        assert correlation_id == i and len(response.responses[0].partitions[0].records) > 7_000_000


def test_an_idle_connection_costs_a_small_receive_buffer(kafka_server: KafkaServer) -> None:
    """500 connections left idle after one request each: a new connection's receive buffer
    starts small and grows only for the frames that need it (before: 256 KiB each)."""
    assert kafka_server.process is not None
    time.sleep(0.5)
    before = resident_mb(kafka_server.process.pid)
    idle = [Wire(kafka_server.bootstrap) for _ in range(500)]
    for wire in idle:
        assert answers(wire)
    grown = resident_mb(kafka_server.process.pid) - before
    assert grown < 40, f"resident memory grew {grown:.0f} MB for 500 idle connections"
    for wire in idle:
        wire.close()


def test_a_client_that_stops_reading_is_closed_after_connections_max_idle_ms(tmp_path: Any) -> None:
    server = KafkaServer(str(tmp_path / "data"), "connections.max.idle.ms=500").start()
    try:
        create(server, "stuck")
        wire = Wire(server.bootstrap)
        for i in range(4):
            wire.send(produce("stuck", batch(os.urandom(1_000_000))), i)
            wire.receive(PRODUCE, 9)
        stuck = Wire(server.bootstrap)
        stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.send_raw(b"".join(request_frame(fetch("stuck", 0, 0, partition_max_bytes=8 << 20), i)
                                for i in range(2)))
        time.sleep(2)  # a response it does not read, one more request waiting behind it
        stuck.sock.settimeout(1)
        received, closed, deadline = 0, False, time.monotonic() + 10
        while not closed and time.monotonic() < deadline:
            try:
                chunk = stuck.sock.recv(1 << 20)
            except ConnectionResetError:
                closed = True  # reset, with what was left unread dropped
            except TimeoutError:
                continue
            else:
                received += len(chunk)
                closed = not chunk
        assert closed and received < 8_000_000, "the broker kept a connection whose client stopped reading"
    finally:
        assert server.stop() == 0, server.log()


def test_out_of_descriptors_on_the_http_listener_is_one_log_line_per_interval(tmp_path: Any) -> None:
    """The HTTP listener accepts through asyncio: out of descriptors, its retries are one
    log line per interval too, not a traceback per attempt."""
    with soft_nofile_limit(160):
        server = KafkaServer(str(tmp_path / "data"), "max.connections=100000").start()
    try:
        holders = [connect(server) for _ in range(300)]  # every descriptor taken
        # Each probe waits its 0.2 s out (nothing accepts it); one left in the backlog keeps
        # asyncio's accepts failing, hundreds of times in these 3.5 s, each a report.
        for _ in range(10):
            with socket.socket() as probe:
                probe.settimeout(0.2)
                with contextlib.suppress(OSError):
                    probe.connect(("127.0.0.1", server.http_port))
                    probe.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                    probe.recv(1)
        time.sleep(1.5)  # asyncio retries accepting after a second
        log = server.log()
        assert "Traceback" not in log
        lines = [line for line in log.splitlines() if "socket.accept() out of system resource" in line]
        assert 1 <= len(lines) <= 2, lines
        for wire in holders:
            wire.close()
        wait_for_open(server, 0)  # /metrics answers again once descriptors are free
    finally:
        assert server.stop() == 0, server.log()
