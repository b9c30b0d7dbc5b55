"""Tornado's ``HTTPServer`` as the service runs it: its own protocol errors answered in the JSON
error shape, and the head, body and timeout limits that go with the app's."""

from __future__ import annotations

import json
from typing import Any

import tornado.httpserver
import tornado.iostream

from antispam.config import ServeConfig
from antispam.errors import error_body

# Tornado answers a request it cannot parse (request line, header lines, chunk framing) with
# exactly these bytes, before any handler exists; HTTPServer below sends the JSON error instead.
_TORNADO_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_JSON_400_BODY = json.dumps(error_body("bad_request", "malformed HTTP request (request line, "
                                       "headers or body framing)")).encode()
_JSON_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=UTF-8\r\n"
             b"Content-Length: " + str(len(_JSON_400_BODY)).encode() + b"\r\nConnection: close\r\n\r\n"
             + _JSON_400_BODY)


class HTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTPServer, except that its own protocol errors are JSON too.

    When Tornado's HTTP/1 reader rejects a message before a handler could (a request line or
    header line it cannot parse, a bad chunk size), it writes a bare ``400 Bad Request`` to the
    stream and closes it. Each connection's stream here swaps those exact bytes for the JSON
    error shape (``bad_request``); everything else goes through untouched. Heads past the hard
    cap of :func:`server_options` and timeouts still end with the connection closed, as there is
    nothing to answer.
    """

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple) -> None:
        write = stream.write

        def write_json_errors(data: bytes | memoryview, *args: Any, **kwargs: Any) -> Any:
            if type(data) is bytes and data == _TORNADO_BARE_400:
                data = _JSON_400
            return write(data, *args, **kwargs)

        stream.write = write_json_errors  # type: ignore[method-assign]
        super().handle_stream(stream, address)


def server_options(config: ServeConfig) -> dict[str, Any]:
    """``HTTPServer`` settings that go with the app.

    * Heads (request line and headers) are read up to a hard cap above the project's own limits
      (``max_url_bytes`` + ``max_header_bytes``, twice over, plus 64 KiB), so that a head over
      those limits reaches a handler and is answered 414/431 in JSON; Tornado closes the
      connection only past the cap.
    * Bodies: the handlers answer 413 at ``max_body_bytes``; Tornado's own cut (twice that) is
      a backstop.
    * ``body_timeout``: the whole body must arrive within ``body_timeout_s`` (a client that
      trickles it is cut); ``idle_connection_timeout``: idle keep-alive connections and slow heads.
    """
    return {
        "max_header_size": 2 * (config.max_url_bytes + config.max_header_bytes) + 65536,
        "max_body_size": 2 * config.max_body_bytes + 65536,
        "body_timeout": config.body_timeout_s,
        "idle_connection_timeout": config.idle_timeout_s,
    }
