"""The parent process of ``antispam serve --workers N``: forks the workers after the sockets
are bound, restarts one that dies, and stops them all on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from typing import Any

log = logging.getLogger("antispam.serve")  # the name the service's start and stop lines always had


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
