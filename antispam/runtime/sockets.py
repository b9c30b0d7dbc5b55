"""The listening sockets of ``antispam serve``, bound in the parent before any fork (rule 7 of
docs/architecture.md), and the URL the log shows for them."""

from __future__ import annotations

import socket


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


def display_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"
