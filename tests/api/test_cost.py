"""`tierlog cost`: the model against hand-worked figures (the public RF 3 cross-zone
formula), ratios taken from a bench result, the default price table, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.bench.metrics import Counters, StoreRatios, parse_counters
from api.bench.server import BenchServer
from api.cost.model import DESIGNS, Workload, monthly_costs
from api.cost.prices import CostInputError, load_prices, parse_prices
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
    return subprocess.run([sys.executable, "-m", "api.cli", "cost", *map(str, args)], capture_output=True,
                          text=True, timeout=60, env=os.environ)


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
    assert costs[DESIGNS[0]]["network"] == pytest.approx(expected)
    assert costs[DESIGNS[1]]["network"] == pytest.approx(expected)  # tiering moves no zone traffic away
    assert costs[DESIGNS[2]]["network"] == 0
    # One zone: nothing crosses.
    assert monthly_costs(Workload(zones=1, replication_factor=1), load_prices(None), RATIOS)[DESIGNS[0]]["network"] == 0


def test_storage_and_requests_by_hand() -> None:
    workload = Workload(ingest_mb_per_s=10, retention_days=30, hot_days=1, replay_tb_per_month=2)
    costs = monthly_costs(workload, load_prices(None), RATIOS)
    stored_per_day = 10e6 / 1e9 * 86_400 * 1.02
    assert costs[DESIGNS[0]]["storage"] == pytest.approx(stored_per_day * 30 * 3 * 0.08)
    assert costs[DESIGNS[1]]["storage"] == pytest.approx(stored_per_day * 1 * 3 * 0.08 + stored_per_day * 30 * 0.023)
    uploaded = 10e6 / 1e9 * MONTH_S * 1.02
    requests = (uploaded * 40 * 0.005 + uploaded * 0.5 * 0.005 + 2000 * 300 * 0.0004) / 1000
    assert costs[DESIGNS[1]]["requests"] == pytest.approx(requests)
    assert costs[DESIGNS[0]]["requests"] == 0


def test_request_costs_follow_the_bench_result_not_constants(tmp_path: Path) -> None:
    totals = []
    for puts in (40.0, 400.0):
        ratios = StoreRatios(**{**RATIOS.to_json(), "put_per_gb_uploaded": puts})
        out = tmp_path / f"cost-{puts}.json"
        done = cost("--bench", bench_file(tmp_path, ratios, f"bench-{puts}.json"), "--json", out)
        assert done.returncode == 0, done.stderr
        figures = json.loads(out.read_text())
        assert figures["ratios"]["put_per_gb_uploaded"] == puts
        totals.append(figures["monthly"][DESIGNS[1]]["requests"])
    uploaded = 50e6 / 1e9 * MONTH_S * 1.02
    assert totals[1] - totals[0] == pytest.approx(uploaded * 360 * 0.005 / 1000)


def test_table_chart_and_json(tmp_path: Path) -> None:
    chart, out = tmp_path / "cost.png", tmp_path / "cost.json"
    done = cost("--bench", bench_file(tmp_path, RATIOS), "--chart", chart, "--json", out)
    assert done.returncode == 0, done.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    figures = json.loads(out.read_text())
    assert figures["workload"]["ingest_mb_per_s"] == 50 and figures["workload"]["fan_out"] == 2
    for design in DESIGNS:
        assert design in done.stdout
        row = figures["monthly"][design]
        assert row["total"] == pytest.approx(row["storage"] + row["requests"] + row["network"] + row["instances"])
        assert f"${row['total']:,.0f}" in done.stdout
    # A year of history: keeping it all on replicated EBS costs most.
    assert figures["monthly"][DESIGNS[0]]["total"] > figures["monthly"][DESIGNS[1]]["total"]


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
    (["--ingest-mb-s", "0"], "ingest must be above 0 MB/s"),
    (["--zones", "0"], "zones and replication factor must be 1 or more"),
    (["--fan-out", "lots"], "expected a number"),
    (["--ingest-mb-s", "nan"], "expected a finite number"),
    (["--retention-days", "inf"], "expected a finite number"),
])
def test_a_bad_workload_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    done = cost("--bench", bench_file(tmp_path, RATIOS), *args)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""


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
    assert figures["monthly"][DESIGNS[1]]["total"] < figures["monthly"][DESIGNS[0]]["total"]


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
