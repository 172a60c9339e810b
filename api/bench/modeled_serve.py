"""`python -m api.bench.modeled_serve --first-byte-ms MS --mb-per-s R serve ...`: `tierlog
serve` with its object store behind the S3 latency model (tiering.wrappers), for the bench."""

from __future__ import annotations

import argparse
import sys

from tiering.wrappers import LatencyModelStore

from ..cli import build_parser
from ..serve import run_serve


def main(argv: list[str]) -> int:
    model = argparse.ArgumentParser(prog="modeled_serve")
    model.add_argument("--first-byte-ms", type=float, required=True)
    model.add_argument("--mb-per-s", type=float, required=True)
    known, rest = model.parse_known_args(argv)
    args = build_parser().parse_args(rest)
    if args.command != "serve":
        model.error("expected a `serve` command line after the model's options")
    return run_serve(args, lambda store: LatencyModelStore(
        store, first_byte_s=known.first_byte_ms / 1000, bandwidth_bytes_per_s=known.mb_per_s * 1e6))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
