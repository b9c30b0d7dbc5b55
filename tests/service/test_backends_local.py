"""LocalBackend with tiny real SavedModel versions: loading, warmup, hot reload, rollback,
broken versions, micro-batching, deadlines and backpressure."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from antispam.backends.base import DeadlineExceeded, NotReady, Overloaded
from antispam.backends.local import LocalBackend
from antispam.config import ServeConfig
from antispam.testing import tinymodel
from antispam.text import tokenize

SPAM = tokenize(tinymodel.SPAM_TEXT)
PASS = tokenize(tinymodel.PASS_TEXT)


def config(tmp_path: Path, **kw) -> ServeConfig:
    kw.setdefault("poll_seconds", 0.05)
    return ServeConfig(model_base=str(tmp_path / "models"), model_name="cnn", **kw)


def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "models" / "cnn"


async def wait_for(predicate, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_serves_newest_version_with_correct_labels(tmp_path):
    tinymodel.build_version(model_dir(tmp_path))
    tinymodel.build_version(model_dir(tmp_path), flip=True)

    async def main():
        backend = LocalBackend(config(tmp_path))
        await backend.start()
        try:
            result = await backend.predict([SPAM, PASS], timeout=5)
            return backend.status(), result
        finally:
            await backend.close()

    status, result = asyncio.run(main())
    assert result.version == 2 and result.model_name == "cnn" and result.backend == "local"
    # Version 2 negates vectors AND weights: paired correctly, verdicts are unchanged.
    assert result.spam_probability[0] > 0.5 > result.spam_probability[1]
    assert status["current_version"] == 2 and status["ready"] is True
    states = {v["version"]: v for v in status["versions"]}
    assert states[2]["state"] == "serving" and states[2]["warmup_records"] == 2
    assert states[1]["state"] == "on_disk"


def test_not_ready_until_a_version_appears(tmp_path):
    async def main():
        backend = LocalBackend(config(tmp_path))
        await backend.start()
        try:
            assert not backend.ready and backend.current_version is None
            with pytest.raises(NotReady):
                await backend.predict([SPAM], timeout=1)
            tinymodel.build_version(model_dir(tmp_path))
            await wait_for(lambda: backend.ready)
            return (await backend.predict([SPAM], timeout=5)).version
        finally:
            await backend.close()

    assert asyncio.run(main()) == 1


def test_hot_reload_under_load_has_no_failures_and_switches(tmp_path):
    tinymodel.build_version(model_dir(tmp_path))

    async def main():
        backend = LocalBackend(config(tmp_path, batch_wait_ms=1.0))
        await backend.start()
        seen: list[tuple[int, float, float]] = []
        failures: list[BaseException] = []
        stop = asyncio.Event()

        async def client():
            while not stop.is_set():
                try:
                    r = await backend.predict([SPAM, PASS], timeout=5)
                    seen.append((r.version, float(r.spam_probability[0]), float(r.spam_probability[1])))
                except Exception as exc:  # any failure is a test failure
                    failures.append(exc)
                await asyncio.sleep(0)

        clients = [asyncio.ensure_future(client()) for _ in range(4)]
        await wait_for(lambda: len(seen) > 20)
        loop = asyncio.get_running_loop()
        # Publish while requests stream (the export itself runs beside the event loop).
        await loop.run_in_executor(None, lambda: tinymodel.build_version(model_dir(tmp_path), flip=True))
        await wait_for(lambda: seen and seen[-1][0] == 2)
        count = len(seen)
        await wait_for(lambda: len(seen) > count + 20)
        stop.set()
        await asyncio.gather(*clients)
        await backend.close()
        return seen, failures

    seen, failures = asyncio.run(main())
    assert failures == []
    versions = [v for v, _, _ in seen]
    assert versions[0] == 1 and versions[-1] == 2
    assert versions == sorted(versions)  # switched once, never back
    # Every answer, before, during and after the swap, pairs vectors and weights of one version.
    assert all(spam > 0.5 > ham for _, spam, ham in seen)


def test_rollback_when_the_serving_version_is_deleted(tmp_path):
    tinymodel.build_version(model_dir(tmp_path))
    tinymodel.build_version(model_dir(tmp_path), flip=True)

    async def main():
        backend = LocalBackend(config(tmp_path))
        await backend.start()
        try:
            assert backend.current_version == 2
            shutil.rmtree(model_dir(tmp_path) / "2")
            await wait_for(lambda: backend.current_version == 1)
            return await backend.predict([SPAM, PASS], timeout=5)
        finally:
            await backend.close()

    result = asyncio.run(main())
    assert result.version == 1 and result.spam_probability[0] > 0.5 > result.spam_probability[1]


def test_broken_version_is_skipped_remembered_and_old_one_keeps_serving(tmp_path, caplog):
    tinymodel.build_version(model_dir(tmp_path))
    broken = model_dir(tmp_path) / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a protobuf")

    async def main():
        backend = LocalBackend(config(tmp_path, poll_seconds=0))
        attempts: list[int] = []
        real_load = backend._load

        def counting_load(version, path):
            attempts.append(version)
            return real_load(version, path)

        backend._load = counting_load  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="antispam.backends.local"):
            await backend.start()
        try:
            await backend.refresh()
            await backend.refresh()
            result = await backend.predict([SPAM], timeout=5)
            return attempts, backend.status(), result
        finally:
            await backend.close()

    attempts, status, result = asyncio.run(main())
    assert result.version == 1
    assert attempts.count(2) == 1  # tried once, not on every poll
    states = {v["version"]: v for v in status["versions"]}
    assert states[2]["state"] == "failed" and states[2]["error"]
    assert states[1]["state"] == "serving"
    assert any("version 2 failed to load" in r.getMessage() for r in caplog.records)


def test_version_with_assets_of_another_pipeline_is_refused(tmp_path, caplog):
    tinymodel.build_version(model_dir(tmp_path))
    tinymodel.build_version(model_dir(tmp_path))
    prep = model_dir(tmp_path) / "2" / "assets.extra" / "preprocessing.json"
    prep.write_text('{"max_len": 20, "dim": 200, "normalizer_version": 999}')

    async def main():
        backend = LocalBackend(config(tmp_path, poll_seconds=0))
        await backend.start()
        try:
            return backend.current_version, backend.status()
        finally:
            await backend.close()

    version, status = asyncio.run(main())
    assert version == 1
    failed = [v for v in status["versions"] if v["state"] == "failed"]
    # /models shows the error class; the message is in the log (issue 11).
    assert failed and failed[0]["error"] == "VersionError"
    assert "normalizer_version" in caplog.text


def test_concurrent_requests_are_micro_batched(tmp_path):
    tinymodel.build_version(model_dir(tmp_path))

    async def main():
        backend = LocalBackend(config(tmp_path, batch_wait_ms=20, batch_size=64))
        sizes: list[int] = []
        backend.add_batch_listener(sizes.append)
        await backend.start()
        try:
            results = await asyncio.gather(*(backend.predict([SPAM if i % 2 else PASS], 5)
                                             for i in range(10)))
            return sizes, results
        finally:
            await backend.close()

    sizes, results = asyncio.run(main())
    assert sum(sizes) == 10 and max(sizes) > 1
    for i, r in enumerate(results):  # each request got its own row back
        assert (r.spam_probability[0] > 0.5) == bool(i % 2)


def test_deadline_and_full_queue_on_a_stalled_model(tmp_path):
    tinymodel.build_version(model_dir(tmp_path), sleep_ms=400)

    async def main():
        backend = LocalBackend(config(tmp_path, batch_size=1, batch_wait_ms=0, max_queue=2,
                                      poll_seconds=0))
        await backend.start()
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(DeadlineExceeded):
                await backend.predict([SPAM], timeout=0.1)
            waited = loop.time() - t0
            # The model thread is still busy with that call; fill the queue behind it.
            queued = [asyncio.ensure_future(backend.predict([PASS], 5)) for _ in range(3)]
            await asyncio.sleep(0.05)
            with pytest.raises(Overloaded):
                await backend.predict([SPAM, SPAM], timeout=5)
            await asyncio.gather(*queued, return_exceptions=True)
            return waited
        finally:
            await backend.close()

    waited = asyncio.run(main())
    assert waited < 0.3


# -- full-text windows -------------------------------------------------------------------------

from antispam.features import Windowing  # noqa: E402

# 30 pass words, then the ad. With stride 10 the last window is aligned to the message's end.
# One SPAM_TEXT is only 6 tokens (jieba: 代/开发票/优惠/贷款/加微信/xxxxxxxxxxx), so the last
# window would still hold 14 pass words and read as pass; three copies fill 18 of its 20 tokens.
LONG_TEXT = "".join((tinymodel.PASS_WORDS * 5)[:30]) + tinymodel.SPAM_TEXT * 3
LONG = tokenize(LONG_TEXT)


def test_windowed_version_reads_the_ad_at_the_end(tmp_path):
    assert LONG[:30] == (tinymodel.PASS_WORDS * 5)[:30] and len(LONG) > 40
    first_dir, windowed_dir = tmp_path / "first", tmp_path / "windowed"
    tinymodel.build_version(first_dir / "models" / "cnn")
    tinymodel.build_version(windowed_dir / "models" / "cnn", windowing=Windowing())

    async def score(root):
        backend = LocalBackend(config(root, poll_seconds=0))
        await backend.start()
        try:
            return await backend.predict([LONG, SPAM, PASS, []], timeout=5)
        finally:
            await backend.close()

    windowed = asyncio.run(score(windowed_dir))
    first = asyncio.run(score(first_dir))
    assert windowed.spam_probability[0] > 0.5  # the ad window wins under max
    assert first.spam_probability[0] < 0.5  # the first 20 tokens are all pass words
    for result in (windowed, first):
        assert result.spam_probability[1] > 0.5 > result.spam_probability[2]
    assert windowed.scored_tokens.tolist() == [len(LONG), len(SPAM), len(PASS), 0]
    assert first.scored_tokens.tolist() == [20, len(SPAM), len(PASS), 0]


def test_version_with_unusable_windowing_is_refused(tmp_path, caplog):
    tinymodel.build_version(model_dir(tmp_path), windowing=Windowing())
    tinymodel.build_version(model_dir(tmp_path), windowing=Windowing(),
                            preprocessing={"aggregation": "mean"})

    async def main():
        backend = LocalBackend(config(tmp_path, poll_seconds=0))
        await backend.start()
        try:
            await backend.refresh()
            return backend.status(), await backend.predict([LONG, PASS], timeout=5)
        finally:
            await backend.close()

    status, result = asyncio.run(main())
    states = {v["version"]: v for v in status["versions"]}
    assert states[2]["state"] == "failed"
    assert states[2]["error"] == "VersionError"
    assert "windowing" in caplog.text and "'mean'" in caplog.text
    assert states[1]["state"] == "serving" and status["current_version"] == 1
    assert result.version == 1
    assert result.spam_probability[0] > 0.5 > result.spam_probability[1]
    assert result.scored_tokens.tolist() == [len(LONG), len(PASS)]


def test_explain_cuts_windows_as_the_served_version_does(tmp_path):
    """explain=true scores the windows of the version serving (its preprocessing.json), here
    stride 15, not the trainer's default stride 10."""
    from antispam.cache import PredictionCache
    from antispam.scoring import Scorer
    from antispam.text import default_segmenter

    tinymodel.build_version(model_dir(tmp_path), windowing=Windowing(stride=15))
    cfg = config(tmp_path, poll_seconds=0, max_chars=1000)

    async def main():
        backend = LocalBackend(cfg)
        await backend.start()
        try:
            scorer = Scorer(cfg, backend, default_segmenter(), PredictionCache(0))
            items = await scorer.score([LONG_TEXT], scorer.normalize_all([LONG_TEXT]), explain=True)
            return backend.current_windowing, items[0]
        finally:
            await backend.close()

    windowing, item = asyncio.run(main())
    assert windowing == Windowing(stride=15)
    n = len(LONG)
    spans = [tuple(r["tokens"]) for r in item["reasons"] if r["kind"] == "window"]
    assert len(spans) == 3 and set(spans) <= set(Windowing(stride=15).spans(n))
    assert all(a % 15 == 0 or b == n for a, b in spans)
    assert spans[0][1] == n  # the ad is at the end: the last window scores highest
