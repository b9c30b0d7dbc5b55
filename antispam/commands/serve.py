"""``antispam serve``: run the HTTP service.

Order matters: parse flags and bind the listening sockets in the parent, then fork the workers
(``--workers N``), and only then create the backend and the app in each worker, because
TensorFlow's runtime does not survive a fork once initialized and jieba's 100 MB would be loaded
N+1 times. Importing this module imports nothing heavy.

Shutdown (SIGTERM or SIGINT): stop accepting connections, answer requests already in flight
(new requests on open connections get 503 ``shutting_down``), close the backend, exit 0. With
several workers the parent forwards the signal to each one and exits 0 once all have.

Exposure (issue 21): the default address is 127.0.0.1; another address with API keys off is
refused unless ``--allow-open`` (:func:`check_exposure`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from typing import Any, Callable, Coroutine

from antispam.config import ServeConfig, add_arguments, check_serve_config, from_args
from antispam.errors import UserError

log = logging.getLogger("antispam.serve")

# Seconds a worker may spend answering requests in flight after a stop signal, beyond the
# deadline those requests already have.
DRAIN_EXTRA_SECONDS = 5.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the HTTP API (local SavedModel or TF Serving backend)",
        description="Serve GET/POST /predict, POST /feedback, /healthz, /readyz, /models, /metrics "
        "and /openapi.json, on 127.0.0.1 unless --host says otherwise (another address with API keys "
        "off needs --allow-open). Every flag also reads an environment variable (shown in its help); "
        "a flag wins over the variable. Logs one line with the URL when ready.",
    )
    add_arguments(p, ServeConfig)
    p.set_defaults(run=run)


def make_backend(config: ServeConfig) -> Any:
    """The factory decides (local | grpc | rest | auto); without it, only the local backend."""
    try:
        from antispam.backends.factory import make_backend as factory
    except ModuleNotFoundError as exc:
        if exc.name != "antispam.backends.factory":
            raise
        if config.backend not in ("local", "auto"):
            raise UserError(f"the {config.backend} backend is not available in this installation") from None
        from antispam.backends.local import LocalBackend

        return LocalBackend(config)
    return factory(config)


def make_feedback_store(config: ServeConfig) -> Any:
    if not config.feedback_db:
        return None
    try:
        from antispam.feedback import FeedbackStore
    except ModuleNotFoundError as exc:
        if exc.name != "antispam.feedback":
            raise
        log.warning("no feedback store in this installation; POST /feedback answers 503")
        return None
    return FeedbackStore(config.feedback_db, max_rows=config.feedback_max_rows,
                         max_bytes=config.feedback_max_bytes, daily_count=config.feedback_daily_count,
                         daily_bytes=config.feedback_daily_bytes, mask_contacts=config.feedback_mask_contacts)


def run(args: argparse.Namespace) -> int:
    try:
        config = from_args(ServeConfig, args)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check_serve_config(config)
    check_exposure(config)
    if config.keys_file:  # a bad keys file: one message before binding, not one per worker
        from antispam.keys import KeyRing

        log.info("API keys on: %d keys in %s", len(KeyRing(config.keys_file).keys), config.keys_file)
    from antispam.policies import load_policies  # a bad policies file: one message, before forking

    load_policies(config.policies_file, config.review_threshold, config.block_threshold,
                  config.min_tokens_to_block)
    loop_runner = event_loop_runner(config.event_loop)  # uvloop asked for but missing: one message
    if config.backend == "local":  # before binding and forking: one message, not one per worker
        from antispam.backends.factory import require_local

        require_local()
    try:
        groups = bind_worker_sockets(config.host, config.port, config.workers)
    except OSError as exc:
        raise UserError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    sockets = groups[0]
    port = sockets[0].getsockname()[1]
    worker: int | None = None
    if config.workers > 1:
        supervisor = Supervisor(config.workers, groups)
        log.info("starting %d workers on %s (%s)", config.workers, display_url(config.host, port),
                 "a listening socket each, SO_REUSEPORT" if len(groups) > 1 else "one shared listening socket")
        worker = supervisor.run()
        if worker is None:  # the parent, after every worker has exited
            return supervisor.exit_code
        sockets = groups[worker] if len(groups) > 1 else groups[0]
    return loop_runner(serve(config, sockets, port, worker))


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one ("" and 0.0.0.0 are every interface).
    A name is resolved; one that does not resolve counts as not loopback (binding then fails)."""
    import ipaddress

    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in found)


def check_exposure(config: ServeConfig) -> None:
    """Issue 21: with keys off every route is open (``/feedback`` writes the training store,
    ``/models`` and ``/lists`` show the setup), so such a service listens on loopback only unless
    the operator says ``--allow-open``."""
    if config.keys_file or config.allow_open or is_loopback(config.host):
        return
    raise UserError(f"refusing to listen on {config.host or 'every interface'} with API keys off: every "
                    "route, /feedback included, would be open to the network. Turn keys on "
                    "(--keys-file / ANTISPAM_KEYS_FILE, then `antispam keys add`), listen on 127.0.0.1 "
                    "(the default), or pass --allow-open (ANTISPAM_ALLOW_OPEN=1) if that is really meant")


def bind_worker_sockets(host: str, port: int, workers: int) -> list[list[socket.socket]]:
    """The listening sockets, bound in the parent before any fork: one group per worker with
    ``SO_REUSEPORT`` where the platform has it (Linux), else one group that all workers share.

    Why: with one shared socket, whichever worker wakes first accepts a whole burst of new
    connections (Tornado accepts up to 128 per wake-up), so a client's keep-alive pool can land
    on one worker while the other idles. With a socket per worker in one reuse-port group, the
    kernel spreads connections over the workers by a hash of their addresses (issue 14). Each
    worker accepts on its own group only; the parent keeps all of them, so connections hashed to
    a worker that died wait in its backlog for the restarted worker instead of being refused.
    """
    import tornado.netutil

    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        return [tornado.netutil.bind_sockets(port, host)]
    first = tornado.netutil.bind_sockets(port, host, reuse_port=True)
    port = first[0].getsockname()[1]  # port 0: the others join the port the first one got
    groups = [first]
    try:
        for _ in range(workers - 1):
            groups.append(tornado.netutil.bind_sockets(port, host, reuse_port=True))
    except OSError:
        for group in groups:
            for sock in group:
                sock.close()
        raise
    return groups


def event_loop_runner(choice: str) -> Callable[[Coroutine[Any, Any, int]], int]:
    """``asyncio.run`` or ``uvloop.run`` for ``--event-loop``; each worker makes its loop after
    the fork. uvloop (libuv, a MagicStack project) runs Tornado's sockets, timers, signal
    handlers and the backends' thread pools unchanged; it is here only because it costs less
    CPU per request (issue 14). ``auto``: uvloop when the package is installed."""
    if choice == "asyncio":
        return asyncio.run
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise UserError("--event-loop uvloop: the uvloop package is not installed "
                            "(pip install uvloop), or use --event-loop asyncio") from None
        return asyncio.run
    return uvloop.run


def display_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


async def serve(config: ServeConfig, sockets: list[socket.socket], port: int,
                worker: int | None = None) -> int:
    """One worker's life: build everything, serve until a stop signal, drain, close."""
    from antispam.app import HTTPServer, cap_log_messages, make_app, server_options

    started = time.monotonic()
    cap_log_messages()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    backend = make_backend(config)
    store = make_feedback_store(config)
    try:
        app = make_app(config, backend, feedback_store=store)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    server = HTTPServer(app, **server_options(config))
    server.add_sockets(sockets)
    who = f" (worker {worker}, pid {os.getpid()})" if worker is not None else f" (pid {os.getpid()})"
    url = display_url(config.host, port)
    log.info("listening on %s%s; starting the %s backend (event loop %s)", url, who, config.backend,
             type(loop).__module__.partition(".")[0])

    starting = loop.create_task(backend.start())
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    freeze_heap()
    if starting.done():
        if starting.exception() is not None:
            error = starting.exception()
            log.error("the %s backend failed to start: %s", config.backend, error, exc_info=error)
            stop.set()
            code = 1
        elif backend.ready:
            log.info("ready on %s%s: backend %s, model %s version %s, started in %.1f s", url, who,
                     backend.name, config.model_name, backend.current_version,
                     time.monotonic() - started)
        else:
            log.info("ready on %s%s: backend %s, no model version of %s yet (/readyz answers 503 "
                     "until one appears), started in %.1f s", url, who, backend.name,
                     config.model_name, time.monotonic() - started)
    else:
        starting.cancel()
    freezer = loop.create_task(keep_heap_frozen(backend, max(config.poll_seconds, 1.0)))
    await stopping
    freezer.cancel()

    services = app.services  # type: ignore[attr-defined]
    log.info("stopping%s: no new connections, %d requests in flight", who, services.inflight)
    server.stop()
    drained = await services.drain(config.deadline_ms / 1000.0 + DRAIN_EXTRA_SECONDS)
    if not drained:
        log.warning("%d requests still in flight after the drain period; closing anyway",
                    services.inflight)
    try:
        await asyncio.wait_for(server.close_all_connections(), 5.0)
    except asyncio.TimeoutError:
        log.warning("some connections did not close in time")
    await backend.close()
    close = getattr(store, "close", None)
    if callable(close):
        close()
    log.info("stopped%s", who)
    return code


def freeze_heap() -> None:
    """Hide everything alive now (TensorFlow, the model, jieba's dictionary) from the cyclic GC.

    With TensorFlow loaded a full collection walks millions of objects and holds the event loop
    for ~200 ms; a maximal request allocates enough (300,000 tokens) to trigger several. Frozen
    objects are skipped, so a collection only walks what requests allocate (issue 11:
    /healthz answers within 50 ms while a maximal request is scored).
    """
    gc.collect()
    gc.freeze()


async def keep_heap_frozen(backend: Any, interval: float) -> None:
    """Freeze again after each version switch (unfreezing first, so the old version's objects
    can be collected: one ~200 ms collection per switch)."""
    version = backend.current_version
    while True:
        await asyncio.sleep(interval)
        if backend.current_version != version:
            version = backend.current_version
            gc.unfreeze()
            freeze_heap()


class Supervisor:
    """Forks the workers after the sockets are bound and keeps them running.

    Like ``tornado.process.fork_processes`` (restart a worker that dies abnormally), plus what it
    lacks for a clean stop: SIGTERM/SIGINT to the parent reach every worker, and the parent exits
    0 once all workers have stopped cleanly.
    """

    MAX_RESTARTS = 10

    def __init__(self, count: int, groups: list[list[socket.socket]]) -> None:
        self.count = count
        # The parent keeps the listening sockets only to hand them to restarted workers; on stop
        # it closes them so new connections are refused instead of queueing where no one accepts.
        # One group per worker (SO_REUSEPORT), or one group for all.
        self.groups = groups
        self.sockets = [sock for group in groups for sock in group]
        self.children: dict[int, int] = {}  # pid -> worker index
        self.stopping = False
        self.restarts = 0
        self.exit_code = 0

    def run(self) -> int | None:
        """In a worker (first start or restart): its index. In the parent: None, once every
        worker has exited (then see :attr:`exit_code`)."""
        for index in range(self.count):
            if self._start(index):
                return index
        return self._supervise()

    def _start(self, index: int) -> bool:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            _die_with_parent(parent)
            if len(self.groups) > 1:  # only this worker's group: another's must close with it
                for other, group in enumerate(self.groups):
                    if other != index:
                        for sock in group:
                            sock.close()
            return True
        self.children[pid] = index
        return False

    def _forward(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        for sock in self.sockets:
            sock.close()
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _supervise(self) -> int | None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = self.children.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code == 0:
                log.info("worker %d (pid %d) exited", index, pid)
                continue
            if self.stopping:
                log.error("worker %d (pid %d) exited with %d while stopping", index, pid, code)
                self.exit_code = 1
                continue
            self.restarts += 1
            if self.restarts > self.MAX_RESTARTS:
                log.error("workers keep dying (%d restarts); stopping", self.restarts - 1)
                self._forward(signal.SIGTERM, None)
                self.exit_code = 1
                continue
            log.warning("worker %d (pid %d) died with %d; restarting it", index, pid, code)
            if self._start(index):
                return index
        for sock in self.sockets:
            sock.close()
        return None


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM if the supervisor is killed outright, so no worker is left orphaned."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
