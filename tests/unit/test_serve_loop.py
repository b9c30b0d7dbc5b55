"""--event-loop (antispam/runtime/service.py): which runner each worker uses."""

from __future__ import annotations

import asyncio
import sys

import pytest

from antispam.errors import UserError
from antispam.runtime.service import event_loop_runner


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_asyncio_is_the_standard_loop() -> None:
    assert event_loop_runner("asyncio") is asyncio.run
    assert event_loop_runner("asyncio")(_loop_module()).startswith("asyncio")


def test_auto_and_uvloop_run_on_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")  # a dependency of the package (not on Windows)
    for choice in ("auto", "uvloop"):
        assert event_loop_runner(choice)(_loop_module()).startswith("uvloop")


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    assert event_loop_runner("auto") is asyncio.run
    with pytest.raises(UserError, match="uvloop package is not installed"):
        event_loop_runner("uvloop")
