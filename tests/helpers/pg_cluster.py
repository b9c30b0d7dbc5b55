"""A throwaway PostgreSQL cluster of a test's own (issue 23), for tests and benches that stop the
database under a running service: never the shared server .ci/run starts, which other tests use.

The same recipe as .ci/services.sh (Debian's server binaries, initdb with trust auth, loopback
only, a temporary folder, as the ``postgres`` user when run as root), but with ``fsync=on`` so an
immediate stop loses nothing a commit acknowledged, as in production. ``stop()`` is
``pg_ctl stop -m immediate`` (no checkpoint, no goodbye to clients: the nearest thing to a crash
that leaves the files), ``start()`` brings the same cluster back on the same port.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in Path(p).parent.name.split(".")
                                                                         if x.isdigit()])
    return Path(found[-1]) if found and Path(found[-1], "pg_ctl").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    """initdb + pg_ctl in a temporary folder; ``url`` is ready after :meth:`start`."""

    def __init__(self) -> None:
        binary = server_bin()
        if binary is None:
            pytest.skip("no PostgreSQL server binaries (apt-get install postgresql); .ci/run installs them")
        self.bin = binary
        self.root = Path(tempfile.mkdtemp(prefix="antispam-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}\n{done.stderr}")

    @property
    def stop_command(self) -> str:
        prefix = "runuser -u postgres -- " if os.getuid() == 0 else ""
        return f"{prefix}{self.bin / 'pg_ctl'} -D {self.data} -m immediate stop"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on "
                   "-c synchronous_commit=on -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self) -> None:
        """``pg_ctl stop -m immediate``: the server quits at once, as in a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)
