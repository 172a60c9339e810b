"""A crash at any point of a clean leaves the old segments or the new ones, never a mix:
each step of the swap failed in turn, and writers SIGKILLed while they clean."""

from __future__ import annotations

import os

import pytest

from hotlog import swap
from hotlog.cleaner import LogCleaner
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch

from .cleaner_support import COMPACT, Entry, compacted_view, log_records
from .support import BASE_TS, check_index_files, killed_after, open_log

WRITER = os.path.join(os.path.dirname(__file__), "clean_crash_writer.py")


class Crash(Exception):
    pass


def leftovers(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.endswith((".cleaned", ".swap"))]


def written_log(folder) -> list[Entry]:
    plog = open_log(folder, COMPACT)
    history = []
    for r in range(12):
        records = [Record(b"k%d" % ((r * 3 + i) % 7), b"%d-%d" % (r, i), timestamp=BASE_TS) for i in range(4)]
        info = plog.append(build_batch(records))
        history += [Entry(info.base_offset + i, rec.key, rec.value) for i, rec in enumerate(records)]
    plog.seal_active_segment()
    plog.close()
    return history


def test_a_crash_at_every_step_of_the_swap_leaves_the_old_or_the_new_segments(tmp_path, monkeypatch):
    steps = 0
    real_replace, real_unlink = os.replace, os.unlink
    crash_at = -1

    def counted(real):
        def call(*args, **kwargs):
            nonlocal steps
            steps += 1
            if steps == crash_at:
                raise Crash()
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(swap.os, "replace", counted(real_replace))  # every file step of a clean
    monkeypatch.setattr(swap.os, "unlink", counted(real_unlink))
    never = -(10**9)
    steps = never
    written_log(tmp_path / "count")
    plog = open_log(tmp_path / "count", COMPACT)
    steps = 0
    LogCleaner().clean(plog, BASE_TS)
    total = steps
    assert total >= 8  # four files renamed twice, and the replaced segments' files unlinked
    outcomes = set()
    for crash_at in range(1, total + 1):
        steps = never
        folder = tmp_path / f"crash{crash_at}"
        history = written_log(folder)
        plog = open_log(folder, COMPACT)
        steps = 0
        with pytest.raises(Crash):
            LogCleaner().clean(plog, BASE_TS)
        steps = never  # no more crashes: the restart completes or discards the swap
        plog.close()
        reopened = open_log(folder, COMPACT, clean=False)
        got = log_records(reopened)
        assert not leftovers(folder)
        for segment in reopened.segments:
            check_index_files(segment.log_path, segment.base_offset)
        # Groups are swapped oldest first, each old or new: the log is the cleaned view up to
        # some point and the whole history from there, nothing twice and nothing missing.
        cleaned = compacted_view(history, 48)
        cut = min((e.offset for e in got if e not in cleaned), default=48)
        assert got == [e for e in cleaned if e.offset < cut] + [e for e in history if e.offset >= cut]
        outcomes.add(cut)
        reopened.close()
    assert len(outcomes) >= 2  # some crashes kept old segments, some completed new ones


def run_writer(folder, seed: int, kill_after: float) -> tuple[list[Entry], bool]:
    """Start the writer, SIGKILL it after `kill_after` seconds; what it acknowledged, and
    whether it was cleaning when killed."""
    _, out = killed_after(WRITER, [str(folder), str(seed)], kill_after)
    acked, cleaning = [], False
    for line in out.decode().split("\n")[:-1]:
        if line in ("cleaning", "cleaned"):
            cleaning = line == "cleaning"
        elif line != "ready":
            offset, key, value = line.split(" ")
            acked.append(Entry(int(offset), key.encode(), None if value == "-" else value.encode()))
    return acked, cleaning


def test_writers_sigkilled_while_cleaning_lose_nothing_and_leave_no_mix(tmp_path):
    history: list[Entry] = []
    mid_clean = 0
    for kill in range(6):
        acked, cleaning = run_writer(tmp_path, kill, kill_after=0.6 + 0.25 * kill)
        mid_clean += cleaning
        history += acked
        manager = LogManager(str(tmp_path)).open()
        plog = manager.log("c", 0)
        got = log_records(plog)  # offsets only increase: no record is there twice
        assert not leftovers(plog.directory)
        for segment in plog.segments:
            check_index_files(segment.log_path, segment.base_offset)
        by_offset = {e.offset: e for e in history}
        acked_end = max(by_offset) + 1
        assert all(by_offset[e.offset] == e for e in got if e.offset < acked_end)
        last_acked = {e.key: e for e in history}
        last_kept = {e.key: e for e in got}
        for key, entry in last_acked.items():  # the latest value of every key survives
            assert last_kept[key] == entry or last_kept[key].offset >= acked_end
        history = got  # what the log holds is the truth the next run builds on
        manager.close()
    assert mid_clean >= 3, "too few kills landed during a clean to test it"
