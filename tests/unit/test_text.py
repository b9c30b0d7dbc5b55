import pytest

from antispam.text import Segmenter, normalize, rebuild_raw, tokenize


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＨＥＬＬＯ　ｗｏｒｌｄ", "hello world"),  # full-width letters and space
        ("①②③", "xxx"),  # circled digits -> digits -> x
        ("⑴⒈", "x x"),  # bracketed and dotted digits
        ("Ⓐⓑ", "ab"),  # circled letters
        ("ABC", "abc"),
        ("电话13800138000", "电话xxxxxxxxxxx"),
        ("１２３", "xxx"),  # full-width digits
        ("你好，世界！", "你好 世界"),
        ("😀😀!!!。。", ""),  # emoji and punctuation only
        ("", ""),
        ("\x00\x07\u200b", ""),  # control and zero-width characters
        ("hello,world", "hello world"),  # punctuation never fuses two Latin words
        ("加V：abc_123", "加v abc xxx"),
        ("㈠优惠", "一 优惠"),  # parenthesized ideograph: the parentheses become a break
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_masks_every_digit_kind() -> None:
    # Arabic-Indic and full-width digits are digits too; none may survive.
    out = normalize("٣ ３ 3")
    assert out == "x x x"


def test_normalize_very_long_input_is_linear_and_exact() -> None:
    text = "免费领取iPhone12！" * 20000
    out = normalize(text)
    assert out.count("免费领取iphonexx") == 20000
    assert "！" not in out


def test_rebuild_raw_spacing() -> None:
    assert rebuild_raw("刘 强 东 每年 只 拿 1 元") == "刘强东每年只拿1元"
    assert rebuild_raw("iphone 6 plus 特价") == "iphone 6 plus特价"
    assert rebuild_raw("  多余   空格 ") == "多余空格"
    assert rebuild_raw("") == ""


def test_tokenize_masks_and_segments(seg: Segmenter) -> None:
    tokens = seg.tokenize("加我微信，电话13800138000！")
    assert "xxxxxxxxxxx" in tokens
    assert "微信" in tokens
    assert all(t.strip() and t == t.strip() for t in tokens)
    assert not any(ch.isdigit() for t in tokens for ch in t)


def test_tokenize_empty_after_normalization(seg: Segmenter) -> None:
    assert seg.tokenize("！！😀") == []


def test_train_and_serve_see_the_same_tokens(seg: Segmenter) -> None:
    # A corpus line (pre-segmented, digits masked) and the raw message it came from.
    corpus_line = "详 询 xxxxxxxxxxx 优惠活动 开始 啦 ！"
    raw_message = "详询13800138000优惠活动开始啦！"
    assert seg.tokenize(rebuild_raw(corpus_line)) == seg.tokenize(raw_message)


def test_module_function_uses_one_segmenter() -> None:
    assert tokenize("今天开会") == Segmenter().tokenize("今天开会")


def test_importing_text_does_not_load_jieba() -> None:
    import subprocess
    import sys

    code = "import sys, antispam.text; print('jieba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("發票貸款", "发票贷款"),
        ("請加微信", "请加微信"),
        ("優惠活動，電話13800138000", "优惠活动 电话xxxxxxxxxxx"),
        ("发票贷款", "发票贷款"),  # simplified text is left alone
    ],
)
def test_normalize_folds_traditional_to_simplified(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_to_simplified() -> None:
    from antispam.text import to_simplified

    assert to_simplified("發票貸款，請加微信") == "发票贷款，请加微信"
    assert to_simplified("") == ""


def test_traditional_text_tokenizes_like_simplified(seg: Segmenter) -> None:
    tokens = seg.tokenize("發票貸款")
    assert tokens == ["发票", "贷款"]
    assert tokens == seg.tokenize("发票贷款")
    assert "微信" in seg.tokenize("請加微信")


def test_normalizer_version_and_compatibility() -> None:
    from antispam.text import COMPATIBLE_NORMALIZERS, NORMALIZER_VERSION

    assert NORMALIZER_VERSION == 2
    assert NORMALIZER_VERSION in COMPATIBLE_NORMALIZERS and 1 in COMPATIBLE_NORMALIZERS


def test_importing_text_does_not_load_opencc() -> None:
    import subprocess
    import sys

    code = "import sys, antispam.text; print('opencc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_tokens_folds_traditional() -> None:
    # Same pattern as tests/service/test_cli.py: the CLI in a subprocess.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "antispam", "tokens", "發票", "請加微信"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["发票"]
    assert "微信" in lines[1].split()


# --- tokenizer engines: rjieba must give exactly jieba's tokens (docs/contracts.md#text-pipeline) ---

def _tokenizer_sample() -> list[str]:
    """Normalized texts to compare the engines on: the shipped everyday messages, corpus-like
    ads and texts with what jieba's HMM and its Latin/digit handling see (the full corpus check
    is scripts/tokenizer_compare.py)."""
    import random

    from antispam.everyday import load

    texts = [normalize(e.text) for e in load()]
    texts += [normalize(t) for t in (
        "加微信领取优惠券，详询13800138000，代开发票，贷款秒批", "妈妈，我明天晚上回家吃饭",
        "ABC公司 www.example.com 限时特价 iPhone15 到手价xxxx元", "x月x日 下午x点 在 xx楼 开会",
        "李小龙和王大锤去了长江大桥附近的南京市长江大桥", "hello world 你好世界 abc123def",
    )]
    rng = random.Random(7)
    pool = "".join(sorted(set("".join(texts)) - {" "}))
    texts += ["".join(rng.choice(pool + "  ab x") for _ in range(rng.randint(1, 80))).strip() for _ in range(500)]
    return [t for t in texts if t]


def test_rjieba_gives_jiebas_tokens_on_a_sample(seg: Segmenter) -> None:
    pytest.importorskip("rjieba")  # a core dependency; skipped only on a platform without its wheel
    plain = Segmenter("jieba")
    assert seg.engine == "rjieba+jieba" and plain.engine == "jieba"
    sample = _tokenizer_sample()
    assert len(sample) > 1500
    assert all(seg.in_one_call(t) for t in sample[:50])  # the fast path is really taken
    differing = [t for t in sample if seg.segment(t) != plain.segment(t)]
    assert differing == []


def test_texts_outside_jiebas_range_go_to_jieba(seg: Segmenter) -> None:
    """jieba emits each CJK extension ideograph as a token; jieba-rs would join a run of them."""
    text = normalize("晴𬯎𠀣㐛鿣橠")
    assert not seg.in_one_call(text)
    assert seg.segment(text) == Segmenter("jieba").segment(text) == ["晴", "𬯎", "𠀣", "㐛", "鿣", "橠"]
    assert list(seg.iter_segment(text)) == seg.segment(text)


def test_tokenizer_engine_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from antispam.errors import UserError

    monkeypatch.setenv("ANTISPAM_TOKENIZER", "jieba")
    assert Segmenter().engine == "jieba"
    monkeypatch.setenv("ANTISPAM_TOKENIZER", "fast")
    with pytest.raises(UserError, match="ANTISPAM_TOKENIZER='fast'"):
        Segmenter()
    monkeypatch.delenv("ANTISPAM_TOKENIZER")
    monkeypatch.setitem(sys.modules, "rjieba", None)  # not installed: plain jieba, same tokens
    fallback = Segmenter()
    assert fallback.engine == "jieba" and not fallback.in_one_call("今天开会")
    assert fallback.segment("今天开会") == ["今天", "开会"]
