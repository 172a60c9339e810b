"""`tierlog cost`: the model against hand-worked figures (the public RF 3 cross-zone
formula, the bucket WAL's PUTs), ratios taken from a bench result, the default price
table, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.bench.metrics import Counters, StoreRatios, parse_counters
from api.bench.server import BenchServer
from api.cost.model import DESIGNS, WalRatios, Workload, monthly_costs, monthly_estimate
from api.cost.prices import CostInputError, Prices, load_prices, parse_prices
from api.cost.ratios import ratios_of_server

HOURS = 730
MONTH_S = HOURS * 3600
RATIOS = StoreRatios(put_per_gb_uploaded=40.0, list_per_gb_uploaded=0.5, delete_per_gb_uploaded=2.0,
                     upload_per_ingest=1.02, get_per_gb_replayed=300.0, remote_bytes_per_replayed=1.1)


def bench_file(tmp_path: Path, ratios: StoreRatios | None, name: str = "bench.json") -> Path:
    """A result shaped as `tierlog bench --json` writes it (only the part cost reads)."""
    store = {"ratios": ratios.to_json()} if ratios else {"ratios": None, "ratios_error": "nothing was replayed"}
    path = tmp_path / name
    path.write_text(json.dumps({"version": 1, "object_store": store}))
    return path


def cost(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # Wide enough that the table's design names stay on one line.
    return subprocess.run([sys.executable, "-m", "api.cli", "cost", *map(str, args)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


def test_default_prices_are_aws_us_east_1_as_published() -> None:
    prices = load_prices(None)  # shipped inside the package
    assert (prices.s3_standard_gb_month, prices.s3_put_per_1000, prices.s3_get_per_1000) == (0.023, 0.005, 0.0004)
    assert (prices.ebs_gb_month, prices.cross_az_gb_each_way, prices.hours_per_month) == (0.08, 0.01, HOURS)
    assert prices.instance_hourly > 0 and prices.instance_type


def test_cross_zone_network_matches_the_rf3_formula() -> None:
    # 50 MB/s, fan-out 2, RF 3 over three zones, no replay: producers 2/3 W, replication 2 W,
    # consumers 2/3 F W, each GB paying $0.01 out of its zone and $0.01 into the other.
    w_gb_month = 50e6 / 1e9 * MONTH_S
    expected = (2 / 3 * w_gb_month + 2 * w_gb_month + 2 / 3 * 2 * w_gb_month) * (0.01 + 0.01)
    assert expected == pytest.approx(10_512, abs=1)
    costs = monthly_costs(Workload(replay_tb_per_month=0), load_prices(None), RATIOS)
    assert costs["kafka_all_local"]["network"] == pytest.approx(expected)
    assert costs["kafka_tiered"]["network"] == pytest.approx(expected)  # tiering moves no zone traffic away
    # tierlog has no replicas: its clients' traffic only.
    clients = (2 / 3 * w_gb_month + 2 / 3 * 2 * w_gb_month) * (0.01 + 0.01)
    assert costs["tierlog"]["network"] == costs["tierlog_bucket_wal"]["network"] == pytest.approx(clients)
    assert costs["object_store_only"]["network"] == 0
    # One zone: nothing crosses.
    one_zone = monthly_costs(Workload(zones=1, replication_factor=1), load_prices(None), RATIOS)
    assert all(one_zone[design]["network"] == 0 for design in DESIGNS)


def test_storage_and_requests_by_hand() -> None:
    workload = Workload(ingest_mb_per_s=10, retention_days=30, hot_days=1, replay_tb_per_month=2)
    costs = monthly_costs(workload, load_prices(None), RATIOS)
    stored_per_day = 10e6 / 1e9 * 86_400 * 1.02
    assert costs["kafka_all_local"]["storage"] == pytest.approx(stored_per_day * 30 * 3 * 0.08)
    assert costs["kafka_tiered"]["storage"] == pytest.approx(stored_per_day * 1 * 3 * 0.08 + stored_per_day * 30 * 0.023)
    # tierlog keeps one copy of the hot day; the WAL adds its bytes in S3 until folded (2 minutes).
    assert costs["tierlog"]["storage"] == pytest.approx(stored_per_day * 1 * 0.08 + stored_per_day * 30 * 0.023)
    wal_held = 10e6 / 1e9 * 120
    assert wal_held == pytest.approx(1.2)
    assert costs["tierlog_bucket_wal"]["storage"] == pytest.approx(costs["tierlog"]["storage"] + wal_held * 0.023)
    uploaded = 10e6 / 1e9 * MONTH_S * 1.02
    requests = (uploaded * 40 * 0.005 + uploaded * 0.5 * 0.005 + 2000 * 300 * 0.0004) / 1000
    assert costs["kafka_tiered"]["requests"] == pytest.approx(requests)
    assert costs["tierlog"]["requests"] == pytest.approx(requests)  # the same segments and replays
    assert costs["kafka_all_local"]["requests"] == 0


def test_request_costs_follow_the_bench_result_not_constants(tmp_path: Path) -> None:
    totals = []
    for puts in (40.0, 400.0):
        ratios = StoreRatios(**{**RATIOS.to_json(), "put_per_gb_uploaded": puts})
        out = tmp_path / f"cost-{puts}.json"
        done = cost("--bench", bench_file(tmp_path, ratios, f"bench-{puts}.json"), "--json", out)
        assert done.returncode == 0, done.stderr
        figures = json.loads(out.read_text())
        assert figures["ratios"]["put_per_gb_uploaded"] == puts
        totals.append(figures["monthly"]["kafka_tiered"]["requests"])
    uploaded = 50e6 / 1e9 * MONTH_S * 1.02
    assert totals[1] - totals[0] == pytest.approx(uploaded * 360 * 0.005 / 1000)


def test_table_chart_and_json(tmp_path: Path) -> None:
    chart, out = tmp_path / "cost.png", tmp_path / "cost.json"
    done = cost("--bench", bench_file(tmp_path, RATIOS), "--chart", chart, "--json", out)
    assert done.returncode == 0, done.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    figures = json.loads(out.read_text())
    assert figures["workload"]["ingest_mb_per_s"] == 50 and figures["workload"]["fan_out"] == 2
    assert list(figures["designs"]) == list(figures["monthly"]) == list(figures["lines"]) == list(DESIGNS)
    assert figures["designs"] == {
        "kafka_all_local": "Kafka, all local, RF 3", "kafka_tiered": "Kafka, KIP-405 tiered, RF 3",
        "tierlog": "tierlog as built", "tierlog_bucket_wal": "tierlog with the bucket WAL",
        "object_store_only": "object store only"}
    for design in DESIGNS:
        assert figures["designs"][design] in done.stdout
        row = figures["monthly"][design]
        assert row["total"] == pytest.approx(row["storage"] + row["requests"] + row["network"] + row["instances"])
        assert f"${row['total']:,.0f}" in done.stdout
        for category in ("storage", "requests", "network", "instances"):
            lines = figures["lines"][design].values()
            assert row[category] == pytest.approx(sum(line["dollars"] for line in lines if line["category"] == category))
    # A year of history: keeping it all on replicated EBS costs most.
    assert figures["monthly"]["kafka_all_local"]["total"] > figures["monthly"]["kafka_tiered"]["total"]
    # What tierlog as built gives up is said beside its figures.
    assert "does not survive the loss" in done.stdout and "does not survive" in figures["notes"]["tierlog"][0]


@pytest.mark.parametrize("text, message", [
    ("[s3\n", "not valid TOML"),
    ("hours_per_month = 730\n[s3]\nstandard_gb_month = 0.023\n", "missing [s3] put_per_1000"),
    (Path(__file__).parents[2].joinpath("api/cost/aws-us-east-1.toml").read_text().replace(
        "get_per_1000 = 0.0004", 'get_per_1000 = "cheap"'), "[s3] get_per_1000 must be a number"),
    (Path(__file__).parents[2].joinpath("api/cost/aws-us-east-1.toml").read_text().replace(
        "mb_per_s = 200", "mb_per_s = 0"), "[instance] mb_per_s must be above 0"),
])
def test_a_bad_price_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CostInputError, match="prices.toml") as caught:
        parse_prices(text, "prices.toml")
    assert message in str(caught.value)
    path = tmp_path / "prices.toml"
    path.write_text(text)
    chart = tmp_path / "cost.png"
    done = cost("--bench", bench_file(tmp_path, RATIOS), "--prices", path, "--chart", chart)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""
    assert not chart.exists()


@pytest.mark.parametrize("args, message", [
    (["--hot-days", "400"], "hot retention (400.0 days) must be between 0 and the retention"),
    (["--wal-window-ms", "0"], "WAL window must be above 0 ms, got 0.0"),
    (["--wal-window-ms", "-50"], "WAL window must be above 0 ms"),
    (["--wal-window-ms", "soon"], "expected a number"),
    (["--wal-window-ms", "inf"], "expected a finite number"),
    (["--wal-fold-minutes", "0"], "WAL fold time must be above 0 minutes"),
    (["--wal-fold-minutes", "nan"], "expected a finite number"),
    (["--ingest-mb-s", "0"], "ingest must be above 0 MB/s"),
    (["--zones", "0"], "zones and replication factor must be 1 or more"),
    (["--fan-out", "lots"], "expected a number"),
    (["--ingest-mb-s", "nan"], "expected a finite number"),
    (["--retention-days", "inf"], "expected a finite number"),
])
def test_a_bad_workload_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    chart, out = tmp_path / "cost.png", tmp_path / "cost.json"
    done = cost("--bench", bench_file(tmp_path, RATIOS), *args, "--chart", chart, "--json", out)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert not chart.exists() and not out.exists()


def test_a_bench_result_without_ratios_is_refused(tmp_path: Path) -> None:
    done = cost("--bench", bench_file(tmp_path, None))
    assert done.returncode == 2
    assert "measured no cost ratios: nothing was replayed" in done.stderr
    (tmp_path / "other.json").write_text("[1, 2]")
    assert "not a `tierlog bench --json` result" in cost("--bench", tmp_path / "other.json").stderr
    assert "No such file" in cost("--bench", tmp_path / "missing.json").stderr


def test_ratios_from_a_servers_metrics_need_uploads_and_replays() -> None:
    with BenchServer(None, {}) as server:
        done = cost("--metrics-url", server.metrics_url)
    assert done.returncode == 2
    assert "no segment was uploaded" in done.stderr


def test_no_arguments_use_the_documented_workload_and_the_shipped_measured_run() -> None:
    done = cost("--json", "-")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    shipped = json.loads((Path(__file__).parents[2] / "api" / "cost" / "measured-s3-model.json").read_text())
    assert figures["ratios"] == shipped["object_store"]["ratios"]
    assert shipped["config"]["segment_bytes"] == 64 * 1024 * 1024  # the run docs/cost.md describes
    assert figures["workload"]["ingest_mb_per_s"] == Workload().ingest_mb_per_s == 50
    assert figures["monthly"]["kafka_tiered"]["total"] < figures["monthly"]["kafka_all_local"]["total"]
    assert figures["workload"]["wal_window_ms"] == 50 and figures["workload"]["wal_fold_minutes"] == 2
    # No bench WAL ratio shipped: three brokers at one PUT per 50 ms each, 730 hours.
    wal_put = figures["lines"]["tierlog_bucket_wal"]["wal_put"]
    assert figures["lines"]["tierlog_bucket_wal"]["machines"]["quantity"] == 3
    assert wal_put["quantity"] == pytest.approx(3 * MONTH_S / 0.05) == 157_680_000
    assert wal_put["dollars"] == pytest.approx(788.40)
    assert "formula" in wal_put["basis"] and "157,680,000" in wal_put["basis"]


def test_a_server_that_restarted_with_data_already_tiered_cannot_give_storage_ratios() -> None:
    def scraped(uploaded: float, remote: float) -> Counters:
        return parse_counters("\n".join([
            "# TYPE tierlog_bytes_in counter", 'tierlog_bytes_in_total{protocol="kafka"} 2e9',
            "# TYPE tierlog_object_store_requests counter",
            'tierlog_object_store_requests_total{operation="PUT"} 40',
            'tierlog_object_store_requests_total{operation="GET"} 8',
            "# TYPE tierlog_tiering_upload_bytes counter", f"tierlog_tiering_upload_bytes_total {uploaded}",
            "# TYPE tierlog_tier_bytes gauge", f'tierlog_tier_bytes{{tier="remote"}} {remote}',
            "# TYPE tierlog_fetch_bytes counter", 'tierlog_fetch_bytes_total{tier="remote"} 5e8', ""]))

    assert ratios_of_server(scraped(2.1e9, 2e9), "server").upload_per_ingest == pytest.approx(1.05)
    with pytest.raises(CostInputError, match="restarted with data already tiered"):
        ratios_of_server(scraped(1e9, 100e9), "server")  # 100 GB in the bucket, 1 GB uploaded since start


def prices_with_hours(hours: int) -> Prices:
    text = Path(__file__).parents[2].joinpath("api/cost/aws-us-east-1.toml").read_text()
    return parse_prices(text.replace("hours_per_month = 730", f"hours_per_month = {hours}"), "prices.toml")


def test_wal_puts_by_hand() -> None:
    # One zone, a day hot: one broker. A 30-day month is 2,592,000 s; one PUT per 50 ms
    # window is 51,840,000 PUTs, at $0.005 per 1000 $259.20.
    one_broker = Workload(zones=1, replication_factor=1, hot_days=1)
    lines = monthly_estimate(one_broker, prices_with_hours(720), RATIOS).lines["tierlog_bucket_wal"]
    assert lines["machines"].quantity == 1
    assert 720 * 3600 / 0.05 == 51_840_000
    assert lines["wal_put"].quantity == pytest.approx(51_840_000)
    assert lines["wal_put"].dollars == pytest.approx(259.20)
    # The shipped table's month is 730 hours: 52,560,000 PUTs, $262.80.
    shipped = monthly_estimate(one_broker, load_prices(None), RATIOS).lines["tierlog_bucket_wal"]
    assert shipped["wal_put"].quantity == pytest.approx(52_560_000)
    assert shipped["wal_put"].dollars == pytest.approx(262.80)
    # Every WAL object is deleted once folded (free on S3, counted); read only on restore.
    assert shipped["wal_delete"].quantity == shipped["wal_put"].quantity and shipped["wal_delete"].dollars == 0
    assert shipped["wal_get"].quantity == 0 and shipped["wal_get"].dollars == 0
    # 50 MB/s held for the 2 minutes to fold: 6 GB in S3 besides the segments, $0.138.
    assert shipped["s3_wal"].quantity == pytest.approx(6.0)
    assert shipped["s3_wal"].dollars == pytest.approx(6 * 0.023)


def test_the_tierlog_designs_have_no_replica_traffic() -> None:
    estimate = monthly_estimate(Workload(), load_prices(None), RATIOS)
    replication = {d: estimate.lines[d]["cross_zone_replication"] for d in DESIGNS}
    # RF 3 over three zones: each leader sends two copies across zones.
    w_gb_month = 50e6 / 1e9 * MONTH_S
    for design in ("kafka_all_local", "kafka_tiered"):
        assert replication[design].quantity == pytest.approx(2 * w_gb_month)
        assert replication[design].dollars == pytest.approx(2 * w_gb_month * 0.02)
        assert replication[design].dollars > 0
    for design in ("tierlog", "tierlog_bucket_wal", "object_store_only"):
        assert replication[design].quantity == 0 and replication[design].dollars == 0
    # Clients cross zones alike in the Kafka and tierlog designs: the same rules for all.
    for line in ("cross_zone_producers", "cross_zone_consumers"):
        kafka = estimate.lines["kafka_tiered"][line].dollars
        assert kafka > 0
        assert estimate.lines["tierlog"][line].dollars == estimate.lines["tierlog_bucket_wal"][line].dollars == kafka
    # One copy of the hot week on disk, not three; the same segments in S3.
    tiered, tierlog = estimate.lines["kafka_tiered"], estimate.lines["tierlog"]
    assert tierlog["local_disk"].quantity == pytest.approx(tiered["local_disk"].quantity / 3)
    assert tierlog["s3_segments"] == tiered["s3_segments"]


def test_the_wal_window_moves_the_wal_puts_and_nothing_else() -> None:
    prices = load_prices(None)
    base = monthly_estimate(Workload(), prices, RATIOS).lines
    wider = monthly_estimate(Workload(wal_window_ms=100), prices, RATIOS).lines
    changed = {(d, key) for d in DESIGNS for key in base[d] if base[d][key].dollars != wider[d][key].dollars}
    assert changed == {("tierlog_bucket_wal", "wal_put")}
    assert wider["tierlog_bucket_wal"]["wal_put"].dollars == pytest.approx(base["tierlog_bucket_wal"]["wal_put"].dollars / 2)
    # The free DELETEs follow the objects' count.
    counted = {(d, key) for d in DESIGNS for key in base[d] if base[d][key].quantity != wider[d][key].quantity}
    assert counted == {("tierlog_bucket_wal", "wal_put"), ("tierlog_bucket_wal", "wal_delete")}
    # The fold time moves only the WAL's S3 storage.
    longer = monthly_estimate(Workload(wal_fold_minutes=20), prices, RATIOS).lines
    changed = {(d, key) for d in DESIGNS for key in base[d] if base[d][key].dollars != longer[d][key].dollars}
    assert changed == {("tierlog_bucket_wal", "s3_wal")}


def test_the_wal_window_flag(tmp_path: Path) -> None:
    figures = []
    for window in ("50", "200"):
        out = tmp_path / f"cost-{window}.json"
        done = cost("--bench", bench_file(tmp_path, RATIOS), "--wal-window-ms", window, "--json", out)
        assert done.returncode == 0, done.stderr
        figures.append(json.loads(out.read_text()))
    assert figures[1]["workload"]["wal_window_ms"] == 200
    puts = [f["lines"]["tierlog_bucket_wal"]["wal_put"]["quantity"] for f in figures]
    assert puts == [pytest.approx(3 * MONTH_S / 0.05), pytest.approx(3 * MONTH_S / 0.2)]
    for design in ("kafka_all_local", "kafka_tiered", "tierlog", "object_store_only"):
        assert figures[0]["monthly"][design] == figures[1]["monthly"][design]


def test_a_bench_wal_put_rate_replaces_the_formula(tmp_path: Path) -> None:
    measured = WalRatios(put_per_second=4.0)
    lines = monthly_estimate(Workload(), load_prices(None), RATIOS, measured).lines["tierlog_bucket_wal"]
    assert lines["wal_put"].quantity == pytest.approx(3 * 4.0 * MONTH_S)  # per broker, three brokers
    assert "bench" in lines["wal_put"].basis
    # Through the CLI: the key beside the other ratios of a bench result; the window no longer counts.
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"version": 1, "object_store": {
        "ratios": {**RATIOS.to_json(), "wal_put_per_second": 4.0}}}))
    for window in ("50", "10"):
        out = tmp_path / f"cost-{window}.json"
        done = cost("--bench", path, "--wal-window-ms", window, "--json", out)
        assert done.returncode == 0, done.stderr
        figures = json.loads(out.read_text())
        assert figures["ratios"]["wal_put_per_second"] == 4.0
        wal_put = figures["lines"]["tierlog_bucket_wal"]["wal_put"]
        assert wal_put["quantity"] == pytest.approx(3 * 4.0 * MONTH_S)
        assert wal_put["dollars"] == pytest.approx(3 * 4.0 * MONTH_S * 0.005 / 1000)
    # A null is a ratio the run did not count: the formula again.
    path.write_text(json.dumps({"version": 1, "object_store": {
        "ratios": {**RATIOS.to_json(), "wal_put_per_second": None}}}))
    done = cost("--bench", path, "--json", "-")
    assert done.returncode == 0, done.stderr
    assert "wal_put_per_second" not in json.loads(done.stdout)["ratios"]
    assert json.loads(done.stdout)["lines"]["tierlog_bucket_wal"]["wal_put"]["quantity"] == pytest.approx(
        3 * MONTH_S / 0.05)


@pytest.mark.parametrize("value", ["fast", -1, True])
def test_a_bad_bench_wal_rate_is_refused(tmp_path: Path, value: object) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"version": 1, "object_store": {
        "ratios": {**RATIOS.to_json(), "wal_put_per_second": value}}}))
    out = tmp_path / "cost.json"
    done = cost("--bench", path, "--json", out)
    assert done.returncode == 2 and done.stdout == "" and not out.exists()
    assert "object_store.ratios.wal_put_per_second must be a number of 0 or more" in done.stderr
