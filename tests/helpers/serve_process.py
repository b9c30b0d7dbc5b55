"""``antispam serve`` as a real subprocess for end-to-end tests (test equipment only).

One wrapper for every test that needs the real command: port 0 (the service prints the URL it
got), no feedback store unless asked for, its own process group so a kill reaches every worker,
and stderr collected by a thread so a full pipe never blocks the service.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

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


def request(port: int, method: str, path: str, key: str | None = None, body: Any = None,
            timeout: float = 60.0) -> tuple[int, Any]:
    """One request to a service on 127.0.0.1 with an optional bearer key and JSON body; (status,
    the JSON answer). A new connection each time: the e2e tests count what each process did."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        conn.close()
