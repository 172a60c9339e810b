"""The `tierlog` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierlog", description="A tiered-storage event log.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the broker")
    serve.add_argument("--data-dir", default="./tierlog-data", help="local tier folder (default ./tierlog-data)")
    serve.add_argument("--object-store", default="file://./tierlog-objects",
                       help="cold tier URL: file:///path or s3://bucket/prefix (default file://./tierlog-objects)")
    serve.add_argument("--kafka-listen", default="127.0.0.1:9092", help="Kafka protocol listener HOST:PORT")
    serve.add_argument("--grpc-listen", default="127.0.0.1:9093", help="gRPC listener HOST:PORT")
    serve.add_argument("--http-listen", default="127.0.0.1:9644", help="HTTP listener (metrics, health) HOST:PORT")
    serve.add_argument("--config", metavar="FILE", help="a properties file of broker settings (name=value lines)")
    serve.add_argument("--conf", action="append", default=[], metavar="NAME=VALUE",
                       help="a broker property, e.g. log.segment.bytes=1048576 (repeatable)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from .serve import run_serve

        return run_serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
