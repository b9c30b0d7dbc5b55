"""A scriptable Backend for app-level tests: fixed scores, errors, stalls, no TensorFlow."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Sequence

import numpy as np

from antispam.backends.base import Backend, BatchResult
from antispam.features import Windowing


class FakeBackend(Backend):
    """Scores each token list with ``score`` (default: 0.95 if it holds a spam word, else 0.05).

    ``error`` is raised by every predict; ``delay`` seconds pass before answering and, unlike a
    real backend, the fake ignores ``timeout`` (so the app's own deadline is what is tested).
    """

    name = "fake"

    def __init__(self, score: Callable[[Sequence[str]], float] | None = None, *,
                 version: int | None = 7, ready: bool = True, error: BaseException | None = None,
                 delay: float = 0.0, extra: dict[str, Any] | None = None,
                 windowing: Windowing | None = None) -> None:
        self.score = score or (lambda tokens: 0.95 if {"发票", "贷款", "代开"} & set(tokens) else 0.05)
        self.version = version
        self._ready = ready
        self.error = error
        self.delay = delay
        self.extra = extra or {}
        self.windowing = windowing  # what current_windowing says (None: cannot tell)
        self.calls: list[list[list[str]]] = []
        self.closed = False

    async def start(self) -> None:
        return None

    async def predict(self, batch: Sequence[Sequence[str]], timeout: float) -> BatchResult:
        self.calls.append([list(tokens) for tokens in batch])
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        probs = np.array([self.score(tokens) for tokens in batch], dtype=np.float64)
        return BatchResult(probs, "fake-model", self.version or 0, self.name, dict(self.extra))

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def current_version(self) -> int | None:
        return self.version

    @property
    def current_windowing(self) -> Windowing | None:
        return self.windowing

    def status(self) -> dict[str, Any]:
        return {"backend": self.name, "model": "fake-model", "ready": self._ready,
                "current_version": self.version,
                "versions": [{"version": self.version, "state": "serving"}] if self.version else []}

    async def close(self) -> None:
        self.closed = True


class FakeFeedbackStore:
    """Records what the app stores; ``fail`` makes ``add`` raise like a broken database."""

    def __init__(self, fail: bool = False) -> None:
        self.rows: list[tuple[str, str, int, int | None]] = []
        self.refs: list[dict[str, str]] = []  # request_id / data_id per row, as given
        self.fail = fail

    def add(self, text: str, normalized: str, label: int, model_version: int | None = None, *,
            key_id: str | None = None, request_id: str | None = None, data_id: str | None = None) -> dict:
        if self.fail:
            raise OSError("disk full")
        self.rows.append((text, normalized, label, model_version))
        given = {"key_id": key_id, "request_id": request_id, "data_id": data_id}
        self.refs.append({name: value for name, value in given.items() if value is not None})
        return {"id": len(self.rows), "label": label, "model_version": model_version}
