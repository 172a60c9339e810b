"""What full fetches cost an idle consumer of many partitions: the case fetch sessions
(KIP-227) exist for, where a consumer sends only the partitions that changed.

    python bench/idle_fetch.py [--partitions 1000,4000] [--seconds 20]

A `tierlog serve` holds a topic of `--partitions` partitions with nothing new in them; a
confluent-kafka consumer (librdkafka sends full fetches: it has no fetch sessions) is
assigned every partition at its end and polls for `--seconds`, each fetch a long poll of
`fetch.wait.max.ms` (500 ms). Reported: fetch requests served, the broker's CPU over the
window (from /proc), and that per fetch and per partition in a fetch.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from confluent_kafka import OFFSET_END, Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from api.bench.server import BenchServer  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetches(server: BenchServer) -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(float(m) for m in re.findall(r'^tierlog_api_requests_total\{[^}]*api="Fetch"[^}]*\} (\S+)$', text,
                                             re.MULTILINE))


def run(partitions: int, seconds: float) -> None:
    with BenchServer(None, {"num.partitions": "1"}) as server:
        assert server.process is not None
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("idle", partitions, 1)])["idle"].result(60)
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "idle", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 500})
        consumer.assign([TopicPartition("idle", p, OFFSET_END) for p in range(partitions)])
        warm = time.monotonic() + 3
        while time.monotonic() < warm:
            consumer.poll(0.1)
        cpu, served, started = cpu_seconds(server.process.pid), fetches(server), time.monotonic()
        while time.monotonic() - started < seconds:
            consumer.poll(0.1)
        elapsed = time.monotonic() - started
        cpu, served = cpu_seconds(server.process.pid) - cpu, fetches(server) - served
        consumer.close()
    per_fetch_ms = cpu / served * 1000 if served else float("nan")
    print(f"{partitions} idle partitions: {served:.0f} fetches in {elapsed:.1f} s, broker CPU {cpu:.2f} s "
          f"({cpu / elapsed:.1%} of a core), {per_fetch_ms:.2f} ms a fetch, "
          f"{per_fetch_ms * 1000 / partitions:.2f} us a partition in a fetch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", default="1000,4000")
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    for partitions in (int(p) for p in args.partitions.split(",")):
        run(partitions, args.seconds)


if __name__ == "__main__":
    main()
