"""Prometheus metrics of the protocols (requests, latency), and of the logs (read at scrape
time). Bytes and messages in and out are the broker's (broker/metrics.py).

Everything goes to prometheus-client's default registry, where tiering and fetch add
their own; /metrics serves that registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hotlog.manager import LogManager

from .tier_status import RemoteTierView, tier_status

REQUESTS = Counter("tierlog_api_requests_total", "API requests served, by protocol, API and status code",
                   ["protocol", "api", "code"])
REQUEST_SECONDS = Histogram(
    "tierlog_api_request_seconds", "Time to serve an API request, by protocol and API", ["protocol", "api"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class LogCollector(Collector):
    """Topics, partitions, offsets and log sizes per tier, as they are at scrape time."""

    def __init__(self, logs: LogManager, remote: RemoteTierView | None) -> None:
        self.logs = logs
        self.remote = remote

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows = tier_status(self.logs, self.remote, include_internal=True)
        yield GaugeMetricFamily("tierlog_topics", "Topics", value=len(self.logs.topics))
        yield GaugeMetricFamily("tierlog_partitions", "Partitions of all topics", value=len(rows))
        sizes = GaugeMetricFamily("tierlog_log_size_bytes", "Bytes of a partition's log, by tier",
                                  labels=["topic", "partition", "tier"])
        start = GaugeMetricFamily("tierlog_log_start_offset", "First offset still on local disk",
                                  labels=["topic", "partition"])
        end = GaugeMetricFamily("tierlog_log_end_offset", "Offset the next record gets", labels=["topic", "partition"])
        for row in rows:
            partition = str(row.partition)
            sizes.add_metric([row.topic, partition, "local"], row.local_bytes)
            if self.remote is not None:
                sizes.add_metric([row.topic, partition, "remote"], row.remote.size_bytes)
            start.add_metric([row.topic, partition], row.local_log_start_offset)
            end.add_metric([row.topic, partition], row.log_end_offset)
        yield sizes
        yield start
        yield end


def register_log_collector(logs: LogManager, remote: RemoteTierView | None) -> LogCollector:
    collector = LogCollector(logs, remote)
    REGISTRY.register(collector)
    return collector
