"""Near-duplicate signatures of normalized texts (issue 24): MinHash of character shingles, cut
into LSH bands, so the variants of one ad share a band key and different texts do not.

Input is the normalized text of the one pipeline (:func:`antispam.text.normalize`): traditional
characters, full-width and circled digits are folded there, emoji and separators are dropped and
every digit is ``x``. The spaces it leaves where it dropped something are removed here too, so
``加 微 信`` and ``加*微*信`` and ``加微信`` are the same characters; what is left to vary is the
wording and the text around the ad (the robustness variants ``prepended``/``surrounded``), which
MinHash measures as Jaccard similarity of the shingle sets.

* Shingles: :data:`SHINGLE` consecutive characters (code points).
* MinHash: :data:`PERMUTATIONS` hash functions ``a·x + b mod 2^64`` (odd ``a``) of each shingle
  packed exactly into one integer ``x``; all in numpy, no per-character Python loop. Stable
  across processes and machines (no ``hash()``, whose seed differs per process): two service
  processes sharing a Redis must compute the same keys.
* LSH: :data:`BANDS` bands of :data:`ROWS` minima, each folded into one 64-bit key. Two texts
  with Jaccard similarity J share at least one band with probability ``1 - (1 - J^4)^16``:
  0.98 at J = 0.7, 0.64 at 0.5, 0.12 at 0.3, 0.002 at 0.1.
* Pieces (:func:`piece_keys`): an exact key per long sentence, for an ad inside ordinary chat.

Why not ``datasketch``: its ``MinHash`` hashes each shingle with SHA-1 in a Python loop and its
``MinHashLSH`` keeps buckets forever (no sliding window, no distinct-sender counts), so only the
hashing would be reused; the few lines here are numpy throughout and fit the window counting in
:mod:`antispam.campaigns`.

No Tornado, no TensorFlow: the core layer.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

SHINGLE = 3
PERMUTATIONS = 64
BANDS = 16
ROWS = PERMUTATIONS // BANDS
# Shorter texts (spaces removed) get no signature: "在吗", "你好", "新年快乐" are sent by everyone
# all the time, and one band of three shingles would make each a "campaign" of the whole platform.
MIN_CHARS = 10

_rng = np.random.default_rng(20240624)  # fixed: every process must draw the same functions
_A = _rng.integers(1, 2**63, PERMUTATIONS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
_B = _rng.integers(0, 2**63, PERMUTATIONS, dtype=np.uint64)
_BAND_MUL = _rng.integers(1, 2**63, ROWS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_S21, _S42 = np.uint64(21), np.uint64(42)
# Pieces (runs between the spaces normalization left) at least this long get an exact key too.
MIN_PIECE = 8
MAX_PIECES = 8
PIECE = "p"  # first character of a piece key (band keys start with a hex digit)


_NUMBER = re.compile("x{2,}")


def compact(normalized: str) -> str:
    """The characters a signature reads: the normalized text without its spaces, and each run of
    masked digits (``xxxxxxxxxxx``) as one ``x``: a number is one token, however long. Kept as
    runs, numbers gave every text that has one the same shingle ``xxx``, and short adverts made
    mostly of numbers ("xxxxxxxxxxxxxxxx夏中辉光大银行，QQxxxxxxxxxx") joined unrelated clusters."""
    return _NUMBER.sub("x", normalized.replace(" ", ""))


def minhash(normalized: str) -> np.ndarray | None:
    """The :data:`PERMUTATIONS` minima (uint64) of the text's shingles, or None when the text is
    shorter than :data:`MIN_CHARS` without spaces.

    A shingle of three code points (each < 2^21) is packed into one 63-bit integer, which is
    exact (no hashing, no collisions); hash function j is ``a_j·x + b_j mod 2^64`` with odd
    ``a_j`` (multiply-add). A repeated shingle changes no minimum, so none is removed."""
    chars = compact(normalized)
    if len(chars) < MIN_CHARS:
        return None
    c = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    x = (c[:-2] << _S42) | (c[1:-1] << _S21) | c[2:]
    h = np.multiply.outer(x, _A)
    h += _B
    return h.min(axis=0)


def band_keys(normalized: str) -> list[str]:
    """The :data:`BANDS` LSH band keys of the text (16 hex digits each, after the band's number
    so that equal values in different bands are different keys); [] for a text too short."""
    mins = minhash(normalized)
    if mins is None:
        return []
    hexed = (mins.reshape(BANDS, ROWS) * _BAND_MUL).sum(axis=1).tobytes().hex()
    return [f"{i:x}{hexed[16 * i:16 * i + 16]}" for i in range(BANDS)]


def piece_keys(normalized: str) -> list[str]:
    """Exact keys of the text's pieces of :data:`MIN_PIECE` or more characters (the runs between
    the spaces normalization left where punctuation was): an ad pasted behind or inside
    ordinary chat (the ``prepended``/``surrounded`` variants) keeps its sentences whole, while
    the chat around it lowers the Jaccard similarity of the whole text. At most
    :data:`MAX_PIECES`, the longest first. Numbers count as one character here too, so a
    number alone between punctuation (every phone number) is no sentence."""
    pieces = [p for p in (_NUMBER.sub("x", p) for p in normalized.split(" ")) if len(p) >= MIN_PIECE]
    if len(pieces) > MAX_PIECES:
        pieces = sorted(pieces, key=len, reverse=True)[:MAX_PIECES]
    return [PIECE + hashlib.blake2b(p.encode("utf-8"), digest_size=8).hexdigest() for p in dict.fromkeys(pieces)]


def signature_keys(normalized: str) -> list[str]:
    """Every key a text is looked up and filed under (:mod:`antispam.campaigns`): its band keys,
    then its piece keys; [] for a text too short to have any."""
    bands = band_keys(normalized)
    return bands + piece_keys(normalized) if bands else []


def jaccard_estimate(a: str, b: str) -> float:
    """Share of equal minima of two texts (an estimate of their shingle Jaccard similarity); for
    tests and measurement."""
    ma, mb = minhash(a), minhash(b)
    if ma is None or mb is None:
        return 0.0
    return float(np.mean(ma == mb))
