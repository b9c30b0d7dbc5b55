"""Configuration as typed dataclasses, filled from CLI flags, then environment, then defaults.

Each field carries its flag help and environment variable in its metadata (:func:`opt`), so a
default is written once and ``--help`` always tells the truth. Precedence: flag > environment >
default. Every command builds its settings this way (``retrain`` too, since issue 22:
:class:`antispam.retrain.RetrainOptions`): :func:`add_arguments` adds the flags, :func:`resolve`
(or :func:`from_args`) reads flags, then ``ANTISPAM_*`` variables, then the defaults. Validation
lives in the dataclasses (``__post_init__``); a bad value is a one-line ``UserError`` naming the
flag's field or the variable. See docs/contracts.md#cli. (``ServeConfig`` is still checked by
:func:`check_serve_config`, called by ``serve`` and ``predict``.)
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

from antispam.errors import UserError

T = TypeVar("T")


def opt(default: Any, env: str | None, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A setting: its default, its ``ANTISPAM_*`` variable (None: a flag only, as the retrain
    job's own settings), its flag help and, for a string, the values it may take."""
    return field(default=default, metadata={"env": env, "help": help, "choices": choices})


def same_as(cls: type, name: str) -> Any:
    """A field with the default, variable and help of ``cls.name``: one setting, one definition."""
    original = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field(default=original.default, metadata=original.metadata)


def env_name(cls: type, name: str) -> str:
    """The environment variable of field ``name`` of ``cls``."""
    return str({f.name: f for f in dataclasses.fields(cls)}[name].metadata["env"])


@dataclass
class Paths:
    """Where the corpus, the word vectors, the model versions and the reports live.

    Shared by ``data``, ``train``, ``evaluate``, ``bench`` (and ``serve``/``predict`` through
    ``ServeConfig.model_base``); each command adds the flags it uses (``only=``).
    """

    data: str | None = opt(None, "ANTISPAM_DATA",
                           "corpus: msglog.tar.gz or an unpacked folder (unset: a verified download of "
                           "the public file into the data dir)")
    data_dir: str = opt("data", "ANTISPAM_DATA_DIR", "where a downloaded corpus and split.json go")
    model_base: str = opt("models", "ANTISPAM_MODEL_BASE", "folder holding <model-name>/<version>/")
    word2vec: str = opt("data/word2vec", "ANTISPAM_WORD2VEC_DIR",
                        "folder of the word vectors (vocab.txt, vectors.npy)")
    report_dir: str = opt("reports", "ANTISPAM_REPORT_DIR",
                          "training reports go to REPORT_DIR/<model-name>-v<version>/")


@dataclass
class ServeConfig:
    """Everything ``antispam serve`` (and the app factory) needs."""

    host: str = opt("127.0.0.1", "ANTISPAM_HOST",
                    "address to listen on (0.0.0.0: every interface; with keys off that needs "
                    "--allow-open; the container image sets 0.0.0.0 and compose/k8s turn keys on)")
    allow_open: bool = opt(False, "ANTISPAM_ALLOW_OPEN",
                           "listen on an address other than loopback with API keys off, every route "
                           "open to whoever reaches it (otherwise serve refuses to start)")
    trusted_proxy: str = opt("", "ANTISPAM_TRUSTED_PROXY",
                             "comma-separated addresses or networks (10.0.0.0/8) of reverse proxies whose "
                             "X-Forwarded-For / X-Real-Ip name the client for the access log; empty: "
                             "those headers are ignored and the peer address is logged")
    port: int = opt(8000, "ANTISPAM_PORT", "port to listen on (0 picks a free one)")
    backend: str = opt("auto", "ANTISPAM_BACKEND",
                       "grpc: TF Serving over gRPC with REST fallback; rest: REST only; "
                       "local: the model in-process; auto: grpc if TF Serving answers at start, "
                       "else local; grpc-only: gRPC without fallback",
                       ("auto", "grpc", "rest", "local", "grpc-only"))
    model_base: str = same_as(Paths, "model_base")
    # The RNN by measurement (issue 20: docs/notes/default-network.md): at its operating points it
    # blocks ~6 points more spam at the same 0.99 precision target and flags fewer ordinary
    # messages than the CNN, for ~2.5-3.5x the CPU per message.
    model_name: str = opt("rnn", "ANTISPAM_MODEL_NAME", "model to serve")
    report_dir: str = same_as(Paths, "report_dir")  # the console shows a version's training report
    tfs_grpc: str = opt("localhost:8500", "ANTISPAM_TFS_GRPC", "TF Serving gRPC host:port")
    tfs_rest: str = opt("http://localhost:8501", "ANTISPAM_TFS_REST", "TF Serving REST base URL")
    deadline_ms: float = opt(1000.0, "ANTISPAM_DEADLINE_MS", "per-request deadline for the backend")
    # Unset (the default): the serving version's operating points (issue 20; 0.9 / 0.5 for a
    # version trained before it). Setting one fixes it for every version.
    block_threshold: float | None = opt(None, "ANTISPAM_BLOCK_THRESHOLD",
                                        "spam_probability at or above which the suggestion is block "
                                        "(unset: the serving version's block operating point, chosen "
                                        "for precision 0.99; 0.9 for a version that records none)")
    review_threshold: float | None = opt(None, "ANTISPAM_REVIEW_THRESHOLD",
                                         "spam_probability at or above which the suggestion is review "
                                         "(unset: the serving version's review operating point, chosen "
                                         "for recall 0.95; 0.5 for a version that records none)")
    min_tokens_to_block: int = opt(3, "ANTISPAM_MIN_TOKENS_TO_BLOCK",
                                   "texts with fewer tokens are at most 'review', never 'block', on "
                                   "model evidence alone (0: off)")
    max_texts: int = opt(100, "ANTISPAM_MAX_TEXTS", "most texts in one POST /predict")
    max_chars: int = opt(5000, "ANTISPAM_MAX_CHARS", "longest text accepted (longer: 413)")
    max_body_bytes: int = opt(2_000_000, "ANTISPAM_MAX_BODY_BYTES", "largest request body (larger: 413)")
    workers: int = opt(1, "ANTISPAM_WORKERS", "processes sharing the port (fork before TF loads)")
    event_loop: str = opt("auto", "ANTISPAM_EVENT_LOOP",
                          "asyncio event loop of each worker: uvloop (libuv; about 5%% less CPU per "
                          "request, scripts/get_overhead.py), asyncio (the standard one), auto: uvloop "
                          "when installed", ("auto", "uvloop", "asyncio"))
    batch_size: int = opt(64, "ANTISPAM_BATCH_SIZE", "local backend: most texts in one model call")
    model_threads: int = opt(0, "ANTISPAM_MODEL_THREADS",
                             "local backend: TensorFlow threads per worker for one model call "
                             "(intra-op; 0: the machine's cores divided among the workers, at least 1)")
    batch_wait_ms: float = opt(2.0, "ANTISPAM_BATCH_WAIT_MS",
                               "local backend: how long a micro-batch waits to fill")
    max_queue: int = opt(2000, "ANTISPAM_MAX_QUEUE", "texts waiting for the model before 503")
    breaker_failures: int = opt(3, "ANTISPAM_BREAKER_FAILURES",
                                "grpc mode: consecutive gRPC transport failures that send traffic to REST")
    breaker_cooldown_s: float = opt(5.0, "ANTISPAM_BREAKER_COOLDOWN_S",
                                    "grpc mode: seconds on REST before gRPC is tried again")
    poll_seconds: float = opt(5.0, "ANTISPAM_POLL_SECONDS",
                              "how often to look for new model versions")
    cache_size: int = opt(20000, "ANTISPAM_CACHE_SIZE", "dedup cache entries (0 disables it)")
    feedback_db: str = opt("feedback.db", "ANTISPAM_FEEDBACK_DB",
                          "the feedback store: a SQLite file (the default, embedded), or a postgresql:// URL "
                          "(PostgreSQL: every replica writes, issue 23); read by POST /feedback, retrain "
                          "and `antispam feedback`")
    # -- hostile clients (issue 11): bounded cost per request and per connection ---------------
    max_request_chars: int = opt(500_000, "ANTISPAM_MAX_REQUEST_CHARS",
                                 "most characters in all the texts of one request together (more: 413)")
    max_url_bytes: int = opt(65_536, "ANTISPAM_MAX_URL_BYTES",
                             "longest request target, path and query string (longer: 414)")
    max_header_bytes: int = opt(32_768, "ANTISPAM_MAX_HEADER_BYTES",
                                "most bytes of request header lines (more: 431)")
    body_timeout_s: float = opt(30.0, "ANTISPAM_BODY_TIMEOUT_S",
                                "seconds a client may take to send a request body; then the "
                                "connection is closed")
    idle_timeout_s: float = opt(75.0, "ANTISPAM_IDLE_TIMEOUT_S",
                                "seconds an idle keep-alive connection, or one still sending its "
                                "headers, stays open")
    # -- hostile clients (issue 11): keys, roles, rate limits, feedback store cap and trust ------
    keys_file: str = opt("", "ANTISPAM_KEYS_FILE",
                         "API keys file (key_id TAB sha256(key) TAB roles TAB rate/s per line; "
                         "`antispam keys add` writes it), re-read when it changes; empty: no keys, "
                         "every route open")
    keys_poll_seconds: float = opt(1.0, "ANTISPAM_KEYS_POLL_SECONDS",
                                   "how often the keys file's mtime is checked for changes")
    # -- issue 23: rate limits shared by every process and replica (antispam/ratelimit.py) ------
    redis_url: str = opt("", "ANTISPAM_REDIS_URL",
                         "redis://host:port/db holding the keys' token buckets and the campaign counts, so "
                         "a key's rate and a campaign's senders hold across workers and replicas; empty: each "
                         "process limits and counts on its own")
    redis_fail: str = opt("open", "ANTISPAM_REDIS_FAIL",
                          "when Redis cannot answer: open (limit and count campaigns per process, as without "
                          "Redis) or closed (503 rate_limiter_unavailable / campaign_tracker_unavailable)",
                          ("open", "closed"))
    redis_timeout_ms: float = opt(100.0, "ANTISPAM_REDIS_TIMEOUT_MS",
                                  "longest wait for Redis per request before failing open or closed")
    # -- issue 24: sender context and campaign detection (antispam/senders.py, campaigns.py) ----
    campaign_window_s: float = opt(600.0, "ANTISPAM_CAMPAIGN_WINDOW_S",
                                   "sliding window in which near-duplicate texts and shared contacts are "
                                   "counted across distinct senders (in Redis when ANTISPAM_REDIS_URL is set)")
    campaign_min_senders: int = opt(5, "ANTISPAM_CAMPAIGN_MIN_SENDERS",
                                    "distinct senders in the window that make a campaign (the item gets "
                                    "`campaign`)")
    campaign_max_counters: int = opt(10_000, "ANTISPAM_CAMPAIGN_MAX_COUNTERS",
                                     "in-process tracker: most clusters and contacts counted at once (the "
                                     "least recently seen are dropped first; with their cluster keys about 4.6 KB "
                                     "each: 46 MB per process at the default)")
    sender_key: str = opt("", "ANTISPAM_SENDER_KEY",
                          "secret (16+ characters) of the HMAC that hashes each sender_id before it is "
                          "counted; the same in every process sharing a Redis; empty: a random key per "
                          "process (set it through the environment, not a flag)")
    feedback_max_rows: int = opt(1_000_000, "ANTISPAM_FEEDBACK_MAX_ROWS",
                                 "most rows in the feedback store; when full POST /feedback answers "
                                 "507 (0: no cap)")
    feedback_max_bytes: int = opt(500_000_000, "ANTISPAM_FEEDBACK_MAX_BYTES",
                                  "most bytes of feedback texts in the store; when full POST /feedback "
                                  "answers 507 (0: no cap)")
    feedback_daily_count: int = opt(10_000, "ANTISPAM_FEEDBACK_DAILY_COUNT",
                                    "verdicts one key id may send per UTC day (more: 429; 0: no quota)")
    feedback_daily_bytes: int = opt(10_000_000, "ANTISPAM_FEEDBACK_DAILY_BYTES",
                                    "bytes of text one key id may send as feedback per UTC day "
                                    "(more: 429; 0: no quota)")
    feedback_retention_days: float = opt(365.0, "ANTISPAM_FEEDBACK_RETENTION_DAYS",
                                         "retrain and `antispam feedback prune` delete feedback rows "
                                         "last seen longer ago (0: keep all)")
    feedback_mask_contacts: bool = opt(False, "ANTISPAM_FEEDBACK_MASK_CONTACTS",
                                       "store feedback texts with their phone numbers, QQ numbers, WeChat "
                                       "ids and e-mail addresses masked (digits as 0, letters as x: the "
                                       "model reads masked digits the same)")
    feedback_min_keys: int = opt(3, "ANTISPAM_FEEDBACK_MIN_KEYS",
                                 "retrain: distinct key ids that must agree before untrusted feedback "
                                 "enters training or flips a corpus label (anonymous counts once)")
    feedback_trusted_keys: str = opt("", "ANTISPAM_FEEDBACK_TRUSTED_KEYS",
                                     "retrain: comma-separated key ids whose feedback is trusted alone "
                                     "(besides the keys file's labeler keys; admin alone is not trusted)")
    feedback_max_flips: int = opt(100, "ANTISPAM_FEEDBACK_MAX_FLIPS",
                                  "retrain: most corpus labels feedback may flip per UTC day; the rest "
                                  "wait for `antispam feedback approve` (0: no cap)")
    feedback_max_flips_per_key: int = opt(20, "ANTISPAM_FEEDBACK_MAX_FLIPS_PER_KEY",
                                          "retrain: most corpus label flips charged to one key id per UTC "
                                          "day; the rest wait for `antispam feedback approve` (0: no cap)")
    # -- issue 23: the decision log (antispam/decisions.py, docs/operations.md#decision-log) ------
    decision_log: bool = opt(True, "ANTISPAM_DECISION_LOG",
                             "write every /predict decision to the feedback store's decision log, off the "
                             "request path (needs --feedback-db; --no-decision-log or 0: no log, e.g. to "
                             "compare in a benchmark)")
    decision_queue: int = opt(10_000, "ANTISPAM_DECISION_QUEUE",
                              "decisions waiting for the log's writer; when full, new ones are dropped and "
                              "counted in antispam_decisions_dropped_total (requests are never held)")
    decision_retention_days: float = opt(30.0, "ANTISPAM_DECISION_RETENTION_DAYS",
                                         "`antispam feedback prune` deletes decisions older than this "
                                         "(0: keep all)")
    decision_text_days: float = opt(30.0, "ANTISPAM_DECISION_TEXT_DAYS",
                                    "days the decision log keeps the text of a decision whose suggestion "
                                    "is in --decision-text-for (for appeals and review); 0: never a text, "
                                    "only its SHA-256")
    decision_text_for: str = opt("block,review", "ANTISPAM_DECISION_TEXT_FOR",
                                 "comma-separated suggestions whose texts the decision log keeps "
                                 "(block, review, pass; empty: none)")
    # -- issue 23: the review queue and appeals (antispam/review.py, antispam/callbacks.py) -----
    review_lease_seconds: float = opt(300.0, "ANTISPAM_REVIEW_LEASE_SECONDS",
                                      "how long a moderator holds a review item taken with POST "
                                      "/review/next before it returns to the queue")
    appeals_per_minute: float = opt(10.0, "ANTISPAM_APPEALS_PER_MINUTE",
                                    "POST /appeals per key and minute (a token bucket, in Redis when "
                                    "ANTISPAM_REDIS_URL is set; more: 429)")
    callback_backoff_s: float = opt(5.0, "ANTISPAM_CALLBACK_BACKOFF_S",
                                    "first retry delay of an appeal callback; doubled per failure "
                                    "(at most an hour, +-20%% jitter)")
    callback_max_attempts: int = opt(12, "ANTISPAM_CALLBACK_MAX_ATTEMPTS",
                                     "attempts before an appeal callback is given up (kept as failed)")
    # -- term lists and policies (issue 12) ----------------------------------------------------
    lists_dir: str = opt("lists", "ANTISPAM_LISTS_DIR",
                         "folder of block/allow term lists (block.txt, <set>.allow.txt ...); "
                         "missing: no lists")
    lists_poll_seconds: float = opt(2.0, "ANTISPAM_LISTS_POLL_SECONDS",
                                    "how often to look for changed term lists")
    max_pattern_work: int = opt(200_000_000, "ANTISPAM_MAX_PATTERN_WORK",
                                "most re: pattern work one request may cost: its normalized characters "
                                "times the RE2 program sizes of its policy's patterns (more: 413)")
    policies_file: str | None = opt(None, "ANTISPAM_POLICIES_FILE",
                                    "JSON file of named policies (thresholds, lists); unset: one "
                                    "'default' policy with the thresholds above")


def check_serve_config(config: ServeConfig) -> None:
    """Reject settings that would only fail later (inside a worker, in the app) with a worse message.

    The message names the flags; ``antispam serve`` and ``antispam predict`` call it before they
    load anything.
    """
    problems = []
    from antispam.operating_points import check_thresholds  # numpy: not at import (--help stays fast)

    threshold_problem = check_thresholds(config.review_threshold, config.block_threshold)
    if threshold_problem:
        problems.append(f"thresholds: {threshold_problem} (--review-threshold, --block-threshold)")
    for name in ("workers", "batch_size", "max_queue", "max_texts", "max_chars", "max_body_bytes",
                 "breaker_failures"):
        if getattr(config, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    if config.cache_size < 0:
        problems.append("--cache-size must be >= 0")
    if config.model_threads < 0:
        problems.append("--model-threads must be >= 0 (0: the cores divided among the workers)")
    if config.min_tokens_to_block < 0:
        problems.append("--min-tokens-to-block must be >= 0")
    if config.deadline_ms <= 0:
        problems.append("--deadline-ms must be > 0")
    if config.batch_wait_ms < 0 or config.poll_seconds < 0 or config.breaker_cooldown_s < 0:
        problems.append("--batch-wait-ms, --poll-seconds and --breaker-cooldown-s must be >= 0")
    if not 0 <= config.port <= 65535:
        problems.append("--port must be between 0 and 65535")
    for name in ("max_request_chars", "max_url_bytes", "max_header_bytes", "max_pattern_work"):  # issues 11, 21
        if getattr(config, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    if config.lists_poll_seconds < 0:
        problems.append("--lists-poll-seconds must be >= 0")
    if config.body_timeout_s <= 0 or config.idle_timeout_s <= 0:
        problems.append("--body-timeout-s and --idle-timeout-s must be > 0")
    for name in ("feedback_max_rows", "feedback_max_bytes", "feedback_daily_count",
                 "feedback_daily_bytes", "feedback_max_flips",
                 "feedback_max_flips_per_key"):  # issues 11, 21: 0 turns the limit off
        if getattr(config, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0")
    if config.feedback_retention_days < 0 or config.keys_poll_seconds < 0:
        problems.append("--feedback-retention-days and --keys-poll-seconds must be >= 0")
    if config.feedback_min_keys < 1:
        problems.append("--feedback-min-keys must be at least 1")
    if config.decision_queue < 1:
        problems.append("--decision-queue must be at least 1")
    if config.decision_retention_days < 0:
        problems.append("--decision-retention-days must be >= 0")
    try:
        from antispam.decisions import TextRetention

        TextRetention.parse(config.decision_text_days, config.decision_text_for)
    except ValueError as exc:
        problems.append(f"--decision-text-days/--decision-text-for: {exc}")
    if config.redis_timeout_ms <= 0:
        problems.append("--redis-timeout-ms must be > 0")
    if not config.campaign_window_s > 0:  # issue 24 (also refuses NaN)
        problems.append("--campaign-window-s must be > 0")
    if config.campaign_min_senders < 2:
        problems.append("--campaign-min-senders must be at least 2")
    if config.campaign_max_counters < 1:
        problems.append("--campaign-max-counters must be at least 1")
    if config.sender_key and len(config.sender_key) < 16:
        problems.append("ANTISPAM_SENDER_KEY (--sender-key) must have at least 16 characters")
    if config.review_lease_seconds <= 0 or config.appeals_per_minute <= 0 or config.callback_backoff_s <= 0:
        problems.append("--review-lease-seconds, --appeals-per-minute and --callback-backoff-s must be > 0")
    if config.callback_max_attempts < 1:
        problems.append("--callback-max-attempts must be at least 1")
    try:
        trusted_networks(config.trusted_proxy)
    except ValueError as exc:
        problems.append(f"--trusted-proxy: {exc}")
    if problems:
        raise UserError("; ".join(problems))


def trusted_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``--trusted-proxy``: comma-separated addresses or networks; ValueError names a bad one."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part[:60]!r} is not an IP address or network (10.0.0.5, 10.0.0.0/8)") from None
    return tuple(networks)


def _flag_type(kind: Any) -> Any:
    """``int``/``float``/``str``/``bool`` behind a field's annotation (``float | None`` → float)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return kind


def _optional(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, only: tuple[str, ...] | None = None,
                  flags: Mapping[str, str] | None = None) -> None:
    """Add one ``--flag`` per field of ``cls`` (default None, so we can tell "not given").

    A bool field gets ``--x`` and ``--no-x``. ``flags`` renames a field's flag
    (``{"word2vec": "--out"}``); the value still lands in ``args.<field>``.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        meta = f.metadata
        kind = _flag_type(hints[f.name])
        flag = (flags or {}).get(f.name, "--" + f.name.replace("_", "-"))
        default = "unset" if f.default is None else repr(f.default)
        env = f"env {meta['env']}, " if meta.get("env") else ""
        text = f"{meta.get('help', '')} ({env}default {default})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=text)
            continue
        parser.add_argument(
            flag,
            dest=f.name,
            type=kind if kind in (int, float) else str,
            choices=meta.get("choices"),
            default=None,
            metavar=None if meta.get("choices") else flag.lstrip("-").replace("-", "_").upper(),
            help=text,
        )


def _from_env(name: str, raw: str, kind: Any, choices: tuple[str, ...] | None) -> Any:
    """``raw`` (the value of variable ``name``) as ``kind``; ValueError naming the variable."""
    if _optional(kind) and raw.strip() == "":
        return None
    kind = _flag_type(kind)
    if typing.get_origin(kind) is tuple:  # tuple[str, ...]: comma-separated
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind is bool:
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"{name}={raw!r} is not a valid boolean: use 1/true/yes/on or 0/false/no/off")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if choices and value not in choices:
        raise ValueError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return value


def from_args(cls: type[T], args: argparse.Namespace | None = None,
              environ: typing.Mapping[str, str] | None = None, *, only: tuple[str, ...] | None = None,
              **overrides: Any) -> T:
    """Build ``cls`` with override > flag > environment > default precedence.

    ``only`` limits the fields read from flags and the environment (the others keep their
    defaults), so a command is not refused for a variable it never uses. A bad environment value,
    or one the dataclass' own validation refuses, raises ValueError naming the variable.
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    from_env: dict[str, str] = {}  # field -> "VAR='raw'"
    for f in dataclasses.fields(typing.cast(Any, cls)):  # a dataclass type
        if f.name in overrides:
            values[f.name] = overrides[f.name]
            continue
        if only is not None and f.name not in only:
            continue
        given = getattr(args, f.name, None) if args is not None else None
        env = f.metadata.get("env")
        if given is not None:
            values[f.name] = given
        elif env is not None and env in environ:
            values[f.name] = _from_env(env, environ[env], hints[f.name], f.metadata.get("choices"))
            from_env[f.name] = f"{env}={environ[env]!r}"
    try:
        return cls(**values)
    except ValueError as exc:
        culprits = [shown for name, shown in from_env.items() if not _accepted(cls, name, values[name])]
        if culprits:
            raise ValueError(f"{exc} (from {', '.join(culprits)})") from None
        raise


def _accepted(cls: type, name: str, value: Any) -> bool:
    """Whether ``cls`` accepts ``value`` for ``name`` with every other field at its default."""
    try:
        cls(**{name: value})
    except ValueError:
        return False
    return True


def resolve(cls: type[T], args: argparse.Namespace | None = None,
            environ: typing.Mapping[str, str] | None = None, *, only: tuple[str, ...] | None = None,
            **overrides: Any) -> T:
    """:func:`from_args` for a command: a bad value is a ``UserError`` (one line, exit 2)."""
    try:
        return from_args(cls, args, environ, only=only, **overrides)
    except ValueError as exc:
        raise UserError(str(exc)) from None
