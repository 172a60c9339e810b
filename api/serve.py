"""`tierlog serve`: open the local log and run until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from prometheus_client import REGISTRY

from hotlog.errors import InvalidConfigError

from .broker import Broker
from .committed_offsets import CommittedOffsetStore
from .grpc_server import GrpcServer
from .grpc_service import TierlogService
from .http import HttpServer
from .kafka import KafkaListener
from .listen import ListenError
from .metrics import register_log_collector
from .settings import BrokerSettings

log = logging.getLogger("tierlog")
GRACE_SECONDS = 5.0  # for calls in flight at shutdown


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


async def serve(args: argparse.Namespace, settings: BrokerSettings) -> int:
    broker = Broker(args.data_dir, settings)
    offsets = CommittedOffsetStore(args.data_dir)
    service = TierlogService(broker, offsets)
    grpc_server = GrpcServer(service, args.grpc_listen)
    http = HttpServer(args.http_listen, serving=lambda: grpc_server.serving)
    kafka = KafkaListener(broker, args.kafka_listen)
    # Bind the listeners before opening the log, so a busy port leaves the data untouched.
    try:
        grpc_server.bind()
        await http.start()
        await kafka.bind()
    except ListenError as exc:
        print(f"tierlog serve: {exc}", file=sys.stderr)
        await kafka.close()
        await http.stop()
        await grpc_server.server.stop(None)
        return 1
    await broker.start()
    offsets.load()
    collector = register_log_collector(broker.logs, service.remote)
    log.info("local log open at %s (%d topics)", broker.logs.data_dir, len(broker.logs.topics))
    await grpc_server.start()
    await kafka.start()
    log.info("gRPC on %s, HTTP (/metrics, /healthz) on %s", args.grpc_listen, args.http_listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Stop taking requests, let those in flight finish, then flush and checkpoint.
    await grpc_server.stop(GRACE_SECONDS)
    await kafka.close()
    await http.stop()
    await broker.stop()
    REGISTRY.unregister(collector)
    log.info("clean shutdown")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = BrokerSettings.parse(read_properties(args))
    except (InvalidConfigError, OSError) as exc:
        print(f"tierlog serve: {exc}", file=sys.stderr)
        return 2
    if os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        print(f"tierlog serve: --data-dir {args.data_dir} exists and is not a folder", file=sys.stderr)
        return 2
    return asyncio.run(serve(args, settings))
