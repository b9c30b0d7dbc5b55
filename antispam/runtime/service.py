"""The order of a start of ``antispam serve``: check everything that can fail once (settings,
exposure, keys file, policies file, event loop, the local backend's packages), bind the
listening sockets, fork the workers (``--workers N``), and only then create the backend and the
app in each worker, because TensorFlow's runtime does not survive a fork once initialized and
jieba's 100 MB would be loaded N+1 times (rule 7 of docs/architecture.md).

With several workers the parent forwards a stop signal to each one and exits 0 once all have.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Coroutine

from antispam.config import ServeConfig, check_serve_config
from antispam.errors import UserError
from antispam.runtime.exposure import check_exposure
from antispam.runtime.sockets import bind_worker_sockets, display_url
from antispam.runtime.supervisor import Supervisor
from antispam.runtime.worker import serve

log = logging.getLogger("antispam.serve")  # the name the service's start and stop lines always had


def run(config: ServeConfig) -> int:
    """Serve until stopped; the exit code (0 after a clean stop). A setting or file that cannot
    work is a :class:`UserError` before anything is bound or forked."""
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
