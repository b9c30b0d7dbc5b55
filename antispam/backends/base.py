"""The one interface every backend keeps, so the HTTP layer never knows which one answers.

Text is tokenized by the app (the shared pipeline); a backend receives token lists, builds the
rows of every text (``[rows, 20, 200]``, :class:`antispam.features.Featurizer`) with the vectors
and windowing of the version it is about to call, pins that version in the call, folds the rows
back into one spam probability per text, and returns those with the version that produced them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

# The backend interface's errors, defined with the other exception types (antispam.errors) and
# re-exported here, where backends and their callers have always imported them.
from antispam.errors import BackendError as BackendError
from antispam.errors import DeadlineExceeded as DeadlineExceeded
from antispam.errors import NotReady as NotReady
from antispam.errors import Overloaded as Overloaded

if TYPE_CHECKING:  # pragma: no cover
    from antispam.features import Windowing
    from antispam.versions import VersionAssets


@dataclass
class BatchResult:
    spam_probability: np.ndarray  # float [n], column 0 of the model's probabilities
    model_name: str
    version: int
    backend: str  # which concrete backend answered ("local", "grpc", "rest")
    extra: dict[str, Any] = field(default_factory=dict)
    # int [n]: tokens of each text that some window covered (the rest were cut by the cap);
    # None from a backend that does not say (then the app assumes every token was read).
    scored_tokens: np.ndarray | None = None


class Backend(abc.ABC):
    """Lifecycle: ``await start()`` once, ``predict`` many times, ``await close()`` once."""

    name: str = "abstract"

    @abc.abstractmethod
    async def start(self) -> None:
        """Load what is needed; may return before a model is usable (see ``ready``)."""

    @abc.abstractmethod
    async def predict(self, batch: Sequence[Sequence[str]], timeout: float) -> BatchResult:
        """Score token lists within ``timeout`` seconds or raise :class:`BackendError`."""

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """True when a model version can answer now."""

    @property
    @abc.abstractmethod
    def current_version(self) -> int | None:
        """The version new requests are sent to (the dedup cache keys on it)."""

    @property
    def current_windowing(self) -> "Windowing | None":
        """How :attr:`current_version` reads a text (its ``preprocessing.json``: stride, cap...),
        or None when this backend cannot tell. ``explain=true`` cuts its windows this way."""
        return None

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """For ``GET /models``: backend, model name, versions and their state."""

    @property
    def degraded(self) -> str | None:
        """Why a ready backend is not serving as deployed (``/readyz`` answers 503 ``degraded``
        with it), or None. Backends that cannot tell keep this default."""
        return None

    def version_assets(self, version: int) -> "VersionAssets | None":
        """The assets of ``version`` as this backend scores it (its calibration and operating
        points decide the default policy's thresholds, issue 20), or None when this backend
        cannot tell or no longer holds that version."""
        return None

    def load_failures(self) -> dict[int, int]:
        """Failed loads per version, for ``antispam_model_load_failures_total`` ({} if none)."""
        return {}

    async def close(self) -> None:
        return None
