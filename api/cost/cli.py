"""`tierlog cost`'s options and run."""

from __future__ import annotations

import argparse
import math
import sys

from .model import Workload

_DEFAULTS = Workload()


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def add_cost_parser(commands: argparse._SubParsersAction) -> None:
    cost = commands.add_parser(
        "cost", help="monthly cost of a workload: Kafka (all local, KIP-405 tiered), tierlog (as built, with "
                     "the bucket WAL), object store only",
        description="Monthly cost (storage, requests, network, instances) of a workload in five designs, "
                    "from a price table and the object-store requests per GB that `tierlog bench` measured "
                    "(docs/cost.md).")
    source = cost.add_mutually_exclusive_group()
    source.add_argument("--bench", metavar="FILE",
                        help="a `tierlog bench --json` result (default: the run shipped with tierlog, "
                             "moto's S3 behind the S3 latency model, docs/cost.md)")
    source.add_argument("--metrics-url", metavar="URL", help="a tierlog server's /metrics (its counters so far)")
    cost.add_argument("--prices", metavar="FILE", help="price table (TOML; default: AWS us-east-1, shipped)")
    load = cost.add_argument_group("workload")
    load.add_argument("--ingest-mb-s", type=_float, default=_DEFAULTS.ingest_mb_per_s,
                      help=f"MB/s written (default {_DEFAULTS.ingest_mb_per_s:g})")
    load.add_argument("--message-bytes", type=_int, default=_DEFAULTS.message_bytes,
                      help=f"default {_DEFAULTS.message_bytes}")
    load.add_argument("--retention-days", type=_float, default=_DEFAULTS.retention_days,
                      help=f"kept in all (default {_DEFAULTS.retention_days:g})")
    load.add_argument("--hot-days", type=_float, default=_DEFAULTS.hot_days,
                      help=f"kept on local disk by the tiered designs (default {_DEFAULTS.hot_days:g})")
    load.add_argument("--fan-out", type=_float, default=_DEFAULTS.fan_out,
                      help=f"tail readers of every byte (default {_DEFAULTS.fan_out:g})")
    load.add_argument("--replay-tb", type=_float, default=_DEFAULTS.replay_tb_per_month,
                      help=f"old data re-read per month, TB (default {_DEFAULTS.replay_tb_per_month:g})")
    load.add_argument("--zones", type=_int, default=_DEFAULTS.zones, help=f"default {_DEFAULTS.zones}")
    load.add_argument("--replication-factor", type=_int, default=_DEFAULTS.replication_factor,
                      help=f"the Kafka designs' copies (default {_DEFAULTS.replication_factor})")
    load.add_argument("--flush-ms", type=_float, default=_DEFAULTS.flush_ms,
                      help=f"object-store design: write interval per zone (default {_DEFAULTS.flush_ms:g})")
    load.add_argument("--wal-window-ms", type=_float, default=_DEFAULTS.wal_window_ms,
                      help=f"bucket WAL design: one object per broker per window (default {_DEFAULTS.wal_window_ms:g}; "
                           "a bench result's wal_put_per_second replaces the count)")
    load.add_argument("--wal-fold-minutes", type=_float, default=_DEFAULTS.wal_fold_minutes,
                      help=f"bucket WAL design: how long its bytes stay in the WAL before they are folded into a "
                           f"segment (default {_DEFAULTS.wal_fold_minutes:g})")
    output = cost.add_argument_group("output")
    output.add_argument("--chart", metavar="FILE.png", help="write a stacked bar chart")
    output.add_argument("--json", metavar="FILE", help="write the figures as JSON (- for stdout)")
    cost.set_defaults(run=run_cost)


def run_cost(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .model import WalRatios, monthly_estimate
    from .prices import CostInputError, load_prices
    from .ratios import measured_from_bench, ratios_from_metrics
    from .report import print_costs, write_chart, write_json

    workload = Workload(
        ingest_mb_per_s=args.ingest_mb_s, message_bytes=args.message_bytes, retention_days=args.retention_days,
        hot_days=args.hot_days, fan_out=args.fan_out, replay_tb_per_month=args.replay_tb, zones=args.zones,
        replication_factor=args.replication_factor, flush_ms=args.flush_ms, wal_window_ms=args.wal_window_ms,
        wal_fold_minutes=args.wal_fold_minutes)
    try:
        workload.check()
        prices = load_prices(args.prices)
        if args.metrics_url:  # a server's counters give no WAL rates (yet): the window's formula counts them
            ratios, wal = ratios_from_metrics(args.metrics_url), WalRatios()
        else:
            ratios, wal = measured_from_bench(args.bench)
        estimate = monthly_estimate(workload, prices, ratios, wal)
        if args.chart:
            write_chart(estimate, workload, args.chart)
        if args.json:
            write_json(estimate, workload, prices, {**ratios.to_json(), **wal.to_json()}, args.json)
    except (CostInputError, OSError) as exc:
        print(f"tierlog cost: {exc}", file=sys.stderr)
        return 2
    if args.json != "-":
        print_costs(estimate, workload, prices, Console())
    return 0
