"""Reads of a cleaned log: a stretch of header-only batches (a clean keeps the last batch
of a group and of each producer, records gone) is read through to the next batch with
records, so a client never gets a fetch with bytes but no record (librdkafka takes that
for a batch too large and, after ten, fails the partition)."""

from __future__ import annotations

import asyncio

from fetch.reader import Reader
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch, decode_batches
from hotlog.segment import FileSlice

from ..hotlog.cleaner_support import COMPACT

ROUNDS = 40
KEYS = 3


def test_a_fetch_reads_past_header_only_batches_to_the_next_record(tmp_path) -> None:
    logs = LogManager(str(tmp_path)).open()
    logs.create_topic("table", 1, {**COMPACT, "delete.retention.ms": 0})
    plog = logs.log("table", 0)
    for version in range(ROUNDS):
        for k in range(KEYS):
            plog.append(build_batch([Record(b"k%d" % k, b"v%d-%d" % (k, version), (), 0)]))
    plog.roll()
    plog.flush()

    async def scenario() -> None:
        while await logs.clean_once() is not None:
            pass
        empty_stretch = [s for s in plog.segments[:-1] if not list(_records(s.read(s.base_offset, 1 << 20)))]
        assert empty_stretch, "the clean left no segment of header-only batches: nothing to read through"
        reader = Reader(logs)
        offset, seen = 0, []
        while offset < plog.log_end_offset:
            result = await reader.read("table", 0, offset, 1 << 20)
            batches = list(decode_batches(result.records))
            records = [r for b in batches for r in b.records]
            assert records, f"a fetch at {offset} held bytes but no record"
            seen += [(r.offset, r.key, r.value) for r in records]
            offset = batches[-1].header.last_offset + 1
        assert [o for o, _, _ in seen] == sorted({o for o, _, _ in seen})
        assert {k: v for _, k, v in seen} == {b"k%d" % k: b"v%d-%d" % (k, ROUNDS - 1) for k in range(KEYS)}

    asyncio.run(scenario())
    logs.close()


def _records(found: FileSlice | None) -> list[Record]:
    return [] if found is None else [r for b in decode_batches(found.read()) for r in b.records]
