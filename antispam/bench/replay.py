"""The replay benchmark's traffic: a seeded, time-stamped trace of messages with their senders.

Issue 24 item 5. A platform's traffic is mostly single messages from many people, with now and
then a *campaign* (one advert, lightly varied, sent by tens to hundreds of accounts within
minutes) and now and then an *ordinary burst* (a holiday greeting sent by hundreds of people, a
company's notification template sent from many accounts). :func:`generate` builds such a trace
from held-out material only, so no figure it yields was tuned on:

* **ordinary** messages: the test split's pass messages (``antispam.data``), one each from a
  random sender of a pool of ordinary senders, at uniform random times;
* **single spam**: the test split's spam messages that are not used as campaign adverts, the
  same way (reported apart: they say what the model catches alone);
* **everyday** messages: the held-out part of :mod:`antispam.everyday` (never trained on);
* **campaigns**: an advert from the test split's spam, given a way to reach the sender (a
  mobile number in place of the corpus' masked ``xxxxxxxxxxx``, or an appended WeChat id, QQ
  number or URL; :data:`CONTACT_KINDS`, one campaign in ``no_contact_every`` keeps none), then
  each copy varied: synonyms (:data:`SYNONYMS`) half of the time, one of the robustness variants
  of :func:`antispam.network.robustness.build_variants` (spacing, full-width and circled digits,
  emoji, traditional characters, ordinary chat in front, or none), and a greeting in front or a
  mark at the end. Each campaign has 20–200 distinct senders (some send twice) over 2–10
  minutes, at a random start in the trace, interleaved with everything else;
* **bursts**: one greeting from 500 senders within a few minutes (some put a name in front), and
  a parcel-notice template from 300 senders with its variable fields filled in (:data:`BURSTS`).
  Neither carries a contact: the question they answer is whether repetition across senders
  alone, plus whatever the model thinks of them, gets ordinary text blocked.

Times are *simulated* seconds from the start of the trace; the driver
(:mod:`antispam.bench.replay_drive`) replays them compressed. Everything comes from ``seed``:
the same inputs and seed give the same trace, message for message.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from antispam.data import Sample
from antispam.labels import PASS, SPAM
from antispam.text import normalize

SEED = 20261206
KINDS = ("ordinary", "single_spam", "everyday", "campaign", "burst")
CONTACT_KINDS = ("mobile", "wechat", "qq", "url")
# Robustness variants a campaign copy may get (antispam.network.robustness names); "plain" is none.
VARIANTS = ("plain", "spaced", "fullwidth_digits", "circled_digits", "emoji", "traditional", "prepended")
# Words senders swap for look-alikes or near-synonyms to defeat exact matching.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "优惠": ("特惠", "实惠", "折扣"),
    "活动": ("促销", "活 动"),
    "免费": ("0元", "白送", "免 费"),
    "欢迎": ("诚邀", "热烈欢迎"),
    "咨询": ("详询", "垂询", "资询"),
    "电话": ("热线", "手机", "tel"),
    "微信": ("威信", "薇信", "V信", "vx"),
    "联系": ("联络", "咨询"),
    "全场": ("全 场", "所有商品"),
    "折": ("析",),
    "送": ("赠", "増"),
    "公司": ("本公司", "我司"),
    "元": ("圆", "块"),
}
PREFIXES = ("亲，", "您好，", "老板好！", "打扰了，", "【通知】", "hi~ ")
SUFFIXES = ("！", "～", "[玫瑰]", "😊", "。。", " ", "!!", "（回T退订）")
GREETING = "新年快乐！祝您和家人在新的一年里身体健康、万事如意、阖家幸福！"
GREETING_NAMES = ("王姐", "李哥", "张老师", "刘总", "小陈", "赵阿姨", "孙叔", "周经理")
PARCEL_TEMPLATE = "【顺丰速运】您的快件SF{waybill}已到{station}，请凭取件码{code}于今天{hour}点前领取。"
STATIONS = ("菜鸟驿站（幸福小区东门）", "丰巢柜（科技园3栋）", "校园快递点（南门）", "便利店代收点（中山路）")


@dataclass(frozen=True)
class Burst:
    name: str
    senders: int
    minutes: float


BURSTS = (Burst("greeting", 500, 5.0), Burst("parcel_notice", 300, 8.0))


@dataclass(frozen=True)
class Message:
    at: float  # simulated seconds from the start of the trace
    text: str
    sender: str  # opaque id, as a platform would pass it (the service hashes it)
    kind: str  # one of KINDS
    group: str | None = None  # the campaign's or burst's name; None for single messages
    index: int = -1  # position in its group by time (0-based); -1 for single messages
    variant: str = ""  # campaigns: what was done to this copy ("synonyms+emoji+prefix", ...)


@dataclass
class Group:
    """A campaign or a burst: what it sent, from how many senders, when."""

    name: str
    kind: str  # "campaign" | "burst"
    example: str  # the advert with its contact (campaigns) or the template, before any variation
    senders: int
    messages: int
    start: float
    end: float
    contact_kind: str | None = None
    contact: str | None = None  # the contact as written into the advert (digits, id, URL)


@dataclass
class ReplayConfig:
    seed: int = SEED
    span_minutes: float = 30.0  # simulated length of the trace
    campaigns: int = 10
    campaign_senders: tuple[int, int] = (20, 200)
    campaign_minutes: tuple[float, float] = (2.0, 10.0)
    repeat_share: float = 0.3  # share of a campaign's senders that send a second copy
    no_contact_every: int = 10  # one campaign in this many keeps no contact (0: all have one)
    ordinary_senders: int = 3000
    bursts: tuple[Burst, ...] = BURSTS
    max_ordinary: int = 0  # at most this many test-split pass messages (0: all)

    def validate(self) -> None:
        low, high = self.campaign_senders
        if not 1 <= low <= high:
            raise ValueError("campaign_senders must be (low, high) with 1 <= low <= high")
        if not 0 < self.campaign_minutes[0] <= self.campaign_minutes[1] <= self.span_minutes:
            raise ValueError("campaign_minutes must be within (0, span_minutes]")
        if self.campaigns < 0 or self.ordinary_senders < 1 or not 0 <= self.repeat_share <= 1:
            raise ValueError("campaigns >= 0, ordinary_senders >= 1, 0 <= repeat_share <= 1")
        if any(b.senders < 1 or not 0 < b.minutes <= self.span_minutes for b in self.bursts):
            raise ValueError("every burst needs senders >= 1 and minutes within (0, span_minutes]")


@dataclass
class Trace:
    config: ReplayConfig
    messages: list[Message]  # in time order
    groups: list[Group] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {kind: 0 for kind in KINDS}
        for m in self.messages:
            out[m.kind] += 1
        return out

    def summary(self) -> dict[str, Any]:
        config = asdict(self.config)
        config["bursts"] = [asdict(b) for b in self.config.bursts]
        return {"config": config, "messages": len(self.messages), "counts": self.counts(),
                "span_s": self.config.span_minutes * 60.0, "groups": [asdict(g) for g in self.groups]}


def generate(test: Sequence[Sample], everyday: Sequence[str], config: ReplayConfig | None = None,
             ad_pool: Sequence[str] | None = None, context: Sequence[str] | None = None) -> Trace:
    """The trace for ``test`` (the test split) and ``everyday`` (held-out everyday messages).

    ``ad_pool``: the spam texts adverts are picked from (default: all of ``test``'s spam), e.g.
    only those a model lets pass, to see what detection adds where the model alone fails.
    ``context``: the ordinary chat the ``prepended`` variant puts in front of an advert (default:
    the test pass messages). Give texts that are *not* sent as messages of their own (the
    command gives the everyday messages not in the trace): a campaign copy that quotes an
    ordinary message shares its sentences, and a tracker that files texts by sentence would
    then count that ordinary message into the campaign (measured: 66 of 881 ordinary messages
    sent to review when the context was the trace's own pass messages)."""
    config = config or ReplayConfig()
    config.validate()
    span = config.span_minutes * 60.0
    passed = _unique(s.text for s in test if s.label == PASS)
    spam = _unique(s.text for s in test if s.label == SPAM)
    if config.max_ordinary:
        passed = passed[:config.max_ordinary]
    pool = spam if ad_pool is None else [t for t in _unique(ad_pool) if t in set(spam)]
    ads = pick_ads(pool, config.campaigns, random.Random(f"{config.seed}/ads"))
    messages: list[Message] = []
    groups: list[Group] = []

    singles = random.Random(f"{config.seed}/singles")
    used = set(ads)
    for kind, texts in (("ordinary", passed), ("single_spam", [t for t in spam if t not in used]),
                        ("everyday", _unique(everyday))):
        for text in texts:
            sender = f"u{singles.randrange(config.ordinary_senders):05d}"
            messages.append(Message(singles.uniform(0, span), text, sender, kind))

    for number, ad in enumerate(ads):
        rng = random.Random(f"{config.seed}/campaign/{number}")
        name = f"campaign-{number:02d}"
        keep_none = config.no_contact_every and number % config.no_contact_every == config.no_contact_every - 1
        contact_kind = None if keep_none else CONTACT_KINDS[number % len(CONTACT_KINDS)]
        example, contact = with_contact(ad, contact_kind, rng)
        senders = rng.randint(*config.campaign_senders)
        minutes = rng.uniform(*config.campaign_minutes)
        start = rng.uniform(0, span - minutes * 60.0)
        who = [f"{name}-s{i:03d}" for i in range(senders)]
        who += rng.sample(who, round(senders * config.repeat_share))
        rng.shuffle(who)
        times = sorted(rng.uniform(start, start + minutes * 60.0) for _ in who)
        for index, (at, sender) in enumerate(zip(times, who)):
            text, variant = vary(example, rng, passed if context is None else context)
            messages.append(Message(at, text, sender, "campaign", name, index, variant))
        groups.append(Group(name, "campaign", example, senders, len(who), times[0], times[-1],
                            contact_kind, contact))

    for burst in config.bursts:
        rng = random.Random(f"{config.seed}/burst/{burst.name}")
        name = f"burst-{burst.name}"
        start = rng.uniform(0, span - burst.minutes * 60.0)
        times = sorted(rng.uniform(start, start + burst.minutes * 60.0) for _ in range(burst.senders))
        example = GREETING if burst.name == "greeting" else PARCEL_TEMPLATE
        for index, at in enumerate(times):
            text = burst_text(burst.name, rng)
            messages.append(Message(at, text, f"{name}-s{index:03d}", "burst", name, index))
        groups.append(Group(name, "burst", example, burst.senders, burst.senders, times[0], times[-1]))

    # Time order; ties (none expected from uniform floats) broken by the message itself.
    messages.sort(key=lambda m: (m.at, m.kind, m.sender, m.text))
    return Trace(config, messages, groups)


def pick_ads(spam: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """``count`` distinct adverts: spam of 20–150 characters whose normalized forms differ, so
    two campaigns are not one."""
    candidates = [t for t in spam if 20 <= len(t) <= 150]
    rng.shuffle(candidates)
    chosen: list[str] = []
    seen: set[str] = set()
    for text in candidates:
        key = normalize(text)[:12]
        if key in seen:
            continue
        seen.add(key)
        chosen.append(text)
        if len(chosen) == count:
            break
    if len(chosen) < count:
        raise ValueError(f"only {len(chosen)} usable adverts in the test spam for {count} campaigns")
    return chosen


_MASKED_MOBILE = re.compile(r"x{11}")


def mobile_number(rng: random.Random) -> str:
    return "1" + rng.choice("3456789") + "".join(rng.choice(string.digits) for _ in range(9))


def with_contact(ad: str, kind: str | None, rng: random.Random) -> tuple[str, str | None]:
    """The advert with a way to reach the sender, and that contact as written.

    ``mobile``: the first masked 11-digit run (``xxxxxxxxxxx``) becomes a mobile number, or one
    is appended (``，详询138…``); ``wechat``/``qq``/``url``: appended with its usual cue. Other
    masked runs stay masked (the model reads digits as ``x`` anyway). ``None``: no contact.
    """
    if kind is None:
        return ad, None
    if kind == "mobile":
        number = mobile_number(rng)
        if _MASKED_MOBILE.search(ad):
            return _MASKED_MOBILE.sub(number, ad, count=1), number
        return ad.rstrip("。") + rng.choice(("，详询", "，电话", "，联系")) + number, number
    if kind == "wechat":
        wid = rng.choice(string.ascii_lowercase) + "".join(
            rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(6, 9)))
        return ad.rstrip("。") + rng.choice(("，加微信", "，微信：", "，V信 ")) + wid, wid
    if kind == "qq":
        qq = str(rng.randint(10_000_000, 3_999_999_999))
        return ad.rstrip("。") + rng.choice(("，QQ", "，加QQ：", "，扣扣")) + qq, qq
    if kind == "url":
        host = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 8)))
        url = f"http://{host}.{rng.choice(('cn', 'com', 'top', 'vip'))}/{rng.randint(100, 999)}"
        return ad.rstrip("。") + rng.choice(("，详情", "，点击 ", "，戳 ")) + url, url
    raise ValueError(f"unknown contact kind {kind!r} ({', '.join(CONTACT_KINDS)})")


def synonyms(text: str, rng: random.Random, share: float = 0.7) -> str:
    """Each :data:`SYNONYMS` word of ``text`` swapped for one of its look-alikes with
    probability ``share`` (per word kind, all its occurrences alike)."""
    for word, choices in SYNONYMS.items():
        if word in text and rng.random() < share:
            text = text.replace(word, rng.choice(choices))
    return text


def vary(example: str, rng: random.Random, context: Sequence[str]) -> tuple[str, str]:
    """One copy of a campaign's advert and what was done to it.

    Synonyms half of the time, then one robustness variant (:data:`VARIANTS`; for
    ``prepended``, ordinary chat from ``context`` goes in front), then a prefix or a suffix.
    The digit variants also fill the advert's other masked runs (``xxx``) with random digits,
    as :func:`antispam.network.robustness.build_variants` does; the contact keeps its digits.
    """
    from antispam.network.robustness import build_variants

    done: list[str] = []
    text = example
    if rng.random() < 0.5:
        changed = synonyms(text, rng)
        if changed != text:
            text = changed
            done.append("synonyms")
    variant = rng.choice(VARIANTS)
    if variant != "plain":
        pool = [Sample(t, PASS) for t in rng.sample(list(context), min(4, len(context)))]
        built = build_variants([Sample(text, SPAM), *pool], seed=rng.randrange(1 << 30))[variant]
        if built:
            text = built[0].text
            done.append(variant)
    side = rng.random()
    if side < 0.3:
        text = rng.choice(PREFIXES) + text
        done.append("prefix")
    elif side < 0.6:
        text = text + rng.choice(SUFFIXES)
        done.append("suffix")
    return text, "+".join(done) or "plain"


def burst_text(name: str, rng: random.Random) -> str:
    """One message of an ordinary burst: the greeting (a third with a name in front or after),
    or the parcel notice with its own waybill, pick-up point, code and hour.

    Waybills start with 1, like SF's 13-digit ones: a 12-digit run starting with 0 glued to ``SF``
    is read as a landline by :mod:`antispam.contacts` (``SF081421299531``), which a real notice
    would not contain."""
    if name == "greeting":
        roll = rng.random()
        if roll < 0.2:
            return f"{rng.choice(GREETING_NAMES)}，{GREETING}"
        if roll < 0.33:
            return f"{GREETING}——{rng.choice(GREETING_NAMES)}"
        return GREETING
    if name == "parcel_notice":
        return PARCEL_TEMPLATE.format(waybill="1" + "".join(rng.choice(string.digits) for _ in range(12)),
                                      station=rng.choice(STATIONS), code=f"{rng.randint(1, 30)}-{rng.randint(1, 9)}-"
                                      f"{rng.randint(1000, 9999)}", hour=rng.randint(18, 21))
    raise ValueError(f"unknown burst {name!r}")


def _unique(texts: Any) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t and t.strip()))
