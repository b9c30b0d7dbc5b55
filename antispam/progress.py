"""Progress for long jobs: a tqdm bar on a terminal, plain periodic log lines everywhere else.

A bar redraws itself with carriage returns; written into a log file (the nightly job's, CI's)
that is thousands of lines of noise. So a bar is drawn only when stderr is a terminal; otherwise
the same progress is logged as a line every 10% of the way (and at the end).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger("antispam.progress")


class LogProgress:
    """The part of tqdm's interface the project uses, reported as log lines."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.postfix = ""
        self._next_report = self._step()

    def _step(self) -> int:
        return max(self.total // 10, 1)

    def update(self, count: int = 1) -> None:
        self.n += count
        if self.n >= self._next_report and self.n < self.total:
            self._next_report = self.n + self._step()
            self._report()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        self._report()

    def _report(self) -> None:
        done = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        log.info("%s: %s%s", self.desc, done, f" ({self.postfix})" if self.postfix else "")


class _Silent(LogProgress):
    def _report(self) -> None:
        pass


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True) -> Any:
    """A tqdm bar when ``enabled`` and stderr is a terminal, else :class:`LogProgress`."""
    if not enabled:
        return _Silent(total, desc, unit)
    if sys.stderr.isatty():
        try:
            from tqdm.auto import tqdm
        except ModuleNotFoundError:  # optional: tqdm comes with the [train] extra, not the core install
            return LogProgress(total, desc, unit)
        return tqdm(total=total, desc=desc, unit=unit, leave=True, dynamic_ncols=True)
    return LogProgress(total, desc, unit)
