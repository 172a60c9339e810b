"""`tierlog serve`: open the local log, tier it to the object store, and serve the gRPC,
Kafka and HTTP listeners until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY

from broker.node import Broker
from broker.security.documents import DocumentError
from broker.settings import BrokerSettings
from hotlog.errors import InvalidConfigError
from hotlog.rate_limited import RateLimitedReport
from tiering.manager import TieringManager
from tiering.scrubber import Scrubber
from tiering.store import ObjectStore, ObjectStoreError, StoreConfigError
from tiering.url import open_store

from .grpc_server import GrpcServer
from .grpc_service import TierlogService
from .http import HttpServer
from .kafka import KafkaListener
from .kafka.limits import ClientBounds
from .listen import ListenerConfig, ListenError, is_loopback, kafka_listeners, parse_host_port, reason
from .metrics import register_log_collector
from .tls import ClientAuth, ServerTls, SslProperties, TlsConfigError

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


async def check_store(store: ObjectStore) -> None:
    """The store's own check, with an OS error it lets through (a folder that cannot be made)
    turned into an ObjectStoreError naming the store."""
    try:
        await store.check()
    except OSError as exc:
        raise ObjectStoreError(f"{store.url}: {reason(exc)}") from None


@dataclass(frozen=True)
class ListenerPlan:
    """Every listener's address and TLS, checked before anything binds."""

    kafka: list[ListenerConfig]
    kafka_tls: dict[str, ServerTls]  # by listener name: its SSL or SASL_SSL certificates
    grpc_tls: ServerTls | None
    http_tls: ServerTls | None

    @classmethod
    def from_settings(cls, args: argparse.Namespace, settings: BrokerSettings) -> ListenerPlan:
        """Raises ListenError or TlsConfigError."""
        kafka = kafka_listeners(settings.listeners, settings.listener_security_protocol_map,
                                settings.advertised_listeners, args.kafka_listen if args.kafka_listen_given else None)

        prefixes = {c.ssl_prefix for c in kafka} | {"grpc.", "http.", ""}
        stray = sorted(name for name in settings.ssl_properties if name[:name.rindex("ssl.")] not in prefixes)
        if stray:
            raise TlsConfigError(f"{stray[0]}: no listener {stray[0].split('.')[2].upper()} "
                                 f"(listeners: {', '.join(c.name for c in kafka)})")

        def tls(prefix: str, what: str) -> ServerTls:
            return ServerTls(SslProperties(settings.ssl_properties, prefix), what)

        grpc_tls = tls("grpc.", "gRPC") if settings.grpc_listener_security_protocol == "SSL" else None
        if grpc_tls is not None and grpc_tls.client_auth is ClientAuth.REQUESTED:
            raise TlsConfigError(f"{grpc_tls.props.name('client.auth')}=requested: gRPC asks for client "
                                 f"certificates only as required (set grpc.ssl.client.auth=required or none)")
        return cls(kafka, {c.name: tls(c.ssl_prefix, f"Kafka listener {c.name}") for c in kafka if c.tls}, grpc_tls,
                   tls("http.", "HTTP") if settings.http_listener_security_protocol == "SSL" else None)

    def exposed_without_authentication(self, args: argparse.Namespace, settings: BrokerSettings) -> list[str]:
        """Listeners on a non-loopback address that anyone reaching it could use: not TLS with
        authentication (SASL_SSL, or SSL with ssl.client.auth=required; gRPC: or TLS with
        grpc.authentication=required, the call credentials then being encrypted)."""
        def authenticates(tls: ServerTls | None, credentials_required: bool = False) -> bool:
            return tls is not None and (tls.client_auth is ClientAuth.REQUIRED or credentials_required)

        exposed = [f"Kafka listener {c.name} ({c.protocol}) on {c.address}" for c in self.kafka
                   if not is_loopback(c.host)
                   and not (c.protocol == "SASL_SSL" or (c.protocol == "SSL" and authenticates(self.kafka_tls[c.name])))]
        if not is_loopback(parse_host_port(args.grpc_listen)[0]) and \
                not authenticates(self.grpc_tls, settings.grpc_authentication == "required"):
            exposed.append(f"gRPC on {args.grpc_listen}")
        if not is_loopback(parse_host_port(args.http_listen)[0]) and not authenticates(self.http_tls):
            exposed.append(f"HTTP on {args.http_listen}")
        return exposed


async def serve(args: argparse.Namespace, settings: BrokerSettings,
                wrap_store: Callable[[ObjectStore], ObjectStore] | None = None) -> int:
    """`wrap_store` puts a wrapper (the bench's S3 latency model) around the store opened."""
    try:
        plan = ListenerPlan.from_settings(args, settings)
    except (ListenError, TlsConfigError) as exc:
        print(f"tierlog serve: {exc}", file=sys.stderr)
        return 2
    exposed = plan.exposed_without_authentication(args, settings)
    if exposed and not args.allow_insecure:
        print(f"tierlog serve: {'; '.join(exposed)}: open to the network without TLS and authentication; bind "
              f"127.0.0.1, use SASL_SSL (or TLS with ssl.client.auth=required), or pass --allow-insecure",
              file=sys.stderr)
        return 2
    if exposed:
        log.warning("--allow-insecure: %s accept clients from the network without TLS and authentication",
                    "; ".join(exposed))
    try:
        store = open_store(args.object_store)
        if wrap_store is not None:
            store = wrap_store(store)
    except StoreConfigError as exc:
        print(f"tierlog serve: {exc}", file=sys.stderr)
        return 2
    broker = Broker(args.data_dir, settings)
    tiering = TieringManager(
        broker.logs, store,
        task_interval_ms=settings.remote_log_manager_task_interval_ms,
        upload_concurrency=settings.remote_log_manager_copier_thread_pool_size,
        upload_bytes_per_sec=settings.remote_log_manager_copy_max_bytes_per_second,
    )
    scrubber = Scrubber(broker.logs, tiering, bytes_per_second=settings.log_scrubber_io_max_bytes_per_second,
                        interval_ms=settings.log_scrubber_interval_ms)
    service = TierlogService(broker, remote=tiering)
    grpc_server = GrpcServer(service, args.grpc_listen, plan.grpc_tls)
    http = HttpServer(args.http_listen, serving=lambda: grpc_server.serving, tls=plan.http_tls)
    bounds = ClientBounds.from_settings(settings)  # max.connections and the request memory: all listeners'
    kafka = [KafkaListener(broker, config, bounds, plan.kafka_tls.get(config.name)) for config in plan.kafka]

    async def stop_listeners() -> None:
        # Stop taking requests and let those in flight finish.
        await grpc_server.stop(GRACE_SECONDS)
        for listener in kafka:
            await listener.close()
        await http.stop()

    # Bind the listeners and check the object store before opening the log, so a busy
    # port or a bucket that refuses us leaves the data untouched.
    try:
        grpc_server.bind()
        await http.start()
        for listener in kafka:
            await listener.bind()
        await check_store(store)
    except (ListenError, ObjectStoreError) as exc:
        print(f"tierlog serve: {exc}", file=sys.stderr)
        await stop_listeners()
        await store.close()
        return 1
    stop = asyncio.Event()  # a signal during a long start (a restore) stops right after it
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_when_out_of_descriptors())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker.attach_tiering(tiering, store)  # offsets below the local log start come from the store
    collector = register_log_collector(broker.logs, tiering)
    try:
        await broker.start()  # restores what the bucket holds that this folder lacks: before serving
        tiering.run_in_background()
        if settings.log_scrubber_enable:
            scrubber.run_in_background()
        log.info("local log open at %s (%d topics), object store %s",
                 broker.logs.data_dir, len(broker.logs.topics), store.url)
        await grpc_server.start()
        for listener in kafka:
            await listener.start()
        log.info("serving: gRPC%s on %s, Kafka on %s, HTTP%s (/metrics, /healthz) on %s",
                 " (TLS)" if plan.grpc_tls else "", args.grpc_listen,
                 ", ".join(f"{c.name}://{c.address}" for c in plan.kafka), " (TLS)" if plan.http_tls else "",
                 args.http_listen)
        await stop.wait()
    except (ObjectStoreError, DocumentError) as exc:  # DocumentError: users' or ACLs' document unreadable
        print(f"tierlog serve: {exc}", file=sys.stderr)
        return 1
    finally:
        await stop_listeners()
        await scrubber.close()
        await tiering.close()
        await broker.stop()  # flush and write the clean-shutdown checkpoint
        await store.close()
        REGISTRY.unregister(collector)
    log.info("clean shutdown")
    return 0


def _quiet_when_out_of_descriptors() -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """The HTTP listener accepts through asyncio, which reports each accept that fails
    for want of descriptors (a traceback per attempt, many a turn): one line per interval
    instead. Everything else goes to asyncio's own handler."""
    report = RateLimitedReport(log)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            report(f"{context.get('message', 'out of descriptors')}: {error.strerror}: out of file descriptors "
                   "(a listener pauses accepting for a second)")
            return
        loop.default_exception_handler(context)

    return handle


def run_serve(args: argparse.Namespace, wrap_store: Callable[[ObjectStore], ObjectStore] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = BrokerSettings.parse(read_properties(args))
    except (InvalidConfigError, OSError) as exc:
        print(f"tierlog serve: {exc}", file=sys.stderr)
        return 2
    if os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        print(f"tierlog serve: --data-dir {args.data_dir} exists and is not a folder", file=sys.stderr)
        return 2
    return asyncio.run(serve(args, settings, wrap_store))
