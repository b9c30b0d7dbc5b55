"""``antispam serve``: run the HTTP service.

This module only parses: its flags are :class:`~antispam.config.ServeConfig`'s, resolved with
flag > ``ANTISPAM_*`` > default, and the server runtime (checks, sockets, workers, shutdown) is
:func:`antispam.runtime.service.run`. Importing it imports nothing heavy.
"""

from __future__ import annotations

import argparse

from antispam.config import ServeConfig, add_arguments, resolve
from antispam.runtime.service import run as run_service


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the HTTP API (local SavedModel or TF Serving backend)",
        description="Serve GET/POST /predict, POST /feedback, /healthz, /readyz, /models, /metrics "
        "and /openapi.json, on 127.0.0.1 unless --host says otherwise (another address with API keys "
        "off needs --allow-open). Every flag also reads an environment variable (shown in its help); "
        "a flag wins over the variable. Logs one line with the URL when ready.",
    )
    add_arguments(p, ServeConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_service(resolve(ServeConfig, args))
