"""Object keys and the records in the bucket: layout, round trips, and what a partition's
records say after crashes (duplicate commits, tombstones, end markers)."""

from __future__ import annotations

import uuid

import pytest

from tiering.metadata import (
    CorruptMetadataError,
    RemoteSegment,
    SegmentFile,
    SegmentState,
    TopicRecord,
    TopicState,
    metadata_key,
    parse_segment_name,
    segment_key,
    topic_record_key,
)
from tiering.partition_state import RemotePartition

TOPIC_ID = uuid.UUID("6f1c1a5e-47d0-4d4c-9d8e-3f1a2b3c4d5e")


def record(base: int, next_offset: int, state: SegmentState = SegmentState.COPY_FINISHED,
           uploaded_ms: int = 1) -> RemoteSegment:
    segment_id = uuid.uuid4()
    files = {ext: SegmentFile(segment_key("t", TOPIC_ID, 3, base, segment_id, ext), 100, 7)
             for ext in ("log", "index", "timeindex")}
    return RemoteSegment("t", TOPIC_ID, 3, segment_id, base, next_offset, 1_700_000_000_000, files, uploaded_ms, state)


def test_keys_follow_the_documented_layout() -> None:
    segment_id = uuid.UUID("00000000-0000-4000-8000-000000000001")
    assert segment_key("orders", TOPIC_ID, 3, 42, segment_id, "log") == (
        f"orders-{TOPIC_ID}/3/00000000000000000042-{segment_id}.log")
    assert metadata_key("orders", TOPIC_ID, 3, 42, segment_id) == (
        f"orders-{TOPIC_ID}/3/meta/00000000000000000042-{segment_id}.json")
    assert topic_record_key("orders", TOPIC_ID) == f"_topics/orders-{TOPIC_ID}.json"
    parsed = parse_segment_name(f"00000000000000000042-{segment_id}.timeindex")
    assert parsed is not None and (parsed.base_offset, parsed.segment_id, parsed.extension) == (42, segment_id, "timeindex")
    for name in ("00042-x.log", f"0000000000000000004-{segment_id}.log", "notes.txt", f"{'0' * 20}-{segment_id}"):
        assert parse_segment_name(name) is None


def test_records_round_trip_and_broken_ones_raise_a_typed_error() -> None:
    r = record(100, 150)
    assert RemoteSegment.from_json(r.to_json(), "k") == r
    topic = TopicRecord("t", TOPIC_ID, 4, {"retention.ms": -1, "remote.storage.enable": True}, TopicState.LIVE)
    assert TopicRecord.from_json(topic.to_json(), "k") == topic
    for bad in (b"not json", b"[]", b'{"version": 2}', r.to_json().replace(b'"next_offset": 150', b'"next_offset": 90'),
                r.to_json().replace(b'"COPY_FINISHED"', b'"HALF_DONE"')):
        with pytest.raises(CorruptMetadataError):
            RemoteSegment.from_json(bad, "bucket/key")
    with pytest.raises(CorruptMetadataError, match="bucket/topic"):
        TopicRecord.from_json(b'{"version": 1, "name": "t"}', "bucket/topic")


def test_a_partition_state_from_records_after_crashes() -> None:
    first, second = record(0, 10), record(10, 20)
    retried = record(10, 20, uploaded_ms=5)  # the same offsets committed again
    tombstone = record(20, 30, SegmentState.DELETE_STARTED)
    state = RemotePartition.from_records("t", TOPIC_ID, 3, [retried, tombstone, second, first])
    assert state.segments == [first, second]
    assert [t.segment_id for t in state.tombstones] == [retried.segment_id, tombstone.segment_id]
    assert (state.log_start_offset, state.end_offset) == (0, 20)
    assert state.segment_for(15) == second and state.segment_for(20) is None and state.segment_for(-1) is None


def test_the_newest_finished_deletion_remembers_the_end_of_an_emptied_remote_log() -> None:
    old, newest = record(0, 10, SegmentState.DELETE_FINISHED), record(10, 20, SegmentState.DELETE_FINISHED)
    state = RemotePartition.from_records("t", TOPIC_ID, 3, [newest, old])
    assert (state.log_start_offset, state.end_offset) == (-1, 20)
    assert state.end_marker == newest and state.stale_markers == [old]
    later = record(20, 25)
    state = RemotePartition.from_records("t", TOPIC_ID, 3, [newest, later])
    assert state.end_marker is None and state.stale_markers == [newest] and state.end_offset == 25
