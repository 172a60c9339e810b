"""Records between the gRPC API and the log: proto records into record batches, batches
read from the log back into proto records (the only place the gRPC path decodes records)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fetch.reader import ReadResult
from hotlog.batch import HEADER_SIZE
from hotlog.errors import RecordTooLargeError
from hotlog.partitioner import partition_for_key
from hotlog.records import Record, build_batch, decode_batches
from hotlog.txn_index import AbortedTxn

from .proto import tierlog_pb2 as pb

# Upper bound of a record's framing in a batch: length, attributes, timestamp and
# offset deltas, key and value lengths, header count (varints), and per header two lengths.
_RECORD_OVERHEAD = 40
_HEADER_OVERHEAD = 10


def from_proto(record: pb.Record) -> Record:
    return Record(
        key=record.key if record.HasField("key") else None,
        value=record.value if record.HasField("value") else None,
        headers=tuple((h.key, h.value if h.HasField("value") else None) for h in record.headers),
        timestamp=record.timestamp_ms if record.HasField("timestamp_ms") else -1,
    )


def to_proto(record: Record) -> pb.Record:
    return pb.Record(
        key=record.key,
        value=record.value,
        headers=[pb.Header(key=name, value=value) for name, value in record.headers],
        timestamp_ms=record.timestamp,
        offset=record.offset,
    )


def group_by_partition(
    records: Iterable[pb.Record], partitions: int, keyless_partition: int
) -> dict[int, list[Record]]:
    """Records per partition, in request order: murmur2 of the key (Kafka's default
    partitioner); records without a key all go to `keyless_partition` (sticky per request)."""
    grouped: dict[int, list[Record]] = {}
    for message in records:
        record = from_proto(message)
        partition = keyless_partition if record.key is None else partition_for_key(record.key, partitions)
        grouped.setdefault(partition, []).append(record)
    return grouped


def _estimated_size(record: Record) -> int:
    size = _RECORD_OVERHEAD + len(record.key or b"") + len(record.value or b"")
    for name, value in record.headers:
        size += _HEADER_OVERHEAD + len(name) * 4 + len(value or b"")  # 4: UTF-8's widest character
    return size


def build_batches(records: Sequence[Record], *, compression: int, max_batch_bytes: int) -> list[bytes]:
    """Records as batches of at most `max_batch_bytes` each (the topic's max.message.bytes,
    and its segment.bytes). A single record too large for a batch raises RecordTooLargeError."""
    budget = max_batch_bytes - HEADER_SIZE
    batches: list[bytes] = []
    chunk: list[Record] = []
    chunk_bytes = 0
    for record in records:
        size = _estimated_size(record)
        if size > budget:
            raise RecordTooLargeError(
                f"a record of about {size} bytes does not fit in a batch of {max_batch_bytes} bytes "
                "(the topic's max.message.bytes or segment.bytes)"
            )
        if chunk and chunk_bytes + size > budget:
            batches.append(build_batch(chunk, compression=compression))
            chunk, chunk_bytes = [], 0
        chunk.append(record)
        chunk_bytes += size
    if chunk:
        batches.append(build_batch(chunk, compression=compression))
    return batches


def _aborted(batch_producer: int, base_offset: int, aborted: Sequence[AbortedTxn]) -> bool:
    return any(t.producer_id == batch_producer and t.first_offset <= base_offset <= t.last_offset for t in aborted)


def decode_read(result: ReadResult, from_offset: int) -> tuple[list[pb.Record], int]:
    """Proto records at or after `from_offset` in a read, and the offset to read next.
    Control batches and batches of aborted transactions are skipped."""
    records: list[pb.Record] = []
    next_offset = from_offset
    for batch in decode_batches(result.records):
        header = batch.header
        next_offset = max(next_offset, header.next_offset)
        if header.is_control or (header.is_transactional and _aborted(header.producer_id, header.base_offset,
                                                                       result.aborted)):
            continue
        records.extend(to_proto(r) for r in batch.records if r.offset >= from_offset)
    return records, next_offset
