"""Campaign trackers (issue 24): one set of test bodies for the in-process tracker and Redis.

``make_tracker`` (tests/helpers/stores.py) gives a :class:`antispam.campaigns.MemoryTracker` or a
:class:`antispam.campaigns.RedisTracker` on a real Redis (ANTISPAM_TEST_REDIS_URL, started by
.ci/services.sh); every call passes ``now``, a fake clock, so windows expire without waiting.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

import pytest

from antispam.campaigns import KEYS_PER_COUNTER, SLOTS, MemoryTracker, RedisTracker, TrackerUnavailable, contact_key
from antispam.contacts import Contact, find_contacts
from antispam.text import normalize

Maker = Callable[..., Any]
AD = "本店新到一批高仿名牌包包，质量保证，价格优惠，加微信 abc12345 详聊，先到先得。"
T0 = 1_700_000_000.0


def observe(tracker: Any, text: str, sender: str, now: float) -> Any:
    return tracker.observe(text, normalize(text), find_contacts(text), sender, now=now)


def test_distinct_senders_cross_the_threshold(make_tracker: Maker) -> None:
    tracker = make_tracker(window_seconds=600, min_senders=3)
    assert observe(tracker, AD, "s1", T0) is None
    assert observe(tracker, AD, "s1", T0 + 1) is None  # the same sender again: still one sender
    assert observe(tracker, " ".join(AD), "s2", T0 + 2) is None  # a variant, a second sender
    evidence = observe(tracker, AD + "🔥🔥", "s3", T0 + 3)
    assert evidence is not None
    assert (evidence.size, evidence.senders, evidence.first_seen, evidence.by) == (4, 3, T0, "text")
    assert evidence.as_dict() == {"size": 4, "senders": 3, "first_seen": T0, "by": "text"}
    assert observe(tracker, "今天下午的会议改到三点了，记得带上季度报表。", "s4", T0 + 4) is None


def test_a_shared_contact_is_a_campaign_whatever_the_words(make_tracker: Maker) -> None:
    tracker = make_tracker(min_senders=3)
    texts = ["想赚钱的朋友加我微信 abc12345 带你入门", "周末有空吗，有好东西分享，加微信abc12345",
             "兼职日结，工资高，微信：abc12345"]
    results = [observe(tracker, t, f"s{i}", T0 + i) for i, t in enumerate(texts)]
    assert results[:2] == [None, None]
    assert results[2] is not None and results[2].by == "contact" and results[2].senders == 3
    assert results[2].key == contact_key(Contact("wechat", "abc12345", 0, 0))


def test_the_window_slides_and_expires(make_tracker: Maker) -> None:
    window = 600.0
    tracker = make_tracker(window_seconds=window, min_senders=2)
    assert observe(tracker, AD, "s1", T0) is None
    assert observe(tracker, AD, "s2", T0 + window + window / SLOTS) is None  # s1 has left the window
    late = observe(tracker, AD, "s3", T0 + window + 2 * window / SLOTS)
    assert late is not None and (late.size, late.senders) == (2, 2)
    # first_seen: s1's run ended (idle a whole window), so the campaign starts again with s2
    assert late.first_seen == T0 + window + window / SLOTS


def test_first_seen_stays_while_the_campaign_goes_on(make_tracker: Maker) -> None:
    tracker = make_tracker(window_seconds=100, min_senders=2)
    step = 30.0
    evidence = None
    for i in range(10):  # one new sender every 30 s for 300 s: never idle a whole window
        evidence = observe(tracker, AD, f"s{i}", T0 + i * step)
    assert evidence is not None
    assert evidence.first_seen == T0
    assert evidence.senders <= 4  # only the last 100 s count: at most 4 senders 30 s apart


def test_top_lists_the_largest_with_an_example(make_tracker: Maker) -> None:
    tracker = make_tracker(min_senders=2)
    other = "专业代开各类发票，增值税专票普票均可，当天出票，联系电话 13800138000。"
    for i in range(4):
        observe(tracker, AD, f"a{i}", T0 + i)
    for i in range(2):
        observe(tracker, other, f"b{i}", T0 + 10 + i)
    observe(tracker, "今天下午的会议改到三点了，记得带上季度报表。", "c", T0 + 20)
    top = tracker.top(10, now=T0 + 30)
    by_senders = [(c["by"], c["senders"], c["size"]) for c in top]
    # AD: its cluster and its WeChat id; other: its cluster and its phone number
    assert by_senders == [("contact", 4, 4), ("text", 4, 4), ("contact", 2, 2), ("text", 2, 2)]
    first = top[1]
    assert first["first_seen"] == T0
    assert first["example"]["text"] == AD
    assert first["example"]["contacts"] == [c.as_dict() for c in find_contacts(AD)]
    assert tracker.active(now=T0 + 30) == 4
    assert tracker.top(1, now=T0 + 30) == top[:1]
    assert tracker.top(10, now=T0 + 30 + 700) == [] and tracker.active(now=T0 + 30 + 700) == 0


def test_trackers_share_counts_only_through_redis(make_tracker: Maker) -> None:
    """Two trackers stand for two processes: with Redis a campaign split across both is counted once."""
    one, two = make_tracker(min_senders=4), make_tracker(min_senders=4)
    results = [observe(one if i % 2 else two, AD, f"s{i}", T0 + i) for i in range(6)]
    if make_tracker.shared:  # type: ignore[attr-defined]
        last = results[-1]
        assert results[:3] == [None] * 3 and last is not None and (last.size, last.senders) == (6, 6)
    else:
        assert results == [None] * 6  # three senders each: neither process reaches four


def test_memory_tracker_is_bounded() -> None:
    tracker = MemoryTracker(600, 2, max_counters=50, max_senders=5)
    for i in range(500):
        observe(tracker, f"第{i}号通知：今天下午的会议改到三点了，记得带上季度报表", f"s{i}", T0 + i / 100)
    assert len(tracker._counters) <= 50
    assert len(tracker._clusters) <= 50 * KEYS_PER_COUNTER
    for i in range(20):
        evidence = observe(tracker, AD, f"x{i}", T0 + 10 + i / 100)
    assert evidence is not None and evidence.senders == 5 and evidence.size == 20


def test_settings_are_checked() -> None:
    for window, senders in ((0, 3), (float("nan"), 3), (60, 1), (60, True)):
        with pytest.raises(ValueError):
            MemoryTracker(window, senders)


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


def test_unreachable_redis_fails_open_to_this_process_counts() -> None:
    pytest.importorskip("redis")
    tracker = RedisTracker(_dead_url(), 600, 2, fail="open", timeout_ms=50)
    assert observe(tracker, AD, "s1", T0) is None
    evidence = observe(tracker, AD, "s2", T0 + 1)
    assert evidence is not None and evidence.senders == 2
    assert tracker.failures == 1 and tracker.fallbacks == 2  # one timeout, then Redis is left alone
    assert [c["senders"] for c in tracker.top(5, now=T0 + 2)] == [2, 2]


def test_unreachable_redis_fails_closed_when_asked() -> None:
    pytest.importorskip("redis")
    tracker = RedisTracker(_dead_url(), 600, 2, fail="closed", timeout_ms=50)
    with pytest.raises(TrackerUnavailable):
        observe(tracker, AD, "s1", T0)
    with pytest.raises(TrackerUnavailable):
        tracker.top(5)
    with pytest.raises(ValueError):
        RedisTracker(_dead_url(), fail="maybe")


def test_chat_around_an_advert_joins_it_but_is_not_filed(make_tracker: Maker) -> None:
    """A copy with ordinary chat in front joins the advert's campaign through the advert's
    sentence; an ordinary message that says the same chat sentence later does not join."""
    tracker = make_tracker(min_senders=3)
    chat = "今天下午的会议改到三点了记得带上季度报表"
    assert observe(tracker, AD, "s1", T0) is None
    assert observe(tracker, AD, "s2", T0 + 1) is None
    evidence = observe(tracker, chat + "。" + AD, "s3", T0 + 2)
    assert evidence is not None and (evidence.size, evidence.senders) == (3, 3)
    # the chat alone, from other people: a cluster of its own (filed, it would be the advert's:
    # evidence of size 4 at once)
    results = [observe(tracker, chat, f"o{i}", T0 + 3 + i) for i in range(3)]
    assert results[:2] == [None, None]
    assert results[2] is not None and (results[2].size, results[2].senders) == (3, 3)


def test_a_short_text_without_contacts_is_not_counted(make_tracker: Maker) -> None:
    """No signature (under 10 characters) and no contact: nothing to count."""
    tracker = make_tracker(min_senders=2)
    for i in range(5):
        assert observe(tracker, "在吗在吗", f"s{i}", T0 + i) is None
    assert tracker.top(5, now=T0 + 5) == []


def test_a_text_with_nothing_to_count_never_asks_redis() -> None:
    """So it costs no round trip, and no 503 while Redis is down and the tracker fails closed."""
    pytest.importorskip("redis")
    tracker = RedisTracker(_dead_url(), 600, 2, fail="closed", timeout_ms=50)
    assert observe(tracker, "在吗在吗", "s1", T0) is None
    assert tracker.failures == 0
    with pytest.raises(TrackerUnavailable):
        observe(tracker, "在吗，加微信 abc12345", "s1", T0)  # a contact: counted, so Redis is asked
