"""An HTTP proxy in front of moto's server that answers the first requests with an error
(or stalls them), then forwards: S3 misbehaving over real HTTP, for the retry tests."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from testkit.ports import free_port

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def s3_error(status: int, code: str) -> web.Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


class FlakyProxy:
    """`fail(n, status, code)`: the next n requests get that error. `stall(n, seconds)`:
    the next n requests wait that long before being forwarded. `down = True`: every
    request gets 503 until it is set back."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.seen: list[str] = []  # "METHOD path" of every request that arrived
        self.down = False
        self._errors: list[tuple[int, str]] = []
        self._stalls: list[float] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def fail(self, n: int, status: int, code: str) -> None:
        self._errors += [(status, code)] * n

    def stall(self, n: int, seconds: float) -> None:
        self._stalls += [seconds] * n

    async def __aenter__(self) -> FlakyProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(f"{request.method} {request.path}")
        body = await request.read()
        if self._stalls:
            await asyncio.sleep(self._stalls.pop(0))
        if self.down:
            return s3_error(503, "ServiceUnavailable")
        if self._errors:
            return s3_error(*self._errors.pop(0))
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
            return web.Response(status=upstream.status, body=payload, headers=out)
