"""The moderator's console (issue 13): a page at ``/console`` served by the same Tornado app.

The page (``static/``: plain HTML, CSS and JavaScript, no build step, nothing from elsewhere) uses
the public API (``/predict``, ``/feedback``, ``/models``) and a few read-only JSON endpoints of
its own under ``/console/api/`` (:mod:`antispam.console.handlers`): the service's settings, the
metrics and training report of a version on disk, the promotion log, and a summary of the last
minutes computed in-process from the app's metrics (:mod:`antispam.console.live`).

:func:`antispam.app.make_app` registers :func:`antispam.console.handlers.console_routes` in one
place; nothing else in the app knows about the console.
"""
