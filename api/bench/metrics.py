"""The server's Prometheus counters that the bench and the cost model read: scraped
before and after a phase, the difference is what the phase used."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tiering.store import (
    ABORT_MULTIPART,
    COMPLETE_MULTIPART,
    CREATE_MULTIPART,
    DELETE,
    GET,
    HEAD,
    LIST,
    PUT,
    UPLOAD_PART,
)

GB = 1e9  # decimal, as cloud prices count
# The request classes S3 bills: each multipart call is a PUT-class request, HEAD a GET-class one.
REQUEST_CLASS = {
    PUT: "PUT", CREATE_MULTIPART: "PUT", UPLOAD_PART: "PUT", COMPLETE_MULTIPART: "PUT", ABORT_MULTIPART: "PUT",
    GET: "GET", HEAD: "GET", LIST: "LIST", DELETE: "DELETE",
}
REQUEST_CLASSES = ("PUT", "GET", "LIST", "DELETE")


class MetricsError(Exception):
    """The server's /metrics could not be read, or lacks what the bench needs."""


@dataclass
class Counters:
    """The counters of one scrape (or the difference of two)."""

    bytes_in: float = 0.0  # record batch bytes appended (all protocols)
    messages_in: float = 0.0
    fetch_bytes: dict[str, float] = field(default_factory=dict)  # served to readers, by tier
    requests: dict[str, float] = field(default_factory=dict)  # object store, by billed class
    upload_bytes: float = 0.0
    remote_get_bytes: float = 0.0
    remote_get_seconds: float = 0.0  # summed over the read path's ranged GETs
    remote_gets: float = 0.0
    remote_log_bytes: float = 0.0  # a gauge: log bytes the object store holds (grows by what was uploaded)
    wal_objects: float = 0.0  # WAL objects committed: each one PUT, counted in `requests` too
    wal_delete_requests: float = 0.0  # DELETE requests for folded WAL objects (in `requests` DELETE too)

    def combine(self, other: Counters, sign: float) -> Counters:
        def merged(mine: dict[str, float], theirs: dict[str, float]) -> dict[str, float]:
            return {k: mine.get(k, 0.0) + sign * theirs.get(k, 0.0) for k in mine.keys() | theirs.keys()}

        return Counters(
            bytes_in=self.bytes_in + sign * other.bytes_in,
            messages_in=self.messages_in + sign * other.messages_in,
            fetch_bytes=merged(self.fetch_bytes, other.fetch_bytes),
            requests=merged(self.requests, other.requests),
            upload_bytes=self.upload_bytes + sign * other.upload_bytes,
            remote_get_bytes=self.remote_get_bytes + sign * other.remote_get_bytes,
            remote_get_seconds=self.remote_get_seconds + sign * other.remote_get_seconds,
            remote_gets=self.remote_gets + sign * other.remote_gets,
            remote_log_bytes=self.remote_log_bytes + sign * other.remote_log_bytes,
            wal_objects=self.wal_objects + sign * other.wal_objects,
            wal_delete_requests=self.wal_delete_requests + sign * other.wal_delete_requests,
        )

    def __sub__(self, earlier: Counters) -> Counters:
        return self.combine(earlier, -1.0)

    def __add__(self, other: Counters) -> Counters:
        return self.combine(other, 1.0)

    def to_json(self) -> dict:
        return {
            "bytes_in": self.bytes_in, "messages_in": self.messages_in,
            "fetch_bytes": dict(self.fetch_bytes), "requests": dict(self.requests),
            "upload_bytes": self.upload_bytes, "remote_get_bytes": self.remote_get_bytes,
            "remote_get_seconds": self.remote_get_seconds, "remote_gets": self.remote_gets,
            "remote_log_bytes": self.remote_log_bytes, "wal_objects": self.wal_objects,
            "wal_delete_requests": self.wal_delete_requests,
        }


def parse_counters(text: str) -> Counters:
    """Counters from Prometheus text exposition; a text without tierlog's counters raises."""
    counters = Counters(requests={name: 0.0 for name in REQUEST_CLASSES}, fetch_bytes={"local": 0.0, "remote": 0.0})
    families = list(text_string_to_metric_families(text))
    if not any(family.name == "tierlog_bytes_in" for family in families):
        raise MetricsError("no tierlog_bytes_in counter in the metrics: is this a tierlog server's /metrics?")
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "tierlog_remote_get_seconds_sum":
                counters.remote_get_seconds += value
            elif name == "tierlog_remote_get_seconds_count":
                counters.remote_gets += value
            elif name == "tierlog_tier_bytes" and labels.get("tier") == "remote":
                counters.remote_log_bytes += value
            elif name == "tierlog_bytes_in_total":
                counters.bytes_in += value
            elif name == "tierlog_messages_in_total":
                counters.messages_in += value
            elif name == "tierlog_fetch_bytes_total":
                tier = labels.get("tier", "")
                counters.fetch_bytes[tier] = counters.fetch_bytes.get(tier, 0.0) + value
            elif name == "tierlog_object_store_requests_total":
                billed = REQUEST_CLASS.get(labels.get("operation", ""))
                if billed is not None:
                    counters.requests[billed] += value
            elif name == "tierlog_tiering_upload_bytes_total":
                counters.upload_bytes += value
            elif name == "tierlog_remote_get_bytes_total":
                counters.remote_get_bytes += value
            elif name == "tierlog_wal_objects_total":
                counters.wal_objects += value
            elif name == "tierlog_wal_delete_requests_total":
                counters.wal_delete_requests += value
    return counters


def fetch_text(url: str, timeout_s: float = 10.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        raise MetricsError(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from None


def scrape(url: str) -> Counters:
    return parse_counters(fetch_text(url))


def partition_gauge(text: str, name: str, topic: str, **labels: str) -> dict[int, float]:
    """Per partition of `topic`, a gauge of the log collector (e.g. tierlog_log_start_offset,
    or tierlog_log_size_bytes with tier="local")."""
    values: dict[int, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for sample in family.samples:
                if sample.labels.get("topic") == topic and all(sample.labels.get(k) == v for k, v in labels.items()):
                    values[int(sample.labels["partition"])] = sample.value
    return values


@dataclass(frozen=True)
class StoreRatios:
    """Object-store use per GB, the inputs of the cost model. Writes are per GB uploaded (the
    segments' log and index bytes), which does not depend on how far uploads lag behind when
    the run stops; `upload_per_ingest` is the uploaded bytes over the log bytes they carried
    (the remote tier's growth; the log holds record batches as produced)."""

    put_per_gb_uploaded: float
    list_per_gb_uploaded: float
    delete_per_gb_uploaded: float
    upload_per_ingest: float  # bytes uploaded (log and indexes) per log byte, i.e. per byte ingested
    get_per_gb_replayed: float
    remote_bytes_per_replayed: float  # bytes fetched from the store per byte served from the remote tier

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def store_ratios(writing: Counters, replaying: Counters) -> StoreRatios:
    """Ratios from the counters of a write-only span and of the replay spans. Raises
    MetricsError when a span moved nothing to divide by."""
    if writing.upload_bytes <= 0 or writing.remote_log_bytes <= 0:
        raise MetricsError("no segment was uploaded while writing: run longer or with smaller segments")
    replayed = replaying.fetch_bytes.get("remote", 0.0)
    if replayed <= 0:
        raise MetricsError("nothing was replayed from the remote tier: the backlog stayed on local disk")
    uploaded_gb = writing.upload_bytes / GB
    # The WAL's own requests are priced apart (per second, not per GB): segments' only here.
    return StoreRatios(
        put_per_gb_uploaded=(writing.requests["PUT"] - writing.wal_objects) / uploaded_gb,
        list_per_gb_uploaded=writing.requests["LIST"] / uploaded_gb,
        delete_per_gb_uploaded=(writing.requests["DELETE"] - writing.wal_delete_requests) / uploaded_gb,
        upload_per_ingest=writing.upload_bytes / writing.remote_log_bytes,
        get_per_gb_replayed=replaying.requests["GET"] / (replayed / GB),
        remote_bytes_per_replayed=replaying.remote_get_bytes / replayed,
    )
