"""Metrics of the write-ahead log in the bucket."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WAL_OBJECTS = Counter("tierlog_wal_objects_total", "WAL objects committed to the object store")
WAL_BYTES = Counter("tierlog_wal_bytes_total", "Record batch bytes committed in WAL objects")
WAL_ERRORS = Counter("tierlog_wal_errors_total", "Failed WAL object PUTs (each is retried)")
WAL_COMMIT_SECONDS = Histogram(
    "tierlog_wal_commit_seconds", "From a window's close to its WAL object's commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
)
WAL_PENDING_FOLD = Gauge("tierlog_wal_objects_pending_fold", "WAL objects in the bucket whose data is not all tiered")
WAL_OLDEST_AGE = Gauge("tierlog_wal_oldest_object_age_seconds", "Age of the oldest WAL object still in the bucket")
WAL_DELETED = Counter("tierlog_wal_objects_deleted_total", "WAL objects deleted once tiered segments held their data")
WAL_DELETE_REQUESTS = Counter("tierlog_wal_delete_requests_total",
                              "Delete requests sent for folded WAL objects (one per 1,000 keys, as S3 bills them)")
WAL_RESTORED_BATCH_BYTES = Counter("tierlog_wal_restored_bytes_total", "Batch bytes restored from WAL objects at start-up")
