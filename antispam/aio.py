"""Small asyncio helpers the scorer and ``explain=true`` share: cooperative time slicing and
awaiting with a time limit.

They live apart from :mod:`antispam.scoring` so that :mod:`antispam.explain`, which
:class:`antispam.scoring.Scorer` calls, needs nothing back from the scorer's module (issue 22:
no import cycles).
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, TypeVar

T = TypeVar("T")

# Longest stretch the text pipeline runs before it lets the event loop answer other requests
# (health probes, small requests). Measured in scripts/loop_latency.py: slices beat a thread
# pool here because jieba is pure Python and holds the GIL.
SLICE_SECONDS = 0.001


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """``await`` with a time limit (``asyncio.TimeoutError`` past it). ``asyncio.timeout`` (3.11+)
    runs the awaitable in the caller's task; ``asyncio.wait_for`` wraps a coroutine in a Task of
    its own, a per-request cost the GET path does not need (issue 14)."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:  # Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    async with timeout(seconds):
        return await awaitable


class Slices:
    """Cooperative time slicing: ``await slices.tick()`` yields to the event loop once the
    current slice has run ``seconds``; cheap enough to call per token."""

    def __init__(self, seconds: float = SLICE_SECONDS) -> None:
        self.seconds = seconds
        self.mark = time.perf_counter()
        self.yields = 0

    async def tick(self) -> None:
        if time.perf_counter() - self.mark >= self.seconds:
            await asyncio.sleep(0)
            self.yields += 1
            self.mark = time.perf_counter()
