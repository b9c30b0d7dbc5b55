"""CPU time and memory of the service process tree, read from ``/proc``.

``antispam serve --workers N`` forks N children that do the work, so the service is the whole
tree under the launched process, not the one PID. CPU is the sum of user+system time of the
tree (so two busy workers read 200%); memory is reported both as RSS (what ``ps`` shows, counting
pages shared by forked workers once per process) and as PSS (shared pages split between the
sharers: the honest total for forked workers). Linux only, no dependencies.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads' children)."""
    out: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that still exist."""
    seen: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        if current in seen or not Path(f"/proc/{current}").exists():
            continue
        seen.append(current)
        stack.extend(children(current))
    return seen


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may hold spaces and parentheses; fields resume after the last ')'.
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * PAGE_SIZE


def pss_bytes(pid: int) -> int | None:
    """Proportional set size, or None when the kernel does not expose it to us."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def host_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat), to see who else was busy."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass
class Snapshot:
    at: float  # time.monotonic()
    pids: list[int]
    cpu_s: float
    rss: int
    pss: int | None
    host_busy_s: float = 0.0


def snapshot(pid: int) -> Snapshot:
    pids = tree(pid)
    pss_values = [pss_bytes(p) for p in pids]
    pss = None if any(v is None for v in pss_values) else sum(v or 0 for v in pss_values)
    return Snapshot(time.monotonic(), pids, sum(cpu_seconds(p) for p in pids),
                    sum(rss_bytes(p) for p in pids), pss, host_busy_seconds())


@dataclass
class Usage:
    cpu_percent: float  # of one core; 2 busy workers read ~200
    rss_mb: float  # at the end of the window
    rss_peak_mb: float
    pss_mb: float | None
    processes: int
    host_cpu_percent: float = 0.0  # every process on the machine (100 = one core)


@dataclass
class Sampler:
    """Samples the tree in a background thread while a load runs; ``stop()`` gives the usage."""

    pid: int
    interval: float = 0.5
    samples: list[Snapshot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "Sampler":
        self.samples.append(snapshot(self.pid))
        self._thread = threading.Thread(target=self._run, name="procstats", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(snapshot(self.pid))

    def stop(self) -> Usage:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append(snapshot(self.pid))
        return usage(self.samples)


def usage(samples: list[Snapshot]) -> Usage:
    """CPU% between the first and last sample, memory at the last, peak over all.

    A worker that exits between samples takes its CPU time with it, so CPU is summed from the
    per-interval increases rather than from last-minus-first.
    """
    first, last = samples[0], samples[-1]
    wall = max(1e-9, last.at - first.at)
    cpu = sum(max(0.0, b.cpu_s - a.cpu_s) for a, b in zip(samples, samples[1:]))
    mb = 1024 * 1024
    return Usage(
        cpu_percent=100.0 * cpu / wall,
        rss_mb=last.rss / mb,
        rss_peak_mb=max(s.rss for s in samples) / mb,
        pss_mb=None if last.pss is None else last.pss / mb,
        processes=len(last.pids),
        host_cpu_percent=100.0 * max(0.0, last.host_busy_s - first.host_busy_s) / wall,
    )


def listening_pid(port: int) -> int | None:
    """The topmost process listening on TCP ``port`` (for ``bench --url``), if we can see it.

    Finds the socket inode in ``/proc/net/tcp{,6}`` and the processes holding it; with forked
    workers several hold it, and the one whose parent is not among them is the root of the tree.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    holders: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    stat = (entry / "stat").read_text()
                    holders[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
                    break
        except OSError:
            continue
    roots = [pid for pid, parent in holders.items() if parent not in holders]
    return min(roots) if roots else None
