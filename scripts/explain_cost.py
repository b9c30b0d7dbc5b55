"""What explain=true, contacts=true and term lists cost per text, in-process (the Scorer path, no HTTP).

    python scripts/explain_cost.py --model-base models [--model-name cnn] [--rounds 20]

Scores the same texts, 10 per call (explain's per-request limit), with the dedup cache off:
plain, with explain=true, and plain with a 10,000-term block list loaded; prints ms per text
(median of the rounds) and the lists' load time. contacts=true is measured in rounds alternating
with plain ones, in CPU time: its cost (tens of µs) is below the drift between separate runs.
CPU-bound numbers: run on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

TEXTS = [
    "妈妈，我明天晚上回家吃饭",
    "加微信領取優惠券，詳詢１３８００１３８０００",
    "您好，本公司常年代开各类发票，税点低，欢迎来电咨询",
    "今天的会议改到下午三点，请大家准时参加",
    "【某某银行】您的信用卡额度已提升，点击链接办理贷款，低息快速到账",
    "周末一起去爬山吗？天气预报说会下雨",
    "①⑵ Ⓐ VIP会员专享😀 限时秒杀，回复TD退订",
    "老师好，孩子今天发烧请假一天，谢谢",
    "恭喜您获得二等奖，请加V信领取奖金，逾期作废",
    "晚上吃什么？我买了菜，你早点回来",
]


async def measure(scorer, texts, rounds: int, **options) -> float:
    per_text = []
    normalized = scorer.normalize_all(texts)
    await scorer.score(texts, normalized, **options)  # warm
    for _ in range(rounds):
        start = time.perf_counter()
        await scorer.score(texts, normalized, **options)
        per_text.append((time.perf_counter() - start) / len(texts) * 1000)
    return statistics.median(per_text)


async def measure_pair(scorer, texts, rounds: int, **options) -> tuple[float, float, float]:
    """Plain and with ``options``, round by round in turn (a neighbour's load on a shared machine
    falls on both alike): the two medians (ms per text) and the median of the per-round
    differences, CPU time of the process (the backend's threads included)."""
    normalized = scorer.normalize_all(texts)
    await scorer.score(texts, normalized, **options)  # warm
    plain, other, diff = [], [], []
    for _ in range(rounds):
        times = []
        for opts in ({}, options):
            start = time.process_time()
            await scorer.score(texts, normalized, **opts)
            times.append((time.process_time() - start) / len(texts) * 1000)
        plain.append(times[0])
        other.append(times[1])
        diff.append(times[1] - times[0])
    return statistics.median(plain), statistics.median(other), statistics.median(diff)


def synthetic_terms(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    return ["".join(rng.choice(chars) for _ in range(rng.randint(2, 5))) for _ in range(n)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base", default="models")
    parser.add_argument("--model-name", default="cnn")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    from antispam.backends.local import LocalBackend
    from antispam.cache import PredictionCache
    from antispam.config import ServeConfig
    from antispam.lists import ListsWatcher
    from antispam.scoring import Scorer
    from antispam.text import Segmenter

    with tempfile.TemporaryDirectory() as tmp:
        config = ServeConfig(model_base=args.model_base, model_name=args.model_name, cache_size=0,
                             poll_seconds=0, lists_dir=str(Path(tmp) / "none"))
        backend = LocalBackend(config)
        await backend.start()
        for _ in range(600):
            if backend.ready:
                break
            await asyncio.sleep(0.1)
        segmenter = Segmenter()
        scorer = Scorer(config, backend, segmenter, PredictionCache(0))
        plain = await measure(scorer, TEXTS, args.rounds)
        explained = await measure(scorer, TEXTS, args.rounds, explain=True)
        paired = await measure_pair(scorer, TEXTS, args.rounds * 5, contacts=True)

        folder = Path(tmp) / "lists"
        folder.mkdir()
        (folder / "block.txt").write_text("\n".join(synthetic_terms(10_000)) + "\n加微信\n", encoding="utf-8")
        watcher = ListsWatcher(folder, poll_seconds=3600)
        start = time.perf_counter()
        watcher.refresh()
        load_ms = (time.perf_counter() - start) * 1000
        listed = Scorer(config, backend, segmenter, PredictionCache(0), lists=watcher)
        with_lists = await measure(listed, TEXTS, args.rounds)
        version = backend.current_version
        await backend.close()
    print(f"version {version} of {args.model_name}, {len(TEXTS)} texts per call, "
          f"median of {args.rounds} rounds, cache off")
    print(f"plain:              {plain:7.3f} ms/text")
    print(f"explain=true:       {explained:7.3f} ms/text  (+{explained - plain:.3f}, x{explained / plain:.1f})")
    print(f"contacts=true:      {paired[1]:7.3f} ms/text CPU vs plain {paired[0]:.3f} in the same rounds "
          f"(median difference {paired[2] * 1000:+.0f} µs, {100 * paired[2] / paired[0]:+.1f}%)")
    print(f"10,000-term list:   {with_lists:7.3f} ms/text  (+{with_lists - plain:.3f}); "
          f"loading the list took {load_ms:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
