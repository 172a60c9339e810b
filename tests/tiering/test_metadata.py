"""Object keys and the records in the bucket: layout, round trips, and what a partition's
records say after crashes (duplicate commits, tombstones, end markers)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

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
    partition_prefix,
    segment_key,
    topic_folder,
    topic_record_key,
)
from tiering.partition_state import RemotePartition

TOPIC_ID = uuid.UUID("6f1c1a5e-47d0-4d4c-9d8e-3f1a2b3c4d5e")
PREFIX = partition_prefix(topic_folder("t", TOPIC_ID), 3)
LONGEST = "a" * 249  # Kafka's longest legal topic name


def record(base: int, next_offset: int, state: SegmentState = SegmentState.COPY_FINISHED,
           uploaded_ms: int = 1) -> RemoteSegment:
    segment_id = uuid.uuid4()
    files = {ext: SegmentFile(segment_key(PREFIX, base, segment_id, ext), 100, 7)
             for ext in ("log", "index", "timeindex")}
    return RemoteSegment("t", TOPIC_ID, 3, segment_id, base, next_offset, 1_700_000_000_000, files, uploaded_ms, state)


def test_keys_follow_the_documented_layout() -> None:
    segment_id = uuid.UUID("00000000-0000-4000-8000-000000000001")
    orders = TopicRecord("orders", TOPIC_ID, 4)
    assert orders.folder == f"orders-{TOPIC_ID}"
    assert segment_key(orders.partition_prefix(3), 42, segment_id, "log") == (
        f"orders-{TOPIC_ID}/3/00000000000000000042-{segment_id}.log")
    assert metadata_key(orders.partition_prefix(3), 42, segment_id) == (
        f"orders-{TOPIC_ID}/3/meta/00000000000000000042-{segment_id}.json")
    assert orders.key == topic_record_key(orders.folder) == f"_topics/orders-{TOPIC_ID}.json"
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
    state = RemotePartition.from_records("t", TOPIC_ID, 3, PREFIX, [retried, tombstone, second, first])
    assert state.segments == [first, second]
    assert [t.segment_id for t in state.tombstones] == [retried.segment_id, tombstone.segment_id]
    assert (state.log_start_offset, state.end_offset) == (0, 20)
    assert state.segment_for(15) == second and state.segment_for(20) is None and state.segment_for(-1) is None


def test_a_cleaned_segment_vouches_for_its_own_offsets_only() -> None:
    """Records written before cleaned_to was capped at a segment's end: the first group of
    a clean that stopped before its second group's commit claims the clean's whole range,
    but the next segment is still the uncleaned upload."""
    upload = record(0, 10)
    cleaned = replace(record(0, 10), replaces=(upload.segment_id,), cleaned_to=30)
    dirty = record(10, 30)
    state = RemotePartition.from_records("t", TOPIC_ID, 3, PREFIX, [cleaned, dirty, upload])
    assert state.segments == [cleaned, dirty] and state.first_dirty_offset == 10
    finished = replace(record(10, 30), replaces=(dirty.segment_id,), cleaned_to=25)  # the clean's last group
    state = RemotePartition.from_records("t", TOPIC_ID, 3, PREFIX, [cleaned, finished, dirty])
    assert state.segments == [cleaned, finished] and state.first_dirty_offset == 25


def test_the_newest_finished_deletion_remembers_the_end_of_an_emptied_remote_log() -> None:
    old, newest = record(0, 10, SegmentState.DELETE_FINISHED), record(10, 20, SegmentState.DELETE_FINISHED)
    state = RemotePartition.from_records("t", TOPIC_ID, 3, PREFIX, [newest, old])
    assert (state.log_start_offset, state.end_offset) == (-1, 20)
    assert state.end_marker == newest and state.stale_markers == [old]
    later = record(20, 25)
    state = RemotePartition.from_records("t", TOPIC_ID, 3, PREFIX, [newest, later])
    assert state.end_marker is None and state.stale_markers == [newest] and state.end_offset == 25


def test_every_name_of_a_topic_fits_one_file_name_whatever_its_length() -> None:
    # Up to 213 characters the folder is `<topic>-<topic id>`, as before names were shortened.
    assert topic_folder("b" * 213, TOPIC_ID) == f"{'b' * 213}-{TOPIC_ID}"
    folders = {topic_folder(name, TOPIC_ID) for name in (LONGEST, "a" * 248 + "b", "a" * 214)}
    assert len(folders) == 3, "names sharing a beginning keep apart"
    for folder in folders:
        assert len(f"{folder}.json") <= 255 and folder.endswith(f"-{TOPIC_ID}")
        assert folder.startswith("a" * 190) and "~" in folder, "shortened, and marked as such"
    record = TopicRecord(LONGEST, TOPIC_ID, 2)
    segment_id = uuid.uuid4()
    key = metadata_key(record.partition_prefix(1), 2**63 - 1, segment_id)
    assert all(len(part) <= 255 for part in (*key.split("/"), *record.key.split("/"))) and len(key) < 1024
    segment = RemoteSegment(LONGEST, TOPIC_ID, 1, segment_id, 2**63 - 2, 2**63 - 1, 0,
                            {"log": SegmentFile(segment_key(record.partition_prefix(1), 2**63 - 2, segment_id, "log"),
                                                1, 1)}, 1)
    assert segment.metadata_key == metadata_key(record.partition_prefix(1), 2**63 - 2, segment_id)
    back = TopicRecord.from_json(record.to_json(), "k")
    assert (back.name, back.folder) == (LONGEST, record.folder), "the record keeps the full name and its folder"


def test_a_topic_record_of_an_earlier_version_means_the_unshortened_folder() -> None:
    # What the previous version wrote: no folder, and `<topic>-<topic id>` whatever the length
    # (S3 holds such keys; a folder store never could).
    old = json.dumps({"version": 1, "name": LONGEST, "topic_id": str(TOPIC_ID), "partitions": 1, "configs": {},
                      "state": "LIVE"}).encode()
    record = TopicRecord.from_json(old, "k")
    assert record.folder == f"{LONGEST}-{TOPIC_ID}" and record.key == f"_topics/{LONGEST}-{TOPIC_ID}.json"
    for folder in ("a/b", "..", "."):
        bad = json.loads(record.to_json()) | {"folder": folder}
        with pytest.raises(CorruptMetadataError, match="not one name"):
            TopicRecord.from_json(json.dumps(bad).encode(), "k")
