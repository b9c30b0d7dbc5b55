"""Give the memory of aborted uploads back to the OS (glibc's ``malloc_trim``, through ctypes).

An aborted upload frees megabytes in 64 KiB pieces scattered through the heap; glibc keeps such
holes as resident memory, and a burst of aborted uploads would leave RSS hundreds of MB higher
although nothing of them is alive (scripts/abuse.py). At most one trim a second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

# An aborted upload of at least this much gives the freed memory back to the OS (see trim_heap).
TRIM_AFTER_BYTES = 256 * 1024
_TRIM_INTERVAL_SECONDS = 1.0
_last_trim = 0.0
_trim_pending = False
_malloc_trim: Any = None


def trim_heap() -> None:
    """``malloc_trim(0)`` soon: at once, or at the end of the current one-second interval if
    it ran less than a second ago (glibc only; elsewhere nothing)."""
    global _trim_pending
    if _trim_pending:
        return
    wait = _last_trim + _TRIM_INTERVAL_SECONDS - time.monotonic()
    if wait <= 0:
        _trim_now()
        return
    _trim_pending = True
    asyncio.get_running_loop().call_later(wait, _trim_now)


def _trim_now() -> None:
    global _last_trim, _malloc_trim, _trim_pending
    _trim_pending = False
    _last_trim = time.monotonic()
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)
