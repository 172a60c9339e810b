"""`tierlog bench`: start a server (or use one), then run the phases in order.

1. ingest: producers at the target rate (or as fast as they can) while `fan_out` tail
   readers follow the end: throughput, produce and end-to-end latency.
2. settle: producers keep writing while segments upload and local retention leaves most
   of the backlog in the object store only.
3. replay, cold: a catch-up reader reads the backlog from the start while producers keep
   writing, with the server's chunk cache empty for that range.
4. replay, warm: the same range again, now from the server's cache as far as it held.

The server's /metrics is scraped around every phase; the differences are the object-store
requests and bytes per GB ingested and per GB replayed."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .metrics import GB, Counters, MetricsError, fetch_text, partition_gauge, scrape, store_ratios
from .report import MB, flow, per_gb, print_table, write_json
from .server import BenchServer, LatencyModel, ServerError
from .workloads import Meter, Producers, Replay, TailReaders, WorkloadError, create_topic, end_offsets, merge, replay

SAMPLE_S = 0.5
METRICS_PORT = 9644  # tierlog serve's default HTTP port, where --bootstrap's host serves /metrics


@dataclass(frozen=True)
class BenchConfig:
    topic: str
    partitions: int
    message_bytes: int
    producers: int
    rate_mb_per_s: float  # 0: as fast as the producers can
    replay_rate_mb_per_s: float | None  # producers' rate during replay; None: a quarter of what ingest reached
    fan_out: int
    acks: str
    linger_ms: int
    batch_bytes: int
    ingest_s: float
    settle_s: float
    replay_s: float
    segment_bytes: int
    local_retention_bytes: int

    def topic_configs(self) -> dict[str, str]:
        return {"segment.bytes": str(self.segment_bytes), "local.retention.bytes": str(self.local_retention_bytes),
                "remote.storage.enable": "true", "retention.ms": "-1"}


class BenchError(Exception):
    """The bench could not run: bad options, a server that did not start, a client failure."""


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    local_retention = args.local_retention_bytes if args.local_retention_bytes is not None else 2 * args.segment_bytes
    return BenchConfig(
        topic=args.topic or f"tierlog-bench-{int(time.time())}", partitions=args.partitions,
        message_bytes=args.message_bytes, producers=args.producers, rate_mb_per_s=args.rate,
        replay_rate_mb_per_s=args.replay_rate, fan_out=args.fan_out, acks=args.acks, linger_ms=args.linger_ms,
        batch_bytes=args.batch_bytes, ingest_s=args.ingest_seconds, settle_s=args.settle_seconds,
        replay_s=args.replay_seconds, segment_bytes=args.segment_bytes, local_retention_bytes=local_retention,
    )


class Phases:
    """Runs the phases against one server, sampling the clients for the progress display."""

    def __init__(self, config: BenchConfig, bootstrap: str, metrics_url: str, progress: Progress,
                 check_server: Callable[[], None]) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.metrics_url = metrics_url
        self.progress = progress
        self.check_server = check_server
        self.producers = Producers(bootstrap, config.topic, config.producers, config.message_bytes, config.acks,
                                   config.linger_ms, config.batch_bytes)
        self.tail = TailReaders(bootstrap, config.topic, config.partitions, config.fan_out)
        self.stopping = threading.Event()

    def rate_messages(self, mb_per_s: float) -> float:
        return mb_per_s * MB / self.config.message_bytes

    def watch(self, name: str, seconds: float, done: Callable[[], bool] = lambda: False,
              replayed: Callable[[], int] = lambda: 0) -> tuple[Meter, Meter, float]:
        """Sample producers and tail readers for `seconds` (or until `done`), showing rates."""
        task = self.progress.add_task(name, total=seconds)
        produced, tailed = Meter(), Meter()
        began = last = time.monotonic()
        while True:
            time.sleep(SAMPLE_S)
            now = time.monotonic()
            self.check_clients()
            new_produced, new_tailed = self.producers.take(), self.tail.take()
            produced, tailed = merge([produced, new_produced]), merge([tailed, new_tailed])
            span = now - last
            last = now
            text = (f"{name:<12} in {new_produced.bytes / MB / span:7.1f} MB/s  "
                    f"tail {new_tailed.bytes / MB / span:7.1f} MB/s")
            if replayed():
                text += f"  replayed {replayed() / MB:8.1f} MB"
            self.progress.update(task, completed=min(now - began, seconds), description=text)
            if now - began >= seconds or done():
                break
        self.progress.update(task, completed=seconds)
        return produced, tailed, time.monotonic() - began

    def check_clients(self) -> None:
        self.check_server()
        for part in (self.producers, self.tail):
            if part.failure is not None:
                raise BenchError(f"a bench client failed: {part.failure}")

    def ingest(self) -> dict[str, Any]:
        self.tail.start()
        if self.tail.failure is not None:
            raise BenchError(f"a tail reader failed: {self.tail.failure}")
        self.producers.start(self.rate_messages(self.config.rate_mb_per_s))
        produced, tailed, seconds = self.watch("ingest", self.config.ingest_s)
        return {"seconds": round(seconds, 3), "produce": flow(produced, seconds, "latency_ms"),
                "tail": flow(tailed, seconds, "e2e_latency_ms")}

    def settle(self, replay_rate_mb_per_s: float) -> dict[str, Any]:
        """Producers at the replay rate until local retention has cut every partition's local
        log down to its hot size: the retained bytes, the active segment and one more (being
        uploaded), so the rest of the backlog is in the object store only."""
        self.producers.set_rate(self.rate_messages(replay_rate_mb_per_s))
        hot_bytes = self.config.local_retention_bytes + 2 * self.config.segment_bytes

        def logs() -> dict[str, dict[int, float]]:
            text = fetch_text(self.metrics_url)
            return {"log_start_offset": partition_gauge(text, "tierlog_log_start_offset", self.config.topic),
                    "local_bytes": partition_gauge(text, "tierlog_log_size_bytes", self.config.topic, tier="local")}

        def tiered(state: dict[str, dict[int, float]]) -> bool:
            starts, local = state["log_start_offset"], state["local_bytes"]
            return (len(starts) == self.config.partitions and all(start > 0 for start in starts.values())
                    and all(size <= hot_bytes for size in local.values()))

        # The sample that ended the wait goes in the result: a later one may already show the
        # next segment rolled and not yet uploaded. If none did, the last says which partition
        # was not tiered and why.
        last: list[dict[str, dict[int, float]]] = []

        def sampled_tiered() -> bool:
            last[:] = [logs()]
            return tiered(last[0])

        produced, tailed, seconds = self.watch("settle", self.config.settle_s, done=sampled_tiered)
        state = last[0] if last else logs()
        return {"seconds": round(seconds, 3), "backlog_tiered": tiered(state), "hot_bytes": hot_bytes, "logs": state,
                "produce": flow(produced, seconds, "latency_ms"), "tail": flow(tailed, seconds, "e2e_latency_ms")}

    def replay(self, name: str, ends: list[int]) -> tuple[dict[str, Any], Counters]:
        before = scrape(self.metrics_url)
        result: list[Replay] = []
        replayed = [0]

        def read() -> None:
            result.append(replay(self.bootstrap, self.config.topic, ends, self.config.replay_s, self.stopping,
                                 on_progress=lambda n: replayed.__setitem__(0, n)))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            produced, tailed, _ = self.watch(name, self.config.replay_s, done=lambda: not reader.is_alive(),
                                             replayed=lambda: replayed[0])
        finally:
            self.stopping.set()
            reader.join(30)
            self.stopping.clear()
        if not result:
            raise BenchError(f"{name}: the catch-up reader did not finish")
        used = scrape(self.metrics_url) - before
        done = result[0]
        served = sum(used.fetch_bytes.values())
        row = flow(Meter(done.bytes, done.messages), done.seconds, "latency_ms")
        del row["latency_ms"], row["errors"]
        mean_get_ms = round(used.remote_get_seconds / used.remote_gets * 1000, 3) if used.remote_gets else None
        row.update(complete=done.complete, seconds=round(done.seconds, 3),
                   remote_fraction=round(used.fetch_bytes.get("remote", 0.0) / served, 4) if served else 0.0,
                   remote_get_ms=mean_get_ms)
        return {"seconds": round(done.seconds, 3), "replay": row, "produce": flow(produced, done.seconds, "latency_ms"),
                "tail": flow(tailed, done.seconds, "e2e_latency_ms")}, used

    def run(self) -> tuple[dict[str, Any], Counters, Counters, Counters, float]:
        """The phases' figures, the counters of the whole run and of the cold and warm
        replays, and the seconds between the run's first and last scrape."""
        start = scrape(self.metrics_url)
        began = time.monotonic()
        phases: dict[str, Any] = {}
        try:
            phases["ingest"] = self.ingest()
            ingest_rate = phases["ingest"]["produce"]["mb_per_s"]
            replay_rate = (self.config.replay_rate_mb_per_s if self.config.replay_rate_mb_per_s is not None
                           else self.config.rate_mb_per_s or ingest_rate / 4)
            phases["settle"] = self.settle(replay_rate)
            ends = end_offsets(self.bootstrap, self.config.topic, self.config.partitions)
            phases["replay_cold"], cold = self.replay("replay cold", ends)
            phases["replay_warm"], warm = self.replay("replay warm", ends)
        finally:
            self.tail.stop()
            self.producers.stop()
        end = scrape(self.metrics_url)
        return phases, end - start, cold, warm, time.monotonic() - began


def _object_store_section(run: Counters, cold: Counters, warm: Counters, seconds: float) -> dict[str, Any]:
    """Counters and per-GB figures. The cost ratios take the cold replay: a catch-up read of
    old data mostly misses the cache. With the bucket WAL on, its PUTs and DELETEs per
    second of the run (one broker) go beside them, for `tierlog cost`'s WAL design."""
    section: dict[str, Any] = {
        "run": run.to_json(), "replay_cold": cold.to_json(), "replay_warm": warm.to_json(),
        "per_gb_ingested": per_gb(run, run.bytes_in / GB, "upload_bytes"),
        "per_gb_replayed_cold": per_gb(cold, cold.fetch_bytes.get("remote", 0.0) / GB, "remote_get_bytes"),
        "per_gb_replayed_warm": per_gb(warm, warm.fetch_bytes.get("remote", 0.0) / GB, "remote_get_bytes"),
        "ratios": None,
    }
    try:
        section["ratios"] = store_ratios(run, cold).to_json()
    except MetricsError as exc:
        section["ratios_error"] = str(exc)
    else:
        if run.wal_objects > 0 and seconds > 0:
            section["ratios"]["wal_put_per_second"] = run.wal_objects / seconds
            section["ratios"]["wal_delete_per_second"] = run.wal_delete_requests / seconds
    return section


def bench(config: BenchConfig, *, bootstrap: str | None, metrics_url: str | None, object_store: str | None,
          latency: LatencyModel | None, server_conf: dict[str, str], console: Console,
          show_progress: bool) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        if bootstrap is None:
            # Tiering and retention passes every half second, so the backlog reaches the store within the run.
            conf = {"remote.log.manager.task.interval.ms": "500", "log.retention.check.interval.ms": "500",
                    "num.partitions": str(config.partitions), **server_conf}
            server = stack.enter_context(BenchServer(object_store, conf, latency))
            bootstrap, metrics_url, check = server.bootstrap, server.metrics_url, server.check_alive
            server_info = {"started": True, "object_store": server.object_store, "conf": conf,
                           "latency_model": asdict(latency) if latency else None}
        else:
            metrics_url = metrics_url or f"http://{bootstrap.rsplit(':', 1)[0]}:{METRICS_PORT}/metrics"
            check = lambda: None  # noqa: E731 - a server we did not start is not ours to watch
            server_info = {"started": False, "bootstrap": bootstrap, "object_store": "(the server's)"}
        server_info["metrics_url"] = metrics_url
        scrape(metrics_url)  # fail early on a wrong metrics address
        create_topic(bootstrap, config.topic, config.partitions, config.topic_configs())
        progress = stack.enter_context(Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console,
            disable=not show_progress, transient=False))
        run_phases = Phases(config, bootstrap, metrics_url, progress, check)
        phases, run, cold, warm, seconds = run_phases.run()
    return {"version": 1, "config": asdict(config), "server": server_info, "phases": phases,
            "last_produce_error": run_phases.producers.last_error,
            "object_store": _object_store_section(run, cold, warm, seconds)}


def run_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.bootstrap and (args.object_store or args.s3_endpoint or args.latency_model or args.server_conf):
        print("tierlog bench: --object-store, --s3-endpoint, --latency-model and --server-conf set up a server "
              "the bench starts; with --bootstrap the server has its own", file=sys.stderr)
        return 2
    object_store = args.object_store
    if args.s3_endpoint:
        if not (object_store or "").startswith("s3://"):
            print("tierlog bench: --s3-endpoint needs --object-store s3://bucket[/prefix]", file=sys.stderr)
            return 2
        object_store += ("&" if "?" in object_store else "?") + f"endpoint_url={args.s3_endpoint}"
    try:
        result = bench(config_from_args(args), bootstrap=args.bootstrap, metrics_url=args.metrics_url,
                       object_store=object_store, latency=args.latency_model,
                       server_conf=dict(args.server_conf), console=console,
                       show_progress=not args.quiet)
    except (BenchError, ServerError, WorkloadError, MetricsError) as exc:
        print(f"tierlog bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        write_json(result, args.json)
    if args.json != "-" and not args.quiet:
        print_table(result, Console())
    return 0
