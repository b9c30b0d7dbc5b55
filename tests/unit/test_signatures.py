"""Near-duplicate signatures (issue 24): variants of one ad share a key, different texts do not."""

from __future__ import annotations

import random

from antispam import signatures
from antispam.text import normalize

AD = "本店新到一批高仿名牌包包，质量保证，价格优惠，加微信 abc12345 详聊，先到先得。"
OTHER_AD = "专业代开各类发票，增值税专票普票均可，当天出票，联系电话 13800138000。"
CHAT = "今天下午的会议改到三点了，记得带上季度报表，我们在三楼会议室见。"


def keys(text: str) -> set[str]:
    return set(signatures.signature_keys(normalize(text)))


def spaced(text: str, sep: str) -> str:
    return sep.join(text)


def emoji(text: str, rng: random.Random) -> str:
    out = []
    for i, ch in enumerate(text):
        out.append(ch)
        if i % rng.choice((2, 3)) == 0:
            out.append(rng.choice("😀🔥👍🎉💰"))
    return "".join(out)


def test_the_robustness_variants_of_one_ad_share_a_key() -> None:
    rng = random.Random(7)
    base = keys(AD)
    assert base
    variants = [
        spaced(AD, " "), spaced(AD, "*"), spaced(AD, "_"),
        AD.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789abc"}),  # full-width
        emoji(AD, rng),
        "本店新到一批高仿名牌包包，質量保證，價格優惠，加微信 abc12345 詳聊，先到先得。",  # traditional
        "哈哈你到家了吗？" + AD,  # prepended chat
        "刚看到群里说的，" + AD + "大家看看吧，别错过了",  # surrounded
        AD.replace("abc12345", "xyz98765").replace("一批", "一些"),  # another id, a synonym
    ]
    for variant in variants:
        assert base & keys(variant), variant


def test_different_texts_share_no_key() -> None:
    assert not keys(AD) & keys(OTHER_AD)
    assert not keys(AD) & keys(CHAT)
    assert not keys(OTHER_AD) & keys(CHAT)


def test_short_texts_have_no_signature() -> None:
    assert signatures.signature_keys(normalize("新年快乐")) == []
    assert signatures.signature_keys(normalize("在吗 在吗")) == []


def test_keys_are_stable_and_shaped() -> None:
    """Two processes must compute the same keys: fixed values, no per-process hash seed."""
    first = signatures.signature_keys(normalize(AD))
    assert first == signatures.signature_keys(normalize(AD))
    assert len(first) >= signatures.BANDS
    assert all(k[0] == f"{i:x}" and len(k) == 17 for i, k in enumerate(first[:signatures.BANDS]))
    assert all(k.startswith("p") and len(k) == 17 for k in first[signatures.BANDS:])


def test_jaccard_estimate_follows_similarity() -> None:
    a = normalize(AD)
    assert signatures.jaccard_estimate(a, a) == 1.0
    assert signatures.jaccard_estimate(a, normalize(CHAT)) < 0.1
    half = normalize(AD[:len(AD) // 2] + CHAT[:len(CHAT) // 2])
    assert 0.1 < signatures.jaccard_estimate(a, half) < 0.9


def test_the_trainers_robustness_variants_keep_a_key() -> None:
    """Every variant :func:`antispam.network.robustness.build_variants` makes of an advert
    (context before and around it, spacing, full-width and circled digits, emoji, traditional
    characters) shares a key with the advert as written. (On the whole test split: prepended
    97 %, surrounded 96 %, the others 99-100 % of pairs; see the issue-24 note.)"""
    from antispam.data import Sample
    from antispam.labels import PASS, SPAM
    from antispam.network.robustness import SPAM_VARIANTS, build_variants

    ads = [AD, OTHER_AD, "高薪诚聘网络兼职打字员，日结工资两百元以上，无需经验，有意者加QQ xxxxxxxx 咨询"]
    chat = [CHAT, "周末一起去爬山吧，天气预报说是晴天，记得带水", "妈妈让我下班顺路买点菜回家，晚上包饺子吃",
            "这个报告我明天上午发给你，有问题随时沟通"]
    variants = build_variants([Sample(t, SPAM) for t in ads] + [Sample(t, PASS) for t in chat])
    for name in SPAM_VARIANTS:
        assert len(variants[name]) == len(ads), name
        for ad, variant in zip(ads, variants[name]):
            assert keys(ad) & keys(variant.text), (name, variant.text)


def test_numbers_do_not_link_unrelated_texts() -> None:
    """Masked digits are one token: texts that share only "a number here" share no key (a
    standalone phone number is no sentence, and ``xxx`` is no shingle every text has)."""
    a = "xxxxxxxxxxxxxxxx夏中辉光大银行，QQ1578454124"
    b = "今晚的聚餐改到七点，地点不变，电话：13912345678，到了打给我"
    c = "我的新号码：13800138000，旧号码：13900139000，请惠存"
    assert not keys(a) & keys(b) and not keys(a) & keys(c) and not keys(b) & keys(c)
    assert signatures.compact(normalize("电话13800138000，QQ 12345")) == "电话xqqx"
    assert keys("联系我：13800138000，谢谢") == set()  # 6 characters once the number is one
