"""What fetches cost an idle consumer of many partitions, full and in a fetch session
(KIP-227), where a consumer sends only the partitions that changed.

    python bench/idle_fetch.py [--partitions 1000,4000] [--seconds 20] [--clients confluent,kafka-python]

A `tierlog serve` holds a topic of `--partitions` partitions with nothing new in them; a
consumer is assigned every partition at its end and polls for `--seconds`, each fetch a
long poll of 500 ms: confluent-kafka (librdkafka sends full fetches: it has no fetch
sessions) or kafka-python (fetch sessions: its fetches after the first name nothing).
Reported: fetch requests served, the broker's CPU over the window (from /proc), and that
per fetch and per partition in a fetch.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.request
from collections.abc import Callable

# The repository instead of bench/, whose kafka.py would hide kafka-python.
sys.path[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

from confluent_kafka import OFFSET_END, Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402
from kafka import TopicPartition as KTopicPartition  # noqa: E402

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


def idle_consumer(server: BenchServer, partitions: int, client: str) -> tuple[Callable[[], object],
                                                                              Callable[[], None]]:
    """(poll, close) of a consumer assigned every partition at its end, long-polling 500 ms."""
    if client == "confluent":
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "idle", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 500})
        consumer.assign([TopicPartition("idle", p, OFFSET_END) for p in range(partitions)])
        return lambda: consumer.poll(0.1), consumer.close
    python_consumer = KafkaConsumer(bootstrap_servers=server.bootstrap, fetch_max_wait_ms=500)
    python_consumer.assign([KTopicPartition("idle", p) for p in range(partitions)])
    python_consumer.seek_to_end()
    return lambda: python_consumer.poll(100), python_consumer.close


def run(partitions: int, seconds: float, client: str) -> None:
    with BenchServer(None, {"num.partitions": "1"}) as server:
        assert server.process is not None
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("idle", partitions, 1)])["idle"].result(60)
        poll, close = idle_consumer(server, partitions, client)
        warm = time.monotonic() + 3
        while time.monotonic() < warm:
            poll()
        cpu, served, started = cpu_seconds(server.process.pid), fetches(server), time.monotonic()
        while time.monotonic() - started < seconds:
            poll()
        elapsed = time.monotonic() - started
        cpu, served = cpu_seconds(server.process.pid) - cpu, fetches(server) - served
        close()
    per_fetch_ms = cpu / served * 1000 if served else float("nan")
    print(f"{client}, {partitions} idle partitions: {served:.0f} fetches in {elapsed:.1f} s, broker CPU {cpu:.2f} s "
          f"({cpu / elapsed:.1%} of a core), {per_fetch_ms:.2f} ms a fetch, "
          f"{per_fetch_ms * 1000 / partitions:.2f} us a partition in a fetch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", default="1000,4000")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", default="confluent,kafka-python",
                        help="confluent (librdkafka: full fetches), kafka-python (fetch sessions)")
    args = parser.parse_args()
    for client in args.clients.split(","):
        for partitions in (int(p) for p in args.partitions.split(",")):
            run(partitions, args.seconds, client)


if __name__ == "__main__":
    main()
