"""A local batch that fails its CRC is never served: the bucket's copy is, when the offsets
are tiered; otherwise the partition's read fails with CorruptSegmentError."""

import asyncio

import pytest
from prometheus_client import REGISTRY

from hotlog.errors import CorruptSegmentError
from hotlog.manager import LogManager
from tests.tiering.support import open_logs, produce, seal_active

from .test_reader import make_reader, read_all

KEPT_LOCALLY = {"retention.ms": -1}  # tiered segments stay on the local disk too


def corrupt_reads(outcome: str) -> float:
    return REGISTRY.get_sample_value("tierlog_fetch_corrupt_local_reads_total", {"outcome": outcome}) or 0.0


def flip_byte(path: str, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0x40]))


def test_a_corrupt_local_segment_is_served_from_the_bucket_and_refused_where_it_is_not_tiered(tmp_path, make_store):
    async def scenario():
        logs = open_logs(tmp_path / "data", configs=KEPT_LOCALLY)
        logs.create_topic("untiered", 1, {"segment.bytes": 4096, "remote.storage.enable": "false"})
        acked = produce(logs.log("t", 0), 30)
        produce(logs.log("untiered", 0), 30)
        for topic in ("t", "untiered"):
            seal_active(logs.log(topic, 0))
        store = make_store()
        tiering, reader = make_reader(tmp_path, logs, store)
        await tiering.open()
        await tiering.run_once()
        tiered = logs.log("t", 0).segments[1]
        assert tiering.remote_segments("t", 0)[1].next_offset == tiered.next_offset
        assert logs.log("t", 0).log_start_offset == 0  # still local: reads start there
        await tiering.close()
        await reader.remote.cache.close()
        logs.close()
        # After a clean restart nothing on disk is trusted until checked.
        flip_byte(tiered.log_path, 200)
        flip_byte(logs.log("untiered", 0).segments[1].log_path, 200)

        logs = LogManager(str(tmp_path / "data")).open()
        tiering, reader = make_reader(tmp_path, logs, store)
        await tiering.open()
        served_before, refused_before = corrupt_reads("served_remote"), corrupt_reads("refused")
        seen = await read_all(reader)
        served = corrupt_reads("served_remote") - served_before
        bad_offset = logs.log("untiered", 0).segments[1].base_offset
        with pytest.raises(CorruptSegmentError):
            await reader.read("untiered", 0, bad_offset, 3000)
        refused = corrupt_reads("refused") - refused_before
        before_bad = await reader.read("untiered", 0, 0, 3000)  # the good segment before it is served
        await tiering.close()
        await reader.remote.cache.close()
        await store.close()
        logs.close()
        return acked, seen, served, refused, before_bad

    acked, seen, served, refused, before_bad = asyncio.run(scenario())
    assert seen == acked  # every batch, the corrupt one from the bucket
    assert served >= 1 and refused == 1
    assert before_bad.records
