"""An exclusive, non-blocking lock on a file, so two jobs never work on one model folder at once.

``fcntl.flock`` rather than "create the file if absent": the kernel drops the lock when the
holder dies, however it dies (kill -9, OOM), so a crashed nightly run never leaves a stale lock
that blocks every later night. The holder writes its pid and start time into the file, only so
the refusal message can say who holds it; the file itself is left in place (deleting it would
let a third process lock a different inode).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from antispam.errors import UserError


class LockBusy(UserError):
    """Another process holds the lock; the CLI exits with :attr:`exit_code` 4."""

    exit_code = 4


class FileLock:
    """``with FileLock(path, what="retrain of cnn"):`` — raise :class:`LockBusy` if held."""

    def __init__(self, path: str | os.PathLike[str], what: str = "job") -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise LockBusy(f"another {self.what} is running ({holder}; lock file {self.path}); "
                           "this run did nothing") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        return text or "holder unknown"

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
