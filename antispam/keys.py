"""API keys, roles and per-key rate limits (issue 11); off unless a keys file is configured.

The keys file (``ANTISPAM_KEYS_FILE``, docs/operations.md#api-keys) has one key per line::

    key_id<TAB>sha256(key) as hex<TAB>roles, comma-separated<TAB>rate per second[<TAB>settings]

The optional fifth field holds the key's settings as space-separated ``name=value`` pairs
(issue 23): ``callback_url=https://...`` where appeal outcomes are posted for this key, and
``callback_secret=...`` the shared secret their HMAC-SHA256 signature is made with
(:mod:`antispam.callbacks`; docs/contracts.md#appeals). A callback secret makes the keys file a
secret (it already is one in k8s: the Secret ``antispam-keys``); keep it mode 0600.

Blank lines and lines starting with ``#`` are ignored. Only the hash is stored: the key itself
is printed once by ``antispam keys add`` and never written, logged or counted anywhere; logs,
metrics and the feedback store name a request's *key id*.

Roles (issue 21; which route needs which: :data:`antispam.routes.ROUTE_ROLES`):

- ``predict``: ``/predict``;
- ``feedback``: ``POST /feedback`` (stored; counts toward retrain only with enough agreeing keys);
- ``labeler``: ``POST /feedback`` too, and its verdicts are the ones retrain *trusts* alone;
- ``viewer``: the console's read-only data and ``GET /models`` (no texts are scored, nothing changes);
- ``admin``: operations (``/lists``), and it implies ``predict``, ``feedback`` and ``viewer``
  but **not** ``labeler``: the key an operator uses to open the console must not be one whose
  single verdict rewrites a corpus label. A person who both operates and labels gets both roles.

:class:`KeyRing` re-reads the file when its inode, mtime or size changes (checked at most once per
``poll_seconds``), so keys are added, revoked and rotated without a restart. A file that turns
unreadable or invalid fails closed: no key authenticates until the file is fixed, ``/readyz``
answers 503 ``keys_file_invalid`` and ``antispam_keys_file_valid`` is 0 (docs/operations.md#api-keys:
why not keep the last good keys). A keys file that does not exist yet means keys are on and none
is known: protected routes answer 401 (fail closed) until ``antispam keys add`` creates it.

Rate limits: a token bucket per key id, refilled at the key's rate, holding at most
``2 × rate`` tokens (the burst); an empty bucket answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from antispam.errors import UserError

log = logging.getLogger(__name__)

ROLES = ("predict", "feedback", "labeler", "viewer", "admin")
# What a role grants besides itself. admin is not a labeler: operating the service and vouching for
# labels are separate duties (issue 21).
IMPLIES: dict[str, frozenset[str]] = {
    "admin": frozenset({"predict", "feedback", "viewer"}),
    "labeler": frozenset({"feedback"}),
}
ENV_VAR = "ANTISPAM_KEYS_FILE"
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
BURST_FACTOR = 2.0


class KeysFileError(UserError):
    """The keys file cannot be read or has a bad line (the message names the line, never a key)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    digest: str  # sha256 of the key, hex
    roles: frozenset[str]
    rate: float  # requests per second; the bucket holds 2 × rate
    callback_url: str | None = None  # issue 23: where appeal outcomes are posted (settings field)
    callback_secret: str | None = field(default=None, repr=False)  # their HMAC key

    def allows(self, role: str) -> bool:
        return role in granted(self.roles)


def granted(roles: frozenset[str] | set[str]) -> frozenset[str]:
    """The roles a key holds, with what they imply (:data:`IMPLIES`)."""
    return frozenset(roles).union(*(IMPLIES.get(r, frozenset()) for r in roles))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_line(line: str, where: str) -> ApiKey | None:
    """One line of the keys file, or None for a blank line or a comment."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.split("\t")
    if len(fields) not in (4, 5):
        raise KeysFileError(f"{where}: expected 4 tab-separated fields (key id, sha256, roles, rate) and "
                            f"optional settings, got {len(fields)}")
    key_id, digest, roles_text, rate_text = (f.strip() for f in fields[:4])
    if not _KEY_ID.fullmatch(key_id):
        raise KeysFileError(f"{where}: bad key id (letters, digits, _ . @ -, at most 64)")
    if not _DIGEST.fullmatch(digest.lower()):
        raise KeysFileError(f"{where}: key {key_id}: the second field must be a sha256 hex digest")
    roles = frozenset(r.strip() for r in roles_text.split(",") if r.strip())
    unknown = roles - set(ROLES)
    if not roles or unknown:
        raise KeysFileError(f"{where}: key {key_id}: roles must be some of {', '.join(ROLES)}, "
                            f"got {roles_text[:60]!r}")
    try:
        rate = float(rate_text)
    except ValueError:
        rate = math.nan
    if not math.isfinite(rate) or rate <= 0:
        raise KeysFileError(f"{where}: key {key_id}: rate must be a number of requests per second > 0")
    settings = parse_settings(fields[4] if len(fields) == 5 else "", f"{where}: key {key_id}")
    return ApiKey(key_id, digest.lower(), roles, rate, settings.get("callback_url"),
                  settings.get("callback_secret"))


SETTINGS = ("callback_url", "callback_secret")
MIN_SECRET_CHARS = 16


def parse_settings(text: str, where: str) -> dict[str, str]:
    """The fifth field: ``name=value`` pairs; a callback URL needs a secret and vice versa (an
    unsigned callback could be forged by anyone who can reach the receiver)."""
    settings: dict[str, str] = {}
    for pair in text.split():
        name, sep, value = pair.partition("=")
        if not sep or name not in SETTINGS or not value:
            raise KeysFileError(f"{where}: settings are name=value pairs of {', '.join(SETTINGS)}")
        settings[name] = value
    url, secret = settings.get("callback_url"), settings.get("callback_secret")
    if (url is None) != (secret is None):
        raise KeysFileError(f"{where}: callback_url and callback_secret go together")
    if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
        raise KeysFileError(f"{where}: callback_url must be an http:// or https:// URL")
    if secret is not None and len(secret) < MIN_SECRET_CHARS:
        raise KeysFileError(f"{where}: callback_secret must have at least {MIN_SECRET_CHARS} characters")
    return settings


def parse_keys(text: str, source: str = "keys file") -> dict[str, ApiKey]:
    """digest -> key; a key id or digest given twice is an error."""
    keys: dict[str, ApiKey] = {}
    ids: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        key = parse_line(line, f"{source} line {number}")
        if key is None:
            continue
        if key.key_id in ids or key.digest in keys:
            raise KeysFileError(f"{source} line {number}: key id {key.key_id} or its key is listed twice")
        ids.add(key.key_id)
        keys[key.digest] = key
    return keys


def load_keys(path: str | os.PathLike[str]) -> dict[str, ApiKey]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"cannot read keys file {path}: {exc}") from exc
    return parse_keys(text, str(path))


class KeyRing:
    """The keys of a file, re-read when it changes; thread-safe lookups by presented key.

    Fail closed: while the file on disk is invalid (unreadable, a bad line), :attr:`problem` says
    why, :meth:`lookup` knows no key (every protected route answers 401) and :attr:`errors`
    counts the failed reloads; the next valid version of the file brings the keys back.
    """

    def __init__(self, path: str | os.PathLike[str], *, poll_seconds: float = 1.0) -> None:
        self.path = Path(path)
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self.problem: str | None = None  # why the file on disk cannot be used; None: it can
        self.errors = 0  # reloads that found the file invalid (antispam_keys_file_errors_total)
        self._stamp = self._stat()
        if self._stamp is None:  # fail closed: keys on, none known yet (add some: no restart needed)
            log.warning("keys file %s does not exist yet: every route that needs a key answers 401 "
                        "until keys are added (antispam keys add)", self.path)
            self.keys: dict[str, ApiKey] = {}
        else:
            self.keys = load_keys(self.path)  # a bad file at start is an error
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        """What tells a changed file: the inode too, since an atomic rewrite (``keys rotate``:
        same size) may land within the filesystem's timestamp granularity of the last one."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    @property
    def valid(self) -> bool:
        return self.problem is None

    def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._checked < self.poll_seconds:
                return
            self._checked = now
            stamp = self._stat()
            if stamp == self._stamp and not force:
                return
            if stamp is None:  # deleted: no key is known (as before the file existed)
                keys: dict[str, ApiKey] = {}
            else:
                try:
                    keys = load_keys(self.path)
                except KeysFileError as exc:
                    self.errors += 1
                    if self.problem is None:
                        log.error("keys file changed and is invalid: no key authenticates until it is "
                                  "fixed (fail closed; /readyz answers 503): %s", exc)
                    self.keys, self._stamp, self.problem = {}, stamp, str(exc)
                    return
            if self.problem is not None:
                log.warning("keys file %s is valid again", self.path)
            self.keys, self._stamp, self.problem = keys, stamp, None
            log.info("keys file %s reloaded: %d keys", self.path, len(keys))

    def lookup(self, key: str) -> ApiKey | None:
        self.refresh()
        return self.keys.get(hash_key(key))

    def key_ids(self) -> list[str]:
        return sorted(k.key_id for k in self.keys.values())


class TokenBuckets:
    """One token bucket per key id (capacity ``BURST_FACTOR × rate``), full at first use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key_id: str, rate: float) -> float:
        """0.0 if a request may go now, else the seconds until one token is back."""
        now = self._clock()
        capacity = max(1.0, BURST_FACTOR * rate)
        with self._lock:
            tokens, when = self._buckets.get(key_id, (capacity, now))
            tokens = min(capacity, tokens + (now - when) * rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / rate


def new_key() -> str:
    return "as_" + secrets.token_urlsafe(32)


def add_key(path: str | os.PathLike[str], key_id: str, roles: list[str], rate: float) -> str:
    """Append a new key's line to the keys file atomically (write a copy, fsync, rename) and
    return the key, which is stored nowhere else: the caller shows it once."""
    from antispam.atomic import atomic_write_text

    path = Path(path)
    key = new_key()
    line = f"{key_id}\t{hash_key(key)}\t{','.join(roles)}\t{rate:.15g}"  # :g would round 1234567 to 1.23457e+06
    parse_line(line, "new key")  # the same checks as the reader
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
    except OSError as exc:
        raise KeysFileError(f"cannot read keys file {path}: {exc}") from exc
    current = parse_keys(existing, str(path))
    if key_id in {k.key_id for k in current.values()}:
        raise KeysFileError(f"key id {key_id} is already in {path}; pick another id")
    if existing and not existing.endswith("\n"):
        existing += "\n"
    if not existing:
        existing = "# key_id<TAB>sha256(key)<TAB>roles<TAB>rate per second (antispam keys add)\n"
    atomic_write_text(path, existing + line + "\n")  # readers see the old file or the new one
    return key


def _rewrite(path: str | os.PathLike[str], key_id: str,
             replace: Callable[[ApiKey, str], str | None]) -> ApiKey:
    """Rewrite the keys file with ``key_id``'s line replaced by ``replace(key, line)`` (None: removed),
    every other line (comments included) kept as it was; atomically, like :func:`add_key`.
    Returns the key as it was. The whole file must be valid: a change is never made on top of a
    file the service would refuse."""
    from antispam.atomic import atomic_write_text

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"cannot read keys file {path}: {exc}") from exc
    parse_keys(text, str(path))
    out: list[str] = []
    found: ApiKey | None = None
    for number, line in enumerate(text.splitlines(), 1):
        key = parse_line(line, f"{path} line {number}")
        if key is not None and key.key_id == key_id:
            found = key
            new = replace(key, line)
            if new is not None:
                out.append(new)
            continue
        out.append(line)
    if found is None:
        raise KeysFileError(f"no key id {key_id} in {path} (antispam keys list shows the ids)")
    new_text = "\n".join(out) + "\n"
    parse_keys(new_text, "the rewritten keys file")  # the same checks as the reader
    atomic_write_text(path, new_text)  # readers see the old file or the new one
    return found


def revoke_key(path: str | os.PathLike[str], key_id: str) -> ApiKey:
    """Remove ``key_id``'s line; a running service stops accepting the key at its next check
    (``keys_poll_seconds``), without a restart. Returns the removed key (id, roles, rate)."""
    return _rewrite(path, key_id, lambda key, line: None)


def rotate_key(path: str | os.PathLike[str], key_id: str) -> tuple[str, ApiKey]:
    """Give ``key_id`` a new random key, keeping its id, roles and rate; the old key stops working
    at the service's next check. Returns the new key (shown once by the caller) and the entry."""
    key = new_key()

    def line(old: ApiKey, text: str) -> str:  # only the hash changes: roles and rate as written
        fields = text.strip().split("\t")
        fields[1] = hash_key(key)
        return "\t".join(fields)

    old = _rewrite(path, key_id, line)
    return key, ApiKey(old.key_id, hash_key(key), old.roles, old.rate, old.callback_url, old.callback_secret)


def set_callback(path: str | os.PathLike[str], key_id: str, url: str | None) -> str | None:
    """Give ``key_id`` a callback URL for appeal outcomes with a new random shared secret, or take
    its callback away (``url`` None); the key, roles and rate stay. Returns the new secret (shown
    once by the caller, to be handed to the client), or None."""
    secret = secrets.token_urlsafe(32) if url is not None else None
    if url is not None:
        parse_settings(f"callback_url={url} callback_secret={secret}", f"key {key_id}")

    def line(old: ApiKey, text: str) -> str:
        fields = text.strip().split("\t")[:4]
        if url is not None:
            fields.append(f"callback_url={url} callback_secret={secret}")
        return "\t".join(fields)

    _rewrite(path, key_id, line)
    return secret
