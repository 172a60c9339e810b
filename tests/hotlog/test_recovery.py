"""Recovery: SIGKILLed writers lose nothing they acknowledged; torn and corrupt tails are cut
exactly; a clean shutdown opens without scanning."""

import os
import random
import signal
import time

import pytest

from hotlog.manager import CLEAN_SHUTDOWN_FILE, LogManager
from hotlog.segment import LogSegment

from .support import (
    BASE_TS,
    check_index_files,
    dir_state,
    killed_after,
    make_batch,
    payload_digest,
    read_all,
    split_batches,
    time_index_entries,
)

WRITER = os.path.join(os.path.dirname(__file__), "crash_writer.py")


def log_contents(plog) -> list[tuple[int, int, str]]:
    """(base offset, last offset, digest) of every batch, checking offsets run on without gaps."""
    out = []
    for batch in read_all(plog):
        header = split_batches(batch)[0][1]
        out.append((header.base_offset, header.last_offset, payload_digest(batch)))
    for (_, last, _), (base, _, _) in zip(out, out[1:]):
        assert base == last + 1, f"gap or overlap: a batch ends at {last}, the next starts at {base}"
    return out


def check_segments(plog) -> None:
    for segment in plog.segments:
        assert os.path.getsize(segment.log_path) == segment.size
        check_index_files(segment.log_path, segment.base_offset)


def run_writer(data_dir, mode: str, seed: int, kill_after: float) -> list[tuple[int, int, str]]:
    """Start the writer, SIGKILL it after `kill_after` seconds, return what it acknowledged."""
    returncode, out = killed_after(WRITER, [str(data_dir), mode, str(seed), "30"], kill_after)
    assert returncode == -signal.SIGKILL, "the writer stopped before it was killed"
    acked = []
    for line in out.decode().split("\n")[:-1]:  # the last piece has no newline: torn or empty
        if line != "ready":
            base, last, digest = line.split()
            acked.append((int(base), int(last), digest))
    return acked


@pytest.mark.parametrize("mode", ["page", "fsync"])
def test_sigkilled_writers_lose_no_acknowledged_batch(tmp_path, mode):
    rng = random.Random(f"crash-{mode}")
    known: list[tuple[int, int, str]] = []  # the log as last verified
    acked_total = 0
    started = time.monotonic()
    for kill in range(7):
        acked = run_writer(tmp_path, mode, seed=kill, kill_after=rng.uniform(0.15, 1.0))
        acked_total += len(acked)
        manager = LogManager(str(tmp_path)).open()
        assert not manager.opened_clean
        plog = manager.log("crash", 0)
        contents = log_contents(plog)
        assert contents[: len(known)] == known, "batches verified before the kill changed"
        by_base = {base: (base, last, digest) for base, last, digest in contents}
        for entry in acked:
            assert by_base.get(entry[0]) == entry, f"acknowledged batch {entry} lost or altered"
        assert plog.log_start_offset == 0 and plog.recovery_point == plog.log_end_offset
        check_segments(plog)
        # The recovered log takes appends and serves them back.
        extra = [make_batch(3, tag=b"after-kill-%d-%d" % (kill, i)) for i in range(3)]
        infos = [plog.append(b) for b in extra]
        assert infos[0].base_offset == (contents[-1][1] + 1 if contents else 0)
        tail = read_all(plog, infos[0].base_offset)
        assert [payload_digest(b) for b in tail] == [payload_digest(b) for b in extra]
        known = log_contents(plog)
        if kill % 2:
            manager.close()  # the next writer opens clean; otherwise it recovers once more
        else:
            plog.flush()
    assert acked_total > 7, "the writers acknowledged almost nothing before being killed"
    assert len(known) > acked_total  # acknowledged batches plus the ones appended here
    assert time.monotonic() - started < 30


# -- deterministic torn writes ----------------------------------------------------------------


def crashed_manager(tmp_path, batches=40, segment_bytes=3000):
    """A manager that appended and flushed, then 'crashed': no close, no clean marker, and a
    checkpoint from before the appends (every segment gets scanned)."""
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 1, {"segment.bytes": segment_bytes, "index.interval.bytes": 300,
                                  "remote.storage.enable": "false"})
    manager.write_checkpoint()
    plog = manager.log("t", 0)
    sent = [make_batch(1 + i % 4, value_size=70, tag=b"%d" % i, timestamp=BASE_TS + 100 * i) for i in range(batches)]
    for batch in sent:
        plog.append(batch)
    plog.flush()
    assert len(plog.segments) >= 4
    return plog, sent


def reopen(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    assert not manager.opened_clean
    return manager, manager.log("t", 0)


def batches_in(path) -> list[tuple[int, object]]:
    with open(path, "rb") as f:
        return split_batches(f.read())


def assert_recovered_to(plog, sent, kept: int) -> None:
    """The log holds exactly the first `kept` batches sent, its indexes are valid, and it
    takes an append right after them."""
    assert [payload_digest(b) for b in read_all(plog)] == [payload_digest(b) for b in sent[:kept]]
    check_segments(plog)
    end = sum(1 + i % 4 for i in range(kept))
    assert plog.log_end_offset == end
    info = plog.append(make_batch(2, tag=b"new"))
    assert info.base_offset == end and payload_digest(read_all(plog, end)[0]) == payload_digest(make_batch(2, tag=b"new"))


def flip_byte(path, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0x10]))


@pytest.mark.parametrize("keep", [lambda size: size // 2, lambda size: 30], ids=["in-records", "in-header"])
def test_a_batch_torn_mid_write_is_cut(tmp_path, keep):
    plog, sent = crashed_manager(tmp_path)
    active = plog.active_segment.log_path
    last_pos, last = batches_in(active)[-1]
    os.truncate(active, last_pos + keep(last.size))
    _, plog = reopen(tmp_path)
    assert os.path.getsize(active) == last_pos
    assert_recovered_to(plog, sent, len(sent) - 1)


def test_a_crc_mismatch_in_the_last_batch_cuts_that_batch(tmp_path):
    plog, sent = crashed_manager(tmp_path)
    active = plog.active_segment.log_path
    last_pos, last = batches_in(active)[-1]
    flip_byte(active, last_pos + last.size - 3)
    _, plog = reopen(tmp_path)
    assert os.path.getsize(active) == last_pos
    assert_recovered_to(plog, sent, len(sent) - 1)


@pytest.mark.parametrize("garbage", [b"\x00" * 500, os.urandom(37), os.urandom(5000)], ids=["zeros", "short", "long"])
def test_garbage_after_the_last_batch_is_cut(tmp_path, garbage):
    plog, sent = crashed_manager(tmp_path)
    active = plog.active_segment.log_path
    size = os.path.getsize(active)
    with open(active, "ab") as f:
        f.write(garbage)
    _, plog = reopen(tmp_path)
    assert os.path.getsize(active) == size
    assert_recovered_to(plog, sent, len(sent))


def test_corruption_in_an_earlier_segment_cuts_it_there_and_drops_every_later_segment(tmp_path):
    plog, sent = crashed_manager(tmp_path)
    victim = plog.segments[1]
    later = [s.log_path for s in plog.segments[2:]]
    positions = batches_in(victim.log_path)
    bad_pos, _ = positions[2]
    flip_byte(victim.log_path, bad_pos + 70)
    _, plog = reopen(tmp_path)
    assert [s.base_offset for s in plog.segments] == [0, victim.base_offset]
    assert os.path.getsize(victim.log_path) == bad_pos
    for path in later:
        assert not os.path.exists(path) and not os.path.exists(path[:-4] + ".index")
    kept = len(batches_in(plog.segments[0].log_path)) + 2
    assert_recovered_to(plog, sent, kept)


def test_an_unreadable_index_below_the_checkpoint_is_rebuilt(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 1, {"segment.bytes": 3000, "index.interval.bytes": 300})
    plog = manager.log("t", 0)
    sent = [make_batch(1 + i % 4, value_size=70, tag=b"%d" % i) for i in range(40)]
    for batch in sent:
        plog.append(batch)
    manager.close()
    os.unlink(tmp_path / CLEAN_SHUTDOWN_FILE)  # unclean, but the checkpoint covers everything
    index = plog.segments[0].offset_index.path
    with open(index, "r+b") as f:
        f.truncate(os.path.getsize(index) - 3)
    _, plog = reopen(tmp_path)
    assert os.path.getsize(index) % 8 == 0 and os.path.getsize(index) > 0
    assert_recovered_to(plog, sent, len(sent))


def test_a_clean_shutdown_opens_without_scanning(tmp_path, monkeypatch):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 2, {"segment.bytes": 3000})
    for i in range(40):
        manager.log("t", i % 2).append(make_batch(3, value_size=70))
    expected = {p: log_contents(manager.log("t", p)) for p in range(2)}
    manager.close()
    recovered: list[int] = []
    real_recover = LogSegment.recover

    def spy(self, *args, **kwargs):
        recovered.append(self.base_offset)
        return real_recover(self, *args, **kwargs)

    monkeypatch.setattr(LogSegment, "recover", spy)
    files = dir_state(tmp_path / "t-0")
    again = LogManager(str(tmp_path)).open()
    assert again.opened_clean and recovered == []
    assert {p: log_contents(again.log("t", p)) for p in range(2)} == expected
    assert {k: v for k, v in dir_state(tmp_path / "t-0").items()} == files
    again.log("t", 0).append(make_batch(1))
    # Without the clean marker the same folder is scanned from the recovery point on.
    crashed = LogManager(str(tmp_path)).open()
    assert not crashed.opened_clean and recovered
    active = crashed.log("t", 0).active_segment.base_offset
    assert active in recovered and min(recovered) > 0  # segments below the checkpoint load as they are


def test_stray_index_files_and_an_empty_segment_left_mid_roll_are_handled(tmp_path):
    plog, sent = crashed_manager(tmp_path)
    end = plog.log_end_offset
    folder = os.path.dirname(plog.active_segment.log_path)
    open(os.path.join(folder, f"{end:020d}.log"), "wb").close()  # a roll that got no further
    open(os.path.join(folder, f"{end + 500:020d}.index"), "wb").close()  # an index without a log
    _, plog = reopen(tmp_path)
    assert not os.path.exists(os.path.join(folder, f"{end + 500:020d}.index"))
    assert plog.log_end_offset == end and plog.active_segment.base_offset == end
    assert_recovered_to(plog, sent, len(sent))


def test_recovered_sealed_segments_end_their_time_index_with_the_max_timestamp(tmp_path):
    plog, _ = crashed_manager(tmp_path)
    expected = [(s.base_offset, s.max_timestamp) for s in plog.segments[:-1]]
    _, plog = reopen(tmp_path)  # the checkpoint predates every segment: all are rebuilt
    assert [(s.base_offset, s.max_timestamp) for s in plog.segments[:-1]] == expected
    for segment in plog.segments[:-1]:
        assert segment.sealed
        last_timestamp, _ = time_index_entries(segment.time_index.path)[-1]
        assert last_timestamp == segment.max_timestamp, "a sealed time index lacks its final entry"
