"""Micro-batching: gather concurrent requests into one model call.

A model call has a fixed cost (tens to hundreds of microseconds of dispatch) that dwarfs the
per-text cost, so under load we score many requests at once. One worker coroutine runs one batch
at a time: while the model is busy, new requests pile up and the next batch takes them without
waiting; when the model is idle, the first request waits at most ``max_wait`` for company.

Backpressure: at most ``max_queue`` texts wait; beyond that :class:`Overloaded` is raised at
once rather than letting latency grow without bound. Each request has a deadline; a request
whose deadline passes is answered :class:`DeadlineExceeded` and skipped by the worker.

Cost per request (issue 14): a request is one future and one timer handle; the worker sleeps on
a plain future that only the request it is waiting for wakes (the first one when idle, the one
that fills a batch while gathering), not on every arrival, and no Task is created per wait
(``asyncio.wait_for`` made one per request and one per wake-up).
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
        # The worker's sleep: a future resolved by the submit that brings the queue to
        # ``_wake_at`` texts (1 when idle, ``max_batch`` while gathering company).
        self._waiter: asyncio.Future | None = None
        self._wake_at = 1
        self._worker: asyncio.Task | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        """Texts waiting for a batch (not counting the one being scored)."""
        return self._queued_items

    def start(self) -> None:
        if self._worker is None:
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
        future = loop.create_future()
        pending = _Pending(items, time.monotonic() + timeout, future)
        self._queue.append(pending)
        self._queued_items += len(items)
        waiter = self._waiter
        if waiter is not None and self._queued_items >= self._wake_at and not waiter.done():
            waiter.set_result(None)
        expiry = loop.call_later(timeout, _expire, future, timeout)
        try:
            return await future  # a caller cancelled here cancels the future: the worker skips it
        finally:
            expiry.cancel()

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

    async def _sleep(self, wake_at: int, timeout: float | None) -> None:
        """Until the queue holds ``wake_at`` texts or ``timeout`` seconds pass."""
        if self._queued_items >= wake_at:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter, self._wake_at = waiter, wake_at
        timer = loop.call_later(timeout, _wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _work(self) -> None:
        idle = True  # no batch has run since the queue was last empty
        while True:
            if not self._queue:
                await self._sleep(1, None)
                idle = True
            # The model was idle: give a lone request a short while to find company. Texts that
            # queued while the model was busy go at once: they have waited already.
            if idle and self.max_wait > 0:
                await self._sleep(self.max_batch, self.max_wait)
            batch = self._take()
            if not batch:
                continue
            await self._run_one(batch)
            idle = False

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


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _expire(future: asyncio.Future, timeout: float) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded(f"no answer from the model within {timeout * 1000:.0f} ms"))
