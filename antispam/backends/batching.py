"""Micro-batching: gather concurrent requests into one model call.

A model call has a fixed cost (tens to hundreds of microseconds of dispatch) that dwarfs the
per-text cost, so under load we score many requests at once. One worker coroutine runs one batch
at a time: while the model is busy, new requests pile up and the next batch takes them without
waiting; when the model is idle, the first request waits at most ``max_wait`` for company.

Backpressure: at most ``max_queue`` texts wait; beyond that :class:`Overloaded` is raised at
once rather than letting latency grow without bound. Each request has a deadline; a request
whose deadline passes is answered :class:`DeadlineExceeded` and skipped by the worker.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from antispam.backends.base import BackendError, DeadlineExceeded, Overloaded

log = logging.getLogger(__name__)

T = TypeVar("T")
# ``run(items)`` returns per-item results (anything sliceable: list or numpy array) and one value
# shared by the whole batch (e.g. the model version that answered).
RunBatch = Callable[[list[T]], Awaitable[tuple[Any, Any]]]


@dataclass
class _Pending(Generic[T]):
    items: Sequence[T]
    deadline: float
    future: asyncio.Future = field(repr=False)


class MicroBatcher(Generic[T]):
    def __init__(self, run: RunBatch, *, max_batch: int, max_wait: float, max_queue: int,
                 on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait >= 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: collections.deque[_Pending[T]] = collections.deque()
        self._queued_items = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        """Texts waiting for a batch (not counting the one being scored)."""
        return self._queued_items

    def start(self) -> None:
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="micro-batcher")

    async def submit(self, items: Sequence[T], timeout: float) -> tuple[Any, Any]:
        """Score ``items`` within ``timeout`` seconds: ``(results for these items, shared)``."""
        if self._closed:
            raise BackendError("backend is shutting down")
        self.start()
        if not items:
            raise ValueError("nothing to score")
        if self._queued_items + len(items) > self.max_queue:
            self._purge()
            if self._queued_items + len(items) > self.max_queue:
                raise Overloaded(f"model queue full ({self._queued_items} texts waiting)")
        loop = asyncio.get_running_loop()
        pending = _Pending(items, time.monotonic() + timeout, loop.create_future())
        self._queue.append(pending)
        self._queued_items += len(items)
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            return await asyncio.wait_for(pending.future, timeout)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"no answer from the model within {timeout * 1000:.0f} ms") from None

    def _purge(self) -> None:
        """Drop requests whose callers gave up, so they stop holding queue room."""
        kept = collections.deque(p for p in self._queue if not p.future.done())
        self._queue = kept
        self._queued_items = sum(len(p.items) for p in kept)

    def _take(self) -> list[_Pending[T]]:
        batch: list[_Pending[T]] = []
        size = 0
        now = time.monotonic()
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # caller timed out or went away
                self._queue.popleft()
                self._queued_items -= len(head.items)
                continue
            if head.deadline <= now:
                self._queue.popleft()
                self._queued_items -= len(head.items)
                head.future.set_exception(DeadlineExceeded("deadline passed while queued"))
                continue
            if batch and size + len(head.items) > self.max_batch:
                break
            self._queue.popleft()
            self._queued_items -= len(head.items)
            batch.append(head)
            size += len(head.items)
        return batch

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            # The model is idle: give a lone request a short while to find company.
            if self.max_wait > 0 and self._queued_items < self.max_batch:
                waited_until = time.monotonic() + self.max_wait
                while self._queued_items < self.max_batch:
                    remaining = waited_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), remaining)
                    except asyncio.TimeoutError:
                        break
            batch = self._take()
            if not batch:
                continue
            await self._run_one(batch)

    async def _run_one(self, batch: list[_Pending[T]]) -> None:
        items: list[T] = [item for pending in batch for item in pending.items]
        if self.on_batch is not None:
            self.on_batch(len(items))
        try:
            results, shared = await self._run(items)
        except asyncio.CancelledError:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(BackendError("backend is shutting down"))
            raise
        except BackendError as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        except Exception as exc:  # a broken model must not kill the worker
            log.exception("model call failed for a batch of %d texts", len(items))
            error = BackendError(f"model call failed: {type(exc).__name__}: {exc}")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        start = 0
        for pending in batch:
            end = start + len(pending.items)
            if not pending.future.done():
                pending.future.set_result((results[start:end], shared))
            start = end

    async def close(self) -> None:
        """Stop the worker; requests still queued get :class:`BackendError`."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(BackendError("backend is shutting down"))
        self._queued_items = 0
