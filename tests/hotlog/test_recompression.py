"""A topic whose compression.type is not `producer` stores its batches in that codec:
the log recompresses the others at append (Kafka's LogValidator), keeping every header
field but the codec, the length and the CRC."""

from __future__ import annotations

import pytest

from hotlog.batch import validate_batches
from hotlog.config import TOPIC_CODECS
from hotlog.errors import RecordTooLargeError
from hotlog.records import CODECS, NONE, decode_batches

from .support import make_batch, open_log, read_all

PRODUCER = dict(producer_id=7, producer_epoch=3, base_sequence=0)


def _stored(plog) -> bytes:
    return b"".join(read_all(plog))


@pytest.mark.parametrize("target", sorted(TOPIC_CODECS))
@pytest.mark.parametrize("source", sorted(CODECS))
def test_every_codec_is_stored_as_the_topics_with_its_records_and_producer_fields(tmp_path, source, target):
    plog = open_log(tmp_path, {"compression.type": target})
    sent = make_batch(5, value_size=200, compression=CODECS[source], **PRODUCER)
    info = plog.append(sent)
    stored = _stored(plog)
    (header,) = [h for _, h in validate_batches(stored, stored=True)]  # the CRC holds
    assert header.compression == TOPIC_CODECS[target]
    (original,) = [h for _, h in validate_batches(sent)]
    kept = ("last_offset_delta", "base_timestamp", "max_timestamp", "producer_id", "producer_epoch",
            "base_sequence", "record_count", "partition_leader_epoch", "magic")
    assert {f: getattr(header, f) for f in kept} == {f: getattr(original, f) for f in kept}
    assert header.attributes & ~0x07 == original.attributes & ~0x07
    assert info.batches == [header]  # what the append reports is what the log holds
    assert [(r.key, r.value, r.headers, r.timestamp) for b in decode_batches(stored) for r in b.records] == [
        (r.key, r.value, r.headers, r.timestamp) for b in decode_batches(sent) for r in b.records]
    assert plog.producers.find_duplicate(header) is not None  # a retry of it is still recognised


def test_transactional_batches_keep_their_flag_and_markers_are_never_recompressed(tmp_path):
    plog = open_log(tmp_path, {"compression.type": "zstd"})
    plog.append(make_batch(3, transactional=True, **PRODUCER))
    plog.append_marker(7, 3, commit=True, coordinator_epoch=0)
    data, marker = [h for _, h in validate_batches(_stored(plog), stored=True)]
    assert data.compression == CODECS["zstd"] and data.is_transactional
    assert marker.is_control and marker.compression == NONE
    assert plog.last_stable_offset == plog.log_end_offset  # the marker still ended the transaction


def test_producer_keeps_each_batch_byte_for_byte(tmp_path):
    plog = open_log(tmp_path)  # compression.type=producer, the default
    sent = [make_batch(3, compression=CODECS["gzip"]), make_batch(3, tag=b"b")]
    plog.append(sent[0] + sent[1])
    assert [b[8:] for b in read_all(plog)] == [b[8:] for b in sent]


def test_several_batches_in_one_append_each_recompressed_with_consecutive_offsets(tmp_path):
    plog = open_log(tmp_path, {"compression.type": "lz4"})
    info = plog.append(make_batch(2, compression=CODECS["gzip"]) + make_batch(3, compression=CODECS["lz4"])
                       + make_batch(4, tag=b"c"))
    headers = [h for _, h in validate_batches(_stored(plog), stored=True)]
    assert [h.compression for h in headers] == [CODECS["lz4"]] * 3
    assert [h.base_offset for h in headers] == [0, 2, 5] and info.last_offset == 8


def test_the_topics_level_is_used(tmp_path):
    batch = make_batch(50, value_size=400, compression=NONE)
    sizes = []
    for level in (1, 9):
        plog = open_log(tmp_path / str(level), {"compression.type": "gzip", "compression.gzip.level": level})
        plog.append(batch)
        sizes.append(len(_stored(plog)))
    assert sizes[1] < sizes[0]


def test_a_batch_too_large_once_recompressed_is_refused_and_changes_nothing(tmp_path):
    sent = make_batch(20, value_size=2000, compression=CODECS["zstd"])  # compresses to a few hundred bytes
    plog = open_log(tmp_path, {"compression.type": "uncompressed", "max.message.bytes": 10_000})
    with pytest.raises(RecordTooLargeError, match="after recompression"):
        plog.append(sent)
    assert plog.log_end_offset == 0 and plog.size_bytes == 0
