"""Where a busy service spends its time: py-spy samples of the workers, grouped by component.

``antispam bench --profile`` samples each worker process of the service with py-spy
(``pip install py-spy``; ``--nonblocking``, so the service is never paused) during the saturation
rows, and sums the samples into a few components: jieba, the TensorFlow call, featurizing, JSON,
Tornado's HTTP code, the asyncio loop, metrics, our own code. A stack is charged to the innermost
frame that belongs to a component, so a regex called by jieba counts as jieba. Raw stacks are
kept (collapsed format, one file per process) for a flame graph.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from antispam.errors import UserError

# (component, path fragments), matched against each frame's file from the innermost frame out.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("jieba (segmentation)", ("jieba/",)),
    ("TensorFlow (model call)", ("tensorflow/", "keras/", "tf_keras/")),
    ("featurize (numpy gather)", ("antispam/features.py", "numpy/")),
    ("normalize (NFKC, regex)", ("antispam/text.py",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("JSON", ("json/",)),
    ("Tornado (HTTP parsing, handlers, writes)", ("tornado/",)),
    ("antispam app/cache/batcher", ("antispam/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
    ("threads and executors", ("concurrent/futures/", "threading.py", "queue.py")),
]
IDLE = "idle (waiting in epoll/locks)"
OTHER = "other"


def find_pyspy() -> str | None:
    """py-spy on PATH, or beside this Python (a virtualenv's bin/ is often not on PATH)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def require_pyspy() -> str:
    path = find_pyspy()
    if path is None:
        raise UserError("--profile needs py-spy (pip install py-spy)")
    return path


def start(pids: Iterable[int], seconds: float, out_prefix: Path,
          rate: int = 100) -> list[tuple[subprocess.Popen, Path]]:
    """Start one py-spy per process; returns (process, output file) pairs."""
    pyspy = require_pyspy()
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    running = []
    for pid in pids:
        path = out_prefix.with_name(f"{out_prefix.name}.{pid}.txt")
        proc = subprocess.Popen([pyspy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                                 "--rate", str(rate), "--format", "raw", "--output", str(path), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        running.append((proc, path))
    return running


def finish(running: list[tuple[subprocess.Popen, Path]], timeout: float = 60.0) -> list[Path]:
    done = []
    for proc, path in running:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if path.is_file():
            done.append(path)
    return done


def _frame_file(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``path/to/file.py``."""
    if not frame.endswith(")") or " (" not in frame:
        return ""
    return frame[frame.rindex(" (") + 2:-1].rsplit(":", 1)[0]


def classify(stack: list[str]) -> str:
    if stack and stack[-1].startswith(("EpollSelector.select ", "select ")) and "selectors.py" in stack[-1]:
        return IDLE
    if stack and stack[-1].startswith(("Condition.wait ", "_worker ")):
        return IDLE
    for frame in reversed(stack):
        path = _frame_file(frame)
        for component, fragments in COMPONENTS:
            if any(fragment in path for fragment in fragments):
                return component
    return OTHER


def components(paths: Iterable[Path]) -> dict[str, float]:
    """Share of samples per component (0..1) over all the given collapsed-stack files."""
    counts: collections.Counter[str] = collections.Counter()
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            counts[classify(stack.split(";"))] += int(count)
    total = sum(counts.values())
    return {name: n / total for name, n in counts.most_common()} if total else {}


def format_components(title: str, shares: dict[str, float]) -> str:
    lines = [f"profile of {title} (share of py-spy samples of the service's Python threads):"]
    lines += [f"  {share:6.1%}  {name}" for name, share in shares.items()]
    return "\n".join(lines)
