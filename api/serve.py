"""`tierlog serve`: open the local log and run until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from hotlog.errors import InvalidConfigError

from .broker import Broker
from .settings import BrokerSettings

log = logging.getLogger("tierlog")


def read_properties(args: argparse.Namespace) -> dict[str, str]:
    """Broker properties from --config FILE, then --conf NAME=VALUE (later wins)."""
    properties: dict[str, str] = {}
    lines: list[str] = []
    if args.config:
        with open(args.config) as f:
            lines += f.read().splitlines()
    lines += args.conf
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise InvalidConfigError(f"expected NAME=VALUE, got {line!r}")
        properties[name.strip()] = value.strip()
    return properties


async def serve(args: argparse.Namespace, settings: BrokerSettings) -> None:
    broker = Broker(args.data_dir, settings)
    await broker.start()
    log.info("tierlog: local log open at %s (%d topics)", broker.logs.data_dir, len(broker.logs.topics))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.stop()
    log.info("tierlog: clean shutdown")


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = BrokerSettings.parse(read_properties(args))
    except (InvalidConfigError, OSError) as exc:
        print(f"tierlog serve: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(args, settings))
    return 0
