"""The replay benchmark's traffic generator: seeded, deterministic, the counts it promises."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from antispam.bench import replay
from antispam.bench.replay import Burst, ReplayConfig, generate
from antispam.contacts import find_contacts
from antispam.data import Sample
from antispam.labels import PASS, SPAM
from antispam.text import normalize

pytestmark = pytest.mark.unit

ADS = [
    "本店新品上市全场八折优惠，欢迎新老顾客光临选购，咨询电话xxxxxxxxxxx",
    "低息贷款当天放款，无抵押无担保，详情请联系xxxxxxxxxxx王经理",
    "代开各类发票，正规税票可查验，价格优惠，量大从优，欢迎来电咨询",
    "美容院三八节活动：所有护理项目免费体验一次，名额有限先到先得",
    "楼盘火爆认筹中，首付两成即可入住，地铁口学区房，欢迎莅临参观",
    "驾校春季招生开始啦，报名即送体检费，周末班晚班随到随学包拿证",
    "健身会所开业大酬宾，年卡只要九百九，再送私教课三节，速来抢购",
    "家电清洗上门服务，空调油烟机洗衣机深度清洁，全城最低价格保证",
    "少儿英语暑期班火热报名中，外教小班授课，试听一节课完全免费哦",
    "手机维修换屏换电池，原厂配件半小时取机，老顾客再享九折优惠价",
    "婚纱摄影年终特惠套餐，三千八全包含化妆服装，预约再送精美相册",
    "装修公司冬季特价，全包设计免费量房，十年质保，欢迎实地考察",
]
PASSED = ["妈妈我们明天回家吃晚饭", "下午3点开会，记得带电脑", "今天天气不错一起去公园吧", "我已经到了，你在哪里？",
          "这本书很好看推荐给你", "周末一起打篮球吗", "晚上吃什么"]
SHORT_SPAM = ["加微信领红包", "发票"]  # too short to be adverts; single spam
EVERYDAY = ["你好", "谢谢你", "到家了吗", "你好"]  # the duplicate is sent once


def split_samples() -> list[Sample]:
    return [Sample(t, SPAM) for t in ADS + SHORT_SPAM] + [Sample(t, PASS) for t in PASSED]


def small(**kwargs: object) -> ReplayConfig:
    base: dict[str, object] = dict(campaigns=4, campaign_senders=(20, 40), campaign_minutes=(1.0, 3.0),
                                   span_minutes=10.0, ordinary_senders=50, no_contact_every=4,
                                   bursts=(Burst("greeting", 60, 2.0), Burst("parcel_notice", 30, 2.0)))
    base.update(kwargs)
    return ReplayConfig(**base)  # type: ignore[arg-type]


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a = generate(split_samples(), EVERYDAY, small())
    b = generate(split_samples(), EVERYDAY, small())
    c = generate(split_samples(), EVERYDAY, small(seed=7))
    assert a.messages == b.messages and a.summary() == b.summary()
    assert [m.text for m in a.messages] != [m.text for m in c.messages]


def test_counts_of_each_kind() -> None:
    config = small()
    trace = generate(split_samples(), EVERYDAY, config)
    counts = trace.counts()
    campaigns = [g for g in trace.groups if g.kind == "campaign"]
    ads_used = {g.name for g in campaigns}
    assert len(campaigns) == 4 and len(ads_used) == 4
    assert counts["ordinary"] == len(PASSED)
    assert counts["everyday"] == 3
    # Every spam text not used as an advert is sent once as single spam.
    assert counts["single_spam"] == len(ADS) + len(SHORT_SPAM) - 4
    assert counts["burst"] == 60 + 30
    assert counts["campaign"] == sum(g.messages for g in campaigns)
    assert sum(counts.values()) == len(trace.messages)
    for group in trace.groups:
        members = [m for m in trace.messages if m.group == group.name]
        assert len(members) == group.messages
        assert len({m.sender for m in members}) == group.senders
        assert [m.index for m in members] == list(range(group.messages))  # by time
        assert members[0].at == group.start and members[-1].at == group.end
    for group in campaigns:
        low, high = config.campaign_senders
        assert low <= group.senders <= high
        assert group.messages == group.senders + round(group.senders * config.repeat_share)
        minutes = (group.end - group.start) / 60
        assert minutes <= config.campaign_minutes[1]


def test_time_order_and_span() -> None:
    trace = generate(split_samples(), EVERYDAY, small())
    times = [m.at for m in trace.messages]
    assert times == sorted(times)
    assert 0 <= times[0] and times[-1] <= 10 * 60


def test_campaigns_are_interleaved_with_other_traffic() -> None:
    trace = generate(split_samples(), EVERYDAY * 50, small())
    for group in trace.groups:
        inside = [m for m in trace.messages if group.start <= m.at <= group.end]
        assert any(m.group != group.name for m in inside), group.name


def test_campaign_contacts_are_found_by_the_extractor() -> None:
    """Each campaign's advert carries the contact it says (one in no_contact_every none), and most
    varied copies still carry it as the service will read it."""
    trace = generate(split_samples(), EVERYDAY, small())
    campaigns = [g for g in trace.groups if g.kind == "campaign"]
    assert [g.contact_kind for g in campaigns] == ["mobile", "wechat", "qq", None]
    for group in campaigns:
        found = [c.value for c in find_contacts(group.example)]
        if group.contact is None:
            assert found == []
            continue
        assert group.contact.lower() in found, (group.example, found)
        copies = [m.text for m in trace.messages if m.group == group.name]
        kept = sum(group.contact.lower() in [c.value for c in find_contacts(t)] for t in copies)
        assert kept >= 0.5 * len(copies), (group.name, kept, len(copies))


def test_copies_vary_and_use_the_variants() -> None:
    trace = generate(split_samples(), EVERYDAY, small(campaigns=2, campaign_senders=(150, 150)))
    copies = [m for m in trace.messages if m.kind == "campaign"]
    assert len({m.text for m in copies}) > 0.8 * len(copies)
    used = Counter(part for m in copies for part in m.variant.split("+"))
    for name in [*replay.VARIANTS[1:], "synonyms", "prefix", "suffix"]:
        assert used[name] > 0, name
    for m in copies:
        assert m.text != ""


def test_bursts_repeat_one_text_without_contacts() -> None:
    trace = generate(split_samples(), EVERYDAY, small())
    greeting = [m.text for m in trace.messages if m.group == "burst-greeting"]
    assert Counter(greeting).most_common(1)[0][0] == replay.GREETING
    assert all(replay.GREETING in t for t in greeting)
    notices = [m.text for m in trace.messages if m.group == "burst-parcel_notice"]
    assert len(set(notices)) > 20  # the template's fields differ
    assert all(t.startswith("【顺丰速运】您的快件SF") for t in notices)
    for text in greeting + notices:
        assert find_contacts(text) == [], text


def test_synonyms_swap_words() -> None:
    rng = random.Random(1)
    text = "加微信咨询优惠活动"
    out = {replay.synonyms(text, rng, share=1.0) for _ in range(30)}
    assert text not in out and len(out) > 3
    assert replay.synonyms("你好", rng, share=1.0) == "你好"


def test_contact_kinds() -> None:
    rng = random.Random(3)
    for kind in replay.CONTACT_KINDS:
        text, contact = replay.with_contact("本店新品上市全场八折，欢迎光临", kind, rng)
        assert contact is not None and contact.lower() in [c.value for c in find_contacts(text)]
    # The masked mobile of the corpus is filled in place rather than a number appended.
    text, contact = replay.with_contact("详询xxxxxxxxxxx王经理", "mobile", rng)
    assert text == f"详询{contact}王经理"
    with pytest.raises(ValueError):
        replay.with_contact("x", "fax", rng)


def test_too_few_adverts_and_bad_configs() -> None:
    with pytest.raises(ValueError, match="usable adverts"):
        generate(split_samples(), EVERYDAY, small(campaigns=20))
    with pytest.raises(ValueError):
        small(campaign_senders=(50, 10)).validate()
    with pytest.raises(ValueError):
        small(campaign_minutes=(1.0, 30.0)).validate()


def test_adverts_differ() -> None:
    ads = replay.pick_ads(ADS, 10, random.Random(0))
    assert len({normalize(a)[:12] for a in ads}) == 10


def test_adverts_from_a_pool() -> None:
    """Adverts come only from the pool given (test spam), the rest of the spam is single spam."""
    pool = ADS[5:] + ["不在测试集里的广告文字，二十个字以上的一条广告文字"]
    trace = generate(split_samples(), EVERYDAY, small(), ad_pool=pool)
    examples = [g.example for g in trace.groups if g.kind == "campaign"]
    for example in examples:
        assert any(example.startswith(ad.rstrip("。")[:15]) for ad in ADS[5:]), example
    assert trace.counts()["single_spam"] == len(ADS) + len(SHORT_SPAM) - 4
    with pytest.raises(ValueError, match="usable adverts"):
        generate(split_samples(), EVERYDAY, small(), ad_pool=ADS[:2])


def test_campaign_copies_quote_only_the_context_given() -> None:
    context = ["今天的会议改到下午三点", "周末去爬山吗大家一起", "晚饭想吃火锅还是烧烤"]
    trace = generate(split_samples(), EVERYDAY, small(campaigns=2, campaign_senders=(120, 120)), context=context)
    prepended = [m.text for m in trace.messages if "prepended" in m.variant]
    assert prepended and all(any(c in t for c in context) for t in prepended)
    for m in trace.messages:
        if m.kind == "campaign":
            assert not any(p in m.text for p in PASSED), m.text
