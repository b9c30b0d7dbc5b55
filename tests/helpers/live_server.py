"""The real app (make_app + a backend) on 127.0.0.1 in a background thread, for black-box tests.

The fuzz and schemathesis tests talk HTTP to it through real sockets, so Tornado's own parsing
(query decoding, bodies, headers) is under test too, not only the handlers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from typing import Any, Callable

from antispam.app import make_app
from antispam.backends.base import Backend
from antispam.config import ServeConfig
from antispam.http.server import HTTPServer, server_options


class LiveServer:
    def __init__(self, config: ServeConfig, backend_factory: Callable[[ServeConfig], Backend],
                 feedback_store: Any = None, decision_log: Any = None) -> None:
        self.config = config
        self._decision_log = decision_log  # issue 23: what make_app hands /predict's decisions to
        self._factory = backend_factory
        self._feedback_store = feedback_store
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)
        self.port = 0
        self.app: Any = None
        self.backend: Backend | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the test by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        import tornado.netutil

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.backend = self._factory(self.config)
        await self.backend.start()
        self.app = make_app(self.config, self.backend, feedback_store=self._feedback_store,
                            decision_log=self._decision_log)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server = HTTPServer(self.app, **server_options(self.config))
        server.add_sockets(sockets)
        self._ready.set()
        await self._stop.wait()
        server.stop()
        await self.backend.close()

    def start(self, timeout: float = 120.0) -> "LiveServer":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("live server did not start")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get_json(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
