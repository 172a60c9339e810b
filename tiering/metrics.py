"""Prometheus metrics of the cold tier (prometheus-client's default registry)."""

from prometheus_client import Counter, Gauge, Histogram

STORE_REQUESTS = Counter(
    "tierlog_object_store_requests_total",
    "Requests sent to the object store, by operation (retries included): what S3 bills",
    ["operation"],
)
STORE_RETRIES = Counter(
    "tierlog_object_store_retries_total", "Object store requests retried after a transient failure", ["operation"]
)
UPLOAD_BYTES = Counter("tierlog_tiering_upload_bytes_total", "Segment bytes (log and indexes) uploaded")
UPLOADED_SEGMENTS = Counter("tierlog_tiering_uploaded_segments_total", "Segments committed to the object store")
UPLOAD_SECONDS = Histogram(
    "tierlog_tiering_upload_seconds", "Time to upload one segment's files and commit its metadata",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
ERRORS = Counter("tierlog_tiering_errors_total", "Tiering tasks that failed, by task", ["task"])
COPY_LAG_BYTES = Gauge("tierlog_tiering_copy_lag_bytes", "Bytes of sealed local segments not uploaded yet")
COPY_LAG_SEGMENTS = Gauge("tierlog_tiering_copy_lag_segments", "Sealed local segments not uploaded yet")
TIER_BYTES = Gauge("tierlog_tier_bytes", "Bytes of tiered topics' logs, by tier", ["tier"])
TIER_SEGMENTS = Gauge("tierlog_tier_segments", "Segments of tiered topics' logs, by tier", ["tier"])
REMOTE_DELETED_SEGMENTS = Counter(
    "tierlog_tiering_remote_deleted_segments_total", "Remote segments deleted by retention or topic deletion"
)
LOCAL_DELETED_SEGMENTS = Counter(
    "tierlog_tiering_local_deleted_segments_total", "Local segments deleted by local retention after upload"
)
ORPHANS_DELETED = Counter("tierlog_tiering_orphans_deleted_total", "Objects without committed metadata removed")
SCRUBBED_BYTES = Counter("tierlog_scrub_bytes_total", "Bytes the scrubber checked against their CRCs, by tier", ["tier"])
SCRUB_CORRUPT = Counter(
    "tierlog_scrub_corrupt_total", "Segments (local) or objects (remote) the scrubber found corrupt and could not mend",
    ["tier"],
)
SCRUB_REPAIRED = Counter(
    "tierlog_scrub_repaired_total", "Corrupt segments or objects the scrubber replaced with the other tier's copy",
    ["tier"],
)
FAILING = Gauge(
    "tierlog_tiering_failing", "Partitions (topics, for the topics task) whose last try of a tiering task failed, by task",
    ["task"],
)
REMOTE_CLEANS = Counter("tierlog_remote_cleans_total", "Cleans of compacted topics' segments in the object store")
REMOTE_CLEAN_BYTES = Counter(
    "tierlog_remote_clean_bytes_total", "Segment bytes the bucket's cleaner read and wrote, by direction", ["direction"]
)
