"""`tierlog bench`'s options."""

from __future__ import annotations

import argparse

MIB = 1024 * 1024


def _number(kind: type, low: float, what: str):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


def latency_model(text: str):  # noqa: ANN201 - LatencyModel
    from .server import LatencyModel

    first_byte, sep, rate = text.partition(",")
    try:
        model = LatencyModel(float(first_byte), float(rate))
    except ValueError:
        model = None
    if not sep or model is None or model.first_byte_ms < 0 or model.mb_per_s <= 0:
        raise argparse.ArgumentTypeError(f"expected FIRST_BYTE_MS,MB_PER_S such as 30,90, got {text!r}")
    return model


def _run(args: argparse.Namespace) -> int:
    from .run import run_bench

    return run_bench(args)


def add_bench_parser(commands: argparse._SubParsersAction) -> None:
    from ..cli import listen_address, name_value, object_store_url

    count = _number(int, 1, "a whole number of 1 or more")
    size = _number(int, 16, "a number of bytes (16 or more)")
    seconds = _number(float, 0.5, "seconds (0.5 or more)")
    rate = _number(float, 0, "MB/s (0 or more)")
    bench = commands.add_parser(
        "bench", help="measure a workload: ingest, tail reads, catch-up replay, object-store requests",
        description="OpenMessaging-Benchmark-style workloads over the Kafka protocol (confluent-kafka): ingest "
                    "with tail readers, then catch-up replays of a backlog mostly in the object store (cold, "
                    "then warm cache) while producers keep writing. Starts its own `tierlog serve` unless "
                    "--bootstrap is given.")
    target = bench.add_argument_group("server")
    target.add_argument("--bootstrap", type=listen_address, metavar="HOST:PORT",
                        help="a running server's Kafka address (default: start one on a temporary folder)")
    target.add_argument("--metrics-url", metavar="URL",
                        help="that server's /metrics (default http://HOST:9644/metrics)")
    target.add_argument("--object-store", type=object_store_url, metavar="URL",
                        help="the started server's store: file:///path or s3://bucket[/prefix] (default: a "
                             "temporary folder)")
    target.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint for an s3:// store (moto, MinIO, ...)")
    target.add_argument("--server-conf", action="append", default=[], type=name_value, metavar="NAME=VALUE",
                        help="a broker property for the started server, e.g. remote.log.chunk.cache.bytes=4294967296 "
                             "(repeatable)")
    target.add_argument("--latency-model", type=latency_model, metavar="FIRST_BYTE_MS,MB_PER_S",
                        help="put the started server's store behind the S3 latency model, e.g. 30,90")
    load = bench.add_argument_group("workload")
    load.add_argument("--topic", help="topic to create (default tierlog-bench-<unix time>)")
    load.add_argument("--partitions", type=count, default=16, help="default 16")
    load.add_argument("--message-bytes", type=size, default=1024, help="value size (default 1024)")
    load.add_argument("--producers", type=count, default=1, help="producer clients (default 1)")
    load.add_argument("--rate", type=rate, default=50.0, metavar="MB/S",
                      help="target ingest rate over all producers (default 50, as `tierlog cost` assumes; "
                           "0: as fast as they go)")
    load.add_argument("--replay-rate", type=rate, metavar="MB/S",
                      help="ingest rate while replaying (default: --rate, or a quarter of the maximum measured)")
    load.add_argument("--fan-out", type=count, default=1, help="tail readers, each reading everything (default 1)")
    load.add_argument("--acks", choices=("0", "1", "all"), default="all", help="producer acks (default all)")
    load.add_argument("--linger-ms", type=_number(int, 0, "milliseconds"), default=5, help="default 5")
    load.add_argument("--batch-bytes", type=size, default=MIB, help="producer batch.size (default 1 MiB)")
    load.add_argument("--segment-bytes", type=size, default=16 * MIB, help="topic segment.bytes (default 16 MiB)")
    load.add_argument("--local-retention-bytes", type=size, metavar="BYTES",
                      help="topic local.retention.bytes per partition (default: two segments)")
    timing = bench.add_argument_group("durations")
    timing.add_argument("--ingest-seconds", type=seconds, default=60.0, help="default 60")
    timing.add_argument("--settle-seconds", type=seconds, default=30.0,
                        help="at most this long for the backlog to leave local disk (default 30)")
    timing.add_argument("--replay-seconds", type=seconds, default=60.0, help="limit of each replay (default 60)")
    output = bench.add_argument_group("output")
    output.add_argument("--json", metavar="FILE", help="write the result as JSON to FILE (- for stdout)")
    output.add_argument("--quiet", action="store_true", help="no progress display and no table")
    bench.set_defaults(run=_run)
