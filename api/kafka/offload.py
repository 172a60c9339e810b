"""Requests of many elements, decoded and encoded off the event loop.

A request frame whose arrays hold more than INLINE_ELEMENTS elements (a Metadata request
naming two million topics is 6 MB) would cost the loop seconds to check, decode and
answer. Such a request is checked and decoded in one worker thread, its handler works in
slices (slices.py), and its response is encoded in the same thread: other clients are
served meanwhile (the thread lets go of the GIL every few milliseconds). One thread, so a
flood of such requests waits its turn instead of taking every core.

A decoded request takes memory in proportion to its elements, not its bytes: that
estimate is held in the memory pool (`queued.max.request.bytes`) until it is answered, and
a request that alone would pass the pool is refused. Such requests are served one at a
time, so the pool is passed by at most one request's estimate.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from broker.security.principal import ANONYMOUS, Principal

from .codec import Chunk, DecodedRequest, check_request, decode_checked, encode_response, response_type
from .context import Call, KafkaContext
from .errors import RequestDecodeError
from .limits import DECODED_BYTES_PER_ELEMENT, MemoryPool

if TYPE_CHECKING:
    from .apis import Api

R = TypeVar("R")

INLINE_ELEMENTS = 10_000  # checked and decoded on the loop in about 10 ms


class EncodedResponse(NamedTuple):
    """A response frame already encoded, as buffers for the socket."""

    chunks: list[Chunk]


class HeavyRequest(NamedTuple):
    """A frame the connection passed on: a copy (its receive buffer moves on) and its header."""

    frame: bytes
    api_key: int
    api_version: int
    correlation_id: int
    frame_bytes_held: int  # of the pool, by the connection for this frame


class Offload:
    def __init__(self, kafka: KafkaContext, pool: MemoryPool) -> None:
        self.kafka = kafka
        self.pool = pool
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-large-requests")
        self._one_at_a_time = asyncio.Lock()

    async def serve(self, api: Api, request: HeavyRequest, client_host: str,
                    principal: Principal = ANONYMOUS) -> EncodedResponse:
        async with self._one_at_a_time:
            elements = await self._run(check_request, request.frame, request.api_key, request.api_version)
            decoded_bytes = elements * DECODED_BYTES_PER_ELEMENT
            if not self.pool.fits(request.frame_bytes_held + decoded_bytes):
                raise RequestDecodeError(
                    f"a request of {elements} array elements decodes to about {decoded_bytes >> 20} MiB, more "
                    f"than queued.max.request.bytes ({self.pool.capacity}) allows")
            # Taken even past the bound: waiting for it while holding the frame could wait
            # forever on other frames' holders; one such request at a time bounds the excess.
            self.pool.take(decoded_bytes)
            try:
                decoded = await self._run(_decode_unscanned, request.frame, request.api_key, request.api_version)
                call = Call(request.api_version, decoded.client_id or "", client_host,
                            response_type(request.api_key, request.api_version), principal)
                response = await api.handler(self.kafka, call, decoded.body)
                del decoded  # its memory goes as the response's comes
                return EncodedResponse(await self._run(encode_response, request.correlation_id, response))
            finally:
                gc.unfreeze()
                self.pool.release(decoded_bytes)

    async def _run(self, work: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._worker, work, *args)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)


def _decode_unscanned(frame: bytes, api_key: int, api_version: int) -> DecodedRequest:
    """Decoded with the cyclic garbage collector off, its objects then kept out of its
    scans (gc.freeze, until the request is answered): millions of new objects set off full
    collections that walk them all, each holding every thread, the event loop's too, for a
    few hundred milliseconds. Decoded entities hold no cycles for it to find."""
    gc.disable()
    try:
        return decode_checked(frame, api_key, api_version)
    finally:
        gc.freeze()
        gc.enable()
