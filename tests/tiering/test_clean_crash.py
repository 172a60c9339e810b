"""SIGKILL a process whose tiering cleans a compacted topic's segments in the bucket, many
times, at random moments, against moto's S3 server; then check what a restart sees: each
key's last acknowledged version (or a later one) is readable, offsets and each key's
versions only increase, nothing is left in the bucket but committed segments, and the
next clean compacts the log."""

from __future__ import annotations

import asyncio
import random
import time

from hotlog.manager import LogManager
from hotlog.records import decode_batches
from testkit.moto_server import MotoServer
from tiering.metadata import TOPICS_PREFIX
from tiering.s3_store import S3Store

from .compaction_support import Entry, remote_entries
from .support import killed_after_ready, opened

MIN_KILLS = 6
MIN_SECONDS = 10.0


def run_and_kill(data_dir: str, moto: MotoServer, bucket: str, seed: int, out_path: str,
                 rng: random.Random) -> list[str]:
    return killed_after_ready("tests.tiering.crash_cleaner", [data_dir, moto.endpoint_url, bucket, str(seed), "60"], out_path,
                              rng.uniform(0.5, 2.0))


def _version(entry: Entry) -> tuple[str, int]:
    assert entry.value is not None
    key, _, version = entry.value.split(b".")[0].decode().partition(":")
    assert entry.key == key.encode(), entry
    return key, int(version)


def test_sigkill_while_the_bucket_is_being_cleaned(tmp_path, moto: MotoServer, bucket: str) -> None:
    data_dir = str(tmp_path / "data")
    rng = random.Random(16)
    acked: dict[str, int] = {}  # key -> last acknowledged version
    runs_cleaning = kills = 0
    started = time.monotonic()
    while kills < MIN_KILLS or time.monotonic() - started < MIN_SECONDS:
        lines = run_and_kill(data_dir, moto, bucket, kills + 1, str(tmp_path / f"out-{kills}"), rng)
        kills += 1
        cleaned = 0
        for line in lines:
            kind, *fields = line.split()
            if kind == "ack":
                for field in fields:
                    key, _, version = field.partition(":")
                    acked[key] = max(acked.get(key, 0), int(version))
            elif kind == "cleaned":
                cleaned += 1
        runs_cleaning += cleaned > 0
    assert runs_cleaning >= MIN_KILLS // 2, "the kills should land while the bucket is being cleaned"

    async def restart() -> None:
        logs = LogManager(data_dir).open()
        store = S3Store(bucket, "table", endpoint_url=moto.endpoint_url)
        async with opened(logs, store, orphan_grace_ms=0, orphan_check_interval_ms=0) as manager:
            later = int(time.time() * 1000) + 1000  # past file.delete.delay.ms of the last run's tombstones
            await manager.run_once(now_ms=later)  # uploads the rest, finishes deletions, cleans orphans
            plog = logs.log("table", 0)
            assert manager.remote_end_offset("table", 0) == plog.segments[-1].base_offset  # all sealed are up
            entries = await both_tiers(manager, store, logs)
            last_seen: dict[str, int] = {}
            for entry in entries:
                key, version = _version(entry)
                assert version > last_seen.get(key, -1), f"{key}: version {version} after {last_seen[key]}"
                last_seen[key] = version
            lost = {k: v for k, v in acked.items() if last_seen.get(k, -1) < v}
            assert not lost, f"last acknowledged versions lost: {sorted(lost.items())[:5]}"
            state = manager.remote_partition("table", 0)
            assert state is not None and not state.tombstones and state.uncertain_clean is None
            topic = logs.topics["table"]
            expected = {f"{TOPICS_PREFIX}table-{topic.topic_id}.json"}
            for segment in state.segments:
                expected |= {segment.metadata_key, *(f.key for f in segment.files.values())}
            listed = {o.key for o in await store.list("")}
            assert listed == expected, f"left: {sorted(listed - expected)[:5]}, gone: {sorted(expected - listed)[:5]}"
            # The next clean picks up where the kills left it.
            while await manager.clean_once(now_ms=later) is not None:
                pass
            cleaned_to = state.first_dirty_offset
            remote = await remote_entries(manager, store, "table")
            below = [e.key for e in remote if e.offset < cleaned_to]
            assert len(below) == len(set(below)), "a key twice in the cleaned part of the bucket"
            dirty_keys = {e.key for e in entries if e.offset >= cleaned_to}
            for entry in remote:
                key, version = _version(entry)
                if entry.offset < cleaned_to and entry.key not in dirty_keys:
                    assert version == last_seen[key], f"{key}: version {version} kept, not its last"
        logs.close()

    asyncio.run(restart())


async def both_tiers(manager, store, logs: LogManager) -> list[Entry]:
    """The bucket's records, then the local log's past the remote end."""
    entries = await remote_entries(manager, store, "table")
    plog = logs.log("table", 0)
    offset = max(manager.remote_end_offset("table", 0), plog.log_start_offset)
    while offset < plog.log_end_offset:
        found = plog.read(offset, 1 << 20)
        if found is None:
            break
        for batch in decode_batches(found.read()):
            entries += [Entry(r.offset, r.key, r.value) for r in batch.records]
        offset = found.end_offset
    return entries
