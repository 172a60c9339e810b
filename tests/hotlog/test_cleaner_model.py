"""The log cleaner against a model: random keys, values, tombstones, rolls, cleans and
restarts; after every step a full read is the model's compacted view below the first
dirty offset and the whole history from there, offsets increasing."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hotlog.cleaner import CleanerConfig
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch

from .cleaner_support import COMPACT, Entry, compacted_view, log_records

KEYS = [b"k%d" % i for i in range(12)]

record = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(min_size=0, max_size=40)))
append = st.tuples(st.just("append"), st.lists(record, min_size=1, max_size=8), st.integers(0, 4))
step = st.one_of(append, append, append, st.tuples(st.just("roll")), st.tuples(st.just("clean")),
                 st.tuples(st.just("clean")), st.tuples(st.just("restart")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=5, max_size=60), dedupe=st.sampled_from([48, 256, 1 << 20]))
def test_reads_match_the_model_after_every_step(steps, dedupe):
    folder = tempfile.mkdtemp()
    config = CleanerConfig(dedupe_buffer_size=dedupe, io_buffer_size=300)
    manager = LogManager(folder, cleaner=config).open()
    try:
        manager.create_topic("t", 1, COMPACT)
        history: list[Entry] = []
        for op in steps:
            plog = manager.log("t", 0)
            if op[0] == "append":
                info = plog.append(build_batch([Record(k, v) for k, v in op[1]], compression=op[2]))
                history += [Entry(info.base_offset + i, k, v) for i, (k, v) in enumerate(op[1])]
                plog.flush()  # seals what rolled: only sealed segments are cleaned
            elif op[0] == "roll":
                plog.seal_active_segment()
            elif op[0] == "clean":
                result = manager.cleaner.clean(plog)
                if result is not None:
                    event(f"cleaned in {min(result.stats.passes, 3)}+ passes")  # the tiny maps take several
                    manager.write_cleaner_checkpoint()
                    assert result.first_dirty_offset == plog.active_segment.base_offset
            else:
                manager.close()
                manager = LogManager(folder, cleaner=config).open()
                plog = manager.log("t", 0)
            assert log_records(plog) == compacted_view(history, plog.first_dirty_offset)
    finally:
        manager.close()
        shutil.rmtree(folder)
