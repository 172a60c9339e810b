"""Work that grows with a request's size, done a slice at a time.

The event loop serves every client; a handler walking millions of request elements in
one go would hold all of them up for seconds. Handlers iterate such arrays through
`in_slices`, which gives the loop a turn every SLICE items; nested loops share one
`Slices` so that many short inner arrays count as much as one long one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")

SLICE = 1000  # a few milliseconds of handler work


class Slices:
    """Items worked through so far, across the loops of one request."""

    def __init__(self) -> None:
        self.items = 0

    async def step(self) -> None:
        self.items += 1
        if self.items % SLICE == 0:
            await asyncio.sleep(0)


async def in_slices(items: Iterable[T], slices: Slices | None = None) -> AsyncIterator[T]:
    counter = slices or Slices()
    for item in items:
        yield item
        await counter.step()
