"""``antispam serve`` as a real subprocess for end-to-end tests (test equipment only).

One wrapper for every test that needs the real command: port 0 (the service prints the URL it
got), no feedback store unless asked for, its own process group so a kill reaches every worker,
and stderr collected by a thread so a full pipe never blocks the service.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

READY = re.compile(r"ready on (http://127\.0\.0\.1:(\d+))")


class ServeProcess:
    def __init__(self, *args: str, cwd: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "antispam", "serve", "--host", "127.0.0.1", "--port", "0",
             "--feedback-db", "", *args],
            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        self.lines: list[str] = []
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, count: int = 1, timeout: float = 120.0) -> str:
        """The URL of the first ready line, once ``count`` processes (workers) said ready."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready = READY.findall(self.log)
            if len(ready) >= count:
                url, port = ready[0]
                self.port = int(port)
                return url
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log}")
            time.sleep(0.1)
        raise AssertionError(f"serve not ready in {timeout} s:\n{self.log}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and return the exit code (TimeoutExpired if it does not exit)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Clean-up: SIGTERM if still running, SIGKILL to the group if it does not end in 30 s."""
        if self.proc.poll() is None:
            try:
                self.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(5)
