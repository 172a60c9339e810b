"""What an open partition costs `tierlog serve`: resident memory and file descriptors, read
from /proc, for a topic of many partitions under a descriptor limit.

    python bench/partitions.py [--partitions 10000] [--nofile 1024] [--dir /dev/shm]

Starts the server with a soft RLIMIT_NOFILE of `--nofile`, creates one topic of
`--partitions` partitions (Kafka CreateTopics), produces one record to each, restarts the
server and reads every record back. VmRSS and the descriptor count are read at each step;
the per-partition figures compare the restarted server (every partition opened at start,
none used since) and the server after the reads with a fresh one holding no topic.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from api.bench.server import BenchServer  # noqa: E402


def usage(pid: int) -> tuple[float, int]:
    """(VmRSS in MiB, open descriptors) of a process."""
    with open(f"/proc/{pid}/status") as f:
        rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def start(server: BenchServer, nofile: int) -> int:
    """Start (or start again, over the same folder) under the limit; returns the pid."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    try:
        server.__enter__()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert server.process is not None
    time.sleep(1)  # past start-up's own allocations
    return server.process.pid


def stop(server: BenchServer) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="where the server's folder goes (memory: creating the files is not measured)")
    args = parser.parse_args()
    if args.dir:
        os.environ["TMPDIR"] = args.dir
    n = args.partitions
    server = BenchServer(None, {})
    rows: list[tuple[str, float, int]] = []
    try:
        pid = start(server, args.nofile)
        rows.append(("started, no topic", *usage(pid)))
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("wide", n, 1)], request_timeout=300)["wide"].result(300)
        rows.append((f"{n} partitions created", *usage(pid)))
        producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 20})
        for partition in range(n):
            producer.produce("wide", b"value-%d" % partition, partition=partition)
        assert producer.flush(120) == 0
        rows.append(("one record produced to each", *usage(pid)))
        stop(server)
        pid = start(server, args.nofile)
        rows.append(("restarted", *usage(pid)))
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "bench", "enable.auto.commit": False})
        consumer.assign([TopicPartition("wide", p, 0) for p in range(n)])
        seen: set[int] = set()
        deadline = time.monotonic() + 300
        while len(seen) < n and time.monotonic() < deadline:
            seen.update(m.partition() for m in consumer.consume(n, 1) if m.error() is None)
        consumer.close()
        assert len(seen) == n, f"read back {len(seen)} of {n} partitions"
        rows.append(("every record read back", *usage(pid)))
    finally:
        server.__exit__()
    print(f"{'step':32} {'VmRSS MiB':>10} {'fds':>6}")
    for step, rss, fds in rows:
        print(f"{step:32} {rss:10.1f} {fds:6d}")
    base_rss, base_fds = rows[0][1], rows[0][2]
    for step, rss, fds in rows[3:]:
        print(f"per partition, {step}: {(rss - base_rss) * 1024 / n:.2f} KiB, {(fds - base_fds) / n:.3f} descriptors")


if __name__ == "__main__":
    main()
