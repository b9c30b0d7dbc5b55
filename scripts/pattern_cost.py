#!/usr/bin/env python
"""What a `re:` list line costs (issue 21): Python's backtracking ``re`` against RE2, and the time
of one request at the pattern budget (``max_pattern_chars``). Prints figures; asserts nothing.

    python scripts/pattern_cost.py                 # everything, about a minute
    python scripts/pattern_cost.py --python-max 24  # stop the re run earlier

1. ``(x+x+)+y`` on a run of n digits (digits normalize to ``x``): Python's ``re`` (each n run in a
   child process, killed after --timeout seconds) and RE2 through ``antispam.lists``.
2. A request of 100 texts × 5,000 characters against 10 copies of a pattern, by the same code
   path as the service (``TermList.find`` per normalized text), for a few patterns, including one
   that matches often (each hit costs more than the scan): its pattern work (characters × RE2
   program sizes, :func:`antispam.lists.pattern_work`), the time per unit of work, and what the
   default budget (``max_pattern_work``) costs at that rate.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from antispam.config import ServeConfig  # noqa: E402
from antispam.lists import TermList, parse_terms, pattern_work  # noqa: E402
from antispam.text import normalize  # noqa: E402

PATHOLOGICAL = "(x+x+)+y"


def _python_re(n: int, out: "multiprocessing.Queue[float]") -> None:
    pattern = re.compile(PATHOLOGICAL)
    started = time.perf_counter()
    pattern.search("x" * n)
    out.put(time.perf_counter() - started)


def python_re_seconds(n: int, timeout: float) -> float | None:
    queue: multiprocessing.Queue[float] = multiprocessing.Queue()
    child = multiprocessing.Process(target=_python_re, args=(n, queue))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        return None
    return queue.get()


def re2_seconds(norm: str, terms: TermList, repeat: int = 3) -> tuple[float, int]:
    """Best time of ``terms.find`` on one normalized text (the service's per-text call)."""
    best, hits = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        hits = len(terms.find(norm))
        best = min(best, time.perf_counter() - started)
    return best, hits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python-max", type=int, default=28, help="largest n for Python's re (default 28)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a re run is killed")
    args = p.parse_args()

    print(f"1. {PATHOLOGICAL} on n digits (normalized to x), seconds")
    print(f"{'n':>6} {'python re':>12} {'RE2':>12}")
    for n in list(range(16, args.python_max + 1, 2)) + [60, 5000]:
        py = python_re_seconds(n, args.timeout) if n <= args.python_max else None
        rt, _ = re2_seconds(normalize("1" * n), parse_terms([f"re:{PATHOLOGICAL}"]))
        shown = ("not run" if n > args.python_max else f"> {args.timeout:.0f} (killed)") if py is None else f"{py:.4f}"
        print(f"{n:>6} {shown:>12} {rt:>12.6f}")

    budget = ServeConfig().max_pattern_work
    print(f"\n2. one request of 100 texts x 5,000 characters, 10 copies of a pattern; default budget {budget:,}")
    rng = random.Random(21)
    alphabet = "加微信贷款办理证件发票代开优惠领取客服热线你好今天我们 0123456789abcqv"
    texts = [normalize("".join(rng.choice(alphabet) for _ in range(5000))) for _ in range(100)]
    cases = {
        "10 x (x+x+)+y": [f"re:{PATHOLOGICAL}"] * 10,
        "10 x 办.{0,2}证 (ordinary)": ["re:办.{0,2}证"] * 10,
        "10 x (加|微|信|a|b|c).{0,30}(微信|qq|vx) (hits often)": ["re:(加|微|信|a|b|c).{0,30}(微信|qq|vx)"] * 10,
    }
    for name, lines in cases.items():
        terms = parse_terms(lines)
        work = pattern_work(texts, sum(pattern.programsize for _, pattern in terms.patterns))
        seconds, hits = [], 0
        for _ in range(3):
            started = time.perf_counter()
            hits = sum(len(terms.find(text)) for text in texts)
            seconds.append(time.perf_counter() - started)
        rate = min(seconds) / work
        print(f"  {name}: {1000 * min(seconds):.0f} ms best, {1000 * statistics.median(seconds):.0f} ms median "
              f"of 3 ({hits} hits); work {work:,} ({'within' if work <= budget else 'over'} the budget): "
              f"{1e9 * rate:.2f} ns per unit, so the whole budget would take {1000 * rate * budget:.0f} ms")


if __name__ == "__main__":
    main()
