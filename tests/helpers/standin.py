"""The test session's TF Serving stand-in: one shared server, tiny versions, remote configs.

The stand-in itself (server and :class:`StandinTFS` client) is
:mod:`antispam.testing.standin_tfs`; these helpers are how the tests use it.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

from antispam.testing.standin_tfs import StandinTFS

_shared: StandinTFS | None = None


def shared_standin(wait: bool = True) -> StandinTFS:
    """One stand-in for the whole test session (starting one costs a TensorFlow import).

    It serves every model folder under its own temporary base, keeping the newest two versions
    of each, so test modules stay independent by using their own model names. A test that stops,
    pauses or degrades it must restore it (``finally: tfs.start()`` / ``resume()`` / ``grpc_up()``);
    this function also restarts it if a test left it stopped. With ``wait=False`` it returns
    while the server still starts, so a fixture can build model versions meanwhile.
    """
    global _shared
    if _shared is None:
        base = Path(tempfile.mkdtemp(prefix="standin-tfs-"))
        (base / "models").mkdir()
        _shared = StandinTFS(base / "models", keep=2, poll=0.2, log_path=base / "standin.log")
        atexit.register(shutil.rmtree, base, True)
        atexit.register(_shared.stop)
    if not _shared.running:
        _shared.launch()
    return _shared.wait_ready() if wait else _shared


def publish_tiny(tfs: StandinTFS, model: str, *, flip: bool = False, wait: bool = True) -> int:
    """Export a tiny version of ``model`` into the stand-in's base; wait until it is AVAILABLE."""
    from antispam.testing.tinymodel import build_version

    version = build_version(tfs.model_base / model, flip=flip)
    if wait:
        tfs.wait_ready().wait_until(model, version)
    return version


def standin_serving(*models: str) -> StandinTFS:
    """The shared stand-in with a tiny version 1 of each of ``models`` AVAILABLE.

    Test modules call this from a module-scoped fixture, each with its own model names; the
    versions are built while the server starts.
    """
    server = shared_standin(wait=False)
    for model in models:
        if not (server.model_base / model).is_dir():
            publish_tiny(server, model, wait=False)
    server.wait_ready()
    for model in models:
        server.wait_until(model, 1)
    return server


def remote_config(tfs: StandinTFS, model: str, **overrides: Any) -> Any:
    """A ``ServeConfig`` pointing the remote backends at ``tfs`` and its folder of ``model``."""
    from antispam.config import ServeConfig

    values: dict[str, Any] = dict(model_base=str(tfs.model_base), model_name=model,
                                  tfs_grpc=tfs.grpc_target, tfs_rest=tfs.rest_url, poll_seconds=0.2)
    values.update(overrides)
    return ServeConfig(**values)


def run_started(backend: Any, scenario: Callable[[Any], Awaitable[Any]]) -> Any:
    """Start ``backend``, run ``scenario(backend)`` on a fresh event loop, close it whatever happens."""
    async def main() -> Any:
        await backend.start()
        try:
            return await scenario(backend)
        finally:
            await backend.close()

    return asyncio.run(main())
