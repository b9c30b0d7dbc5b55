"""Adding a contact to a block list file: what may be written, idempotence, atomic appends, and
that the service's own parser then matches the contact in the text it came from."""

from __future__ import annotations

import datetime as _dt
import threading
from pathlib import Path

import pytest

from antispam import blocklist
from antispam.blocklist import TermRejected, add_term, contact_term, is_listed, term_key
from antispam.contacts import find_contacts
from antispam.lists import DEFAULT_SET, ListsWatcher, parse_terms
from antispam.text import normalize

pytestmark = pytest.mark.unit

NOW = _dt.datetime(2026, 12, 6, 4, 0, tzinfo=_dt.timezone.utc)


@pytest.mark.parametrize("kind, value, term", [
    ("mobile", "13800138000", "13800138000"),
    ("mobile", "138-0013-8000", "13800138000"),
    ("mobile", "１３８００１３８０００", "13800138000"),
    ("landline", "01012345678", "01012345678"),
    ("landline", "4008123456", "4008123456"),
    ("qq", "12345678", "12345678"),
    ("wechat", "AbC_12345", "abc_12345"),
    ("url", "HTTP://svvja.top/562", "http://svvja.top/562"),
    ("domain", "Example.CN", "example.cn"),
    ("email", "Ad@Spam.com", "ad@spam.com"),
])
def test_contact_term_normalizes(kind: str, value: str, term: str) -> None:
    assert contact_term(kind, value) == term


@pytest.mark.parametrize("kind, value, why", [
    ("fax", "13800138000", "kind must be one of"),
    ("mobile", "", "non-empty"),
    ("mobile", "1380013800", "not a mobile"),
    ("mobile", "13800138000\nre:.*", "one line"),
    ("qq", "1234", "not a qq"),
    ("wechat", "re:abc", "not a wechat"),
    ("wechat", "#abcdef", "not a wechat"),
    ("url", "javascript:alert(1)", "not a url"),
    ("domain", "a.cn", "shorter than 5"),
    ("email", "x" * 300 + "@a.com", "over 200"),
])
def test_contact_term_refuses(kind: str, value: str, why: str) -> None:
    with pytest.raises(TermRejected, match=why):
        contact_term(kind, value)


def test_add_is_atomic_idempotent_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "block.txt"
    path.write_text("# ours\n代开发票\nre:办.{0,2}证", encoding="utf-8")  # no final newline
    first = add_term(tmp_path, "13800138000", "mobile", now=NOW)
    assert first.added and first.path == path
    assert path.read_text(encoding="utf-8") == ("# ours\n代开发票\nre:办.{0,2}证\n"
                                               "# mobile, added from the console 2026-12-06T04:00:00+00:00\n"
                                               "13800138000\n")
    again = add_term(tmp_path, "13800138000", "mobile", now=NOW)
    assert not again.added
    # The same number written with separators in the file is the same term for the parser.
    path.write_text("138-0013-8000\n", encoding="utf-8")
    assert not add_term(tmp_path, "13800138000", "mobile").added
    assert is_listed(tmp_path, "13800138000") and not is_listed(tmp_path, "13900139000")
    left = [p.name for p in tmp_path.glob(".block.txt.*") if p.name != ".block.txt.lock"]
    assert left == []  # no temporary file left behind


def test_other_list_sets_and_bad_names(tmp_path: Path) -> None:
    result = add_term(tmp_path / "new", "abc_12345", "wechat", list_set="comments")
    assert result.path == tmp_path / "new" / "comments.block.txt"
    with pytest.raises(TermRejected):
        add_term(tmp_path, "abc_12345", "wechat", list_set="../x")
    assert blocklist.block_file(tmp_path, DEFAULT_SET) == tmp_path / "block.txt"


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    numbers = [f"1380013{i:04d}" for i in range(40)]
    threads = [threading.Thread(target=add_term, args=(tmp_path, n, "mobile")) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [line for line in (tmp_path / "block.txt").read_text().splitlines() if not line.startswith("#")]
    assert sorted(lines) == numbers


@pytest.mark.parametrize("text", [
    "低息贷款，详询１３８－００１３－８０００王经理",
    "优惠活动，加微信 abc_12345 领取",
    "点击 http://svvja.top/562 领取",
    "扣扣 12345678 进群",
    "邮箱 ad@spam.com 咨询",
])
def test_the_written_term_matches_the_text_it_came_from(tmp_path: Path, text: str) -> None:
    """The point of the button: after the reload, the service's lists find the contact."""
    contacts = find_contacts(text)
    assert contacts, text
    contact = contacts[0]
    add_term(tmp_path, contact_term(contact.kind, contact.value), contact.kind)
    watcher = ListsWatcher(tmp_path)
    watcher.refresh()
    hits = watcher.current.find(normalize(text), [DEFAULT_SET], text)
    assert [m.kind for m in hits] == ["block"], (text, hits)


def test_term_key_is_the_parsers() -> None:
    parsed = parse_terms(["138 0013 8000", "加 微 信"])
    assert parsed.digit_terms == ["138 0013 8000"] and parsed.terms == ["加 微 信"]
    assert term_key("138-0013-8000") == term_key("13800138000") == "13800138000"
    assert term_key("加 微 信") == term_key("加微信")
