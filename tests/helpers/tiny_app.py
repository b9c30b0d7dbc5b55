"""A tiny Tornado app on 127.0.0.1 in a thread, for the load-generator tests (no model)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Callable

import tornado.httpserver
import tornado.netutil
import tornado.web

TEXTS = ["你好", "代开发票 13800138000", "a&b=c?d #e", "妈妈，我们明天回家"]


class Predict(tornado.web.RequestHandler):
    async def get(self) -> None:
        delay = float(self.application.settings["delay"])
        lock: asyncio.Lock | None = self.application.settings.get("lock")
        text = self.get_query_argument("text")
        self.application.settings["seen"].append(text)
        if lock is not None:
            async with lock:  # one request at a time: a service with fixed capacity
                await asyncio.sleep(delay)
        elif delay:
            await asyncio.sleep(delay)
        if self.application.settings["fail"]:
            self.set_status(503)
            self.finish({"error": {"code": "x", "message": "down"}})
            return
        judge = self.application.settings.get("judge")
        if judge is not None:  # the replay tests: an item shaped like the service's
            self.finish({"data": judge(text, self.get_query_argument("sender_id", None))})
            return
        self.finish({"data": {"text": text, "predict": 1}})

    def post(self) -> None:
        texts = json.loads(self.request.body)["texts"]
        self.finish({"data": [{"predict": 1} for _ in texts]})


class ServerThread:
    """A Tornado app on 127.0.0.1 in its own thread and event loop."""

    def __init__(self, delay: float = 0.0, serial: bool = False, fail: bool = False,
                 judge: Callable[[str, str | None], dict[str, Any]] | None = None) -> None:
        """``judge(text, sender_id)``: the item GET /predict answers (default ``{"text", "predict"}``)."""
        self.settings: dict[str, Any] = {"delay": delay, "fail": fail, "seen": [], "serial": serial, "judge": judge}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.port = 0

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        settings = dict(self.settings)
        if settings.pop("serial"):
            settings["lock"] = asyncio.Lock()
        settings["seen"] = self.settings["seen"]
        app = tornado.web.Application([(r"/predict", Predict)], **settings)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        self._ready.set()
        await self._stop.wait()
        server.stop()

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
