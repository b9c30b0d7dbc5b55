"""The REST backend's keep-alive HTTP client against loopback servers that count, drop and misbehave."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest
import tornado.httpserver
import tornado.testing
import tornado.web

from antispam.backends.http_pool import ConnectionDropped, KeepAliveClient, PoolTimeout
from tests.helpers.timing import within


class CountingServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server, counting the connections it accepts and keeping their streams."""

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.accepted = 0
        self.streams: list[Any] = []

    def handle_stream(self, stream: Any, address: Any) -> None:
        self.accepted += 1
        self.streams.append(stream)
        super().handle_stream(stream, address)

    def drop_all(self) -> None:
        for stream in self.streams:
            stream.close()


class Echo(tornado.web.RequestHandler):
    def post(self) -> None:
        self.finish(b"got " + str(len(self.request.body)).encode())

    def get(self) -> None:
        if self.get_argument("close", None):
            self.set_header("Connection", "close")
        self.finish(b"hello")


class Slow(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s")))
        self.finish(b"late")


def with_server(scenario: Callable[[CountingServer, str], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        sock, port = tornado.testing.bind_unused_port()
        server = CountingServer(tornado.web.Application([(r"/echo", Echo), (r"/slow", Slow)]))
        server.add_sockets([sock])
        try:
            return await scenario(server, f"http://127.0.0.1:{port}")
        finally:
            server.stop()
            server.drop_all()

    return asyncio.run(main())


def test_many_sequential_requests_share_one_connection() -> None:
    async def scenario(server: CountingServer, url: str) -> None:
        client = KeepAliveClient(url)
        try:
            for i in range(200):
                answer = await client.fetch("POST", "/echo", body=b"x" * i, timeout=5)
                assert (answer.code, answer.body) == (200, b"got %d" % i)
                answer = await client.fetch("GET", "/echo", timeout=5)
                assert answer.body == b"hello"
        finally:
            client.close()
        assert server.accepted == 1 and client.opened == 1 and client.reused == 399

    with_server(scenario)


def test_concurrent_requests_open_at_most_max_connections() -> None:
    async def scenario(server: CountingServer, url: str) -> None:
        client = KeepAliveClient(url, max_connections=3)
        try:
            for _ in range(5):
                answers = await asyncio.gather(*(client.fetch("GET", "/slow?s=0.01", timeout=5) for _ in range(12)))
                assert all(a.body == b"late" for a in answers)
        finally:
            client.close()
        assert server.accepted == client.opened == 3

    with_server(scenario)


def test_connections_the_server_dropped_while_idle_are_replaced_without_a_failed_request() -> None:
    async def scenario(server: CountingServer, url: str) -> None:
        client = KeepAliveClient(url, max_connections=4)
        try:
            await asyncio.gather(*(client.fetch("GET", "/slow?s=0.01", timeout=5) for _ in range(4)))
            assert client.idle_connections == 4
            server.drop_all()  # the server closes every keep-alive connection
            await asyncio.sleep(0.05)
            for _ in range(20):
                assert (await client.fetch("GET", "/echo", timeout=5)).code == 200
        finally:
            client.close()
        assert server.accepted == 5  # four, then one new one for the sequential requests
        assert client.retried == 0  # the dropped ones were found closed before use, none was tried

    with_server(scenario)


class RawServer:
    """A socket server whose connections each answer ``answers`` requests, then close on the next."""

    def __init__(self, answers: int) -> None:
        self.answers = answers
        self.accepted = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            for _ in range(self.answers):
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next request arrives: close without answering
            self.requests += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run(self, scenario: Callable[[str], Awaitable[Any]]) -> Any:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await scenario(f"http://127.0.0.1:{port}")
        finally:
            server.close()


def test_a_keep_alive_connection_closed_as_the_request_arrives_is_retried_on_a_new_one() -> None:
    """The race no idle check can see: the server closes just as the next request goes out."""
    server = RawServer(answers=3)

    async def scenario(url: str) -> None:
        client = KeepAliveClient(url)
        try:
            for _ in range(9):
                answer = await client.fetch("GET", "/", timeout=5)
                assert (answer.code, answer.body) == (200, b"ok")
        finally:
            client.close()
        # 3 answers per connection; requests 4 and 7 went out on a dropped one and were resent.
        assert (client.opened, client.retried) == (3, 2)

    asyncio.run(server.run(scenario))
    assert server.accepted == 3


def test_a_fresh_connection_that_closes_unanswered_fails_once_without_a_retry_loop() -> None:
    server = RawServer(answers=0)

    async def scenario(url: str) -> None:
        client = KeepAliveClient(url)
        try:
            with pytest.raises((ConnectionDropped, ConnectionError)):
                await client.fetch("GET", "/", timeout=5)
        finally:
            client.close()
        assert (client.opened, client.retried) == (1, 0)

    asyncio.run(server.run(scenario))
    assert server.requests == 1


def test_connection_close_answers_are_not_kept() -> None:
    async def scenario(server: CountingServer, url: str) -> None:
        client = KeepAliveClient(url)
        try:
            for _ in range(3):
                assert (await client.fetch("GET", "/echo?close=1", timeout=5)).body == b"hello"
            assert client.idle_connections == 0
        finally:
            client.close()
        assert server.accepted == 3

    with_server(scenario)


@pytest.mark.timing
def test_the_deadline_covers_the_answer_and_the_pool_recovers() -> None:
    async def scenario(server: CountingServer, url: str) -> None:
        client = KeepAliveClient(url)
        loop = asyncio.get_running_loop()
        try:
            await client.fetch("GET", "/echo", timeout=5)
            started = loop.time()
            with pytest.raises(PoolTimeout):
                await client.fetch("GET", "/slow?s=0.5", timeout=0.1)
            assert 0.09 <= loop.time() - started < within(0.4)
            assert client.idle_connections == 0  # the timed-out connection was closed
            assert (await client.fetch("GET", "/echo", timeout=5)).body == b"hello"
        finally:
            client.close()
        assert server.accepted == 2

    with_server(scenario)


def test_close_fails_requests_in_flight_as_dropped_connections() -> None:
    async def scenario(server: CountingServer, url: str) -> None:
        client = KeepAliveClient(url)
        await client.fetch("GET", "/echo", timeout=5)  # one kept connection: the next is a reused one
        pending = asyncio.ensure_future(client.fetch("GET", "/slow?s=0.5", timeout=5))
        await asyncio.sleep(0.05)
        client.close()
        with pytest.raises(ConnectionError):
            await pending
        with pytest.raises(RuntimeError):
            await client.fetch("GET", "/echo", timeout=5)

    with_server(scenario)


def test_a_malformed_answer_is_a_failed_request() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = KeepAliveClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        try:
            with pytest.raises(OSError):
                await client.fetch("GET", "/", timeout=2)
            assert client.idle_connections == 0
        finally:
            client.close()
            server.close()

    asyncio.run(scenario())


def test_a_refused_connection_is_an_os_error() -> None:
    sock, port = tornado.testing.bind_unused_port()
    sock.close()

    async def scenario() -> None:
        client = KeepAliveClient(f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(OSError):
                await client.fetch("GET", "/", timeout=2)
        finally:
            client.close()

    asyncio.run(scenario())


def test_only_http_urls() -> None:
    with pytest.raises(ValueError):
        KeepAliveClient("ftp://127.0.0.1:21")
