"""The HTTP layer below :mod:`antispam.app`: the routes' handlers and what they share.

:mod:`antispam.app` builds the application (``make_app``, the route table and its roles); the
modules here hold the rest, so that the app and the console both import them and neither
imports the other back (issue 22: no import cycles):

- :mod:`antispam.http.services`: :class:`~antispam.http.services.Services`, what a handler may use;
- :mod:`antispam.http.base`: ``BaseHandler`` (edge limits, keys, errors as JSON) and
  ``JsonBodyHandler``;
- :mod:`antispam.http.predict`, :mod:`antispam.http.feedback`, :mod:`antispam.http.ops`: the
  handlers, by concern (scoring; feedback; probes, metrics, models, lists, openapi, the 404);
- :mod:`antispam.http.logs`: the access log line and the cap on log messages;
- :mod:`antispam.http.server`: Tornado's ``HTTPServer`` with JSON protocol errors, and its limits;
- :mod:`antispam.http.heap`: giving the memory of aborted uploads back to the OS.
"""
