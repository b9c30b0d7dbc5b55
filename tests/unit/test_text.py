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
