"""Contact extraction (docs/contracts.md#contacts): the ways to reach a sender that a text
carries: mobile and landline numbers, QQ numbers, WeChat ids, URLs, bare domains, e-mail.

Why: spam almost always carries a way to reach the sender, and spammers disguise it the same
ways they disguise words (full-width and circled digits, spaces and symbols between digits,
Chinese numerals, ``V信``/``薇信`` for 微信, ``扣扣``/``企鹅`` for QQ). The model never sees
the digits (the pipeline masks them as ``x``), so the digits are read here from the *folded*
form of the text as sent (:func:`antispam.text.fold_with_offsets`: the pipeline's own steps 1-4,
digits kept, nothing dropped), and every offset maps back to the text as sent, in code points,
like ``reasons`` and ``matches``.

Rules (measured on ``tests/data/contacts_labelled.tsv`` by ``scripts/contacts_eval.py``):

* **Digit groups.** A digit is an ASCII digit after folding, a Chinese numeral (零〇一二三…,
  幺, 壹贰叁…) or a dingbat digit (❶, ➀: not folded by NFKC). A *group* is a run of digits; two
  groups are *linked* when at most :data:`MAX_GAP` characters the pipeline drops (spaces,
  punctuation, emoji; no line break) separate them: ``1-3-8``, ``138 0013 8000``, ``1.3.8``.
  A number is a sequence of linked groups: it starts and ends at group boundaries, so a
  digit is never taken out of the middle of a longer run (order numbers, ids stay whole).
* **Phones** (from each group, the longest sequence that is one): mobile ``1[3-9]`` + 9 digits,
  with ``86``/``0086`` before it (value: the 11 digits); landline ``0`` + area code (``10``,
  ``2x`` or three digits ``[3-9]xx``) + a 7-8 digit number not starting with 0 or 1, or
  ``86``/``0086`` + the same without the ``0`` (value: with the ``0``); ``400``/``800`` + 7
  digits (kind ``landline``). Amounts with thousands commas (``13,800,000,000``) are not phones.
* **QQ** only after a QQ cue (``qq``, ``q号``, ``q群``, a lone ``q``, ``扣扣``, ``企鹅``) and
  a few filler words (``号码是``, ``群``, ``:``): 5-11 digits not starting with 0. A bare digit
  run is never a QQ number.
* **WeChat** ids only after a WeChat cue (``微信``, ``威信``, ``薇信``, ``徽信``, ``v信``,
  ``vx``, ``wx``, ``weixin``, ``wechat``, ``加v``, ``+v``, ``v:``, ``加微``/``加薇``) and filler:
  a letter then 5-19 letters, digits, ``_`` or ``-``. An id of letters only needs an explicit
  marker after the cue (``:``, ``号``, ``是``, ``id``, ``搜索``), else ``打开微信 settings``
  would be one. A cue followed by digits is a phone (WeChat ids start with a letter).
* **URLs** start with ``http://`` or ``https://`` (value: the whole URL, lower-cased).
  **Domains**: dotted names (``.``, ``。`` or ``点`` as the dot) ending in a known TLD
  (:data:`TLDS`; ``.py``, ``.md``, ``.in`` are left out on purpose: file names and words).
  **E-mail**: ``local@domain.tld``. A URL or e-mail address is not reported again as a domain.

Overlaps: URLs, then e-mail, domains, QQ, WeChat, phones; a later kind never takes characters
an earlier one took. Cost: linear in the text (every regex here has no nested ambiguity and
starts only at a word boundary); at most :data:`MAX_CONTACTS` are reported. No Tornado, no
TensorFlow: the core layer.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from antispam.text import fold_with_offsets, is_dropped

KINDS = ("mobile", "landline", "qq", "wechat", "url", "domain", "email")
# Most contacts one text reports (the first by position); a text with more says how many.
MAX_CONTACTS = 50
# Most characters between two digit groups that still belong to one number: "1 - 3", "）(".
MAX_GAP = 3
# Most characters of filler words and separators between a cue and what it introduces.
MAX_FILLER = 12

_CHINESE_DIGITS = {
    "零": "0", "〇": "0", "一": "1", "壹": "1", "幺": "1", "二": "2", "贰": "2", "貳": "2",
    "三": "3", "叁": "3", "叄": "3", "四": "4", "肆": "4", "五": "5", "伍": "5", "六": "6",
    "陆": "6", "陸": "6", "七": "7", "柒": "7", "八": "8", "捌": "8", "九": "9", "玖": "9",
}


def _digit_table() -> dict[int, str]:
    """Characters read as one digit: Chinese numerals, and the digit symbols NFKC leaves alone
    (dingbat and double circled digits ❶ ➀ ⓵); folding already made every other digit ASCII."""
    table = {ord(k): v for k, v in _CHINESE_DIGITS.items()}
    for cp in (*range(0x2460, 0x2500), *range(0x2776, 0x2794), 0x1F10B, 0x1F10C):
        char = chr(cp)
        value = unicodedata.digit(char, None)
        if value is not None and unicodedata.normalize("NFKC", char) == char:
            table[cp] = str(value)
    return table


_DIGITS_OF = _digit_table()
_GROUP = re.compile(r"[0-9]+")
_NEWLINE = re.compile(r"[\n\r\u2028\u2029]")

_MOBILE = re.compile(r"(?:0086|86)?(1[3-9][0-9]{9})")
_LANDLINE = re.compile(r"0((?:10|2[0-9])[2-9][0-9]{7}|[3-9][0-9]{2}[2-9][0-9]{6,7})")
_LANDLINE_86 = re.compile(r"(?:0086|86)((?:10|2[0-9])[2-9][0-9]{7}|[3-9][0-9]{2}[2-9][0-9]{6,7})")
_SERVICE = re.compile(r"[48]00[0-9]{7}")
_LONGEST_PHONE = 15
# How every phone number starts: mobile 1[3-9], landline 0[1-9], 0086, 400/800, 86.
_HEADS = frozenset({*(f"1{d}" for d in "3456789"), *(f"0{d}" for d in "0123456789"), "40", "80", "86"})

_LATIN_CUE_BOUNDARY = re.compile(r"[a-z0-9_]")
_QQ_CUE = re.compile(r"qq|q号|q群|扣\s?扣|企\s?鹅|q")
# "加"/"+" first, and "vx" before "v", so the longest cue wins: "加vx" is not "加v" + "x".
_WECHAT_CUE = re.compile(r"(?:加|[+➕])\s?(?:vx|wx|[v微薇威](?:\s?信)?)|[微威薇徽v]\s?信|weixin|wechat|vx|wx"
                         r"|v(?=\s{0,2}:)")
# Words that may stand between a cue and the number or id it introduces ("QQ号码是", "微信搜索").
_FILLER_WORDS = ("公众号", "号码", "账号", "帐号", "搜索", "同号", "微信", "空间", "号", "码", "是", "为", "群",
                 "加", "我", "的", "搜", "id", "vx", "wx", "q")
# Filler that says "what follows is the id": an id of letters only needs one of these.
_MARKERS = (":", "号", "是", "id", "搜索", "搜")
_WECHAT_ID = re.compile(r"[a-z][a-z0-9_-]{5,19}(?![a-z0-9_-])")
_URL = re.compile(r"(?<![a-z0-9])https?://[a-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z0-9\-._~%!$&'()*+,;=:@/?#\[\]]*)?")
_URL_TRAILING = ".,;:!?'"
_DOMAIN = re.compile(r"(?<![a-z0-9_@./-])[a-z0-9][a-z0-9-]*(?:(?:\.|。|点)[a-z0-9][a-z0-9-]*)+")
_DOT = re.compile(r"\.|。|点")
_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._%+-")
_EMAIL_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)*\.([a-z]{2,12})(?![a-z0-9-])")
_SENTENCE = re.compile(r"[a-z]+\.[A-Z][a-z]+")  # "early.Me", "sad.Then": a full stop, no space
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Top-level domains a bare name must end in: the common generic ones, those spam favours, and
# a few country codes. Left out: ones that are mostly file extensions or English words that
# follow a full stop without a space in chat ("thk.Me", "MacBook.Pro" in the corpus): py, md,
# sh, rs, pl, ai, in, is, it, at, to, so, do, go, me, pro, us.
TLDS = frozenset("""
    com net org cn top xyz cc vip info biz io co tv app shop site club online store wang ren
    ltd link fun ink life work tech live icu asia mobi name xin cloud group red kim win bid
    loan men date party edu gov hk tw mo uk jp kr sg ru de fr au ca ly gl
""".split())


@dataclass(frozen=True)
class Contact:
    kind: str
    value: str
    start: int  # code points into the text as sent, [start, end)
    end: int

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "start": self.start, "end": self.end}


class _Text:
    """One text being read: its folded form, the digit view and what is taken already."""

    def __init__(self, text: str) -> None:
        self.raw = text
        self.folded, self.spans = fold_with_offsets(text, mask_digits=False)
        self.digits = self.folded.translate(_DIGITS_OF)  # same length: one character for one
        self.taken = bytearray(len(self.folded))  # 1: a character some contact took
        self.found: list[tuple[int, int, str, str]] = []  # folded start, end, kind, value
        self._groups: list[tuple[int, int]] | None = None
        self._links: list[bool] = []

    def free(self, start: int, end: int) -> bool:
        return self.taken.find(1, start, end) < 0

    def add(self, start: int, end: int, kind: str, value: str) -> None:
        self.taken[start:end] = b"\x01" * (end - start)
        self.found.append((start, end, kind, value))

    @property
    def groups(self) -> list[tuple[int, int]]:
        """Digit groups ``[start, end)`` in order; ``links[i]``: group i+1 continues group i."""
        if self._groups is None:
            self._groups = [m.span() for m in _GROUP.finditer(self.digits)]
            self._links = [self._linked(a[1], b[0]) for a, b in zip(self._groups, self._groups[1:])]
        return self._groups

    def _linked(self, end: int, start: int) -> bool:
        gap = self.folded[end:start]
        return len(gap) <= MAX_GAP and is_dropped(gap) and not _NEWLINE.search(gap)

    def linked(self, i: int) -> bool:
        """Whether group ``i + 1`` continues group ``i`` (both free)."""
        groups = self.groups
        return (i + 1 < len(groups) and self._links[i] and self.free(*groups[i]) and self.free(*groups[i + 1]))

    def skip_filler(self, at: int) -> tuple[int, bool]:
        """Past separators and filler words after a cue (at most :data:`MAX_FILLER` characters):
        the position reached and whether a marker (``:``, ``号``…) was among them."""
        folded, limit, marked = self.folded, min(len(self.folded), at + MAX_FILLER), False
        while at < limit:
            char = folded[at]
            if char == ":":
                marked = True
            if is_dropped(char) and char not in "_-" and not _NEWLINE.match(char):
                at += 1
                continue
            for word in _FILLER_WORDS:
                if folded.startswith(word, at) and not (word.isascii() and word.isalpha() and
                                                        _latin_next(folded, at + len(word))):
                    marked = marked or word in _MARKERS
                    at += len(word)
                    break
            else:
                break
        return at, marked


def _latin_next(folded: str, at: int) -> bool:
    return at < len(folded) and bool(_LATIN_CUE_BOUNDARY.match(folded[at]))


def _latin_cue_ok(folded: str, start: int, end: int) -> bool:
    """A cue spelled in Latin letters is a word of its own: no letter or digit right before it
    (``aqq``), none right after it except digits for QQ (``qq123456``) handled by the caller."""
    cue = folded[start:end]
    if not cue[:1].isascii() or not cue[:1].isalpha():
        return True
    return start == 0 or not _LATIN_CUE_BOUNDARY.match(folded[start - 1])


def find_contacts(text: str) -> list[Contact]:
    """The contacts in ``text``, in order of position (at most :data:`MAX_CONTACTS`; see
    :func:`count_and_find` for the total)."""
    return count_and_find(text)[1]


def count_and_find(text: str) -> tuple[int, list[Contact]]:
    """How many contacts ``text`` has, and the first :data:`MAX_CONTACTS` of them by position."""
    t = _Text(text)
    _urls(t)
    _emails(t)
    _domains(t)
    _qq(t)
    _wechat(t)
    _phones(t)
    t.found.sort()
    out = [Contact(kind, value, t.spans[s][0], t.spans[e - 1][1]) for s, e, kind, value in t.found[:MAX_CONTACTS]]
    return len(t.found), out


def _urls(t: _Text) -> None:
    for m in _URL.finditer(t.folded):
        url = m.group()
        while url and url[-1] in _URL_TRAILING or (url.endswith(")") and url.count("(") < url.count(")")):
            url = url[:-1]
        host = url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
        if "." not in host.strip("."):
            continue
        t.add(m.start(), m.start() + len(url), "url", url)


def _emails(t: _Text) -> None:
    folded = t.folded
    at = folded.find("@")
    while at >= 0:
        start = at
        while start > 0 and folded[start - 1] in _EMAIL_LOCAL and at - start < 64:
            start -= 1
        while start < at and folded[start] in ".-+":
            start += 1
        m = _EMAIL_DOMAIN.match(folded, at + 1)
        if m is not None and m.group(1) not in TLDS and len(m.group(1)) != 2:
            m = None  # "t&c@kiosk.reply": an @ in prose, not an address
        if start < at and m is not None and t.free(start, m.end()):
            t.add(start, m.end(), "email", folded[start:m.end()])
        at = folded.find("@", at + 1)


def _domains(t: _Text) -> None:
    for m in _DOMAIN.finditer(t.folded):
        labels = _DOT.split(m.group())
        start = m.start()
        if "www" in labels[1:]:  # "mates.www.getzed.co.uk": a word, a full stop, then the name
            w = labels.index("www", 1)
            start += len(".".join(labels[:w])) + 1
            labels = labels[w:]
        # The longest prefix of the labels that ends in a known TLD ("abc.com.cn", "abc.com").
        k = len(labels)
        while k >= 2 and labels[k - 1] not in TLDS:
            k -= 1
        if k < 2 or not all(_LABEL.fullmatch(label) for label in labels[:k]):
            continue
        if labels[k - 1] in TLDS and labels[k - 2] in ("com", "net", "org", "gov", "edu") and k == 2:
            continue  # "com.cn" alone is a suffix, not a name
        end = start + len(".".join(labels[:k]))  # 点 and 。 are one character, like "."
        if k == 2 and _SENTENCE.fullmatch(t.raw[t.spans[start][0]:t.spans[end - 1][1]]):
            continue  # "lar.Me watching": two words across a full stop written without a space
        if t.free(start, end):
            t.add(start, end, "domain", ".".join(labels[:k]))


def _number_from(t: _Text, i: int, longest: int) -> list[tuple[int, str]]:
    """The sequences of linked groups starting at group ``i``, as (last group, digits), while
    they have at most ``longest`` digits."""
    groups, digits = t.groups, t.digits
    out: list[tuple[int, str]] = []
    text = ""
    j = i
    while True:
        text += digits[groups[j][0]:groups[j][1]]
        if len(text) > longest:
            break
        out.append((j, text))
        if not t.linked(j):
            break
        j += 1
    return out


def _qq(t: _Text) -> None:
    folded, groups = t.folded, t.groups
    if not groups:
        return
    starts = {start: n for n, (start, _) in enumerate(groups)}
    reached = 0
    for m in _QQ_CUE.finditer(folded):
        if m.start() < reached or not _latin_cue_ok(folded, m.start(), m.end()) or not t.free(*m.span()):
            continue  # (a cue inside the filler of the one before leads where that one led)
        if m.group() == "q" and m.end() < len(folded) and folded[m.end()].isalpha() and folded[m.end()].isascii():
            continue  # a q inside a word ("quick")
        at, _ = t.skip_filler(m.end())
        reached = at
        i = starts.get(at)
        if i is None or not t.free(*groups[i]):
            continue
        sequences = _number_from(t, i, 11)
        if not sequences:
            continue
        j, number = sequences[-1]
        if 5 <= len(number) <= 11 and number[0] != "0":
            t.add(groups[i][0], groups[j][1], "qq", number)


def _wechat(t: _Text) -> None:
    folded = t.folded
    reached = 0
    for m in _WECHAT_CUE.finditer(folded):
        if m.start() < reached or not _latin_cue_ok(folded, m.start(), m.end()) or not t.free(*m.span()):
            continue
        cue = m.group()
        if cue.isascii() and cue.isalpha() and _latin_next(folded, m.end()):
            continue  # "wxid_…", "vxabc": the cue is part of a word
        at, marked = t.skip_filler(m.end())
        reached = at
        id_match = _WECHAT_ID.match(folded, at)
        if id_match is None:
            continue
        wechat_id = id_match.group()
        if wechat_id.isalpha() and not marked:
            continue  # letters only, no "：" or "号": an English word ("打开微信 settings")
        if t.free(*id_match.span()):
            t.add(id_match.start(), id_match.end(), "wechat", wechat_id)


def _phone(number: str) -> tuple[str, str] | None:
    """(kind, value) if ``number`` (digits) is a whole phone number."""
    if m := _MOBILE.fullmatch(number):
        return "mobile", m.group(1)
    if m := _LANDLINE.fullmatch(number):
        return "landline", number
    if m := _LANDLINE_86.fullmatch(number):
        return "landline", "0" + m.group(1)
    if _SERVICE.fullmatch(number):
        return "landline", number
    return None


def _thousands(t: _Text, i: int, j: int) -> bool:
    """Groups ``i..j`` written as an amount: joined by commas, three digits after each comma."""
    groups, folded = t.groups, t.folded
    if i == j:
        return False
    return all(folded[groups[k][1]:groups[k + 1][0]] == "," and groups[k + 1][1] - groups[k + 1][0] == 3
               for k in range(i, j))


def _phones(t: _Text) -> None:
    """Each chain of linked free groups is joined once; from each group of it, the longest
    sequence that is a phone number is taken (and the scan goes on after it)."""
    groups, digits = t.groups, t.digits
    i = 0
    while i < len(groups):
        if not t.free(*groups[i]):
            i += 1
            continue
        k = i
        while t.linked(k):
            k += 1
        chain = "".join(digits[s:e] for s, e in groups[i:k + 1])
        ends = list(itertools.accumulate(e - s for s, e in groups[i:k + 1]))
        p = i
        while p <= k:
            first = ends[p - i - 1] if p > i else 0
            best: tuple[int, str, str] | None = None
            foreign = groups[p][0] > 0 and t.folded[groups[p][0] - 1] == "+" and not chain.startswith("86", first)
            if chain[first:first + 2] in _HEADS and not foreign:  # "+1 415 555 0100" is not a mobile
                for q in range(p, k + 1):
                    length = ends[q - i] - first
                    if length > _LONGEST_PHONE:
                        break
                    phone = _phone(chain[first:ends[q - i]]) if length >= 10 else None
                    if phone is not None and not _thousands(t, p, q):
                        best = (q, *phone)
            if best is None:
                p += 1
                continue
            q, kind, value = best
            t.add(groups[p][0], groups[q][1], kind, value)
            p = q + 1
        i = k + 1
