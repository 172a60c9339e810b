"""Counters of what the broker takes in and hands out, by the protocol that carried it.
Request counts and latencies are the protocols' own (api/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

BYTES_IN = Counter("tierlog_bytes_in_total", "Record batch bytes appended, by protocol", ["protocol"])
MESSAGES_IN = Counter("tierlog_messages_in_total", "Records appended, by protocol", ["protocol"])
BYTES_OUT = Counter("tierlog_bytes_out_total", "Record batch bytes sent to readers, by protocol", ["protocol"])
