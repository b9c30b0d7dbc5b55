"""Block and allow term lists (docs/contracts.md#term-lists): plain text files a moderation team
edits, matched on the normalized text, hot-reloaded without a restart.

Layout of the lists folder (``ANTISPAM_LISTS_DIR``, default ``lists/``)::

    block.txt  allow.txt                    the list set "default"
    <set>.block.txt  <set>.allow.txt        the list set <set> (letters, digits, _ and -)

A policy names the list sets it applies (:mod:`antispam.policies`). A file holds one term per
line: a plain term, or ``re:`` and a regular expression in RE2's syntax (:func:`compile_pattern`);
blank lines and lines starting
with ``#`` are ignored. Plain terms go through :func:`antispam.text.normalize` and are found with
an Aho–Corasick automaton (``pyahocorasick``) on the *compact* form of the normalized text: the
normalized text without its spaces, except a space between two Latin letters or digits. So the
term ``加微信`` matches ``加微信``, ``加 微 信``, ``加.微.信`` and ``加微信``'s traditional form,
and ``加v信`` matches ``加Ｖ信``, ``加 V 信`` and ``加v信``; ``vip会员`` matches ``VIP 会员``; but
``ab`` does not match ``a b``. ``re:`` patterns run on the normalized text itself (with its
spaces, digits masked to ``x``), on RE2 (``google-re2``): time linear in the text, whatever the
pattern, where Python's backtracking ``re`` takes exponential time on ``(x+x+)+y`` against a run
of digits (issue 21). Constructs only a backtracking engine can run (backreferences, lookaround)
are refused with the file and the line; the work of all patterns on one request is bounded by
:func:`pattern_work` against the service's ``max_pattern_work``.

A term with digits (a hotline number, ``4008123456`` or ``400-812-3456``) would match every
number of its length on the masked text, so it is matched on the *digit* form instead: the same
normalizer with the digits kept (``normalize(text, mask_digits=False)``: full-width and circled
digits fold to ASCII), compacted the same way except that a space between two digits is dropped
too. So separators inside a number (``-``, ``.``, spaces, ``－``) are ignored, in the term and in
the text, and the term matches whole numbers only: not where a digit directly precedes its first
digit or follows its last one. The digit form is computed only for texts that have digits and
only while a loaded list has such terms.

Only :class:`ListsWatcher` touches the disk. Each poll compares the files' (mtime, size, inode);
changed files are parsed (by :meth:`ListsWatcher.refresh_async` in a worker thread, so the event
loop keeps answering), and the new snapshot replaces the old one in one assignment. A file that
fails to parse keeps its previous contents serving (or none, if it never parsed), and the error
shows in ``GET /lists`` and the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from antispam.errors import UserError
from antispam.text import normalize

log = logging.getLogger(__name__)

KINDS = ("block", "allow")
DEFAULT_SET = "default"
_FILE = re.compile(r"(?:([A-Za-z0-9_-]+)\.)?(block|allow)\.txt")
REGEX_PREFIX = "re:"
# Lines parsed between two hand-overs of the GIL (see parse_terms).
YIELD_EVERY_LINES = 256
# A list file is read whole; beyond this it is refused (a mistake, not a list).
MAX_FILE_BYTES = 20_000_000
# Largest compiled RE2 program a pattern may have (``programsize``: ``办.{0,2}证`` is 28,
# ``a{1000}`` about 1,000). RE2's time is linear in the text, with a factor that grows with the
# program when its DFA falls back to the NFA: a cap keeps that factor small.
MAX_PROGRAM_SIZE = 2_000


class ListError(UserError):
    """A list file that cannot be used; the message names the file and the lines."""


class CompiledPattern(Protocol):
    """What matching needs of a compiled ``re:`` pattern (an RE2 ``_Regexp``)."""

    pattern: str
    programsize: int

    def finditer(self, text: bytes) -> Iterator[Any]: ...

    def fullmatch(self, text: str) -> Any: ...


# RE2 names what it cannot run; the message says why, in the list file's terms.
_RE2_UNSUPPORTED = (
    (re.compile(r"\\[1-9]|\(\?P=|\\k<"), "backreferences need a backtracking engine; RE2 (linear time) has none"),
    (re.compile(r"\(\?<?[=!]"), "lookahead and lookbehind need a backtracking engine; RE2 (linear time) has none"),
)


def compile_pattern(source: str) -> CompiledPattern:
    """A ``re:`` line's pattern compiled with RE2; :class:`ValueError` says what is wrong.

    Why RE2 and not Python's ``re``: list files are written by people, and one pattern with
    nested quantifiers (``(x+x+)+y``) made ``re`` backtrack for seconds on a text of digits
    (they normalize to ``x``), on the event loop, on every replica. RE2 never backtracks: its time
    is linear in the text. It has no backreferences and no lookaround, so those are refused here,
    with a message saying so, instead of being silently read as something else.
    """
    import re2  # google-re2; imported here, on the first list with a pattern

    options = re2.Options()
    options.log_errors = False  # the refusal goes to the caller (the file and line), not stderr
    # Only the span of a hit is used: without capture groups RE2 finds it with its DFAs alone
    # (forward for the end, backward for the start), never the slower submatch engines.
    options.never_capture = True
    try:
        compiled = re2.compile(source, options)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        for construct, why in _RE2_UNSUPPORTED:
            if construct.search(source):
                raise ValueError(f"{why} ({detail})") from None
        raise ValueError(detail) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise ValueError(f"too large once compiled ({compiled.programsize} RE2 instructions; "
                         f"at most {MAX_PROGRAM_SIZE})")
    return compiled


# A space of the normalized text that is not between two Latin letters/digits.
_DROPPED_SPACE = re.compile(r"(?<![a-z0-9]) | (?![a-z0-9])")
# The same, and also a space between two digits (the digit form: separators inside a number).
_DROPPED_SPACE_DIGITS = re.compile(r"(?<![a-z0-9]) | (?![a-z0-9])|(?<=[0-9]) (?=[0-9])")
_HAS_DIGIT = re.compile(r"\d")


def compact(normalized: str, digits: bool = False) -> tuple[str, list[int]]:
    """The normalized text without spaces except between two Latin letters/digits (with
    ``digits``, not between two digits either), and for each of its characters the index in
    ``normalized``. Works run by run (C speed), not per character: it runs on every text of
    every request while lists are loaded."""
    pieces: list[str] = []
    index: list[int] = []
    at = 0
    for m in (_DROPPED_SPACE_DIGITS if digits else _DROPPED_SPACE).finditer(normalized):
        pieces.append(normalized[at:m.start()])
        index.extend(range(at, m.start()))
        at = m.end()
    pieces.append(normalized[at:])
    index.extend(range(at, len(normalized)))
    return "".join(pieces), index


@dataclass(frozen=True)
class Match:
    """A term found in the normalized text: ``[start, end)`` in normalized characters."""

    term: str
    start: int
    end: int
    kind: str  # block | allow
    list_set: str


def digit_form(raw: str) -> tuple[str, str, list[int]]:
    """The digit form of a raw text: ``normalize(raw, mask_digits=False)``, and its compact form
    (spaces between digits dropped too) with the index map of :func:`compact`."""
    unmasked = normalize(raw, mask_digits=False)
    return (unmasked, *compact(unmasked, digits=True))


@dataclass
class TermList:
    """One parsed file: plain terms in automata (terms with digits in their own, matched on the
    digit form), ``re:`` patterns compiled."""

    terms: list[str] = field(default_factory=list)  # as written in the file, without digits
    patterns: list[tuple[str, CompiledPattern]] = field(default_factory=list)
    automaton: Any = None
    digit_terms: list[str] = field(default_factory=list)  # terms with digits, as written
    digit_automaton: Any = None

    def __len__(self) -> int:
        return len(self.terms) + len(self.digit_terms) + len(self.patterns)

    def find(self, normalized: str, packed: tuple[str, list[int]] | None = None,
             digits: tuple[str, str, list[int]] | None = None) -> list[tuple[str, int, int]]:
        """``(term, start, end)`` of every hit, offsets into ``normalized``. Terms with digits are
        looked for only when ``digits`` (:func:`digit_form` of the same text) is given; its offsets
        are the same as ``normalized``'s (digits are replaced one for one)."""
        hits: list[tuple[str, int, int]] = []
        if self.automaton is not None:
            text, index = packed or compact(normalized)
            for end, (length, term) in self.automaton.iter(text):
                start = end - length + 1
                hits.append((term, index[start], index[end] + 1))
        if self.digit_automaton is not None and digits is not None:
            unmasked, text, index = digits
            for end, (length, term) in self.digit_automaton.iter(text):
                first, last = index[end - length + 1], index[end]
                # Whole numbers only: no digit directly before the first digit or after the last.
                if unmasked[first].isdigit() and first > 0 and unmasked[first - 1].isdigit():
                    continue
                if unmasked[last].isdigit() and last + 1 < len(unmasked) and unmasked[last + 1].isdigit():
                    continue
                hits.append((term, first, last + 1))
        if self.patterns:
            hits.extend(self._pattern_hits(normalized))
        return hits

    def _pattern_hits(self, normalized: str) -> Iterator[tuple[str, int, int]]:
        """The ``re:`` hits, in code points. RE2 runs on the UTF-8 bytes, encoded once per text:
        given a ``str``, the binding re-encodes the text and recounts its offsets on every
        match (measured: 35 ms for 28 hits in a 5,000-character text, 0.4 ms on bytes). Byte
        offsets turn into code points by decoding only the bytes between consecutive hits."""
        data = normalized.encode("utf-8")
        ascii_only = len(data) == len(normalized)
        for source, pattern in self.patterns:
            at_byte = at_char = 0
            for m in pattern.finditer(data):
                start, end = m.start(), m.end()
                if end <= start:
                    continue
                if ascii_only:
                    yield source, start, end
                    continue
                at_char += len(data[at_byte:start].decode("utf-8"))
                first = at_char
                at_char += len(data[start:end].decode("utf-8"))
                at_byte = end
                yield source, first, at_char


def parse_terms(lines: Iterable[str], name: str = "<list>") -> TermList:
    """Parse a list file's lines; :class:`ListError` names every bad line (1-based)."""
    problems: list[str] = []
    parsed = TermList()
    keys: dict[str, str] = {}
    digit_keys: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        if number % YIELD_EVERY_LINES == 0:
            # Parsing runs in a worker thread while the service's event loop waits for the GIL:
            # hand it over now and then instead of at Python's 5 ms switch interval (measured
            # with a 10,000-term list: longest loop stall 6-14 ms instead of 9-63 ms).
            time.sleep(0)
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(REGEX_PREFIX):
            source = line[len(REGEX_PREFIX):].strip()
            try:
                pattern = compile_pattern(source)
            except ValueError as exc:
                problems.append(f"line {number}: bad regular expression {source!r}: {exc}")
                continue
            if pattern.fullmatch(""):
                problems.append(f"line {number}: pattern {source!r} matches the empty text")
                continue
            parsed.patterns.append((line, pattern))
            continue
        unmasked = normalize(line, mask_digits=False)  # without digits: the same as normalize(line)
        if _HAS_DIGIT.search(unmasked):
            # Matched on the digit form, separators inside numbers ignored (module docstring).
            key, _ = compact(unmasked, digits=True)
            digit_keys.setdefault(key, line)
            parsed.digit_terms.append(line)
            continue
        key, _ = compact(unmasked)
        if not key:
            problems.append(f"line {number}: term {line!r} is empty once normalized")
            continue
        keys.setdefault(key, line)
        parsed.terms.append(line)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ListError(f"{name}: " + "; ".join(shown))
    parsed.automaton = _automaton(keys)
    parsed.digit_automaton = _automaton(digit_keys)
    return parsed


def _automaton(keys: dict[str, str]) -> Any:
    """An Aho–Corasick automaton of ``key -> (len(key), term as written)``; None without keys."""
    if not keys:
        return None
    # Imported here: a service without term lists never needs it (and an image built from a lock
    # file older than this dependency still starts).
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for key, line in keys.items():
        automaton.add_word(key, (len(key), line))
    automaton.make_automaton()
    return automaton


def read_list_file(path: str | os.PathLike[str]) -> TermList:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ListError(f"{path}: {size} bytes; a list file may have at most {MAX_FILE_BYTES}")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ListError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise ListError(f"{path}: {exc.strerror or exc}") from None
    return parse_terms(text.splitlines(), str(path))


@dataclass
class ListSet:
    block: TermList = field(default_factory=TermList)
    allow: TermList = field(default_factory=TermList)


@dataclass
class Snapshot:
    """What is loaded at one moment; replaced whole, never changed."""

    sets: dict[str, ListSet] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    loaded_at: float = 0.0

    def find(self, normalized: str, list_sets: Iterable[str], raw: str | None = None) -> list[Match]:
        """Hits of the named list sets in ``normalized`` (``normalize(raw)``). Terms with digits
        need ``raw``: its :func:`digit_form` is made only when the text has digits (masked, they
        are ``x``) and one of the lists has such terms."""
        packed = compact(normalized)
        used = [(name, self.sets[name]) for name in list_sets if name in self.sets]
        digits = None
        if raw is not None and "x" in normalized and any(
                getattr(lists, kind).digit_automaton is not None for _, lists in used for kind in KINDS):
            form = digit_form(raw)
            if form[0] != normalized:  # it has digits ("x" may also be a letter x)
                digits = form
        out: list[Match] = []
        for name, lists in used:
            for kind in KINDS:
                for term, start, end in getattr(lists, kind).find(normalized, packed, digits):
                    out.append(Match(term, start, end, kind, name))
        out.sort(key=lambda m: (m.start, m.end, m.kind, m.term))
        return out

    def pattern_size(self, list_sets: Iterable[str]) -> tuple[int, int]:
        """The ``re:`` patterns the named list sets run on each text (block and allow): how
        many, and their RE2 program sizes added up (:func:`pattern_work`)."""
        patterns = [pattern for name in dict.fromkeys(list_sets) if name in self.sets
                    for kind in KINDS for _, pattern in getattr(self.sets[name], kind).patterns]
        return len(patterns), sum(pattern.programsize for pattern in patterns)

    def status(self) -> dict[str, Any]:
        return {
            "sets": {name: {kind: len(getattr(s, kind)) for kind in KINDS} for name, s in sorted(self.sets.items())},
            "files": dict(sorted(self.files.items())),
            "loaded_at": self.loaded_at,
        }


class ListsWatcher:
    """Loads the lists folder and reloads it when a file changes.

    :meth:`refresh_async` (the service, from its event loop) looks at the folder on the loop (a
    few ``stat`` calls) and parses changed files in a worker thread, then swaps the snapshot in
    on the loop; :meth:`refresh` does all of it in the calling thread (start-up, tools, tests).
    """

    def __init__(self, folder: str | os.PathLike[str], poll_seconds: float = 2.0) -> None:
        self.folder = Path(folder)
        self.poll_seconds = poll_seconds
        self.current = Snapshot()
        self._parsed: dict[str, tuple[tuple[int, int, int], TermList]] = {}
        self._signature: dict[str, tuple[int, int, int]] | None = None
        self._last_poll = float("-inf")
        self._build_lock = threading.Lock()  # one build at a time (it updates _parsed)
        self._building: asyncio.Future[Snapshot] | None = None
        self.reloads = 0

    def due(self, now: float | None = None) -> bool:
        """Whether a poll is due now; if so, the poll clock restarts."""
        now = time.monotonic() if now is None else now
        if now - self._last_poll >= self.poll_seconds:
            self._last_poll = now
            return True
        return False

    def maybe_refresh(self, now: float | None = None) -> Snapshot:
        if self.due(now):
            self.refresh()
        return self.current

    async def maybe_refresh_async(self, now: float | None = None) -> Snapshot:
        if self.due(now):
            await self.refresh_async()
        return self.current

    def _scan(self) -> dict[str, tuple[int, int, int]]:
        found: dict[str, tuple[int, int, int]] = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return found
        for entry in entries:
            if _FILE.fullmatch(entry.name):
                try:
                    st = entry.stat()
                except OSError:
                    continue
                found[entry.name] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return found

    def refresh(self) -> bool:
        """Re-read changed files in this thread; True if a new snapshot was swapped in."""
        signature = self._scan()
        if signature == self._signature:
            return False
        self._install(signature, self._build(signature))
        return True

    async def refresh_async(self) -> bool:
        """:meth:`refresh` with the parsing in a worker thread: the event loop keeps serving
        (with the snapshot of before) while a large list is parsed. While one refresh runs, a
        second caller does not wait for it and keeps the current snapshot. True if swapped."""
        if self._building is not None:
            return False
        signature = self._scan()
        if signature == self._signature:
            return False
        loop = asyncio.get_running_loop()
        self._building = loop.run_in_executor(None, self._build, signature)
        try:
            snapshot = await self._building
        except Exception:  # not a bad file (that is kept in the snapshot): keep serving, retry
            log.exception("reloading the term lists failed; the previous lists keep serving")
            return False
        finally:
            self._building = None
        self._install(signature, snapshot)
        return True

    def _build(self, signature: dict[str, tuple[int, int, int]]) -> Snapshot:
        """Parse the changed files of ``signature`` into a new snapshot (no swap; any thread)."""
        with self._build_lock:
            sets: dict[str, ListSet] = {}
            files: dict[str, dict[str, Any]] = {}
            for name, sig in sorted(signature.items()):
                m = _FILE.fullmatch(name)
                assert m is not None
                set_name, kind = m.group(1) or DEFAULT_SET, m.group(2)
                info: dict[str, Any] = {"list_set": set_name, "kind": kind, "mtime": sig[0] / 1e9}
                previous = self._parsed.get(name)
                if previous is not None and previous[0] == sig:
                    terms = previous[1]
                else:
                    try:
                        terms = read_list_file(self.folder / name)
                        self._parsed[name] = (sig, terms)
                    except ListError as exc:
                        log.error("term list %s not reloaded, the previous one keeps serving: %s", name, exc)
                        info["error"] = str(exc)
                        terms = previous[1] if previous is not None else TermList()
                        info["serving"] = "previous" if previous is not None else "nothing"
                info["terms"] = len(terms)
                files[name] = info
                setattr(sets.setdefault(set_name, ListSet()), kind, terms)
            for gone in set(self._parsed) - set(signature):
                del self._parsed[gone]
            return Snapshot(sets, files, time.time())

    def _install(self, signature: dict[str, tuple[int, int, int]], snapshot: Snapshot) -> None:
        self._signature = signature
        self.current = snapshot  # one assignment: the swap
        self.reloads += 1
        log.info("term lists loaded: %s", ", ".join(f"{n} {len(s.block)} block/{len(s.allow)} allow"
                                                    for n, s in sorted(snapshot.sets.items())) or "none")


def pattern_work(normalized: Iterable[str], program_size: int) -> int:
    """The pattern work of one request: its normalized characters × the RE2 program sizes of the
    patterns its policy runs (:meth:`Snapshot.pattern_size`), checked against
    ``max_pattern_work`` before any pattern runs (docs/contracts.md#limits).

    Why weighted by program size: RE2's time is linear in the text, with a factor that grows
    with the compiled pattern (the DFA's states are built as the text is read). Measured with
    ``scripts/pattern_cost.py`` (100 texts × 5,000 characters, 10 copies of a pattern): 0.5-1 ns
    per character per instruction for ``(x+x+)+y`` (9 instructions) and ``办.{0,2}证`` (28),
    1.35-1.9 ns for a 293-instruction pattern that hits every ~150 characters; a count of
    patterns alone would rate all three the same."""
    return program_size * sum(len(text) for text in normalized) if program_size else 0


def check_file(path: str) -> tuple[int, str]:
    """``antispam lists check FILE``: (exit code, message)."""
    try:
        parsed = read_list_file(path)
    except ListError as exc:
        return 2, str(exc)
    digits = (f" and {len(parsed.digit_terms)} terms with digits (matched on the digits as written, "
              "separators inside numbers ignored, whole numbers only)" if parsed.digit_terms else "")
    return 0, f"{path}: ok, {len(parsed.terms)} terms{digits}, {len(parsed.patterns)} patterns"
