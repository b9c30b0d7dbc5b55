"""Term lists (docs/contracts.md#term-lists): parsing, what a term matches, hot reload."""

from __future__ import annotations

import os
import time

import pytest

from antispam.cli import main
from antispam.errors import UserError
from antispam.lists import ListError, ListsWatcher, compact, digit_form, parse_terms
from antispam.policies import load_policies, parse_policies
from antispam.text import normalize
from tests.helpers.timing import within

pytestmark = pytest.mark.unit


def hits(term_lines: list[str], text: str) -> list[tuple[str, int, int]]:
    return parse_terms(term_lines).find(normalize(text))


# The documented table: which variants a term matches.
@pytest.mark.parametrize("term,text,matched", [
    ("加微信", "加微信", True),
    ("加微信", "加 微 信", True),          # spaces between CJK characters do not hide a term
    ("加微信", "加.微.信!", True),          # punctuation becomes a space, then the same
    ("加微信", "加微信領取", True),          # traditional folds to simplified
    ("加微信", "加威信", False),            # a different character is a different term
    ("加v信", "加Ｖ信", True),              # full width folds
    ("加v信", "加 V 信", True),             # a space between CJK and Latin is dropped too
    ("加V信", "加v信", True),               # terms are normalized the same way
    ("加微信", "加ｗｅｉ信", False),        # spelling out in Latin is another term ("加wei信")
    ("加wei信", "加ｗｅｉ信", True),
    ("vip会员", "VIP 会员", True),
    ("ab", "a b", False),                  # a space between two Latin letters is kept
    ("代开发票", "代開發票", True),
])
def test_which_variants_match(term: str, text: str, matched: bool) -> None:
    assert bool(hits([term], text)) is matched


def test_offsets_are_in_the_normalized_text_and_regexes_run_on_it() -> None:
    norm = normalize("你好，加 微 信吧")
    assert norm == "你好 加 微 信吧"
    assert parse_terms(["加微信"]).find(norm) == [("加微信", 3, 8)]
    assert parse_terms(["re:代.发票"]).find(normalize("代开发票")) == [("re:代.发票", 0, 4)]


@pytest.mark.parametrize("line,why", [
    (r"re:(a)\1", "backreferences need a backtracking engine"),
    (r"re:(?P<x>a)(?P=x)", "backreferences need a backtracking engine"),
    ("re:加(?=微信)", "lookahead and lookbehind need a backtracking engine"),
    ("re:(?<!官方)客服", "lookahead and lookbehind need a backtracking engine"),
    ("re:(x{1000}){1000}", "invalid repetition size"),
    ("re:[a-z一-龥]{1,900}", "too large once compiled (9903 RE2 instructions; at most 2000)"),
])
def test_patterns_re2_cannot_run_are_refused_naming_the_file_and_line(line: str, why: str) -> None:
    with pytest.raises(ListError) as err:
        parse_terms(["# patterns", "代开发票", line], "lists/block.txt")
    message = str(err.value)
    assert message.startswith("lists/block.txt: line 3: bad regular expression"), message
    assert why in message, message


@pytest.mark.timing
def test_a_pathological_pattern_runs_in_linear_time() -> None:
    """Issue 21: ``(x+x+)+y`` on a text of digits (they normalize to ``x``). Python's ``re``
    backtracks exponentially (66 ms at 20 digits, doubling every two more: hours at 60); on RE2
    a maximal text is one linear pass. The limit is generous (a shared, loaded machine); the
    figures are in the issue note (scripts/abuse.py measures it against a running service)."""
    term_list = parse_terms(["re:(x+x+)+y"])
    for text in ("1" * 60, "热线" + "4008123456" * 500):  # 60 and 5,000 digits
        norm = normalize(text)
        started = time.perf_counter()
        assert term_list.find(norm) == []
        assert time.perf_counter() - started < within(1.0)
    assert term_list.find(normalize("1234y")) == [("re:(x+x+)+y", 0, 5)]


def test_patterns_keep_their_meaning_on_re2() -> None:
    """The syntax the lists use reads the same on RE2: classes, counted repeats, alternation,
    non-greedy repeats, and offsets in code points (not UTF-8 bytes) with astral characters."""
    text = normalize("𠀀😀办理假证件，QQ号12345")
    found = parse_terms([r"re:办.{0,2}证", "re:qq号x{5}", "re:(?:假|真)证+?", r"re:[\x{20000}-\x{2A6DF}]"]).find(text)
    assert sorted(found) == sorted([("re:办.{0,2}证", 2, 6), ("re:(?:假|真)证+?", 4, 6), ("re:qq号x{5}", 8, 16),
                                    (r"re:[\x{20000}-\x{2A6DF}]", 0, 1)]), (text, found)


def test_compact_keeps_spaces_between_latin() -> None:
    assert compact("vip 会员 a b 加 v 信") == ("vip会员a b加v信", [0, 1, 2, 4, 5, 7, 8, 9, 11, 13, 15])


def test_bad_lines_are_reported_with_numbers() -> None:
    lines = ["# comment", "", "代开发票", "re:(", "400-123", "！！", "re:a*"]
    with pytest.raises(ListError) as err:
        parse_terms(lines, "block.txt")
    message = str(err.value)
    for number in (4, 6, 7):
        assert f"line {number}:" in message
    assert "line 3" not in message and "line 5" not in message  # a term with digits is fine


# Terms with digits match on the digit form: separators inside numbers ignored, whole numbers.
@pytest.mark.parametrize("term,text,matched", [
    ("4008123456", "热线4008123456", True),
    ("4008123456", "热线 400-812-3456 转1", True),
    ("4008123456", "热线：４００－８１２－３４５６", True),     # full width folds to ASCII
    ("4008123456", "热线 400 812 3456", True),
    ("4008123456", "热线400.812.3456。", True),
    ("400-812-3456", "热线4008123456", True),                # the term's separators too
    ("４００ ８１２ ３４５６", "热线4008123456", True),
    ("4008123456", "热线14008123456", False),                # not inside a longer number
    ("4008123456", "热线40081234567", False),
    ("4008123456", "热线400812345", False),
    ("4008123456", "热线xxxxxxxxxx", False),                 # letters x are not digits
    ("4008123456", "电话1 4008123456", True),                # a separator ends the other number
    ("qq12345", "加QQ12345", True),
    ("qq12345", "加QQ 12345", False),                        # a space between Latin letters/digits
    ("①②③", "热线123", True),                                # circled digits fold
])
def test_terms_with_digits(term: str, text: str, matched: bool) -> None:
    found = parse_terms([term]).find(normalize(text), digits=digit_form(text))
    assert bool(found) is matched
    assert not parse_terms([term]).find(normalize(text))  # never on the masked text


def test_digit_terms_through_a_snapshot_with_raw_offsets() -> None:
    from antispam.lists import ListSet, Snapshot
    from antispam.scoring import raw_matches

    snap = Snapshot({"default": ListSet(block=parse_terms(["加微信"]), allow=parse_terms(["400-812-3456"]))})
    text = "😀客服热线：４００－８１２－３４５６，加 微 信"
    found = snap.find(normalize(text), ["default"], text)
    assert [(m.term, m.kind) for m in found] == [("400-812-3456", "allow"), ("加微信", "block")]
    spans = raw_matches(text, found)
    assert text[spans[0]["start"]:spans[0]["end"]] == "４００－８１２－３４５６"
    assert text[spans[1]["start"]:spans[1]["end"]] == "加 微 信"
    assert [m.term for m in snap.find(normalize(text), ["default"])] == ["加微信"]  # no raw: no digit form


def test_cli_check(tmp_path, capsys) -> None:
    good = tmp_path / "block.txt"
    good.write_text("# ok\n代开发票\nre:办.{0,3}证\n", encoding="utf-8")
    bad = tmp_path / "allow.txt"
    bad.write_text("好\nre:[\n", encoding="utf-8")
    assert main(["lists", "check", str(good)]) == 0
    assert "1 terms, 1 patterns" in capsys.readouterr().out
    digits = tmp_path / "hotline.allow.txt"
    digits.write_text("400-812-3456\n官方客服\n", encoding="utf-8")
    assert main(["lists", "check", str(digits)]) == 0
    assert "1 terms and 1 terms with digits (matched on the digits as written" in capsys.readouterr().out
    assert main(["lists", "check", str(good), str(bad)]) == 2
    assert "line 2" in capsys.readouterr().out
    backref = tmp_path / "comments.block.txt"
    backref.write_text("刷单\n\nre:(加)\\1微信\n", encoding="utf-8")
    assert main(["lists", "check", str(backref)]) == 2
    out = capsys.readouterr().out
    assert f"{backref}: line 3: bad regular expression '(加)\\\\1微信': backreferences" in out, out


def test_watcher_reloads_and_keeps_the_previous_list_on_error(tmp_path) -> None:
    (tmp_path / "block.txt").write_text("代开发票\n", encoding="utf-8")
    (tmp_path / "comments.allow.txt").write_text("官方客服\n", encoding="utf-8")
    watcher = ListsWatcher(tmp_path, poll_seconds=0)
    snap = watcher.maybe_refresh()
    assert snap.status()["sets"] == {"comments": {"allow": 1, "block": 0}, "default": {"allow": 0, "block": 1}}
    assert [m.term for m in snap.find(normalize("代开发票"), ["default"])] == ["代开发票"]
    assert watcher.refresh() is False  # nothing changed
    path = tmp_path / "block.txt"
    path.write_text("代开发票\n办证\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert watcher.refresh() is True
    assert watcher.current.status()["sets"]["default"]["block"] == 2
    path.write_text("代开发票\nre:(\n", encoding="utf-8")  # broken: the previous one keeps serving
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    watcher.refresh()
    status = watcher.current.status()
    assert status["sets"]["default"]["block"] == 2
    assert "line 2" in status["files"]["block.txt"]["error"]
    assert status["files"]["block.txt"]["serving"] == "previous"
    path.unlink()
    watcher.refresh()
    assert "default" not in watcher.current.sets


def test_missing_folder_is_no_lists(tmp_path) -> None:
    assert ListsWatcher(tmp_path / "none").maybe_refresh().sets == {}


def test_policies() -> None:
    policies = parse_policies({"comments": {"review_threshold": 0.6, "block_threshold": 0.95}}, 0.5, 0.9, 3)
    assert set(policies) == {"default", "comments"}
    assert policies["default"].lists == ("default",)
    assert policies["comments"].lists == ("default", "comments")
    assert (policies["comments"].review_threshold, policies["comments"].block_threshold) == (0.6, 0.95)
    assert load_policies(None, 0.5, 0.9, 3)["default"].block_threshold == 0.9
    for bad in ({"x": {"review_threshold": 0.95, "block_threshold": 0.9}}, {"x": {"colour": 1}},
                {"bad name": {}}, {"x": {"lists": "default"}}, [], {"x": {"block_threshold": True}}):
        with pytest.raises(UserError):
            parse_policies(bad, 0.5, 0.9, 3)


def test_serve_refuses_a_bad_policies_file_before_starting(tmp_path, capsys) -> None:
    bad = tmp_path / "policies.json"
    bad.write_text('{"x": {"review_threshold": 2}}', encoding="utf-8")
    assert main(["serve", "--policies-file", str(bad), "--backend", "rest", "--port", "0"]) == 2
    assert "policy 'x'" in capsys.readouterr().err


@pytest.mark.timing
def test_async_refresh_parses_in_a_thread_and_the_loop_keeps_running(tmp_path, monkeypatch) -> None:
    import asyncio
    import threading

    from antispam import lists

    (tmp_path / "block.txt").write_text("代开发票\n", encoding="utf-8")
    watcher = ListsWatcher(tmp_path, poll_seconds=0)
    watcher.maybe_refresh()
    path = tmp_path / "block.txt"
    path.write_text("代开发票\n办证\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    parsed_in: list[str] = []
    real = lists.read_list_file

    def slow_read(p):
        parsed_in.append(threading.current_thread().name)
        time.sleep(0.3)  # a large list; sleep releases the GIL like the C parts of parsing
        return real(p)

    monkeypatch.setattr(lists, "read_list_file", slow_read)

    async def main():
        ticks = 0
        refresh = asyncio.ensure_future(watcher.maybe_refresh_async())

        async def second_caller():
            await asyncio.sleep(0.05)
            started = time.monotonic()
            snapshot = await watcher.maybe_refresh_async()  # a refresh is running: no wait, old lists
            return snapshot, time.monotonic() - started

        second = asyncio.ensure_future(second_caller())
        while not refresh.done():
            ticks += 1
            await asyncio.sleep(0.01)
        return ticks, await refresh, await second

    ticks, snapshot, (old, waited) = asyncio.run(main())
    assert parsed_in and parsed_in[0] != threading.main_thread().name
    assert ticks >= 10  # the loop ran other work while the file was parsed
    assert old.status()["sets"]["default"]["block"] == 1 and waited < within(0.1)
    assert snapshot.status()["sets"]["default"]["block"] == 2 and watcher.current is snapshot


def test_policies_watcher_reloads_and_keeps_the_previous_policies_on_error(tmp_path, caplog) -> None:
    from antispam.policies import PoliciesWatcher

    path = tmp_path / "policies.json"
    path.write_text('{"comments": {"block_threshold": 0.95}}', encoding="utf-8")
    watcher = PoliciesWatcher(str(path), 0.5, 0.9, 3, poll_seconds=0)
    assert set(watcher.current) == {"default", "comments"}
    assert watcher.refresh() is False  # unchanged

    def write(text: str, step: int) -> None:
        path.write_text(text, encoding="utf-8")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + step * 10**9))

    write('{"comments": {"block_threshold": 0.8}, "usernames": {}}', 1)
    assert watcher.maybe_refresh()["comments"].block_threshold == 0.8
    assert set(watcher.current) == {"default", "comments", "usernames"} and watcher.error is None
    before = watcher.current
    write('{"comments": {"block_threshold": 2}}', 2)
    assert watcher.refresh() is False and watcher.current is before
    assert "policy 'comments'" in watcher.error and watcher.status()["serving"] == "previous"
    assert "previous ones keep serving" in caplog.text
    write("{not json", 3)
    watcher.refresh()
    assert "not valid JSON" in watcher.error and watcher.current is before
    path.unlink()
    watcher.refresh()
    assert "gone" in watcher.error and watcher.current is before
    write('{"comments": {}}', 4)
    assert watcher.refresh() is True and watcher.error is None and "error" not in watcher.status()
    assert watcher.current["comments"].block_threshold == 0.9


def test_fixed_policies_never_reload() -> None:
    from antispam.policies import PoliciesWatcher, default_policy

    fixed = {"default": default_policy(0.5, 0.9, 3)}
    watcher = PoliciesWatcher("/nonexistent.json", 0.5, 0.9, 3, poll_seconds=0, policies=fixed)
    assert watcher.refresh() is False and watcher.current is fixed and watcher.status()["file"] is None
