"""TF Serving over its REST API: ``POST /v1/models/<name>/versions/<n>:predict``.

Used on its own (``--backend rest``) or as the fallback when gRPC does not answer. Requests go
through one :class:`~antispam.backends.http_pool.KeepAliveClient` (at most ``max_clients``
connections, kept open and reused; a keep-alive connection the server dropped is replaced
without failing the request) with the remaining deadline as the timeout; status comes from
``GET /v1/models/<name>``.

JSON is the cost of this path: printing 256,000 floats for a 64-text batch takes about 0.2 s of
event-loop time. A version's vectors never change, so each vocabulary row is printed once, on
first use, and a request body is a join of cached row strings (about 100 times faster). Rows are
printed with ``repr`` of the exact float32 value, so TF Serving parses back the same float32.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

import numpy as np
from tornado.httputil import HTTPInputError
from tornado.iostream import StreamClosedError

from antispam.backends.base import BackendError, Overloaded
from antispam.backends.http_pool import KeepAliveClient, PoolTimeout, Response
from antispam.backends.remote import BadResponse, RemoteBackend, Unreachable, UnreachableDeadline, VersionGone
from antispam.backends.remote_versions import RemoteVersions
from antispam.config import ServeConfig
from antispam.features import Plan, WordVectors
from antispam.versions import PROBABILITIES_KEY, SIGNATURE, VersionAssets

MAX_CLIENTS = 32  # connections to TF Serving (kept open); more requests wait for a free one
# Per version (the current one and the one before are kept): a cached row is about 4 KB, so at
# most about 40 MB each; rarer words past the cap are printed per request.
MAX_CACHED_ROWS = 10_000


class RowEncoder:
    """Prints ``"instances"`` JSON for token lists from one version's vectors, caching rows."""

    def __init__(self, vectors: WordVectors) -> None:
        self.vectors = vectors
        self._rows: dict[int, str] = {vectors.pad_id: _row_json(np.zeros(vectors.dim, np.float32))}

    def _row(self, index: int) -> str:
        text = self._rows.get(index)
        if text is None:
            text = _row_json(self.vectors.matrix[index])
            if len(self._rows) < MAX_CACHED_ROWS:
                self._rows[index] = text
        return text

    def _position(self, plan: Plan, index: int) -> str:
        if index <= plan.pad:
            return self._row(index)
        # A back-off vector (an unknown word's characters' mean): cached by word in the vectors.
        j = index - plan.pad - 1
        return _row_json(self.vectors.backoff_vector(plan.extra_words[j], plan.extra_chars[j]))

    def body(self, plan: Plan) -> bytes:
        """The ``instances`` of every row of ``plan`` (the rows :meth:`Featurizer.rows` builds)."""
        instances = ",".join("[" + ",".join(self._position(plan, i) for i in row) + "]"
                             for row in plan.ids.tolist())
        return ('{"signature_name":%s,"instances":[%s]}' % (json.dumps(SIGNATURE), instances)).encode()


def _row_json(row: np.ndarray) -> str:
    return json.dumps(np.asarray(row, dtype=np.float32).tolist(), separators=(",", ":"))


def parse_predictions(body: bytes) -> Any:
    """The ``probabilities`` of a predict answer, in any of TF Serving's JSON shapes.

    Row format answers ``{"predictions": [{"probabilities": [..], "classes": c}, ...]}`` or, with
    a single output, ``{"predictions": [[..], ...]}``; columnar format answers
    ``{"outputs": {"probabilities": [[..]], ...}}`` or ``{"outputs": [[..]]}``. The shape and
    values are checked by :func:`antispam.backends.remote.checked_probabilities`.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadResponse(f"REST predict answer is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadResponse(f"REST predict answer is a {type(doc).__name__}, expected an object")
    if "predictions" in doc:
        predictions = doc["predictions"]
        if not isinstance(predictions, list):
            raise BadResponse("REST predict answer: 'predictions' is not a list")
        rows = []
        for item in predictions:
            if isinstance(item, dict):
                if PROBABILITIES_KEY not in item:
                    raise BadResponse(f"REST predict answer: a prediction has no {PROBABILITIES_KEY!r}")
                item = item[PROBABILITIES_KEY]
            rows.append(item)
        return rows
    if "outputs" in doc:
        outputs = doc["outputs"]
        if isinstance(outputs, dict):
            if PROBABILITIES_KEY not in outputs:
                raise BadResponse(f"REST predict answer: 'outputs' has no {PROBABILITIES_KEY!r}")
            outputs = outputs[PROBABILITIES_KEY]
        return outputs
    if "error" in doc:
        raise BackendError(f"TF Serving REST error: {doc['error']}")
    raise BadResponse(f"REST predict answer has neither 'predictions' nor 'outputs' (keys {sorted(doc)})")


def _error_text(response: Response) -> str:
    try:
        return str(json.loads(response.body or b"{}").get("error", ""))[:500]
    except (ValueError, AttributeError):
        return (response.body or b"")[:200].decode("utf-8", "replace")


class RestBackend(RemoteBackend):
    """TF Serving's REST API at ``config.tfs_rest`` (a base URL such as http://host:8501)."""

    name = "rest"

    def __init__(self, config: ServeConfig, *, versions: RemoteVersions | None = None,
                 poll: bool | None = None, max_clients: int = MAX_CLIENTS) -> None:
        super().__init__(config, versions=versions, poll=poll)
        self.base_url = config.tfs_rest.rstrip("/")
        self.base_path = urlsplit(self.base_url).path
        self.max_clients = max_clients
        self._client: KeepAliveClient | None = None
        self._encoders: OrderedDict[tuple[int, int], RowEncoder] = OrderedDict()

    def target(self) -> str:
        return self.base_url

    def model_url(self) -> str:
        return f"{self.base_url}{self.model_path()}"

    def model_path(self) -> str:
        return f"/v1/models/{quote(self.model_name, safe='')}"

    @property
    def client(self) -> KeepAliveClient | None:
        """The connection pool while started (its ``opened``/``reused``/``retried`` counters)."""
        return self._client

    async def _open(self) -> None:
        self._client = KeepAliveClient(self.base_url, max_connections=self.max_clients)

    async def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def encoder(self, assets: VersionAssets) -> RowEncoder:
        """The row cache of this version's vectors (the last two versions are kept)."""
        key = (assets.version, id(assets.vectors))
        encoder = self._encoders.get(key)
        if encoder is None or encoder.vectors is not assets.vectors:
            encoder = self._encoders[key] = RowEncoder(assets.vectors)
            while len(self._encoders) > 2:
                self._encoders.popitem(last=False)
        self._encoders.move_to_end(key)
        return encoder

    async def _fetch(self, method: str, path: str, what: str, timeout: float, body: bytes | None = None,
                     headers: Mapping[str, str] | None = None) -> Response:
        if self._client is None:
            raise BackendError("REST backend used before start()")
        try:
            return await self._client.fetch(method, self.base_path + path, body=body, headers=headers,
                                            timeout=timeout)
        except PoolTimeout as exc:
            raise UnreachableDeadline(f"REST {what}: {exc}") from exc
        except HTTPInputError as exc:
            raise BadResponse(f"REST {what}: malformed HTTP answer: {exc}") from exc
        except (OSError, StreamClosedError) as exc:
            raise Unreachable(f"REST {what}: {type(exc).__name__}: {exc}") from exc

    async def _call(self, assets: VersionAssets, plan: Plan, timeout: float) -> np.ndarray:
        version = assets.version
        what = f"predict {self.model_name} v{version}"
        response = await self._fetch("POST", f"{self.model_path()}/versions/{version}:predict", what, timeout,
                                     body=self.encoder(assets).body(plan),
                                     headers={"Content-Type": "application/json"})
        if response.code == 200:
            return parse_predictions(response.body)
        message = f"REST {what}: HTTP {response.code} {_error_text(response)}".strip()
        if response.code == 404:
            raise VersionGone(message)
        if response.code == 429:
            raise Overloaded(message)
        if response.code in (502, 503, 504):
            raise Unreachable(message)
        raise BackendError(message)

    async def fetch_states(self, timeout: float) -> Mapping[int, str]:
        response = await self._fetch("GET", self.model_path(), f"status of {self.model_name}", timeout)
        if response.code == 404:
            return {}  # TF Serving answers, but has no version of this model (yet)
        if response.code != 200:
            raise BackendError(f"REST status of {self.model_name}: HTTP {response.code} {_error_text(response)}")
        try:
            rows = json.loads(response.body)["model_version_status"]
            return {int(row["version"]): str(row.get("state", "UNKNOWN")) for row in rows}
        except (ValueError, KeyError, TypeError) as exc:
            raise BadResponse(f"REST status of {self.model_name}: unusable answer ({exc})") from exc
