"""The shipped everyday messages: readable, split stably, added to training only."""

from __future__ import annotations

from antispam import everyday
from antispam.data import Sample, Split
from antispam.labels import PASS, SPAM
from antispam.text import normalize

CATEGORIES = {"greeting", "thanks", "logistics", "family", "work", "friends", "money",
              "time_place", "health", "school"}


def test_the_file_is_well_formed_and_large_enough() -> None:
    rows = everyday.load()
    assert len(rows) >= 400
    assert {row.category for row in rows} == CATEGORIES
    texts = [normalize(row.text) for row in rows]
    assert all(texts) and len(set(texts)) == len(texts)  # no empty or duplicate message


def test_the_split_is_stable_and_disjoint() -> None:
    train, held_out = everyday.training_part(), everyday.held_out_part()
    assert train and held_out
    assert {r.text for r in train}.isdisjoint({r.text for r in held_out})
    assert len(train) + len(held_out) == len(everyday.load())
    # A message's side depends on the message alone.
    assert all(everyday.Everyday("other", r.text).held_out for r in held_out)
    assert not any(everyday.Everyday("other", r.text).held_out for r in train)
    assert 0.35 < len(held_out) / len(everyday.load()) < 0.65


def test_with_everyday_adds_the_training_part_to_train_only() -> None:
    held_out_text = everyday.held_out_part()[0].text
    clash = everyday.training_part()[0].text  # already in the corpus' test part: not added
    split = Split(train=[Sample("代开发票", SPAM)], validation=[Sample("你好吗朋友", PASS)],
                  test=[Sample(clash, PASS)], stats={"kept": 3})
    out = everyday.with_everyday(split)
    assert out.validation == split.validation and out.test == split.test
    added = out.train[1:]
    assert all(s.label == PASS for s in added)
    assert clash not in {s.text for s in added}
    assert held_out_text not in {s.text for s in added}
    distinct = {s.text for s in added}
    assert len(added) == len(distinct) * everyday.TRAIN_WEIGHT
    assert out.stats["everyday_added_to_train"] == len(distinct) and out.stats["kept"] == 3


def test_an_everyday_message_replaces_the_same_text_in_the_corpus_training_part() -> None:
    greeting = everyday.training_part()[0].text
    split = Split(train=[Sample(greeting + "！", SPAM), Sample("代开发票", SPAM)], validation=[], test=[])
    out = everyday.with_everyday(split)
    assert Sample(greeting + "！", SPAM) not in out.train  # the corpus' fragment label is dropped
    assert Sample(greeting, PASS) in out.train and Sample("代开发票", SPAM) in out.train
    assert out.stats["everyday_replaced_corpus_train"] == 1


def test_with_everyday_weight_sets_the_copies_and_is_recorded() -> None:
    split = Split(train=[Sample("代开发票", SPAM)], validation=[], test=[], stats={})
    once, twice = everyday.with_everyday(split, 1), everyday.with_everyday(split, 2)
    assert len(twice.train) - 1 == 2 * (len(once.train) - 1)
    assert twice.stats["everyday_weight"] == 2
    try:
        everyday.with_everyday(split, 0)
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("weight 0 must be refused")
