"""Prometheus metrics of the read path."""

from prometheus_client import Counter, Histogram

BYTES_SERVED = Counter("tierlog_fetch_bytes_total", "Record bytes served to readers, by tier", ["tier"])
# Looked up once: every read counts its bytes, and labels() costs a lock and a dict per call.
BYTES_SERVED_LOCAL = BYTES_SERVED.labels("local")
BYTES_SERVED_REMOTE = BYTES_SERVED.labels("remote")
CHUNK_CACHE = Counter("tierlog_chunk_cache_requests_total", "Chunk cache lookups, by result", ["result"])
PREFETCH_HITS = Counter("tierlog_prefetch_hits_total", "Chunks served that a prefetch had loaded")
REMOTE_GETS = Counter("tierlog_remote_gets_total", "Ranged GETs of segment data from the object store")
REMOTE_GET_BYTES = Counter("tierlog_remote_get_bytes_total", "Bytes fetched from the object store by the read path")
REMOTE_GET_LATENCY = Histogram(
    "tierlog_remote_get_seconds", "Latency of one ranged GET of a chunk",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INDEX_CACHE = Counter("tierlog_remote_index_cache_requests_total", "Remote index cache lookups, by result", ["result"])
CORRUPT_READS = Counter(
    "tierlog_fetch_corrupt_local_reads_total",
    "Local reads that met a batch failing its CRC-32C check, by outcome (served_remote: from the bucket's copy)",
    ["outcome"],
)
