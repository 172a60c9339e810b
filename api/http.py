"""HTTP for operators: /metrics (Prometheus, the default registry) and /healthz; HTTPS with
http.listener.security.protocol=SSL."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from .listen import ListenError, parse_host_port, reason
from .tls import ServerTls, reloading_context


class HttpServer:
    def __init__(self, address: str, serving: Callable[[], bool], tls: ServerTls | None = None) -> None:
        self.address = address
        self.serving = serving
        self.tls = tls
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.port = 0

    async def _metrics(self, request: web.Request) -> web.Response:
        # Collectors read the logs: done here, on the event loop that owns them.
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.serving():
            return web.json_response({"status": "serving"})
        return web.json_response({"status": "shutting down"}, status=503)

    async def start(self) -> int:
        """Bind and serve. Returns the port."""
        host, port = parse_host_port(self.address)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_port=False,
                           ssl_context=reloading_context(self.tls) if self.tls is not None else None)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise ListenError(f"HTTP cannot listen on {self.address}: {reason(exc)}") from None
        self.port = self.runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        await self.runner.cleanup()
