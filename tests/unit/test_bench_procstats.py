"""CPU and memory of a process tree from /proc, checked against processes we start."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from antispam.bench import procstats

BUSY = "import time\nend = time.process_time() + {secs}\nwhile time.process_time() < end: pass\n"


def test_cpu_of_a_busy_child_is_counted_through_the_tree() -> None:
    # A parent that sleeps while its child burns CPU: the tree's CPU is the child's.
    code = ("import subprocess, sys\n"
            f"subprocess.run([sys.executable, '-c', {BUSY.format(secs=0.6)!r}])\n")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        sampler = procstats.Sampler(parent.pid, interval=0.05).start()
        time.sleep(0.3)
        assert len(procstats.tree(parent.pid)) == 2
        parent.wait(timeout=20)
        usage = sampler.stop()
    finally:
        parent.kill()
    # The child's 0.6 s of CPU fall in the sampled window (minus what ran before the first sample).
    window = sampler.samples[-1].at - sampler.samples[0].at
    assert usage.cpu_percent * window / 100 > 0.3
    assert usage.rss_peak_mb > 5
    # The whole machine was at least as busy as the child (the host figure includes it).
    assert usage.host_cpu_percent >= 0.9 * usage.cpu_percent


def test_snapshot_of_this_process() -> None:
    snap = procstats.snapshot(procstats.os.getpid())
    assert snap.pids[0] == procstats.os.getpid()
    assert snap.cpu_s > 0 and snap.rss > 10 * 1024 * 1024
    assert snap.pss is None or 0 < snap.pss <= snap.rss


def test_vanished_process_reads_as_empty() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert procstats.tree(proc.pid) == []
    assert procstats.cpu_seconds(proc.pid) == 0.0 and procstats.rss_bytes(proc.pid) == 0


def test_listening_pid_finds_the_socket_owner() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert procstats.listening_pid(port) == procstats.os.getpid()
    assert procstats.listening_pid(port) is None
