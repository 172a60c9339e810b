"""Batches above segment.bytes (but within max.message.bytes) get a segment of their own:
librdkafka's default 1 MB batches on a topic of 256 KiB segments."""

import os

import pytest

import hotlog.log
from hotlog.errors import RecordTooLargeError

from .support import check_index_files, dir_state, make_batch, open_log, payload_digest, read_all, split_batches

SEGMENT_BYTES = 256 * 1024
CONFIGS = {"segment.bytes": SEGMENT_BYTES, "index.interval.bytes": 4096}


def big_batch(tag: bytes) -> bytes:
    batch = make_batch(100, value_size=10_000, tag=tag)  # about librdkafka's batch.size (1,000,000)
    assert SEGMENT_BYTES < len(batch) <= 1048588  # above segment.bytes, within max.message.bytes
    return batch


def small_batch(tag: bytes) -> bytes:
    return make_batch(4, value_size=2_000, tag=tag)


def fill(plog) -> list[bytes]:
    """Small batches, a big one, a small one, then one append of a big batch with small
    ones behind it, and a last small batch. Returns every batch as sent."""
    sent = [small_batch(b"s%d" % i) for i in range(5)] + [big_batch(b"big-1"), small_batch(b"after-1")]
    for batch in sent:
        plog.append(batch)
    together = [big_batch(b"big-2"), small_batch(b"with-2a"), small_batch(b"with-2b")]
    plog.append(b"".join(together))
    last = small_batch(b"last")
    plog.append(last)
    return sent + together + [last]


def segment_layout(plog) -> list[list[int]]:
    """Batch sizes per segment, as the files hold them."""
    return [[h.size for _, h in split_batches(s.pread(0, s.size))] for s in plog.segments]


def check_segments(plog) -> None:
    for segment in plog.segments:
        assert os.path.getsize(segment.log_path) == segment.size
        check_index_files(segment.log_path, segment.base_offset)


def test_a_batch_above_segment_bytes_fills_a_segment_of_its_own(tmp_path):
    plog = open_log(tmp_path, CONFIGS)
    sent = fill(plog)
    sizes = [len(b) for b in sent]
    # The big batch rolled the non-empty segment before it; the append after it rolled again.
    assert segment_layout(plog) == [sizes[:5], [sizes[5]], [sizes[6]], sizes[7:10], [sizes[10]]]
    assert plog.segments[1].size > SEGMENT_BYTES and plog.segments[3].size > SEGMENT_BYTES
    assert all(s.rolled for s in plog.segments[:-1])
    assert [payload_digest(b) for b in read_all(plog)] == [payload_digest(b) for b in sent]
    # KIP-74: a read smaller than the batch still gets it whole.
    big = plog.segments[1]
    found = plog.read(big.base_offset, 1024)
    assert found is not None and found.size == sizes[5] and found.end_offset == big.next_offset
    plog.flush()
    check_segments(plog)
    # The small batches behind the big one in its append are indexed past it.
    assert [p for p in plog.segments[3].offset_index.values] == [sizes[7], sizes[7] + sizes[8]]


@pytest.mark.parametrize("clean", [True, False])
def test_segments_holding_a_big_batch_open_again_as_they_were(tmp_path, clean):
    plog = open_log(tmp_path, CONFIGS)
    sent = fill(plog)
    plog.flush()
    layout = segment_layout(plog)
    if clean:
        plog.close()
    files = dir_state(tmp_path)
    # Unclean with no recovery point: every segment is scanned and its indexes rebuilt.
    again = open_log(tmp_path, CONFIGS, clean=clean)
    assert segment_layout(again) == layout
    assert [payload_digest(b) for b in read_all(again)] == [payload_digest(b) for b in sent]
    check_segments(again)
    assert {k: v for k, v in dir_state(tmp_path).items() if not k.endswith(".snapshot")} == {
        k: v for k, v in files.items() if not k.endswith(".snapshot")}
    # The active segment's append rolls as before the restart.
    info = again.append(big_batch(b"big-3"))
    assert again.active_segment.base_offset == info.base_offset and again.active_segment.size > SEGMENT_BYTES


def test_a_big_batch_torn_by_a_crash_is_cut_and_the_log_goes_on(tmp_path):
    plog = open_log(tmp_path, CONFIGS)
    sent = [small_batch(b"s0"), small_batch(b"s1"), big_batch(b"big")]
    for batch in sent:
        plog.append(batch)
    plog.flush()
    torn = plog.active_segment
    assert torn.size > SEGMENT_BYTES
    os.truncate(torn.log_path, torn.size // 2)
    again = open_log(tmp_path, CONFIGS, clean=False)
    assert again.log_end_offset == torn.base_offset and again.active_segment.is_empty
    assert [payload_digest(b) for b in read_all(again)] == [payload_digest(b) for b in sent[:2]]
    again.append(sent[2])
    assert [payload_digest(b) for b in read_all(again)] == [payload_digest(b) for b in sent]
    check_segments(again)


def test_a_batch_above_max_message_bytes_is_still_refused_and_changes_nothing(tmp_path):
    plog = open_log(tmp_path, {**CONFIGS, "max.message.bytes": 512 * 1024})
    plog.append(small_batch(b"s"))
    before = (plog.log_end_offset, dir_state(tmp_path))
    with pytest.raises(RecordTooLargeError, match="max.message.bytes"):
        plog.append(big_batch(b"big"))
    assert (plog.log_end_offset, dir_state(tmp_path)) == before


def test_an_append_that_would_pass_a_segments_int32_positions_is_refused(tmp_path, monkeypatch):
    big = big_batch(b"big")
    monkeypatch.setattr(hotlog.log, "MAX_SEGMENT_BYTES", 3 * len(big))  # 2 GiB in the real thing
    plog = open_log(tmp_path, CONFIGS)
    plog.append(big * 3)  # up to the limit goes in
    before = (plog.log_end_offset, dir_state(tmp_path))
    with pytest.raises(RecordTooLargeError, match="segment"):
        plog.append(big * 4)
    assert (plog.log_end_offset, dir_state(tmp_path)) == before
