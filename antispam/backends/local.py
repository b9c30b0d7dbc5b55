"""The embedded backend: SavedModel versions loaded in this process, hot-reloaded from disk.

It does what TF Serving would do for us, inside the service: serve the newest complete version
under ``<model_base>/<model_name>/``, warm a version up with its own warmup records before it
takes traffic, pick up new versions by polling, and roll back when the serving version's folder
disappears. A version that fails to load is remembered and skipped (not retried every poll) while
the previous one keeps serving.

Consistency: what serves is one immutable :class:`_Served` holding one
:class:`~antispam.versions.LoadedVersion` (signature, vectors, windowing, loaded and checked by
:func:`antispam.versions.load_version`), swapped by a single reference assignment. A batch reads
that reference once, so its tensor is always built with the vectors of the version whose weights
score it.

Threads: the event loop never runs TensorFlow. Model calls run on one dedicated thread (one batch
at a time, fed by :class:`~antispam.backends.batching.MicroBatcher`); loads and warmups run on
another, so a new version loads beside the old one while the old one keeps answering. TensorFlow
is imported on the loader thread inside :meth:`start`, never at import time, so ``serve
--workers N`` can fork first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from antispam import versions
from antispam.backends.base import Backend, BatchResult, NotReady
from antispam.backends.batching import MicroBatcher
from antispam.config import ServeConfig
from antispam.features import Windowing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Served:
    version: int
    path: Path
    inode: int
    model: versions.LoadedVersion  # signature, vectors and windowing of this version, checked
    loaded_at: float
    load_seconds: float
    warmup_records: int


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


class LocalBackend(Backend):
    name = "local"

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.model_dir = versions.model_dir(config.model_base, config.model_name)
        self._served: _Served | None = None
        self._recent_assets: dict[int, versions.VersionAssets] = {}
        # version -> (inode of its folder, error): a version is skipped for as long as the same
        # folder is there; a folder republished under that number (new inode) is tried again.
        self._failed: dict[int, tuple[int | None, str]] = {}
        self._loading: int | None = None
        # Readiness bookkeeping (issue 11): the versions on disk at the last refresh, and failed
        # loads per version (only versions on disk are kept, so the metric stays bounded).
        self._on_disk: list[int] | None = None
        self._load_failures: dict[int, int] = {}
        self._batch_listeners: list[Callable[[int], None]] = []
        self._model_thread: ThreadPoolExecutor | None = None
        self._load_thread: ThreadPoolExecutor | None = None
        self._poll_task: asyncio.Task | None = None
        self._refresh_lock: asyncio.Lock | None = None
        self._tf: Any = None
        self._batcher: MicroBatcher[Sequence[str]] = MicroBatcher(
            self._run_batch,
            max_batch=config.batch_size,
            max_wait=config.batch_wait_ms / 1000.0,
            max_queue=config.max_queue,
            on_batch=self._notify_batch,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Import TensorFlow and load the newest usable version (if any), then keep polling.

        Returns once the first load attempt is over; with no version on disk yet the backend
        stays not ready and the poller picks up the first version that appears.
        """
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="antispam-model")
        self._load_thread = ThreadPoolExecutor(1, thread_name_prefix="antispam-load")
        self._refresh_lock = asyncio.Lock()
        self._batcher.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._load_thread, self._import_tensorflow)
        await self.refresh()
        if self._served is None:
            log.warning("no usable model version under %s yet; polling every %.1f s",
                        self.model_dir, self.config.poll_seconds)
        if self.config.poll_seconds > 0:
            self._poll_task = loop.create_task(self._poll(), name="antispam-version-poll")

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            try:
                await self._poll_task
            except asyncio.CancelledError:
                pass
            self._poll_task = None
        await self._batcher.close()
        for pool in (self._model_thread, self._load_thread):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._served = None

    def _import_tensorflow(self) -> None:
        # TensorFlow's C++ start-up chatter (CUDA probes, CPU features) is noise in a service
        # log; an operator who wants it sets TF_CPP_MIN_LOG_LEVEL themselves.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        # Each worker's share of the cores (issue 14). With TensorFlow's default pools (all cores,
        # per worker) two workers on two cores hand every small call across threads: a CNN call
        # on 1-8 rows cost 407-847 µs of CPU with the defaults and 222-424 µs on one thread (the
        # issue-14 note has the measurement). Set before TensorFlow's runtime starts, which is
        # here: nothing in this process has run an op yet.
        threads = model_threads(self.config.model_threads, self.config.workers)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # the runtime already started (another backend in this process)
            log.info("TensorFlow's thread pools were already set up; --model-threads not applied")
        self._tf = tf

    # -- interface -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._served is not None

    @property
    def current_version(self) -> int | None:
        served = self._served
        return served.version if served is not None else None

    @property
    def current_windowing(self) -> Windowing | None:
        served = self._served
        return served.model.assets.windowing if served is not None else None

    def version_assets(self, version: int) -> versions.VersionAssets | None:
        served = self._served
        if served is not None and served.version == version:
            return served.model.assets
        return self._recent_assets.get(version)

    def add_batch_listener(self, listener: Callable[[int], None]) -> None:
        """Called with the size of every model call (the app feeds it to /metrics)."""
        self._batch_listeners.append(listener)

    def _notify_batch(self, size: int) -> None:
        for listener in self._batch_listeners:
            listener(size)

    async def predict(self, batch: Sequence[Sequence[str]], timeout: float) -> BatchResult:
        if self._served is None:
            raise NotReady(f"no model version of {self.config.model_name!r} is loaded yet")
        scored, version = await self._batcher.submit(list(batch), timeout)
        scored = np.asarray(scored)
        return BatchResult(scored[:, 0], self.config.model_name, version, self.name,
                           scored_tokens=scored[:, 1].astype(np.int64))

    @property
    def degraded(self) -> str | None:
        """Serving, but not as deployed: the serving version's folder is gone from disk (it
        serves from memory), or the newest version on disk failed to load. As of the last
        refresh (every ``poll_seconds``), so ``/readyz`` does no disk I/O."""
        served, on_disk = self._served, self._on_disk
        if served is None or on_disk is None:
            return None
        if served.version not in on_disk:
            return (f"version {served.version} serves from memory: its folder is gone from "
                    f"{self.config.model_name}/")
        if on_disk and on_disk[-1] in self._failed:
            newest = on_disk[-1]
            error = self._failed[newest][1].partition(":")[0]
            return f"the newest version {newest} failed to load ({error}); version {served.version} serves"
        return None

    def load_failures(self) -> dict[int, int]:
        return dict(self._load_failures)

    def status(self) -> dict[str, Any]:
        served = self._served
        on_disk = versions.list_versions(self.model_dir)
        states: dict[int, dict[str, Any]] = {}
        for v in on_disk:
            states[v] = {"version": v, "state": "on_disk"}
        for v, (_inode, error) in self._failed.items():
            if v in states:  # the error's class only: the message (paths, TF internals) is logged
                states[v] = {"version": v, "state": "failed", "error": error.partition(":")[0]}
        if self._loading is not None:
            states[self._loading] = {"version": self._loading, "state": "loading"}
        if served is not None:
            states[served.version] = {
                "version": served.version, "state": "serving",
                "loaded_at": served.loaded_at, "load_seconds": round(served.load_seconds, 3),
                "warmup_records": served.warmup_records,
                "on_disk": served.version in on_disk,
                **served.model.assets.decision_status(),
            }
        return {
            "backend": self.name,
            "model": self.config.model_name,
            "model_dir": self.config.model_name,  # relative to the model base
            "ready": served is not None,
            "current_version": served.version if served is not None else None,
            "poll_seconds": self.config.poll_seconds,
            "queued_texts": self._batcher.queued,
            "versions": [states[v] for v in sorted(states, reverse=True)],
        }

    # -- scoring (model thread) ------------------------------------------------------------

    async def _run_batch(self, batch: list[Sequence[str]]) -> tuple[np.ndarray, int]:
        served = self._served  # read once: vectors and weights of one version
        if served is None:
            raise NotReady("the model was unloaded")
        loop = asyncio.get_running_loop()
        assert self._model_thread is not None
        probabilities = await loop.run_in_executor(self._model_thread, self._score, served, batch)
        return probabilities, served.version

    def _score(self, served: _Served, batch: list[Sequence[str]]) -> np.ndarray:
        """float64 ``[n, 2]``: each text's spam probability and how many of its tokens were read.

        One array so the micro-batcher can slice it per request like any per-item result.
        """
        rows, plan = served.model.featurizer.featurize(batch)
        spam = plan.fold(served.model.call(rows))
        return np.column_stack([spam, plan.scored.astype(np.float64)])

    # -- versions (loader thread) ----------------------------------------------------------

    async def refresh(self) -> None:
        """Serve the newest usable version on disk: load a newer one, or roll back if ours left.

        Tries versions newest first, so a broken newest version falls back to the one before it
        in the same pass. If nothing on disk is usable the version in memory keeps serving.
        """
        assert self._refresh_lock is not None, "start() first"
        async with self._refresh_lock:
            loop = asyncio.get_running_loop()
            on_disk = await loop.run_in_executor(None, versions.list_versions, self.model_dir)
            self._on_disk = on_disk
            self._load_failures = {v: n for v, n in self._load_failures.items() if v in on_disk}
            for version in reversed(on_disk):
                path = versions.version_dir(self.model_dir, version)
                inode = _inode(path)
                failed = self._failed.get(version)
                if failed is not None:
                    if failed[0] == inode:
                        continue
                    del self._failed[version]  # republished under the same number: try again
                served = self._served
                if served is not None and served.version == version and served.inode == inode:
                    return  # already serving the newest usable version
                self._loading = version
                try:
                    new = await loop.run_in_executor(self._load_thread, self._load, version, path)
                except Exception as exc:  # any failure: skip this version, keep the old one
                    message = f"{type(exc).__name__}: {exc}"
                    self._failed[version] = (inode, message[:500])
                    self._load_failures[version] = self._load_failures.get(version, 0) + 1
                    log.error("model %s version %d failed to load and is skipped: %s",
                              self.config.model_name, version, message)
                    continue
                finally:
                    self._loading = None
                old = self._served
                self._served = new  # the switch: one reference assignment
                # Batches answered by the previous version may still be rendered: keep its
                # assets (points, calibration) for them; a few versions at most.
                self._recent_assets[new.version] = new.model.assets
                for stale in sorted(self._recent_assets)[:-3]:
                    del self._recent_assets[stale]
                log.info("model %s version %d serving (loaded and warmed up in %.2f s, %d warmup "
                         "records)%s", self.config.model_name, version, new.load_seconds,
                         new.warmup_records, f"; version {old.version} dropped" if old else "")
                return
            if self._served is not None and self._served.version not in on_disk:
                log.warning("model %s version %d left %s and nothing else is usable; it keeps "
                            "serving from memory", self.config.model_name, self._served.version,
                            self.model_dir)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_seconds)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("looking for new model versions failed; will try again")

    def _load(self, version: int, path: Path) -> _Served:
        started = time.monotonic()
        inode = _inode(path)
        model = versions.load_version(self.model_dir, version)
        records = self._warm_up(model, path / versions.ASSETS_DIR / versions.WARMUP_FILE)
        return _Served(version, path, inode or 0, model, time.time(), time.monotonic() - started, records)

    def _warm_up(self, model: versions.LoadedVersion, warmup_file: Path) -> int:
        """Replay the version's TF Serving warmup records; without any, score one padded row.

        Warming runs every input shape path once before real traffic arrives, and also proves the
        version answers sensibly (right output shape, finite probabilities) before the switch.
        """
        tf = self._tf
        count = 0
        if warmup_file.is_file():
            from tensorflow_serving.apis import prediction_log_pb2

            for record in tf.data.TFRecordDataset(str(warmup_file)):
                log_entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
                if not log_entry.HasField("predict_log"):
                    continue
                tensor = log_entry.predict_log.request.inputs[versions.INPUT_KEY]
                _check_output(model.call(tf.make_ndarray(tensor)))
                count += 1
        if count == 0:
            _check_output(model.call(model.featurizer.featurize([[]])[0]))
        return count


def _check_output(probs: np.ndarray) -> None:
    if probs.ndim != 2 or probs.shape[1] != 2 or not np.all(np.isfinite(probs)):
        raise versions.VersionError(f"warmup gave unusable probabilities of shape {probs.shape}")


def model_threads(setting: int, workers: int) -> int:
    """TensorFlow threads per worker: ``setting``, or with 0 the cores this process may run on
    divided among the workers (at least 1)."""
    if setting > 0:
        return setting
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))
