"""The server runtime of ``antispam serve``, apart from its command line (as uvicorn keeps its
supervisors apart from its CLI): :mod:`antispam.commands.serve` parses the flags into a
:class:`~antispam.config.ServeConfig` and calls :func:`antispam.runtime.service.run`.

- :mod:`~antispam.runtime.service`: the order of a start: checks, bind, fork, serve;
- :mod:`~antispam.runtime.exposure`: the refusal to listen openly with API keys off (issue 21);
- :mod:`~antispam.runtime.sockets`: the listening sockets, bound before any fork;
- :mod:`~antispam.runtime.supervisor`: the parent of ``--workers N``: forks, restarts, stops;
- :mod:`~antispam.runtime.worker`: one worker's life (backend, app, drain) and its frozen heap.

Importing any of them imports nothing heavy: Tornado, the app and the backends are imported
inside the functions that use them, in the worker, after the fork.
"""
