"""Property tests: random appends, rolls, flushes, retention and restarts against a model of
the log; every offset still in the log is read exactly once, in order, by a reader looping
read(offset, max_bytes) with random max_bytes; reopening (clean or not) gives the same log."""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotlog.errors import OffsetOutOfRangeError
from hotlog.manager import LogManager
from hotlog.records import decode_batch

from .support import BASE_TS, check_index_files, make_batch, payload_digest, split_batches


@dataclass(frozen=True)
class ModelBatch:
    base_offset: int
    record_count: int
    first_timestamp: int
    digest: str

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count


batch_specs = st.tuples(st.integers(1, 6), st.integers(0, 120), st.integers(0, 4))  # records, value size, codec
requests = st.lists(batch_specs, min_size=1, max_size=3)  # the batches of one append call
operations = st.one_of(
    st.tuples(st.just("append"), st.lists(requests, min_size=2, max_size=12)),  # a burst of appends
    st.tuples(st.just("append"), st.lists(requests, min_size=2, max_size=12)),
    st.tuples(st.just("roll")),
    st.tuples(st.just("flush")),
    # retention.ms in seconds of the fake clock; whether to flush (seal rolled segments) first
    st.tuples(st.just("retain_time"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("retain_size"), st.integers(0, 15_000), st.booleans()),
    st.tuples(st.just("reopen_clean")),
    st.tuples(st.just("reopen_unclean")),
)


class Harness:
    def __init__(self, folder: str, segment_bytes: int, index_interval: int) -> None:
        self.folder = folder
        self.manager = LogManager(folder).open()
        self.manager.create_topic("p", 1, {"segment.bytes": segment_bytes, "index.interval.bytes": index_interval,
                                           "remote.storage.enable": "false", "retention.ms": -1})
        self.model: list[ModelBatch] = []
        self.now = BASE_TS

    @property
    def log(self):
        return self.manager.log("p", 0)

    def append(self, specs) -> None:
        self.now += 1000
        batches = [make_batch(n, value_size=size, compression=codec, timestamp=self.now, tag=b"%d" % i)
                   for i, (n, size, codec) in enumerate(specs)]
        info = self.log.append(b"".join(batches))
        offset = info.base_offset
        assert offset == (self.model[-1].next_offset if self.model else self.log.log_start_offset)
        for batch, (n, _, _) in zip(batches, specs):
            self.model.append(ModelBatch(offset, n, self.now, payload_digest(batch)))
            offset += n
        assert info.last_offset == offset - 1 == self.log.log_end_offset - 1

    def retain(self, retention_ms: int, retention_bytes: int) -> None:
        plog = self.log
        self.manager.alter_topic_configs("p", {"retention.ms": retention_ms, "retention.bytes": retention_bytes})
        before = list(plog.segments)
        deleted = self.manager.apply_retention(now_ms=self.now)
        assert plog.segments == before[deleted:]
        for segment in before[:deleted]:
            assert segment.sealed
            if retention_ms >= 0:
                assert self.now - segment.max_timestamp > retention_ms
        first = plog.segments[0]
        if first is not plog.active_segment and first.sealed:  # a candidate that was kept: it must be in limits
            if retention_ms >= 0:
                assert self.now - first.max_timestamp <= retention_ms
            if retention_bytes >= 0:
                assert plog.size_bytes - first.size < retention_bytes
        if retention_bytes >= 0 and deleted:
            assert plog.size_bytes >= retention_bytes
        start = plog.log_start_offset
        self.model = [b for b in self.model if b.base_offset >= start]
        assert start == (self.model[0].base_offset if self.model else plog.log_end_offset)

    def reopen(self, clean: bool) -> None:
        if clean:
            self.manager.close()
        # Otherwise the manager is dropped as a kill would leave it: what it wrote is in the
        # page cache, the checkpoint is old and there is no clean-shutdown marker.
        self.manager = LogManager(self.folder).open()
        assert self.manager.opened_clean == clean

    def check(self, rng: random.Random) -> None:
        plog = self.log
        start, end = plog.log_start_offset, plog.log_end_offset
        assert end == (self.model[-1].next_offset if self.model else start)
        # A reader from the log start with random max_bytes sees each batch once, in order.
        seen: list[tuple[int, int, str]] = []
        offset = start
        for _ in range(10_000):
            max_bytes = rng.choice([1, 50, 200, 1000, 5000, 1 << 20])
            found = plog.read(offset, max_bytes)
            if found is None:
                break
            data = found.read()
            parts = split_batches(data)
            assert sum(h.size for _, h in parts) == len(data) == found.size
            assert len(parts) == 1 or len(data) <= max_bytes, "more than max_bytes and more than one batch"
            assert parts[0][1].base_offset <= offset <= parts[0][1].last_offset
            for pos, header in parts:
                seen.append((header.base_offset, header.record_count, payload_digest(data[pos : pos + header.size])))
            offset = parts[-1][1].next_offset
        assert offset == end
        assert seen == [(b.base_offset, b.record_count, b.digest) for b in self.model]
        # A read from inside a batch starts at the batch holding that offset.
        if self.model:
            batch = rng.choice(self.model)
            inner = batch.base_offset + rng.randrange(batch.record_count)
            assert decode_batch(plog.read(inner, 1).read()).header.base_offset == batch.base_offset
        for offset in (start - 1, end + 1):
            if offset >= 0:
                with pytest.raises(OffsetOutOfRangeError):
                    plog.read(offset, 100)
        # The first record at or after a timestamp, as a scan of the model finds it.
        target = rng.randrange(BASE_TS, self.now + 2000)
        expected = next(((b.base_offset + i, b.first_timestamp + i) for b in self.model
                         for i in range(b.record_count) if b.first_timestamp + i >= target), None)
        assert plog.offset_for_timestamp(target) == expected

    def snapshot(self):
        plog = self.log
        return plog.log_start_offset, plog.log_end_offset, [s.base_offset for s in plog.segments]


@settings(max_examples=50, deadline=None)
@given(
    ops=st.lists(operations, min_size=3, max_size=25),
    segment_bytes=st.integers(1100, 4000),
    index_interval=st.integers(0, 2000),
    rng=st.randoms(use_true_random=False),
)
def test_random_histories_keep_every_offset_readable_once_in_order(ops, segment_bytes, index_interval, rng):
    with tempfile.TemporaryDirectory() as folder:
        harness = Harness(folder, segment_bytes, index_interval)
        for op in ops:
            kind = op[0]
            if kind == "append":
                for request in op[1]:
                    harness.append(request)
                continue
            if kind == "roll":
                harness.log.roll()
            elif kind == "flush":
                harness.log.flush()
                for segment in harness.log.segments[:-1]:
                    assert segment.sealed
                    check_index_files(segment.log_path, segment.base_offset)
            elif kind.startswith("retain"):
                if op[2]:
                    harness.log.flush()
                harness.retain(op[1] * 1000, -1) if kind == "retain_time" else harness.retain(-1, op[1])
            else:
                before = harness.snapshot()
                harness.reopen(clean=kind == "reopen_clean")
                assert harness.snapshot() == before
            harness.check(rng)
        harness.check(rng)
        harness.manager.close()
