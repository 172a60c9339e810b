"""Counters of what the broker takes in and hands out, by the protocol that carried it.
Request counts and latencies are the protocols' own (api/metrics.py)."""

from __future__ import annotations

import functools

from prometheus_client import Counter

from .errors import is_storage_error

BYTES_IN = Counter("tierlog_bytes_in_total", "Record batch bytes appended, by protocol", ["protocol"])
MESSAGES_IN = Counter("tierlog_messages_in_total", "Records appended, by protocol", ["protocol"])
BYTES_OUT = Counter("tierlog_bytes_out_total", "Record batch bytes sent to readers, by protocol", ["protocol"])
STORAGE_ERRORS = Counter(
    "tierlog_storage_errors_total",
    "Storage errors answered (a disk or the object store failed, or remote data failed its check): "
    "per partition on Kafka, per call on gRPC; by protocol, API and error type",
    ["protocol", "api", "error"],
)


@functools.cache
def labelled(metric: Counter, *values: str) -> Counter:
    """`metric.labels(*values)`, looked up once: each labels() call takes a lock and builds
    its key, a cost every produce and fetch would pay. The label values are few (protocols,
    APIs, outcomes), so the cache stays small."""
    return metric.labels(*values)


def count_storage_error(protocol: str, api: str, exc: Exception) -> None:
    """Count `exc` if the answer a client gets for it is a storage error."""
    if is_storage_error(exc):
        STORAGE_ERRORS.labels(protocol, api, type(exc).__name__).inc()
