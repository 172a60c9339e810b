"""The log cleaner against a model: random keys, values, tombstones, transactions (committed
and aborted), rolls, cleans, restarts and crashes mid-clean; after every step a full read
is the model's compacted view below the first dirty offset and the whole history from
there, offsets increasing.

A crash here stops the clean at a random rename or unlink of its swap (an OSError, as a
kill would stop it there) and reopens the folder without a clean shutdown, so recovery and
the swap's completion run as after a SIGKILL (tests/hotlog/test_cleaner_crash.py kills a
real process). Until the next clean, the part a crash left half cleaned only has to be a
cleaning of the history: records gone only if a later one of their key is kept, or their
transaction aborted."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hotlog.cleaner import CleanerConfig, CleanResult
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch, decode_batches

from .cleaner_support import COMPACT
from .support import read_all

KEYS = [b"k%d" % i for i in range(12)]
PRODUCERS = 3

record = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(min_size=0, max_size=40)))
append = st.tuples(st.just("append"), st.lists(record, min_size=1, max_size=8), st.integers(0, 4))
txn = st.tuples(st.just("txn"), st.lists(record, min_size=1, max_size=6), st.integers(0, PRODUCERS - 1),
                st.booleans())
crash = st.tuples(st.just("crash"), st.integers(0, 12))
step = st.one_of(append, append, append, txn, st.tuples(st.just("roll")), st.tuples(st.just("clean")),
                 st.tuples(st.just("clean")), st.tuples(st.just("restart")), crash)


def data_records(plog) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every data record of the log in order (markers left out), offsets increasing."""
    out = [(r.offset, r.key, r.value) for batch in read_all(plog) for b in decode_batches(batch)
           if not b.header.is_control for r in b.records]
    offsets = [o for o, _, _ in out]
    assert offsets == sorted(set(offsets)), "an offset repeats or goes back"
    return out


def compacted_view(history: list[tuple[int, bytes, bytes | None, bool]],
                   first_dirty: int) -> list[tuple[int, bytes | None, bytes | None]]:
    """Below `first_dirty`: the last record of each key not in an aborted transaction
    (tombstones kept: delete.retention.ms is a day), aborted ones gone; then all after it."""
    last = {key: offset for offset, key, _, aborted in history if offset < first_dirty and not aborted}
    return [(o, k, v) for o, k, v, aborted in history
            if o >= first_dirty or (not aborted and last.get(k) == o)]


def assert_a_cleaning_of(got: list[tuple[int, bytes | None, bytes | None]],
                         history: list[tuple[int, bytes, bytes | None, bool]]) -> None:
    """`got` is the history less records a clean may drop: each gone record has a later one
    of its key kept below it... or was aborted; every key's last live record is there."""
    kept = {offset for offset, _, _ in got}
    by_offset = {offset: (key, value) for offset, key, value, _ in history}
    assert kept <= set(by_offset), "a record the history does not have"
    assert all(by_offset[o] == (k, v) for o, k, v in got), "a record changed"
    later_kept: dict[bytes, int] = {}
    for offset, key, _, aborted in reversed(history):
        if offset not in kept:
            assert aborted or key in later_kept, f"{key!r} at {offset} gone with no later record of its key"
        elif not aborted:
            later_kept.setdefault(key, offset)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=5, max_size=60), dedupe=st.sampled_from([48, 256, 1 << 20]))
def test_reads_match_the_model_after_every_step(steps, dedupe):
    folder = tempfile.mkdtemp()
    config = CleanerConfig(dedupe_buffer_size=dedupe, io_buffer_size=300)
    manager = LogManager(folder, cleaner=config).open()
    sequences = [0] * PRODUCERS
    half_cleaned = False  # a crash stopped a clean: strict again after the next full clean
    try:
        manager.create_topic("t", 1, COMPACT)
        history: list[tuple[int, bytes, bytes | None, bool]] = []
        for op in steps:
            plog = manager.log("t", 0)
            if op[0] == "append":
                info = plog.append(build_batch([Record(k, v) for k, v in op[1]], compression=op[2]))
                history += [(info.base_offset + i, k, v, False) for i, (k, v) in enumerate(op[1])]
                plog.flush()  # seals what rolled: only sealed segments are cleaned
            elif op[0] == "txn":
                _, records, producer, commit = op
                info = plog.append(build_batch([Record(k, v) for k, v in records], producer_id=100 + producer,
                                               producer_epoch=0, base_sequence=sequences[producer],
                                               transactional=True))
                sequences[producer] += len(records)
                plog.append_marker(100 + producer, 0, commit=commit, coordinator_epoch=0)
                history += [(info.base_offset + i, k, v, not commit) for i, (k, v) in enumerate(records)]
                plog.flush()
            elif op[0] == "roll":
                plog.seal_active_segment()
            elif op[0] in ("clean", "crash"):
                crashed, result = _clean(manager, plog, op[1] if op[0] == "crash" else None)
                if crashed:
                    event("crashed mid-clean")
                    manager = LogManager(folder, cleaner=config).open()  # never closed: as after a kill
                    plog = manager.log("t", 0)
                    half_cleaned = True
                elif result is not None:
                    event(f"cleaned in {min(result.stats.passes, 3)}+ passes")  # the tiny maps take several
                    manager.write_cleaner_checkpoint()
                    assert result.first_dirty_offset == plog.active_segment.base_offset
                    half_cleaned = False
            else:
                manager.close()
                manager = LogManager(folder, cleaner=config).open()
                plog = manager.log("t", 0)
            if half_cleaned:
                assert_a_cleaning_of(data_records(plog), history)
            else:
                assert data_records(plog) == compacted_view(history, plog.first_dirty_offset)
    finally:
        manager.close()
        shutil.rmtree(folder)


def _clean(manager: LogManager, plog, crash_at: int | None) -> tuple[bool, CleanResult | None]:
    """Clean; with `crash_at`, stop at that rename or unlink of the swap (counting from 0).
    Returns whether it stopped, and the clean's result otherwise."""
    if crash_at is None:
        return False, manager.cleaner.clean(plog)
    calls = 0

    def counted(real: Callable[..., None]) -> Callable[..., None]:
        def call(*args: object, **kwargs: object) -> None:
            nonlocal calls
            calls += 1
            if calls > crash_at:
                raise OSError("killed here")
            real(*args, **kwargs)
        return call

    with mock.patch("hotlog.swap.os.replace", counted(os.replace)), \
            mock.patch("hotlog.swap.os.unlink", counted(os.unlink)):
        try:
            return False, manager.cleaner.clean(plog)
        except OSError as exc:
            assert "killed here" in str(exc)
            return True, None
