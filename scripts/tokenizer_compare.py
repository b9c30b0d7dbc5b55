"""jieba against accelerated ports: speed per message and whether the tokens are the same.

    python scripts/tokenizer_compare.py [--data msglog.tar.gz] [--limit N] [--repeats 3] [--examples 5]
                                        [--only jieba_fast,rjieba] [--json out.json]

Every message of the corpus (``--data``, else ``$ANTISPAM_DATA``; duplicates included) is
normalized once with ``antispam.text.normalize``, as the service does, then segmented by each
tokenizer the way :meth:`antispam.text.Segmenter.segment` does (accurate mode with HMM for
unknown words, whitespace tokens dropped). The reference is the project's own ``Segmenter``
(plain jieba). Candidates, each loaded with jieba's own ``dict.txt`` where the port can load a
dictionary, and skipped with a note when its package is not installed:

* ``jieba_fast``: jieba with its hot loops in C (SWIG); on PyPI as an sdist only, so it needs a
  C compiler to install;
* ``jieba_fast_dat``: a C++ double-array trie (pybind11), a PyPI wheel; it ships its own
  dictionary and HMM tables, so it is measured with jieba's dictionary and with its own;
* ``jieba_next``: a fork of jieba_fast with a Rust prefix trie, a PyPI wheel;
* ``rjieba``: Python binding of jieba-rs (Rust), a PyPI wheel; its dictionary is compiled in
  (``rjieba``) or, as ``rjieba+dict``, an empty one filled with jieba's ``dict.txt``
  (``add_word``); ``rjieba+guard`` is rjieba for texts whose characters are all in jieba's
  range (below) and plain jieba for the others.

Beyond the corpus (``--fuzz N``, default 20,000): N seeded random strings in what the
normalizer can output, split in two classes, each compared with the reference:

* *in jieba's range*: only ``a-z0-9``, spaces and ideographs U+4E00–U+9FD5 (jieba's ``re_han``):
  random corpus characters, random ideographs of that range, splices of corpus messages;
* *outside it*: the same with ideographs the normalizer keeps but jieba's ``re_han`` does not
  cover (CJK extension A, U+9FD6–U+9FFF, extension B and later) inserted, alone or in runs. jieba
  emits each such character as a token of its own.

Speed: the messages are timed in chunks of 500, every tokenizer on each chunk in turn (the
order rotates), so a neighbour's load on a shared machine falls on all of them alike; a
tokenizer's figure is its median over ``--repeats`` passes of total time / messages. Equality:
the token lists of every message are compared with the reference's; the count of messages that
differ is printed with a few examples. Normalization itself is timed once, for scale.

Needs nothing beyond the core install for the reference; install the candidates to compare them
(``pip install rjieba jieba-fast-dat jieba-next``; ``pip install jieba_fast`` builds from
source). This is a measurement, not a dependency of the service.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

Segment = Callable[[str], list[str]]
CHUNK = 500
# Ideographs that antispam.text.normalize keeps and jieba's re_han_default ([\u4E00-\u9FD5...]) does not.
OUTSIDE_JIEBA = ([chr(c) for c in range(0x3400, 0x3440)] + [chr(c) for c in range(0x9FD6, 0x9FF0)]
                 + [chr(c) for c in range(0x20000, 0x20040)] + [chr(c) for c in range(0x30000, 0x30010)])
JIEBA_RANGE = re.compile("^[\u4e00-\u9fd5a-z0-9 ]*$")


def jieba_dict() -> str:
    import jieba

    return os.path.join(os.path.dirname(jieba.__file__), "dict.txt")


def _drop_spaces(tokens: Any) -> list[str]:
    return [t for t in tokens if not t.isspace()]


def reference() -> Segment:
    from antispam.text import Segmenter

    return Segmenter().segment


def _jieba_like(module: str, dictionary: str | None) -> Segment:
    import importlib
    import logging

    mod = importlib.import_module(module)
    set_level = getattr(mod, "set_log_level", None) or getattr(mod, "setLogLevel", None)
    if set_level is not None:
        set_level(logging.WARNING)
    tokenizer = mod.Tokenizer(dictionary) if dictionary else mod.Tokenizer()
    tokenizer.initialize()
    return lambda text: _drop_spaces(tokenizer.lcut(text, cut_all=False, HMM=True))


def _rjieba(with_jieba_dict: bool) -> Segment:
    import rjieba

    if not with_jieba_dict:
        engine = rjieba.Jieba()
    else:
        engine = rjieba.Jieba.empty()
        with open(jieba_dict(), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if parts:
                    engine.add_word(parts[0], int(parts[1]) if len(parts) > 1 else None,
                                    parts[2] if len(parts) > 2 else None)
    return lambda text: _drop_spaces(engine.cut(text, hmm=True))


def _rjieba_guarded() -> Segment:
    """rjieba for texts in jieba's character range, the reference (plain jieba) for any other."""
    fast, slow = _rjieba(False), reference()
    in_range = JIEBA_RANGE.match
    return lambda text: fast(text) if in_range(text) else slow(text)


CANDIDATES: dict[str, tuple[str, Callable[[], Segment]]] = {
    # name: (module that must be importable, factory)
    "jieba_fast": ("jieba_fast", lambda: _jieba_like("jieba_fast", jieba_dict())),
    "jieba_fast_dat": ("jieba_fast_dat", lambda: _jieba_like("jieba_fast_dat", jieba_dict())),
    "jieba_fast_dat+own": ("jieba_fast_dat", lambda: _jieba_like("jieba_fast_dat", None)),
    "jieba_next": ("jieba_next", lambda: _jieba_like("jieba_next", jieba_dict())),
    "rjieba": ("rjieba", lambda: _rjieba(False)),
    "rjieba+dict": ("rjieba", lambda: _rjieba(True)),
    "rjieba+guard": ("rjieba", _rjieba_guarded),
}


def version_of(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in (module, module.replace("_", "-")):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "?"


def load(names: list[str]) -> tuple[dict[str, Segment], dict[str, str], dict[str, float]]:
    """The tokenizers that load here, notes for those that do not, and load times in seconds."""
    import importlib.util

    loaded: dict[str, Segment] = {}
    notes: dict[str, str] = {}
    load_s: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        if name == "jieba":
            loaded[name] = reference()
        else:
            module, factory = CANDIDATES[name]
            if importlib.util.find_spec(module) is None:
                notes[name] = f"not installed (pip install {module.replace('_', '-')})"
                continue
            try:
                loaded[name] = factory()
            except Exception as exc:  # a port that fails to load is reported, not fatal
                notes[name] = f"failed to load: {type(exc).__name__}: {exc}"
                continue
        load_s[name] = time.perf_counter() - started
    return loaded, notes, load_s


def timed_passes(tokenizers: dict[str, Segment], texts: list[str], repeats: int) -> dict[str, float]:
    """Median over ``repeats`` passes of µs per message, chunk by chunk with a rotating order."""
    names = list(tokenizers)
    passes: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(repeats):
        total = dict.fromkeys(names, 0.0)
        for c, start in enumerate(range(0, len(texts), CHUNK)):
            chunk = texts[start:start + CHUNK]
            order = names[c % len(names):] + names[:c % len(names)]
            for name in order:
                segment = tokenizers[name]
                t0 = time.perf_counter()
                for text in chunk:
                    segment(text)
                total[name] += time.perf_counter() - t0
        for name in names:
            passes[name].append(total[name] / len(texts) * 1e6)
    return {n: statistics.median(v) for n, v in passes.items()}


def fuzz_strings(texts: list[str], n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` random normalized strings: (those in jieba's character range, those outside it)."""
    from antispam.text import normalize

    rng = random.Random(seed)
    chars = sorted({c for t in texts for c in t if JIEBA_RANGE.match(c)} - {" "})
    han = [chr(c) for c in range(0x4E00, 0x9FD6)]
    latin = list("abcxyz0123456789")
    inside: list[str] = []
    outside: list[str] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            text = "".join(rng.choice(chars + latin + [" "]) for _ in range(rng.randint(1, 80)))
        elif kind == 1:
            a, b = rng.choice(texts), rng.choice(texts)
            text = a[rng.randint(0, len(a)):] + rng.choice(["", " ", "x", "abc", "xx"]) + b[:rng.randint(0, len(b))]
        elif kind == 2:
            text = " ".join(rng.choice(texts)[:rng.randint(1, 30)] for _ in range(rng.randint(1, 4)))
        else:
            text = "".join(rng.choice(han) for _ in range(rng.randint(1, 40)))
        if i % 2:  # half of them get ideographs outside jieba's range, alone or in runs of 2-3
            for _ in range(rng.randint(1, 3)):
                at = rng.randint(0, len(text))
                text = text[:at] + "".join(rng.choice(OUTSIDE_JIEBA) for _ in range(rng.randint(1, 3))) + text[at:]
        text = normalize(text)
        if text:
            (inside if JIEBA_RANGE.match(text) else outside).append(text)
    return inside, outside


def differences(ref: list[list[str]], other: list[list[str]]) -> list[int]:
    """Indexes of the messages whose token lists differ."""
    return [i for i, (a, b) in enumerate(zip(ref, other)) if a != b]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="corpus (msglog.tar.gz or folder); default $ANTISPAM_DATA")
    parser.add_argument("--limit", type=int, default=0, help="use the first N messages only (default all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per tokenizer (median; default 3)")
    parser.add_argument("--examples", type=int, default=5, help="differing messages shown per tokenizer")
    parser.add_argument("--only", help=f"candidates, comma-separated (default all: {', '.join(CANDIDATES)})")
    parser.add_argument("--fuzz", type=int, default=20000, help="random strings compared beyond the corpus "
                        "(default 20000; 0: none)")
    parser.add_argument("--json", dest="json_path", help="also write the figures here")
    args = parser.parse_args(argv)

    from antispam.data import locate, read_corpus
    from antispam.text import normalize

    names = [n.strip() for n in args.only.split(",")] if args.only else list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown} (choose from {', '.join(CANDIDATES)})")
    samples = read_corpus(locate(args.data, progress=False))
    raw = [s.text for s in samples][: args.limit or None]
    normalize(raw[0])  # load OpenCC before timing
    t0 = time.perf_counter()
    texts = [normalize(t) for t in raw]
    normalize_us = (time.perf_counter() - t0) / len(raw) * 1e6
    texts = [t for t in texts if t]  # the service never segments an empty text

    tokenizers, notes, load_s = load(["jieba", *names])
    ref_segment = tokenizers["jieba"]
    ref = [ref_segment(t) for t in texts]  # also the warm-up pass of the reference
    outputs: dict[str, list[list[str]]] = {"jieba": ref}
    for name, segment in tokenizers.items():
        if name != "jieba":
            outputs[name] = [segment(t) for t in texts]  # warm-up, and the tokens compared
    speed = timed_passes(tokenizers, texts, max(1, args.repeats))

    outside_corpus = sum(1 for t in texts if not JIEBA_RANGE.match(t))
    print(f"{len(texts)} messages of {len(raw)} (non-empty after normalize; {outside_corpus} with ideographs "
          f"outside jieba's U+4E00-U+9FD5); normalize "
          f"{normalize_us:.1f} µs/message (not in the figures below); {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'tokenizer':<20} {'version':<10} {'load s':>7} {'µs/message':>11} {'speedup':>8} "
          f"{'messages differing from jieba':>30}")
    report: dict[str, Any] = {"messages": len(texts), "normalize_us": normalize_us, "tokenizers": {}}
    base = speed["jieba"]
    for name in ["jieba", *names]:
        module = "jieba" if name == "jieba" else CANDIDATES[name][0]
        if name in notes:
            print(f"{name:<20} {'-':<10} {'-':>7} {'-':>11} {'-':>8}   {notes[name]}")
            report["tokenizers"][name] = {"note": notes[name]}
            continue
        diff = differences(ref, outputs[name])
        share = len(diff) / len(texts)
        print(f"{name:<20} {version_of(module):<10} {load_s[name]:7.2f} {speed[name]:11.1f} "
              f"{base / speed[name]:7.2f}x {len(diff):>15} ({share:.2%})")
        report["tokenizers"][name] = {
            "version": version_of(module), "load_s": load_s[name], "us_per_message": speed[name],
            "speedup": base / speed[name], "differing_messages": len(diff),
            "examples": [{"text": texts[i], "jieba": ref[i], name: outputs[name][i]} for i in diff[:args.examples]],
        }
    if args.fuzz > 0:
        inside, outside = fuzz_strings(texts, args.fuzz)
        print(f"\nrandom strings (seeded): {len(inside)} in jieba's character range, {len(outside)} with ideographs "
              f"outside it; strings whose tokens differ from jieba's:")
        fuzz_ref = {"inside": [ref_segment(t) for t in inside], "outside": [ref_segment(t) for t in outside]}
        for name in names:
            if name in notes:
                continue
            counts = {}
            for label, strings in (("inside", inside), ("outside", outside)):
                diff = differences(fuzz_ref[label], [tokenizers[name](t) for t in strings])
                counts[label] = len(diff)
                if diff and label == "outside" and args.examples:
                    i = diff[0]
                    counts["outside_example"] = {"text": strings[i], "jieba": fuzz_ref[label][i],
                                                 name: tokenizers[name](strings[i])}
            print(f"  {name:<20} in range {counts['inside']:>6}   outside {counts['outside']:>6}")
            report["tokenizers"][name]["fuzz"] = counts
    for name in names:
        if name in notes:
            continue
        example = report["tokenizers"][name].get("fuzz", {}).get("outside_example")
        if example:
            print(f"\n{name}, a random string outside jieba's range: {example['text'][:40]}")
            print(f"    jieba: {' / '.join(example['jieba'][:20])}")
            print(f"    {name}: {' / '.join(example[name][:20])}")
    for name in names:
        examples = report["tokenizers"][name].get("examples") or []
        if examples:
            print(f"\n{name}: first {len(examples)} differing messages (jieba | {name})")
            for example in examples:
                print(f"  {example['text'][:60]}")
                print(f"    jieba: {' / '.join(example['jieba'])}")
                print(f"    {name}: {' / '.join(example[name])}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
