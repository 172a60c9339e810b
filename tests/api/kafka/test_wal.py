"""The write-ahead log in the bucket, as a user meets it: acks=all batches of a WAL topic
survive SIGKILL plus the loss of the whole data folder (a new machine, the same bucket),
through real Kafka clients against `tierlog serve`, on the local-folder store and on
moto's S3 server over HTTP."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from hotlog.records import GZIP, decode_batches
from testkit.flaky_proxy import FlakyProxy
from testkit.moto_server import MotoServer

from .bounds_support import metric
from .cluster import KafkaServer
from .eos_support import QUICK_READ

WAL = ("log.remote.wal.enable=true",)


def machine_lost(server: KafkaServer) -> None:
    """SIGKILL, then the data folder is gone (instance-store disks after a stop)."""
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    shutil.rmtree(server.data_dir)


def produce(server: KafkaServer, topic: str, values: list[bytes], **config: Any) -> list[bytes]:
    """acks=all, idempotent; returns the values acknowledged."""
    acked: list[bytes] = []

    def delivered(err: KafkaError | None, msg: Any) -> None:
        if err is None:
            acked.append(msg.value())

    producer = Producer({"bootstrap.servers": server.bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, **config})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=b"k%d" % (i % 7), on_delivery=delivered)
        producer.poll(0)
    producer.flush(30)
    return acked


def read_all(server: KafkaServer, topic: str, partitions: int, expected: int, seconds: float = 30) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": f"g-{uuid.uuid4()}",
                         "enable.auto.commit": False, "enable.partition.eof": True, **QUICK_READ})
    consumer.list_topics(topic, timeout=10)  # see ahead of assign()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    values: list[bytes] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (len(values) >= expected and len(at_end) == partitions):
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error() is not None:
            if message.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
                continue
            raise AssertionError(message.error())
        at_end.discard(message.partition())
        values.append(message.value())
    consumer.close()
    return values


@pytest.fixture(params=["folder", "s3"])
def object_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """`--object-store` arguments (none: the server's own folder) for each backend."""
    if request.param == "folder":
        yield ""
        return
    moto: MotoServer = request.getfixturevalue("moto")
    yield f"s3://{moto.new_bucket()}/tierlog?endpoint_url={moto.endpoint_url}"


def wal_server(tmp_path: Any, object_store: str, *conf: str) -> KafkaServer:
    return KafkaServer(str(tmp_path / "data"), *WAL, *conf, object_store=object_store)


def test_acknowledged_messages_survive_losing_the_machine(tmp_path: Any, object_store: str) -> None:
    server = wal_server(tmp_path, object_store).start()
    sent = [b"message %05d" % i for i in range(5000)]
    try:
        acked = produce(server, "orders", sent)
        assert acked == sent  # one partition (auto-created), in order
        machine_lost(server)
        server.start()
        assert read_all(server, "orders", 1, len(sent)) == sent  # every acked one back, none twice
        # An idempotent producer that goes on after the restore continues the same log.
        assert produce(server, "orders", [b"after"]) == [b"after"]
        assert read_all(server, "orders", 1, len(sent) + 1)[-1] == b"after"
    finally:
        if server.running:
            assert server.stop() == 0, server.log()


def test_kills_at_random_moments_lose_nothing_acknowledged(tmp_path: Any) -> None:
    """Eleven SIGKILLs during acks=all produce, each followed by the loss of the data folder."""
    rng = random.Random(14)
    server = wal_server(tmp_path, "").start()
    acked: list[bytes] = []
    try:
        for round_ in range(11):
            stop = threading.Event()
            down = threading.Event()

            def on_error(err: KafkaError, down: threading.Event = down) -> None:
                if err.code() == KafkaError._ALL_BROKERS_DOWN:
                    down.set()

            def keep_producing(round_: int = round_, down: threading.Event = down) -> None:
                producer = Producer({"bootstrap.servers": server.bootstrap, "acks": "all",
                                     "enable.idempotence": True, "linger.ms": 2, "message.timeout.ms": 5000,
                                     "error_cb": on_error})

                def delivered(err: KafkaError | None, msg: Any) -> None:
                    if err is None:
                        acked.append(msg.value())

                i = 0
                while not stop.is_set():
                    try:
                        producer.produce("killed", value=b"r%02d-%06d" % (round_, i), on_delivery=delivered)
                        i += 1
                    except BufferError:
                        pass
                    producer.poll(0.001)
                # The acks the broker sent before it died come in ahead of the connection's
                # close, and their delivery reports ahead of the all-brokers-down error: once it
                # is served, what is not acked was lost with the broker, unacknowledged.
                deadline = time.monotonic() + 1
                while not down.is_set() and time.monotonic() < deadline:
                    producer.poll(0.01)
                producer.poll(0)

            producing = threading.Thread(target=keep_producing)
            producing.start()
            time.sleep(rng.uniform(0.3, 1.2))
            machine_lost(server)
            stop.set()
            producing.join()
            server.start()
        assert len(acked) > 1000, "the kills should land while messages are being acknowledged"
        found = read_all(server, "killed", 1, len(acked))
        counts = Counter(found)
        assert not [v for v, n in counts.items() if n > 1], "a message is in the log twice"
        missing = [v for v in acked if v not in counts]
        assert not missing, f"{len(missing)} acknowledged messages lost, first {missing[:3]}"
    finally:
        if server.running:
            assert server.stop() == 0, server.log()


def test_wal_objects_are_folded_into_segments_and_deleted(tmp_path: Any) -> None:
    server = wal_server(tmp_path, "", "log.remote.wal.fold.ms=500", "remote.log.manager.task.interval.ms=200").start()
    wal_folder = os.path.join(server.objects_dir, "_wal", "0")

    def wal_objects() -> int:
        return len(os.listdir(wal_folder)) if os.path.isdir(wal_folder) else 0

    try:
        counts: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                counts.append(wal_objects())
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        for second in range(8):  # a steady load for a few seconds, 20 windows a second at most
            produce(server, "folded", [b"s%d-%04d" % (second, i) for i in range(250)])
        stop.set()
        sampler.join()
        assert max(counts) > 0, "acks=all should have written WAL objects"
        # Folding keeps pace: objects live about the fold time plus a tiering pass, so
        # the count stays near (0.5 s + 0.2 s) x 20 a second, far from one per window sent.
        assert max(counts) <= 150, f"WAL objects pile up under a steady load: {max(counts)}"
        deadline = time.monotonic() + 20
        while wal_objects() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert wal_objects() == 0, "folded WAL objects should be deleted once tiered segments hold their data"
        machine_lost(server)
        server.start()  # from tiered segments alone now
        assert len(read_all(server, "folded", 1, 2000)) == 2000
    finally:
        if server.running:
            assert server.stop() == 0, server.log()


def test_group_offsets_and_transactions_survive_losing_the_machine(tmp_path: Any) -> None:
    """The internal topics reach the bucket too: a group's committed offset, a committed
    transaction (visible to read_committed), an aborted one (not), an open one (aborted)."""
    server = wal_server(tmp_path, "").start()
    try:
        produce(server, "jobs", [b"job %03d" % i for i in range(500)])
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "workers",
                             "enable.auto.commit": False})
        consumer.commit(offsets=[TopicPartition("jobs", 0, 300)], asynchronous=False)
        consumer.close()

        def transaction(tid: str, value: bytes) -> Producer:
            producer = Producer({"bootstrap.servers": server.bootstrap, "transactional.id": tid})
            producer.init_transactions(15)
            producer.begin_transaction()
            producer.produce("txns", value=value)
            producer.flush(15)
            return producer

        transaction("committing", b"committed").commit_transaction(15)
        transaction("aborting", b"aborted").abort_transaction(15)
        transaction("open", b"open")  # left open when the machine goes
        machine_lost(server)
        server.start()
        checker = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "workers"})
        [committed] = checker.committed([TopicPartition("jobs", 0)], timeout=15)
        checker.close()
        assert committed.offset == 300
        reader = Consumer({"bootstrap.servers": server.bootstrap, "group.id": f"g-{uuid.uuid4()}",
                           "isolation.level": "read_committed", "enable.partition.eof": True, **QUICK_READ})
        reader.list_topics("txns", timeout=10)  # see ahead of assign()
        reader.assign([TopicPartition("txns", 0, OFFSET_BEGINNING)])
        seen: list[bytes] = []
        deadline = time.monotonic() + 30  # the open transaction is aborted by the restart: the LSO moves past it
        while time.monotonic() < deadline:
            message = reader.poll(0.2)
            if message is None:
                continue
            if message.error() is not None and message.error().code() == KafkaError._PARTITION_EOF:
                break
            assert message.error() is None, message.error()
            seen.append(message.value())
        reader.close()
        assert seen == [b"committed"]
        assert produce(server, "jobs", [b"later"]) == [b"later"]  # producer ids go on, none handed out twice
    finally:
        if server.running:
            assert server.stop() == 0, server.log()


class ProxyInThread:
    """moto behind a FlakyProxy whose event loop runs in a thread of its own, so a server
    process can use it while the test drives Kafka clients."""

    def __init__(self, upstream: str) -> None:
        self.proxy = FlakyProxy(upstream)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.__aenter__(), self.loop).result(10)
        return self.proxy

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.__aexit__(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_a_store_that_is_down_acknowledges_nothing_it_cannot_bring_back(tmp_path: Any, moto: MotoServer) -> None:
    bucket = moto.new_bucket()
    with ProxyInThread(moto.endpoint_url) as proxy:
        server = wal_server(tmp_path, f"s3://{bucket}/tierlog?endpoint_url={proxy.endpoint_url}&max_attempts=2").start()
        try:
            assert produce(server, "wal", [b"before"]) == [b"before"]
            admin = AdminClient({"bootstrap.servers": server.bootstrap})
            plain = NewTopic("plain", 1, 1, config={"remote.wal.enable": "false"})
            admin.create_topics([plain], operation_timeout=10)["plain"].result(10)
            proxy.down = True
            during = produce(server, "wal", [b"down %02d" % i for i in range(20)], **{"message.timeout.ms": 3000})
            assert during == [], "nothing may be acknowledged while the bucket does not hold it"
            assert produce(server, "plain", [b"local"]) == [b"local"]  # non-WAL topics keep working
            proxy.down = False
            after = produce(server, "wal", [b"after"], **{"message.timeout.ms": 30000})
            assert after == [b"after"], "WAL topics recover by themselves when the store returns"
            machine_lost(server)
            server.start()
            values = read_all(server, "wal", 1, 2)
            assert values[0] == b"before" and values[-1] == b"after"
            assert len(values) == len(set(values)), "a message is in the log twice"
        finally:
            if server.running:
                assert server.stop() == 0, server.log()



def test_internal_topics_made_before_the_wal_reach_the_bucket_once_it_is_on(tmp_path: Any) -> None:
    """An upgrade: `__consumer_offsets` made while the WAL was off is local only; with the
    WAL on it is tiered from then on, and its older commits reach the bucket once folded."""
    before = KafkaServer(str(tmp_path / "data")).start()  # no WAL
    try:
        produce(before, "jobs", [b"job %d" % i for i in range(50)])
        committer = Consumer({"bootstrap.servers": before.bootstrap, "group.id": "early", "enable.auto.commit": False})
        committer.commit(offsets=[TopicPartition("jobs", 0, 20)], asynchronous=False)
        committer.close()
    finally:
        assert before.stop() == 0, before.log()
    server = wal_server(tmp_path, "", "log.remote.wal.fold.ms=300", "remote.log.manager.task.interval.ms=200").start()
    try:
        committer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "late", "enable.auto.commit": False})
        committer.commit(offsets=[TopicPartition("jobs", 0, 40)], asynchronous=False)
        committer.close()
        # The late commit was acknowledged once its WAL object was committed, and so was the
        # object before it, with the local tail (the early commit) handed over at start-up.
        assert metric(server, "tierlog_wal_objects_total") >= 1, "the commits should have gone through the WAL"
        wal_folder = os.path.join(server.objects_dir, "_wal", "0")
        deadline = time.monotonic() + 20  # folded: tiered segments hold both commits, the WAL objects are gone
        while os.path.isdir(wal_folder) and os.listdir(wal_folder):  # the store removes an emptied folder
            assert time.monotonic() < deadline, f"WAL objects not folded: {os.listdir(wal_folder)}"
            time.sleep(0.1)
        machine_lost(server)
        server.start()
        for group, offset in (("early", 20), ("late", 40)):
            checker = Consumer({"bootstrap.servers": server.bootstrap, "group.id": group})
            [committed] = checker.committed([TopicPartition("jobs", 0)], timeout=15)
            checker.close()
            assert committed.offset == offset, group
    finally:
        if server.running:
            assert server.stop() == 0, server.log()


def test_with_the_wal_the_offsets_topic_is_compacted_in_the_bucket_and_restores_compacted(tmp_path: Any) -> None:
    """`__consumer_offsets` is tiered with the WAL on, and compacted all the same: in the
    bucket, and locally by the cleaned segments swapped in; a new machine restores each
    group's last commit from it."""
    # 5 ms WAL windows: each of the 360 synchronous commits waits for its window's object
    # (the default 50 ms made the commits alone take 20 s).
    server = wal_server(tmp_path, "", "log.remote.wal.fold.ms=300", "remote.log.manager.task.interval.ms=100",
                        "log.cleaner.backoff.ms=100", "offsets.topic.segment.bytes=4096",
                        "log.segment.delete.delay.ms=200", "log.remote.wal.window.ms=5").start()
    try:
        produce(server, "jobs", [b"job %d" % i for i in range(20)])
        consumers = [Consumer({"bootstrap.servers": server.bootstrap, "group.id": f"group{g}",
                               "enable.auto.commit": False}) for g in range(3)]
        commits = 120
        for n in range(1, commits + 1):
            for g, consumer in enumerate(consumers):
                consumer.commit(offsets=[TopicPartition("jobs", 0, n * 10 + g)], asynchronous=False)
        for consumer in consumers:
            consumer.close()
        written = commits * 3 * 80  # bytes of offset commit records, at the least

        def log_bytes(root: str) -> int:
            return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(root)
                       for name in names if name.endswith(".log") and "__consumer_offsets" in folder)

        deadline = time.monotonic() + 40
        while log_bytes(server.objects_dir) > written // 4 or log_bytes(server.data_dir) > written // 4:
            assert time.monotonic() < deadline, (f"__consumer_offsets not compacted: {log_bytes(server.objects_dir)} "
                                                 f"bytes in the bucket, {log_bytes(server.data_dir)} local, "
                                                 f"{written} written")
            time.sleep(0.3)
        assert log_bytes(server.objects_dir) > 0, "the offsets topic should be in the bucket"
        machine_lost(server)
        server.start()
        for g in range(3):
            checker = Consumer({"bootstrap.servers": server.bootstrap, "group.id": f"group{g}"})
            [committed] = checker.committed([TopicPartition("jobs", 0)], timeout=15)
            checker.close()
            assert committed.offset == commits * 10 + g
    finally:
        if server.running:
            assert server.stop() == 0, server.log()


def test_batches_the_broker_recompresses_reach_the_wal_as_the_log_wrote_them(tmp_path: Any) -> None:
    """compression.type=gzip with the WAL: the log recompresses each uncompressed batch, and
    the WAL object holds the recompressed bytes (not the request's), so a new machine gets
    every acknowledged message back."""
    server = wal_server(tmp_path, "").start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("zipped", 1, 1, config={"compression.type": "gzip"})])["zipped"].result(10)
        values = [b"value %04d " % i + b"x" * 200 for i in range(300)]
        acked = produce(server, "zipped", values, **{"compression.type": "none"})
        assert acked == values
        machine_lost(server)
        server.start()
        assert read_all(server, "zipped", 1, len(values)) == values
        restored = b"".join(p.read_bytes() for p in sorted(Path(server.data_dir).glob("zipped-0/*.log")))
        codecs = {b.header.compression for b in decode_batches(restored)}
        assert codecs == {GZIP}, f"the WAL gave back batches in codecs {codecs}, not as the log wrote them"
    finally:
        if server.running:
            assert server.stop() == 0, server.log()
