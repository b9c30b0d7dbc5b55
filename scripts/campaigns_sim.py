"""Campaign clustering on a simulated stream, without a service: how many campaign copies are
marked and how many ordinary messages are pulled into a campaign.

    python scripts/campaigns_sim.py [--data msglog.tar.gz] [--split validation|test] [--campaigns 40]
                                    [--copies 30] [--min-senders 5] [--window 600] [--seed 5]

From the split's adverts, ``--campaigns`` campaigns of ``--copies`` copies each, every copy a
random robustness variant of its advert (:func:`antispam.network.robustness.build_variants`:
plain, ordinary chat in front or around, spaced, full-width or circled digits, emoji,
traditional), one new sender per copy, 5 s apart, starting at random within 30 minutes; mixed
with every ordinary message of the split (which the context variants quote), each from its own
sender at a random time. Everything goes through one in-process tracker
(:class:`antispam.campaigns.MemoryTracker`) with the simulated clock. Prints the share of copies
after the 10th of their campaign that carried campaign evidence, and the ordinary messages that
did. Note: the corpus masks the adverts' digits, so there are almost no contacts: this measures
the near-duplicate keys alone. For choosing settings use the validation split (the default).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections import defaultdict

from antispam.campaigns import MemoryTracker
from antispam.contacts import find_contacts
from antispam.data import load_split
from antispam.network.robustness import SPAM_VARIANTS, build_variants
from antispam.text import normalize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("ANTISPAM_DATA"))
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument("--campaigns", type=int, default=40)
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--min-senders", type=int, default=5)
    parser.add_argument("--window", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if not args.data:
        print("give --data or set ANTISPAM_DATA to the corpus", file=sys.stderr)
        return 2
    split = load_split(args.data)
    variants = build_variants(getattr(split, args.split))
    ads = variants["plain_spam"]
    ordinary = [s.text for s in variants["plain_pass"]]
    rng = random.Random(args.seed)
    messages: list[tuple[float, str, str, int | None]] = []  # time, text, sender, campaign
    for c, ad in enumerate(rng.sample(range(len(ads)), min(args.campaigns, len(ads)))):
        start = rng.uniform(0, 1800)
        for j in range(args.copies):
            text = variants[rng.choice(SPAM_VARIANTS)][ad].text
            messages.append((start + 5 * j + rng.random(), text, f"c{c}-{j}", c))
    for i, text in enumerate(ordinary):
        messages.append((rng.uniform(0, 1900), text, f"o{i}", None))
    messages.sort()
    tracker = MemoryTracker(args.window, args.min_senders)
    marked: dict[int, list[bool]] = defaultdict(list)
    ordinary_marked = ordinary_seen = 0
    for at, text, sender, campaign in messages:
        norm = normalize(text)
        if not norm:
            continue
        evidence = tracker.observe(text, norm, find_contacts(text), sender, now=1e9 + at)
        if campaign is None:
            ordinary_seen += 1
            ordinary_marked += evidence is not None
        else:
            marked[campaign].append(evidence is not None)
    after = [m for flags in marked.values() for m in flags[10:]]
    print(f"{args.split} split: {len(marked)} campaigns of {args.copies} copies, {ordinary_seen} ordinary messages; "
          f"min senders {args.min_senders}, window {args.window:g} s")
    print(f"  copies after the 10th marked: {sum(after)}/{len(after)} = {sum(after) / max(1, len(after)):.3f}")
    print(f"  ordinary messages marked:     {ordinary_marked}/{ordinary_seen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
