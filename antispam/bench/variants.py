"""Bench variants: the same service and loads with term lists loaded, with ``explain=true``,
and with the decision log on.

A variant is ``plain`` or a ``+``-joined set of ``lists``, ``explain`` and ``decisions``:

* ``lists``: the service is started with a lists folder (:func:`write_lists`) of 10,000
  generated block terms (by default), a few ``re:`` patterns, and allow terms (some with digits,
  so the digit form is exercised), all applied by the ``default`` policy, which the bench's
  requests use.
* ``explain``: every request asks for ``explain=true`` (query for GET, body for POST).
* ``decisions`` (issue 23): the service writes the decision log (``--feedback-db`` names a store:
  a SQLite file in the bench's temporary folder, the quickstart's default, or ``--decision-db``);
  the plain service has no store, so no log. Both services run at once and their rows alternate
  (each row alone on the machine; interleaving spreads a shared machine's drift over both), and
  each decisions row records what the log wrote and dropped meanwhile (:func:`decision_counters`).

The generated terms look like the spam vocabulary of the corpus (``代开发票加急``, ``无抵押网贷秒批``)
but are three-part phrases that ordinary texts seldom contain verbatim, so the model still
decides almost every text and the rows measure the cost of matching, not a different verdict
path. The bench reports the share of its test texts they hit (:func:`hit_rate`). Everything is
deterministic: the same ``seed`` writes the same files.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any, Sequence

from antispam.errors import UserError

PLAIN = "plain"
FEATURES = ("lists", "explain", "decisions")  # in the order a variant's name lists them
DEFAULT_VARIANTS = (PLAIN,)
DEFAULT_BLOCK_TERMS = 10_000
DEFAULT_ALLOW_TERMS = 200
DEFAULT_DIGIT_ALLOW_TERMS = 20
SEED = 20260412

_HEADS = ("代开", "办理", "低价", "出售", "高价回收", "免费领取", "专业代办", "快速", "正规", "内部",
          "特价", "限时", "秒到", "无抵押", "日赚", "诚招", "兼职", "私人", "官方", "独家", "批发", "长期",
          "急招", "大额", "小额")
_MIDS = ("发票", "证件", "学历", "驾照", "贷款", "信用卡", "套现", "刷单", "返利", "彩票", "博彩", "网贷",
         "游戏币", "点卡", "会员", "积分", "话费", "流量卡", "手机号", "银行卡", "公积金", "社保", "文凭",
         "资质", "账号", "粉丝", "好评", "保单", "车险", "房贷", "增值税", "花呗", "白条", "装修")
_TAILS = ("加急", "包过", "秒批", "当天到账", "保密", "全国", "可查", "送货上门", "先用后付", "无需面签",
          "一条龙", "包邮", "低息", "高额", "在线", "立返", "优惠", "专线", "热线", "咨询", "面议", "到付")
_LINKS = ("各类", "正品", "大量", "各种", "真实", "稳定")
_CITIES = ("北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "重庆", "苏州", "天津")
_TRADES = ("科技", "物流", "教育", "医疗", "电商", "餐饮", "旅游", "家居", "汽车", "保险", "银行", "通信")
_DESKS = ("官方客服", "售后服务中心", "会员服务中心", "客户服务热线")
PATTERNS = (
    "re:办理.{0,3}假证件",
    "re:代.{0,2}开.{0,2}增值税专票",
    "re:免费.{0,4}领取.{0,4}iphone",
    "re:x{5,}.{0,3}刷单返利",
    "re:[微威]信.{0,2}号.{0,2}兼职打字员",
)


def parse_variants(text: str) -> tuple[str, ...]:
    """``plain,lists,explain`` → the variants in the given order, each named canonically
    (``explain+lists`` → ``lists+explain``); :class:`UserError` for anything else."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        features = [f.strip() for f in part.split("+")]
        if features == [PLAIN]:
            name = PLAIN
        elif all(f in FEATURES for f in features) and len(set(features)) == len(features):
            name = "+".join(f for f in FEATURES if f in features)
        else:
            raise UserError(f"unknown bench variant {part!r} (plain, lists, explain, decisions, or a +-joined "
                            "set of them: lists+explain)")
        if name not in out:
            out.append(name)
    if not out:
        raise UserError("--variants is empty")
    return tuple(out)


def uses_lists(variant: str) -> bool:
    return "lists" in variant.split("+")


def uses_explain(variant: str) -> bool:
    return "explain" in variant.split("+")


def uses_decisions(variant: str) -> bool:
    return "decisions" in variant.split("+")


def decision_counters(metrics_text: str) -> dict[str, float]:
    """``written`` and ``dropped`` (every reason) from a service's ``/metrics`` text; zeros when
    the log is off (the series are absent)."""
    written = dropped = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("antispam_decisions_written_total "):
            written += float(line.rsplit(" ", 1)[1])
        elif line.startswith("antispam_decisions_dropped_total{"):
            dropped += float(line.rsplit(" ", 1)[1])
    return {"written": written, "dropped": dropped}


def label_suffix(variant: str) -> str:
    """What a row's scenario label gets: nothing for ``plain`` (labels of plain rows stay those
    of earlier runs, so ``--compare`` matches them), `` +lists`` and so on otherwise."""
    return "" if variant == PLAIN else f" +{variant}"


def block_terms(n: int = DEFAULT_BLOCK_TERMS, seed: int = SEED) -> list[str]:
    """``n`` distinct block terms: head + middle + tail (``代开发票加急``), then, past the
    18,700 such phrases, with a linking word (``代开各类发票加急``); shuffled by ``seed``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    plain = ["".join(parts) for parts in itertools.product(_HEADS, _MIDS, _TAILS)]
    linked = [h + link + m + t for h, link, m, t in itertools.product(_HEADS, _LINKS, _MIDS, _TAILS)]
    rng.shuffle(plain)
    rng.shuffle(linked)
    pool = plain + linked
    if n > len(pool):
        raise ValueError(f"at most {len(pool)} generated block terms")
    return pool[:n]


def allow_terms(n: int = DEFAULT_ALLOW_TERMS, digits: int = DEFAULT_DIGIT_ALLOW_TERMS,
                seed: int = SEED) -> list[str]:
    """``n`` company desks (``杭州物流售后服务中心``) and ``digits`` hotline numbers
    (``400-xxx-xxxx``, matched on the digit form)."""
    rng = random.Random(seed + 1)
    desks = ["".join(parts) for parts in itertools.product(_CITIES, _TRADES, _DESKS)]
    rng.shuffle(desks)
    if n > len(desks):
        raise ValueError(f"at most {len(desks)} generated allow terms")
    numbers = sorted({f"400-{rng.randrange(100, 1000)}-{rng.randrange(1000, 10000)}" for _ in range(digits * 2)})
    rng.shuffle(numbers)
    return desks[:n] + numbers[:digits]


def write_lists(folder: str | Path, n_block: int = DEFAULT_BLOCK_TERMS, seed: int = SEED) -> dict[str, Any]:
    """Write ``block.txt`` and ``allow.txt`` (the ``default`` list set) under ``folder``; return
    what they hold (recorded in the results)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    block = block_terms(n_block, seed)
    allow = allow_terms(seed=seed)
    header = f"# generated by antispam bench (seed {seed})\n"
    (folder / "block.txt").write_text(header + "\n".join([*block, *PATTERNS]) + "\n", encoding="utf-8")
    (folder / "allow.txt").write_text(header + "\n".join(allow) + "\n", encoding="utf-8")
    return {"folder": str(folder), "block_terms": len(block), "block_patterns": len(PATTERNS),
            "allow_terms": sum(1 for t in allow if not t.startswith("400-")),
            "allow_terms_with_digits": sum(1 for t in allow if t.startswith("400-")), "seed": seed}


def hit_rate(folder: str | Path, texts: Sequence[str]) -> dict[str, Any]:
    """How many of ``texts`` the lists of ``folder`` hit (block or allow), matched exactly as
    the service does (:class:`antispam.lists.ListsWatcher`, the ``default`` list set)."""
    from antispam.lists import ListsWatcher
    from antispam.text import normalize

    watcher = ListsWatcher(folder)
    watcher.refresh()
    errors = {name: info["error"] for name, info in watcher.current.files.items() if "error" in info}
    if errors:
        raise UserError(f"generated lists do not parse: {errors}")
    hits = {"block": 0, "allow": 0}
    for text in texts:
        norm = normalize(text)
        if not norm:
            continue
        kinds = {m.kind for m in watcher.current.find(norm, ["default"], text)}
        if "allow" in kinds:
            hits["allow"] += 1
        elif "block" in kinds:
            hits["block"] += 1
    return {"texts": len(texts), "block_decided": hits["block"], "allow_decided": hits["allow"],
            "share": (hits["block"] + hits["allow"]) / len(texts) if texts else 0.0}
