"""Issue 21: a service with API keys off listens on loopback only, unless the operator says
``--allow-open``; with keys off every route is open, ``/feedback`` included."""

from __future__ import annotations

import ipaddress
import socket

from antispam.config import ServeConfig
from antispam.errors import UserError


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one ("" and 0.0.0.0 are every interface).
    A name is resolved; one that does not resolve counts as not loopback (binding then fails)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in found)


def check_exposure(config: ServeConfig) -> None:
    """Issue 21: with keys off every route is open (``/feedback`` writes the training store,
    ``/models`` and ``/lists`` show the setup), so such a service listens on loopback only unless
    the operator says ``--allow-open``."""
    if config.keys_file or config.allow_open or is_loopback(config.host):
        return
    raise UserError(f"refusing to listen on {config.host or 'every interface'} with API keys off: every "
                    "route, /feedback included, would be open to the network. Turn keys on "
                    "(--keys-file / ANTISPAM_KEYS_FILE, then `antispam keys add`), listen on 127.0.0.1 "
                    "(the default), or pass --allow-open (ANTISPAM_ALLOW_OPEN=1) if that is really meant")
