"""`tierlog bench` end to end: a real `tierlog serve` (started by the bench, or given by
address), confluent-kafka clients, the local folder and moto's S3 server as stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api.bench.metrics import MetricsError, parse_counters, store_ratios
from api.bench.server import BenchServer, LatencyModel, ServerError

# Small segments and a tiny hot tier, so two seconds of 1 KiB messages at 8 MB/s (16 MB:
# 16 segments a partition) roll segments, upload them and leave most of the backlog (4 MB
# a partition, 0.75 MB hot) in the object store only; 2 MB/s while settling and replaying,
# so uploads to moto catch up on a loaded machine. Settling ends once the backlog is tiered
# (a few seconds here); the limit is for a loaded CI box.
SHORT = ["--partitions", "4", "--rate", "8", "--replay-rate", "2", "--ingest-seconds", "2", "--settle-seconds", "60",
         "--replay-seconds", "8", "--segment-bytes", "262144", "--local-retention-bytes", "262144",
         "--batch-bytes", "65536"]


def bench(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def cost(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", "cost", *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def run_json(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    out = tmp_path / "bench.json"
    done = bench(*SHORT, "--json", str(out), *args, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


def assert_sane(result: dict[str, Any]) -> None:
    ingest = result["phases"]["ingest"]
    # 8 MB/s asked; a loaded 2-core machine may fall short, but not to nothing.
    assert 2 < ingest["produce"]["mb_per_s"] < 12
    assert ingest["produce"]["errors"] == 0, result["last_produce_error"]
    assert ingest["tail"]["messages"] > 0.5 * ingest["produce"]["messages"]
    produce_latency, e2e = ingest["produce"]["latency_ms"], ingest["tail"]["e2e_latency_ms"]
    assert 0 < produce_latency["p50"] <= produce_latency["p99"] <= produce_latency["p99.9"]
    assert 0 < e2e["p50"] <= e2e["p99"] <= e2e["p99.9"] < 10_000
    settle = result["phases"]["settle"]
    assert settle["backlog_tiered"] is True, settle
    cold = result["phases"]["replay_cold"]
    assert cold["replay"]["complete"] and cold["replay"]["mb_per_s"] > 0
    assert cold["replay"]["remote_fraction"] > 0.5  # the backlog came mostly from the object store
    assert cold["produce"]["messages"] > 0  # producers kept writing during the replay
    store = result["object_store"]
    assert store["run"]["requests"]["PUT"] > 0
    assert store["per_gb_ingested"]["PUT"] > 0 and store["per_gb_ingested"]["upload_bytes"] > 0.5
    assert store["replay_cold"]["remote_get_bytes"] > 0
    assert store["per_gb_replayed_cold"]["GET"] > 0
    ratios = store["ratios"]
    assert ratios["put_per_gb_uploaded"] > 0 and ratios["get_per_gb_replayed"] > 0
    assert 0.9 < ratios["upload_per_ingest"] < 1.2


def test_bench_on_the_local_folder(tmp_path: Path) -> None:
    result, table = run_json(tmp_path)
    assert_sane(result)
    assert result["server"]["started"] and result["server"]["object_store"].startswith("file://")
    assert result["config"]["partitions"] == 4 and result["config"]["message_bytes"] == 1024
    assert "object store requests and bytes" in table  # the table for people, beside the JSON


def test_bench_counts_the_bucket_wal_apart_and_the_cost_prices_it_from_the_run(tmp_path: Path) -> None:
    result, _ = run_json(tmp_path, "--server-conf", "log.remote.wal.enable=true")
    assert_sane(result)
    store = result["object_store"]
    ratios = store["ratios"]
    assert store["run"]["wal_objects"] > 0
    # One object per 50 ms window at most; the run writes all along, so not far below it.
    assert 1 < ratios["wal_put_per_second"] <= 21
    segment_puts = ratios["put_per_gb_uploaded"] * store["run"]["upload_bytes"] / 1e9
    assert segment_puts == pytest.approx(store["run"]["requests"]["PUT"] - store["run"]["wal_objects"])
    out = tmp_path / "bench.json"
    priced = cost("--bench", out, "--json", "-")
    assert priced.returncode == 0, priced.stderr
    wal_put = json.loads(priced.stdout)["lines"]["tierlog_bucket_wal"]["wal_put"]
    assert wal_put["quantity"] == pytest.approx(3 * 730 * 3600 * ratios["wal_put_per_second"])  # 3 brokers, a 730 h month


def test_bench_on_motos_s3_behind_the_latency_model(tmp_path: Path, moto, bucket: str) -> None:
    result, _ = run_json(tmp_path, "--object-store", f"s3://{bucket}/bench", "--s3-endpoint", moto.endpoint_url,
                         "--latency-model", "5,200", "--quiet")
    assert_sane(result)
    assert result["server"]["latency_model"] == {"first_byte_ms": 5.0, "mb_per_s": 200.0}
    assert result["phases"]["replay_cold"]["replay"]["remote_get_ms"] >= 5  # the model's time to first byte
    keys = [o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket, Prefix="bench/").get("Contents", [])]
    assert any(key.endswith(".log") for key in keys)  # the segments are in the bucket


def test_bench_against_a_running_server_by_address(tmp_path: Path) -> None:
    with BenchServer(None, {"remote.log.manager.task.interval.ms": "500",
                            "log.retention.check.interval.ms": "500"}) as server:
        out = tmp_path / "bench.json"
        done = bench("--bootstrap", server.bootstrap, "--metrics-url", server.metrics_url, "--json", str(out),
                     "--quiet", "--partitions", "2", "--rate", "4", "--replay-rate", "1", "--ingest-seconds", "2",
                     "--settle-seconds", "20", "--replay-seconds", "4", "--segment-bytes", "262144",
                     "--batch-bytes", "65536")
        assert done.returncode == 0, done.stderr
        # `tierlog cost` reads the same ratios from the server's counters (all it did since it started).
        priced = subprocess.run([sys.executable, "-m", "api.cli", "cost", "--metrics-url", server.metrics_url,
                                 "--json", "-"], capture_output=True, text=True, timeout=60)
        assert priced.returncode == 0, priced.stderr
    result = json.loads(out.read_text())
    ratios = json.loads(priced.stdout)["ratios"]
    assert ratios["put_per_gb_uploaded"] > 0 and ratios["get_per_gb_replayed"] > 0
    assert result["server"] == {"started": False, "bootstrap": server.bootstrap, "object_store": "(the server's)",
                                "metrics_url": server.metrics_url}
    assert result["phases"]["ingest"]["produce"]["mb_per_s"] > 1
    assert result["phases"]["replay_cold"]["replay"]["messages"] > 0


@pytest.mark.parametrize("args, message", [
    (["--bootstrap", "127.0.0.1:1", "--object-store", "file:///tmp/x"], "set up a server the bench starts"),
    (["--s3-endpoint", "http://127.0.0.1:1"], "--s3-endpoint needs --object-store s3://"),
    (["--latency-model", "30"], "expected FIRST_BYTE_MS,MB_PER_S"),
    (["--rate", "-1"], "expected MB/s"),
    (["--bootstrap", "127.0.0.1:1", "--metrics-url", "http://127.0.0.1:1/metrics"], "cannot read"),
])
def test_bad_options_are_refused_with_a_reason(args: list[str], message: str) -> None:
    done = bench(*args, "--quiet", timeout=30)
    assert done.returncode in (1, 2)
    assert message in done.stderr
    assert done.stdout == ""


def test_a_server_that_cannot_start_is_reported() -> None:
    with pytest.raises(ServerError) as caught, BenchServer("s3://tierlog-no-such-bucket?endpoint_url=http://127.0.0.1:1"
                                                          "&max_attempts=1&connect_timeout_s=0.2", {},
                                                          LatencyModel(1, 1)):
        pass
    assert "tierlog serve exited" in str(caught.value)


def test_counters_and_ratios_from_metrics_text() -> None:
    text = "\n".join([
        "# TYPE tierlog_bytes_in counter", 'tierlog_bytes_in_total{protocol="kafka"} 2e9',
        "# TYPE tierlog_object_store_requests counter",
        'tierlog_object_store_requests_total{operation="PUT"} 10',
        'tierlog_object_store_requests_total{operation="UPLOAD_PART"} 30',
        'tierlog_object_store_requests_total{operation="GET"} 7',
        'tierlog_object_store_requests_total{operation="HEAD"} 1',
        'tierlog_object_store_requests_total{operation="LIST"} 2',
        "# TYPE tierlog_tiering_upload_bytes counter", "tierlog_tiering_upload_bytes_total 2.1e9",
        "# TYPE tierlog_tier_bytes gauge", 'tierlog_tier_bytes{tier="local"} 9e9',
        'tierlog_tier_bytes{tier="remote"} 2e9',
        "# TYPE tierlog_fetch_bytes counter", 'tierlog_fetch_bytes_total{tier="remote"} 5e8',
        "# TYPE tierlog_remote_get_bytes counter", "tierlog_remote_get_bytes_total 6e8",
        "# TYPE tierlog_remote_get_seconds histogram", 'tierlog_remote_get_seconds_bucket{le="+Inf"} 7',
        "tierlog_remote_get_seconds_count 7", "tierlog_remote_get_seconds_sum 0.35", ""])
    counters = parse_counters(text)
    assert counters.requests == {"PUT": 40, "GET": 8, "LIST": 2, "DELETE": 0}  # S3's billed classes
    assert (counters.remote_gets, counters.remote_get_seconds) == (7, 0.35)
    ratios = store_ratios(counters, counters)
    assert ratios.put_per_gb_uploaded == pytest.approx(40 / 2.1)
    assert ratios.upload_per_ingest == pytest.approx(1.05)
    assert ratios.get_per_gb_replayed == pytest.approx(16)
    assert ratios.remote_bytes_per_replayed == pytest.approx(1.2)
    with pytest.raises(MetricsError, match="no tierlog_bytes_in"):
        parse_counters("# TYPE other counter\nother_total 1\n")


def test_a_tail_reader_that_cannot_start_is_a_workload_error_not_a_traceback() -> None:
    from api.bench.workloads import Producers, TailReaders, WorkloadError

    readers = TailReaders("127.0.0.1:1", "nowhere", partitions=1, fan_out=1)  # nothing listens there
    with pytest.raises(WorkloadError, match="a tail reader failed to start"):
        readers.start(timeout_s=20)
    readers.stop()
    producers = Producers("127.0.0.1:1", "nowhere", 1, 100, "all", 5, 1 << 20)
    producers.stop()  # never started: nothing to join, no error hiding the first one
    assert producers.failure is None
