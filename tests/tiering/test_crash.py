"""SIGKILL a producing, tiering process at random moments, many times, against moto's S3
server; then check what a restart sees: every acknowledged offset readable from one tier
or the other, none twice, every committed segment still there, nothing else in the bucket."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from hotlog.manager import LogManager
from testkit.moto_server import MotoServer
from tiering.metadata import TOPICS_PREFIX
from tiering.s3_store import S3Store

from .support import killed_after_ready, opened, read_both_tiers

SECONDS_PER_MODE = 5.0  # at least MIN_KILLS kills, each a child's start-up and 0.2-1.4 s of work: 7-8 s
MIN_KILLS = 4
TOMBSTONE_SECONDS = 30.0  # delete mode runs on until retention has deleted something, up to this


def run_and_kill(data_dir: str, moto: MotoServer, bucket: str, mode: str, seed: int, out_path: str,
                 rng: random.Random) -> list[str]:
    """Start the child, let it work for a random while after it is ready, SIGKILL it."""
    return killed_after_ready("tests.tiering.crash_tierer", [data_dir, moto.endpoint_url, bucket, mode, str(seed), "60"],
                              out_path, rng.uniform(0.2, 1.4))


@pytest.mark.parametrize("mode", ["upload", "delete"])
def test_sigkill_during_uploads_and_deletions(tmp_path, moto: MotoServer, bucket: str, mode: str) -> None:
    data_dir = str(tmp_path / "data")
    rng = random.Random(mode)
    acked: dict[int, str] = {}  # base offset -> digest
    commits: dict[str, tuple[int, int]] = {}  # segment id -> (base, next)
    tombstoned: set[str] = set()
    runs_with_commits = kills = 0
    started = time.monotonic()
    def more() -> bool:
        elapsed = time.monotonic() - started
        if kills < MIN_KILLS or elapsed < SECONDS_PER_MODE:
            return True
        # On a loaded machine the child may need more runs before retention deletes anything.
        return mode == "delete" and not tombstoned and elapsed < TOMBSTONE_SECONDS

    while more():
        lines = run_and_kill(data_dir, moto, bucket, mode, kills, str(tmp_path / f"out-{kills}"), rng)
        kills += 1
        committed_before = len(commits)
        for line in lines:
            kind, *fields = line.split()
            if kind == "ack":
                base = int(fields[0])
                assert base not in acked, f"offset {base} acknowledged twice"
                acked[base] = fields[2]
            elif kind == "commit":
                commits[fields[0]] = (int(fields[1]), int(fields[2]))
            elif kind == "tombstone":
                tombstoned.add(fields[0])
        runs_with_commits += len(commits) > committed_before
    assert runs_with_commits >= MIN_KILLS - 1, "the kills should land while segments are being uploaded"
    if mode == "delete":
        assert tombstoned, "retention should have deleted remote segments along the way"

    async def restart() -> None:
        logs = LogManager(data_dir).open()
        store = S3Store(bucket, "crash", endpoint_url=moto.endpoint_url)
        async with opened(logs, store, orphan_grace_ms=0, orphan_check_interval_ms=0) as manager:
            await manager.run_once()  # finishes deletions, cleans orphans, uploads the rest
            batches = await read_both_tiers(manager, store, "crash", 0)
            bases = [base for base, _ in batches]
            assert bases == sorted(set(bases)), "an offset is in the log twice"
            found = dict(batches)
            log_start = bases[0] if bases else logs.log("crash", 0).log_end_offset
            missing = [base for base, digest in acked.items()
                       if (mode == "upload" or base >= log_start) and found.get(base) != digest]
            assert not missing, f"{len(missing)} acknowledged batches lost, first at offset {min(missing)}"
            if mode == "upload":
                assert log_start == 0 and len(found) >= len(acked)
            state = manager.remote_partition("crash", 0)
            assert state is not None and not state.tombstones
            remote_ids = {str(s.segment_id) for s in state.segments}
            lost = [sid for sid, (_, next_offset) in commits.items()
                    if sid not in remote_ids and sid not in tombstoned and next_offset > state.log_start_offset]
            assert not lost, f"committed segments missing after restart: {lost}"
            topic = logs.topics["crash"]
            expected = {f"{TOPICS_PREFIX}crash-{topic.topic_id}.json"}
            for segment in state.segments:
                expected |= {segment.metadata_key, *(f.key for f in segment.files.values())}
            if state.end_marker is not None:
                expected.add(state.end_marker.metadata_key)
            listed = {o.key for o in await store.list("")}
            assert listed == expected, f"orphans left: {sorted(listed - expected)[:5]}, gone: {sorted(expected - listed)[:5]}"
        logs.close()

    asyncio.run(restart())
