"""Stored batches checked before they are served: a flipped byte in a segment this process
did not write is found (CRC-32C) and never served; each batch is checked once per process;
the scrubber's API checks a whole segment at a pace, marks it, and replaces its bytes."""

import asyncio
import os
import shutil

import pytest

import hotlog.batch
from hotlog.checked import CheckedRanges
from hotlog.errors import CorruptSegmentError

from .support import make_batch, open_log, read_all, split_batches


def sealed_log(path, batches=30):
    """A log of two segments or more, closed cleanly: on reopening nothing is checked yet."""
    plog = open_log(path, {"segment.bytes": 4000})
    for i in range(batches):
        plog.append(make_batch(3, value_size=100, tag=b"b%d" % i))
    plog.close()
    assert len(plog.segments) >= 2
    return plog


def flip_byte(path, position):
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0x01]))


def batch_positions(segment):
    with open(segment.log_path, "rb") as f:
        return [pos for pos, _ in split_batches(f.read())]


@pytest.fixture
def crc_calls(monkeypatch):
    """Counts the CRC-32C computations of batch checks."""
    calls = []
    real = hotlog.batch.crc32c

    def counting(data, *args):
        calls.append(len(data))
        return real(data, *args)

    monkeypatch.setattr(hotlog.batch, "crc32c", counting)
    return calls


def test_checked_ranges_merge_and_name_the_gaps():
    ranges = CheckedRanges(trusted_from=600)
    ranges.add(0, 100)
    ranges.add(100, 150)  # continues the last
    ranges.add(300, 400)
    assert ranges.gaps(0, 500) == [(150, 300), (400, 500)]
    assert ranges.gaps(120, 320) == [(150, 300)]
    assert ranges.gaps(300, 400) == []
    ranges.add(140, 310)  # bridges the two
    assert ranges.gaps(0, 500) == [(400, 500)]
    assert ranges.gaps(0, 900) == [(400, 600)]  # appended by this process from 600 on: trusted
    for position in (450, 460, 420):
        ranges.mark_corrupt(position)
    assert ranges.corrupt_at == 420


def test_a_flipped_byte_in_a_sealed_segment_is_never_served_and_the_batches_before_it_are(tmp_path):
    plog = sealed_log(tmp_path)
    segment = plog.segments[0]
    positions = batch_positions(segment)
    flip_byte(segment.log_path, positions[4] + 70)  # inside the fifth batch's records
    again = open_log(tmp_path, {"segment.bytes": 4000})
    first = again.segments[0]
    found = again.read(0, 1 << 20)
    assert found.size == first.size  # the whole segment, as the index finds it ...
    data = found.read()
    assert data == open(first.log_path, "rb").read()[: positions[4]]  # ... served up to the bad batch
    bad_offset = split_batches(data)[-1][1].next_offset
    with pytest.raises(CorruptSegmentError, match=f"position {positions[4]}"):
        again.read(bad_offset, 1 << 20).read()
    assert first.corrupt_at == positions[4]
    later = again.read(split_batches(open(first.log_path, "rb").read())[5][1].base_offset, 1 << 20).read()
    assert split_batches(later)  # the batches after the bad one are checked and served


def test_each_batch_is_checked_once_and_what_this_process_wrote_or_recovered_never(tmp_path, crc_calls):
    sealed_log(tmp_path, batches=30)
    again = open_log(tmp_path, {"segment.bytes": 4000})
    size = sum(s.size for s in again.segments)
    crc_calls.clear()  # the appends' own
    read_all(again, max_bytes=700)
    assert len(crc_calls) == 30 and sum(crc_calls) == size - 30 * 21  # each batch once, from its byte 21
    crc_calls.clear()
    read_all(again, max_bytes=500)
    assert crc_calls == []  # checked already
    for i in range(5):
        again.append(make_batch(2, tag=b"new%d" % i))
    crc_calls.clear()
    read_all(again)
    assert crc_calls == []  # appended here: validated on the way in
    again.close()
    recovered = open_log(tmp_path, {"segment.bytes": 4000}, clean=False)  # recovery checks every batch
    crc_calls.clear()
    assert len(read_all(recovered)) == 35 and crc_calls == []


def test_a_flipped_byte_in_the_active_segment_after_a_clean_restart_is_found_too(tmp_path):
    plog = open_log(tmp_path)
    for i in range(5):
        plog.append(make_batch(2, value_size=50, tag=b"b%d" % i))
    plog.close()
    flip_byte(plog.active_segment.log_path, batch_positions(plog.active_segment)[0] + 65)
    again = open_log(tmp_path)
    with pytest.raises(CorruptSegmentError):
        again.read(0, 1 << 20).read()


def test_the_scrubbers_check_paces_itself_marks_the_bad_batch_and_shares_what_passed(tmp_path, crc_calls):
    sealed_log(tmp_path)
    again = open_log(tmp_path, {"segment.bytes": 4000})
    good, bad = again.segments[0], again.segments[1]
    flip_byte(bad.log_path, batch_positions(bad)[2] + 80)
    paced = []
    crc_calls.clear()

    async def pace(n):
        paced.append(n)

    assert asyncio.run(good.check(pace, chunk_bytes=1000)) is None
    assert good.size <= sum(paced) < 2 * good.size and max(paced) <= 1000  # paced before every read
    crc_calls.clear()
    assert good.read(0, 1 << 20).read() == open(good.log_path, "rb").read()
    assert crc_calls == []  # the read path trusts what the scrubber checked
    assert asyncio.run(good.check(pace)) is None and crc_calls == []  # nothing left to check ...
    assert asyncio.run(good.check(pace, again=True)) is None and len(crc_calls) == len(batch_positions(good))
    assert asyncio.run(bad.check(pace)) == batch_positions(bad)[2] == bad.corrupt_at
    crc_calls.clear()
    third = split_batches(open(bad.log_path, "rb").read())[2][1].base_offset
    with pytest.raises(CorruptSegmentError):
        again.read(third, 1 << 20).read()
    assert crc_calls == []  # refused from the mark, without reading the batch again


def test_a_corrupt_segment_is_replaced_by_a_good_copy_and_a_bad_copy_changes_nothing(tmp_path):
    sealed_log(tmp_path)
    copy = tmp_path / "good-copy"
    shutil.copyfile(tmp_path / "00000000000000000000.log", copy)
    again = open_log(tmp_path, {"segment.bytes": 4000})
    segment = again.segments[0]
    flip_byte(segment.log_path, batch_positions(segment)[0] + 70)
    with pytest.raises(CorruptSegmentError):
        again.read(0, 1 << 20).read()
    held = segment.read(0, segment.size)  # a reader holding the old file

    bad_copy = segment.replacement_path
    shutil.copyfile(segment.log_path, bad_copy)
    with pytest.raises(CorruptSegmentError):
        asyncio.run(segment.replace_log(bad_copy))
    assert not os.path.exists(bad_copy) and segment.corrupt_at == 0

    shutil.copyfile(copy, segment.replacement_path)
    assert asyncio.run(segment.replace_log(segment.replacement_path))
    assert segment.corrupt_at is None and open(segment.log_path, "rb").read() == copy.read_bytes()
    assert b"".join(read_all(again, max_bytes=segment.size)[: len(batch_positions(segment))]) == copy.read_bytes()
    with pytest.raises(CorruptSegmentError):
        held.read()  # the old file's bytes stay refused
    again.delete_oldest_segments(1)
    shutil.copyfile(copy, segment.replacement_path)
    assert not asyncio.run(segment.replace_log(segment.replacement_path))  # deleted meanwhile
    assert not os.path.exists(segment.log_path) and not os.path.exists(segment.replacement_path)
