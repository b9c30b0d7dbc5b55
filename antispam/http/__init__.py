"""The HTTP layer's shared parts, below :mod:`antispam.app` and :mod:`antispam.console`.

:mod:`antispam.app` builds the application (``make_app``, the route table and its roles); the
modules here hold what every route shares, so that the app and the console both import them and
neither imports the other back (issue 22: no import cycles):

- :mod:`antispam.http.services`: :class:`~antispam.http.services.Services`, what a handler may use;
- :mod:`antispam.http.base`: ``BaseHandler`` (edge limits, keys, errors as JSON) and
  ``JsonBodyHandler``;
- :mod:`antispam.http.heap`: giving the memory of aborted uploads back to the OS.
"""
