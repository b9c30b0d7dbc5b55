"""MicroBatcher: gathering, order, limits, deadlines and failures, with a fake model."""

from __future__ import annotations

import asyncio

import pytest

from antispam.backends.base import BackendError, DeadlineExceeded, Overloaded
from antispam.backends.batching import MicroBatcher
from tests.helpers.timing import within


class FakeModel:
    """Scores an item as itself * 10; records every batch; can be held to simulate a stall."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None

    async def __call__(self, items: list[int]) -> tuple[list[int], str]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return [i * 10 for i in items], f"batch{len(self.batches)}"


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_a_batch_and_keep_their_order():
    async def main():
        model = FakeModel()
        b = MicroBatcher(model, max_batch=64, max_wait=0.02, max_queue=100)
        results = await asyncio.gather(*(b.submit([i, i + 100], timeout=2) for i in range(5)))
        await b.close()
        return model, results

    model, results = run(main())
    for i, (scores, _shared) in enumerate(results):
        assert list(scores) == [i * 10, (i + 100) * 10]
    assert len(model.batches) == 1, model.batches
    assert results[0][1] == results[4][1] == "batch1"


def test_batches_never_exceed_max_batch_except_a_single_large_request():
    async def main():
        model = FakeModel()
        b = MicroBatcher(model, max_batch=4, max_wait=0.01, max_queue=1000)
        small = [b.submit([i], timeout=2) for i in range(10)]
        big = b.submit(list(range(9)), timeout=2)
        out = await asyncio.gather(*small, big)
        await b.close()
        return model, out

    model, out = run(main())
    big_batch = list(range(9))
    assert model.batches.count(big_batch) == 1  # a request is never split, even past max_batch
    assert all(len(batch) <= 4 for batch in model.batches if batch != big_batch)
    assert list(out[-1][0]) == [i * 10 for i in range(9)]
    assert [list(o[0]) for o in out[:10]] == [[i * 10] for i in range(10)]


@pytest.mark.timing
def test_a_lone_request_waits_at_most_max_wait():
    async def main():
        model = FakeModel()
        b = MicroBatcher(model, max_batch=64, max_wait=0.05, max_queue=100)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await b.submit([1], timeout=2)
        elapsed = loop.time() - t0
        await b.close()
        return elapsed

    elapsed = run(main())
    assert 0.04 <= elapsed < within(0.5)


def test_full_queue_is_refused_at_once():
    async def main():
        model = FakeModel()
        model.gate = asyncio.Event()  # the model stalls
        b = MicroBatcher(model, max_batch=2, max_wait=0, max_queue=3)
        first = asyncio.ensure_future(b.submit([1, 2], timeout=5))  # taken by the stalled model
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(b.submit([3, 4, 5], timeout=5))  # fills the queue
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await b.submit([6], timeout=5)
        model.gate.set()
        out = await asyncio.gather(first, queued)
        await b.close()
        return out

    out = run(main())
    assert [list(o[0]) for o in out] == [[10, 20], [30, 40, 50]]


def test_deadline_raises_and_abandoned_requests_free_the_queue():
    async def main():
        model = FakeModel()
        model.gate = asyncio.Event()
        b = MicroBatcher(model, max_batch=1, max_wait=0, max_queue=2)
        stuck = asyncio.ensure_future(b.submit([1], timeout=5))
        await asyncio.sleep(0.01)
        with pytest.raises(DeadlineExceeded):
            await b.submit([2, 3], timeout=0.05)  # queued behind the stall, gives up
        # Its two slots are free again although the worker never dequeued it.
        third = asyncio.ensure_future(b.submit([4, 5], timeout=5))
        await asyncio.sleep(0.01)
        model.gate.set()
        out = await asyncio.gather(stuck, third)
        await b.close()
        return model, out

    model, out = run(main())
    assert [list(o[0]) for o in out] == [[10], [40, 50]]
    assert [2, 3] not in model.batches  # the abandoned request never reached the model


def test_backend_error_reaches_every_request_of_the_batch_and_the_worker_survives():
    async def main():
        model = FakeModel()
        model.fail_with = RuntimeError("boom")
        b = MicroBatcher(model, max_batch=8, max_wait=0.01, max_queue=100)
        results = await asyncio.gather(b.submit([1], 1), b.submit([2], 1), return_exceptions=True)
        model.fail_with = None
        after = await b.submit([3], 1)
        await b.close()
        return results, after

    results, after = run(main())
    assert all(isinstance(r, BackendError) and "boom" in str(r) for r in results)
    assert list(after[0]) == [30]


def test_close_fails_waiting_requests_and_refuses_new_ones():
    async def main():
        model = FakeModel()
        model.gate = asyncio.Event()
        b = MicroBatcher(model, max_batch=1, max_wait=0, max_queue=10)
        pending = [asyncio.ensure_future(b.submit([i], 5)) for i in range(3)]
        await asyncio.sleep(0.01)
        await b.close()
        results = await asyncio.gather(*pending, return_exceptions=True)
        with pytest.raises(BackendError):
            await b.submit([9], 1)
        return results

    results = run(main())
    assert all(isinstance(r, BackendError) for r in results)


def test_batch_sizes_are_reported():
    async def main():
        sizes: list[int] = []
        b = MicroBatcher(FakeModel(), max_batch=64, max_wait=0.02, max_queue=100, on_batch=sizes.append)
        await asyncio.gather(*(b.submit([i], 2) for i in range(6)))
        await b.close()
        return sizes

    assert run(main()) == [6]


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        MicroBatcher(FakeModel(), max_batch=0, max_wait=0, max_queue=1)


def test_texts_queued_while_the_model_was_busy_go_without_waiting():
    """Only an idle model waits max_wait for company; a backlog is scored at once."""
    async def main():
        model = FakeModel()
        model.gate = asyncio.Event()  # the first batch stalls until released
        b = MicroBatcher(model, max_batch=64, max_wait=0.3, max_queue=100)
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(b.submit([1], timeout=5))
        await asyncio.sleep(0.35)  # the lone first request waited max_wait, then went to the model
        second = asyncio.ensure_future(b.submit([2], timeout=5))  # queued behind the busy model
        await asyncio.sleep(0.01)
        released = loop.time()
        model.gate.set()
        await first
        await second
        waited = loop.time() - released
        await b.close()
        return waited, model.batches

    waited, batches = run(main())
    assert batches == [[1], [2]]
    assert waited < 0.2  # not another max_wait of 0.3 s
