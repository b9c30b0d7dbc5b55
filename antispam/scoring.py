"""The domain core of the service: texts in, verdicts out, below any transport.

:class:`Scorer` checks and normalizes texts, answers repeats from the dedup cache, segments the
rest with jieba, awaits the backend within the deadline and renders each score as one item of
the ``/predict`` response (probability, label, suggestion by the thresholds, model, coverage).
The HTTP app (:mod:`antispam.app`) and ``antispam predict`` both score through it, so a verdict
is the same whichever way a text arrives. It imports neither Tornado nor TensorFlow: the backend
it is given does the model work.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Iterator, Sequence

import numpy as np

from antispam.aio import Slices, within
from antispam.allow import ListOutcome, apply_lists, no_lists
from antispam.backends.base import Backend, BackendError, BatchResult, DeadlineExceeded
from antispam.cache import CachedScore, PredictionCache
from antispam.campaigns import CampaignTracker, Evidence, TrackerUnavailable, make_tracker
from antispam.config import ServeConfig
from antispam.contacts import MAX_CONTACTS, Contact, count_and_find
from antispam.errors import api_error
from antispam.labels import PASS, SPAM, label_name
from antispam.lists import ListsWatcher, Match, Snapshot, pattern_work
from antispam.metrics import Metrics
from antispam.operating_points import OperatingPoints, check_thresholds
from antispam.policies import DEFAULT_POLICY, PoliciesWatcher, Policy, campaign_decision
from antispam.senders import SenderHasher
from antispam.text import Segmenter, normalize, normalize_with_offsets

# Lone surrogates can arrive through JSON "\ud800" escapes; they are not Unicode text, cannot be
# encoded back to UTF-8, and would otherwise fail only when the response is written.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Extra time the scorer grants a backend past the deadline before it stops waiting itself.
DEADLINE_GRACE_SECONDS = 0.05
# Most list hits an item reports (the first by position); more are counted in matches_total.
MAX_MATCHES = 50


class Scorer:
    """Texts → response items; shared by the HTTP handlers and ``antispam predict``."""

    def __init__(self, config: ServeConfig, backend: Backend, segmenter: Segmenter,
                 cache: PredictionCache, metrics: Metrics | None = None, *,
                 lists: ListsWatcher | None = None, policies: dict[str, Policy] | None = None,
                 campaigns: CampaignTracker | None = None) -> None:
        problem = check_thresholds(config.review_threshold, config.block_threshold)
        if problem:
            raise ValueError(f"thresholds: {problem}")
        self.config = config
        self.backend = backend
        self.segmenter = segmenter
        self.cache = cache
        self.metrics = metrics
        self.backend_reports_batches = False
        # Term lists and named policies, both hot-reloaded (docs/contracts.md#term-lists,
        # #policies) with the same poll interval; ``policies`` given: fixed policies.
        self.lists = lists if lists is not None else ListsWatcher(config.lists_dir, config.lists_poll_seconds)
        self.policy_watcher = PoliciesWatcher(config.policies_file, config.review_threshold,
                                              config.block_threshold, config.min_tokens_to_block,
                                              poll_seconds=config.lists_poll_seconds, policies=policies)
        self.lists.maybe_refresh()  # load the lists now, not on the first request
        # Issue 24: texts sent with a sender id are counted here (the app passes the Redis tracker
        # when ANTISPAM_REDIS_URL is set); ids are hashed with the deployment's key first.
        self.campaigns = campaigns if campaigns is not None else make_tracker(
            window_seconds=config.campaign_window_s, min_senders=config.campaign_min_senders,
            max_counters=config.campaign_max_counters)
        self.hash_sender = SenderHasher(config.sender_key)

    @property
    def policies(self) -> dict[str, Policy]:
        """The policies serving now (the last good policies file)."""
        return self.policy_watcher.current

    async def refresh(self) -> Snapshot:
        """Reload the policies and term lists if their poll is due and they changed; the term
        lists serving now. Lists are parsed in a worker thread, so the loop keeps serving."""
        self.policy_watcher.maybe_refresh()
        return await self.lists.maybe_refresh_async()

    def policy(self, name: Any) -> Policy:
        """The policy a request names (None: ``default``); 400 ``unknown_policy`` naming the known ones."""
        if name is None:
            return self.policies[DEFAULT_POLICY]
        policy = self.policies.get(name) if isinstance(name, str) else None
        if policy is None:
            shown = name if isinstance(name, str) and len(name) <= 64 else "that"
            raise api_error("unknown_policy", f"no policy {shown!r}; known policies: "
                            f"{', '.join(sorted(self.policies))}")
        return policy

    def normalize_all(self, texts: Sequence[Any], field_name: str = "text") -> list[str]:
        """Check every text and return its normalized form, or raise the first problem."""
        return list(self._normalized(texts, field_name))

    async def normalize_all_async(self, texts: Sequence[Any], field_name: str = "text") -> list[str]:
        """:meth:`normalize_all` in time slices: the event loop runs between texts."""
        slices = Slices()
        normalized = []
        for norm in self._normalized(texts, field_name):
            normalized.append(norm)
            await slices.tick()
        return normalized

    def check_budget(self, texts: Sequence[Any]) -> None:
        """413 ``too_many_chars`` when the texts of one request total more than
        ``max_request_chars``: checked before any text is normalized, so the cost of a request
        is bounded up front (docs/contracts.md#limits)."""
        total = sum(len(t) for t in texts if isinstance(t, str))
        limit = self.config.max_request_chars
        if total > limit:
            raise api_error("too_many_chars", f"the texts of this request have {total} characters "
                            f"together; the limit is {limit}")

    def _normalized(self, texts: Sequence[Any], field_name: str) -> Iterator[str]:
        self.check_budget(texts)
        for i, text in enumerate(texts):
            where = field_name if len(texts) == 1 and field_name == "text" else f"{field_name}[{i}]"
            if not isinstance(text, str):
                raise api_error("invalid_text", f"{where} must be a string, got {type(text).__name__}")
            if len(text) > self.config.max_chars:
                raise api_error("text_too_long",
                                f"{where} has {len(text)} characters; the limit is {self.config.max_chars}")
            if _SURROGATE.search(text):
                raise api_error("invalid_text", f"{where} is not valid Unicode (lone surrogate)")
            norm = normalize(text)
            if not norm:
                raise api_error("empty_text", f"{where} has no letters, digits or CJK characters "
                                "once normalized (punctuation, emoji and spaces are dropped)")
            yield norm

    async def score(self, texts: Sequence[str], normalized: Sequence[str], *, policy: Policy | None = None,
                    explain: bool = False, contacts: bool = False, reveal_allow: bool = True,
                    senders: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
        """Score already-validated texts; repeats (in the cache or in this batch) cost nothing.

        ``policy`` (default: ``default``) sets the thresholds and the term lists; ``explain``
        adds ``reasons`` to each item (docs/contracts.md#explanations); ``contacts`` (or a policy
        with ``contacts``/``contact_escalates``) adds ``contacts`` (docs/contracts.md#contacts).
        The term lists are matched first: the model reads each text with its allowed spans
        masked (:mod:`antispam.allow`), and that masked text is the dedup cache's key.
        ``reveal_allow`` False (a client without ``admin``) leaves the allow hits out of
        ``matches`` and ``reasons``: which phrase is allowed is the operator's business, not the
        sender's. ``senders``: the checked ``sender_id`` of each text (or None); a text with one
        is counted by the campaign tracker, hashed first, and its item gets ``campaign`` when it
        belongs to one (docs/contracts.md#campaigns).
        """
        snapshot = await self.refresh()
        policy = policy or self.policies[DEFAULT_POLICY]
        outcomes = await self.match_lists(texts, normalized, policy, snapshot)
        scored_texts = [outcome.scored for outcome in outcomes]
        version = self.backend.current_version
        found: list[tuple[CachedScore, int] | None] = [None] * len(texts)
        misses: dict[str, list[int]] = {}
        segmented: dict[str, list[str]] = {}  # tokens of the texts segmented here (explain reuses them)
        for i, key in enumerate(scored_texts):
            hit = self.cache.get(key, version)
            if hit is not None and version is not None:
                found[i] = (hit, version)
            else:
                misses.setdefault(key, []).append(i)
        metrics = self.metrics
        if metrics is not None:
            metrics.request_texts.observe(len(texts))
        if misses:
            keys = list(misses)
            tokens = await self.segment_all(keys)
            segmented = dict(zip(keys, tokens))
            result, scores = await self.call_backend(tokens)
            counts = [len(t) for t in tokens]
            scored = (result.scored_tokens.tolist() if result.scored_tokens is not None
                      and len(result.scored_tokens) == len(keys) else counts)
            for key, p, n, read in zip(keys, scores.tolist(), counts, scored):
                entry = CachedScore(p, result.model_name, result.backend, n, int(read))
                self.cache.put(key, result.version, entry)
                for i in misses[key]:
                    found[i] = (entry, result.version)
            if metrics is not None:
                metrics.backend_used.labels(result.backend).inc()
                if result.extra.get("fallback"):
                    metrics.fallbacks.inc()
                if not self.backend_reports_batches:
                    metrics.observe_batch(len(keys))
        elif metrics is not None:
            metrics.backend_used.labels("cache").inc()
        items = []
        slices = Slices()  # offset maps are per-character work: share the loop
        show_contacts = contacts or policy.wants_contacts
        hashed = [None if s is None else self.hash_sender(s) for s in senders] if senders else [None] * len(texts)
        for text, norm, scored, outcome, sender in zip(texts, normalized, found, outcomes, hashed):
            assert scored is not None  # every text was answered from the cache or the backend
            found_contacts = count_and_find(text) if show_contacts or sender is not None else None
            evidence = None
            if sender is not None and found_contacts is not None:
                evidence = self.observe_campaign(text, norm, contacts_outside(text, found_contacts[1], outcome), sender)
            items.append(self.render(text, *scored, outcome=outcome, policy=policy, reveal_allow=reveal_allow,
                                     contacts=found_contacts, show_contacts=show_contacts, campaign=evidence))
            await slices.tick()
        if explain:
            from antispam.explain import add_model_reasons  # only requests that ask pay for it

            await add_model_reasons(self, texts, scored_texts, items, segmented,
                                    positions=[outcome.positions for outcome in outcomes])
        if metrics is not None:
            metrics.observe_verdicts(item["suggestion"] for item in items)
        return items

    def observe_campaign(self, text: str, normalized: str, contacts: Sequence[Contact], sender: str) -> Evidence | None:
        """Count one text of a (hashed) sender; its campaign evidence. 503
        ``campaign_tracker_unavailable`` when Redis is down and the tracker fails closed."""
        try:
            return self.campaigns.observe(text, normalized, contacts, sender)
        except TrackerUnavailable as exc:
            raise api_error("campaign_tracker_unavailable", str(exc)) from None

    async def match_lists(self, texts: Sequence[str], normalized: Sequence[str], policy: Policy,
                          snapshot: Snapshot | None) -> list[ListOutcome]:
        """The term lists of ``policy`` on every text: hits, and what the model is to read.

        413 ``too_many_chars`` before any pattern runs when the request's pattern work (its
        normalized characters × the RE2 program sizes of the policy's ``re:`` patterns,
        :func:`antispam.lists.pattern_work`) is over ``max_pattern_work``: RE2 is linear in the
        text, and this bounds the factor (docs/contracts.md#limits)."""
        if snapshot is None or not snapshot.sets:
            return [no_lists(norm) for norm in normalized]
        patterns, size = snapshot.pattern_size(policy.lists)
        work = pattern_work(normalized, size)
        limit = self.config.max_pattern_work
        if work > limit:
            raise api_error("too_many_chars", f"the texts of this request would cost {work:,} units of pattern "
                            f"work ({sum(map(len, normalized)):,} normalized characters × {size} RE2 "
                            f"instructions of the {patterns} patterns of policy {policy.name!r}); the limit "
                            f"is {limit:,}: send fewer or shorter texts")
        out = []
        slices = Slices()  # list matching is per-character work: share the loop
        for text, norm in zip(texts, normalized):
            out.append(apply_lists(norm, snapshot.find(norm, policy.lists, text), policy.allow_mode))
            await slices.tick()
        return out

    async def call_backend(self, token_lists: Sequence[Sequence[str]]) -> tuple[BatchResult, np.ndarray]:
        """The one guarded backend call (scoring and ``explain`` both use it): the backend gets
        the deadline and is waited for at most :data:`DEADLINE_GRACE_SECONDS` past it; an answer
        must be one probability in [0, 1] per token list. Every failure is counted in
        ``antispam_backend_errors_total`` by its code before it is raised (a
        :class:`DeadlineExceeded` past the deadline, a :class:`BackendError` otherwise).
        Returns the backend's result and its probabilities as float64."""
        timeout = self.config.deadline_ms / 1000.0
        try:
            result = await within(self.backend.predict(token_lists, timeout=timeout), timeout + DEADLINE_GRACE_SECONDS)
            scores = np.asarray(result.spam_probability, dtype=np.float64)
            if scores.shape != (len(token_lists),) or not np.all((scores >= 0) & (scores <= 1)):
                raise BackendError(f"backend returned unusable scores (shape {scores.shape}, "
                                   f"expected {len(token_lists)} probabilities in [0, 1])")
        except asyncio.TimeoutError:
            if self.metrics is not None:
                self.metrics.backend_errors.labels("deadline_exceeded").inc()
            raise DeadlineExceeded(f"no answer within {self.config.deadline_ms:.0f} ms") from None
        except BackendError as exc:
            if self.metrics is not None:
                self.metrics.backend_errors.labels(exc.code).inc()
            raise
        return result, scores

    async def segment_all(self, normalized: Sequence[str]) -> list[list[str]]:
        """jieba over every text, yielding to the event loop every :data:`antispam.aio.SLICE_SECONDS`.

        The tokens are exactly :meth:`Segmenter.segment`'s; only the event loop gets a turn
        between them, so ``/healthz`` answers while a maximal request is segmented.
        """
        slices = Slices()
        out = []
        segmenter = self.segmenter
        for text in normalized:
            if segmenter.in_one_call(text):  # rjieba: one native call, ~1 ms at 5,000 characters
                tokens = segmenter.segment_in_one_call(text)
            else:
                tokens = []
                for token in segmenter.iter_segment(text):
                    tokens.append(token)
                    await slices.tick()
            out.append(tokens)
            await slices.tick()
        return out

    def operating_points(self, version: int) -> OperatingPoints | None:
        """The operating points of the version that scored a text (None: it records none, or the
        backend cannot tell): the default policy's thresholds, swapped with the model on reload."""
        assets = self.backend.version_assets(version)
        return assets.operating_points if assets is not None else None

    def decision_status(self) -> dict[str, Any]:
        """For ``GET /models`` (issue 20): whether the version serving now is calibrated, its
        operating points, and the thresholds each policy applies with it."""
        version = self.backend.current_version
        assets = self.backend.version_assets(version) if version is not None else None
        points = assets.operating_points if assets is not None else None
        policies = {}
        for name, policy in sorted(self.policies.items()):
            review, block = policy.thresholds(points)
            policies[name] = {"review": review, "block": block,
                              "from": policy.as_dict()["thresholds_from"] if points is not None
                              or policy.review_threshold is not None and policy.block_threshold is not None
                              else "legacy"}
        return {"version": version,
                "calibrated": assets.calibration is not None if assets is not None else None,
                "calibration": assets.calibration.method if assets is not None and assets.calibration else None,
                "operating_points": points.to_record() if points is not None else None,
                "policies": policies}

    def render(self, text: str, entry: CachedScore, version: int, *, outcome: ListOutcome | None = None,
               policy: Policy | None = None, reveal_allow: bool = True,
               contacts: tuple[int, list[Contact]] | None = None, show_contacts: bool = True,
               campaign: Evidence | None = None) -> dict[str, Any]:
        """One response item. ``predict``, ``label`` and ``spam_probability`` are always the
        model's (for the text it read: allowed spans masked); ``suggestion`` is the decision
        (``decided_by`` says which, docs/contracts.md#term-lists): the allow list when it exempts
        the whole text, else a standing block-list hit → block, else the model's score against
        the policy's thresholds. ``matches``: the deciding list's terms with raw-text offsets, and
        the allow hits whose spans were masked; allow hits only with ``reveal_allow``. ``contacts``
        are shown only with ``show_contacts``; ``campaign`` evidence is shown and applied by the
        policy's ``campaign`` mode (:func:`antispam.policies.campaign_decision`)."""
        policy = policy or self.policies[DEFAULT_POLICY]
        p = entry.spam_probability
        predict = SPAM if p >= 0.5 else PASS
        capped = False
        review_threshold, block_threshold = policy.thresholds(self.operating_points(version))
        if p >= block_threshold:
            suggestion = "block"
            # One or two words ("你好", "在吗", "代开") are too little to block on a model's word:
            # the corpus taught the networks that short means spam. A person looks instead.
            if entry.tokens < policy.min_tokens_to_block:
                suggestion, capped = "review", True
        elif p >= review_threshold:
            suggestion = "review"
        else:
            suggestion = "pass"
        decided_by = "model"
        matches: list[Match] = []
        if outcome is not None:
            if outcome.exempt:
                decided_by, suggestion, matches, capped = "allow_list", "pass", list(outcome.allow), False
            elif outcome.block:
                decided_by, suggestion, capped = "block_list", "block", False
                matches = sorted(outcome.block + outcome.allow, key=lambda m: (m.start, m.end, m.kind, m.term))
            else:
                matches = list(outcome.allow)  # the spans the model did not read
        # Issue 24: with contact_escalates, a text the model sent to review (a capped block
        # included) that carries a contact is blocked; list decisions stand as they are. A contact
        # inside an allowed span (the company's own hotline) does not escalate (issue 21).
        if (contacts is not None and contacts[1] and policy.contact_escalates and decided_by == "model"
                and suggestion == "review" and _contacts_outside(text, contacts[1], outcome)):
            decided_by, suggestion, capped = "contact_escalation", "block", False
        if campaign is not None:  # issue 24: campaign evidence alone never blocks
            has_contact = contacts is not None and bool(contacts[1]) and _contacts_outside(text, contacts[1], outcome)
            before = suggestion
            suggestion, decided_by = campaign_decision(policy.campaign, suggestion, decided_by, contact=has_contact)
            if suggestion != before:
                capped = False
            if self.metrics is not None:
                self.metrics.observe_campaign_item(campaign.by, suggestion)
        if not reveal_allow:
            matches = [m for m in matches if m.kind != "allow"]
        item: dict[str, Any] = {"text": text, "predict": predict, "label": label_name(predict),
                                "spam_probability": p, "suggestion": suggestion,
                                "model": {"name": entry.model_name, "version": version},
                                "coverage": {"tokens": entry.tokens, "scored": entry.scored},
                                "decided_by": decided_by, "policy": policy.name}
        if capped:
            item["capped"] = "too_little_text"
        if matches:
            item["matches"] = raw_matches(text, matches[:MAX_MATCHES])
            if len(matches) > MAX_MATCHES:
                item["matches_total"] = len(matches)
        if campaign is not None:
            item["campaign"] = campaign.as_dict()
        if contacts is not None and show_contacts:  # (total, the first MAX_CONTACTS by position)
            item["contacts"] = [c.as_dict() for c in contacts[1]]
            if contacts[0] > MAX_CONTACTS:
                item["contacts_total"] = contacts[0]
        if self.metrics is not None:
            self.metrics.observe_decision(policy.name, decided_by, suggestion)
        return item


def _contacts_outside(text: str, contacts: Sequence[Contact], outcome: ListOutcome | None) -> bool:
    """Whether a contact lies outside every allowed span (raw offsets): an allowed hotline is the
    operator's own number, so it does not escalate a text to block (docs/contracts.md#contacts)."""
    return bool(contacts_outside(text, contacts, outcome))


def contacts_outside(text: str, contacts: Sequence[Contact], outcome: ListOutcome | None) -> list[Contact]:
    """The contacts outside every allowed span (raw offsets): the ones that escalate, and the ones
    campaigns count (issue 24: many customers quoting the operator's own hotline are no campaign)."""
    if outcome is None or not outcome.allow or not contacts:
        return list(contacts)
    allowed = [(m["start"], m["end"]) for m in raw_matches(text, outcome.allow)]
    return [c for c in contacts if not any(start <= c.start and c.end <= end for start, end in allowed)]


def raw_matches(text: str, matches: Sequence[Match]) -> list[dict[str, Any]]:
    """List hits with ``start``/``end`` in code points of the text as sent."""
    _, spans = normalize_with_offsets(text)
    return [{"term": m.term, "list": m.kind, "list_set": m.list_set,
             "start": spans[m.start][0], "end": spans[m.end - 1][1]} for m in matches]
