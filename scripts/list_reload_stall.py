#!/usr/bin/env python
"""How long a term-list reload holds the event loop (docs/contracts.md#term-lists).

Writes the bench's generated lists (10,000 block terms by default,
:mod:`antispam.bench.variants`), times parsing ``block.txt``, then reloads the folder five times
each way while a probe coroutine asks for the loop every millisecond and records the longest gap:

* ``on the loop``    ``ListsWatcher.refresh()`` called from the loop (the code before);
* ``refresh_async``  ``ListsWatcher.refresh_async()``: parsing in a worker thread (the service).

    python scripts/list_reload_stall.py [--terms 10000] [--folder /tmp/antispam-lists]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from antispam.bench import variants
from antispam.lists import ListsWatcher, read_list_file


async def reload_once(folder: str, in_thread: bool) -> tuple[float, float]:
    watcher = ListsWatcher(folder, poll_seconds=0)
    gaps: list[float] = []
    stop = False

    async def probe() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.ensure_future(probe())
    await asyncio.sleep(0.05)
    gaps.clear()
    started = time.perf_counter()
    if in_thread:
        await watcher.refresh_async()
    else:
        watcher.refresh()
    took = time.perf_counter() - started
    await asyncio.sleep(0.01)
    stop = True
    await task
    return took * 1000, max(gaps) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terms", type=int, default=variants.DEFAULT_BLOCK_TERMS)
    parser.add_argument("--folder", default="/tmp/antispam-lists")
    args = parser.parse_args()
    variants.write_lists(args.folder, args.terms)
    read_list_file(f"{args.folder}/block.txt")  # warm: OpenCC and pyahocorasick load once
    parse = []
    for _ in range(5):
        started = time.perf_counter()
        read_list_file(f"{args.folder}/block.txt")
        parse.append((time.perf_counter() - started) * 1000)
    print(f"parse block.txt ({args.terms} terms + {len(variants.PATTERNS)} patterns): "
          + ", ".join(f"{ms:.1f}" for ms in parse) + " ms")
    for name, in_thread in (("on the loop", False), ("refresh_async", True)):
        runs = [asyncio.run(reload_once(args.folder, in_thread)) for _ in range(5)]
        print(f"{name:<14} reload " + ", ".join(f"{a:.1f}" for a, _ in runs) + " ms; longest loop stall "
              + ", ".join(f"{b:.1f}" for _, b in runs) + " ms")


if __name__ == "__main__":
    main()
