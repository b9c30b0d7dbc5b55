"""Listening sockets for several workers (antispam/runtime/sockets.py): one per worker, SO_REUSEPORT."""

from __future__ import annotations

import select
import socket

import pytest

from antispam.runtime.sockets import bind_worker_sockets


def test_one_worker_gets_one_plain_socket() -> None:
    groups = bind_worker_sockets("127.0.0.1", 0, 1)
    try:
        assert len(groups) == 1 and len(groups[0]) == 1
        if hasattr(socket, "SO_REUSEPORT"):  # no other process may join a single worker's port
            assert groups[0][0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    finally:
        for sock in groups[0]:
            sock.close()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="the platform has no SO_REUSEPORT")
def test_each_worker_gets_its_own_socket_on_one_port_and_the_kernel_spreads_connections() -> None:
    groups = bind_worker_sockets("127.0.0.1", 0, 2)
    clients = []
    try:
        assert len(groups) == 2 and all(len(g) == 1 for g in groups)
        a, b = groups[0][0], groups[1][0]
        assert a.getsockname() == b.getsockname()  # port 0: the second joined the first one's port
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        port = a.getsockname()[1]
        for _ in range(40):
            clients.append(socket.create_connection(("127.0.0.1", port)))
        accepted = {0: 0, 1: 0}
        for index, listener in enumerate((a, b)):
            listener.setblocking(False)
            while select.select([listener], [], [], 0.2)[0]:
                conn, _ = listener.accept()
                conn.close()
                accepted[index] += 1
        # Every connection was accepted by one of the two, and both got some (all 40 hashing
        # to one socket has probability 2**-39).
        assert accepted[0] + accepted[1] == 40
        assert accepted[0] > 0 and accepted[1] > 0
    finally:
        for client in clients:
            client.close()
        for group in groups:
            for sock in group:
                sock.close()


def test_a_port_in_use_is_an_os_error_and_nothing_stays_bound() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        with pytest.raises(OSError):
            bind_worker_sockets("127.0.0.1", holder.getsockname()[1], 2)
    finally:
        holder.close()
