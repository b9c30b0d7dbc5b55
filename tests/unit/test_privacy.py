"""What is kept of people's texts (antispam/privacy.py, docs/operations.md#privacy, issue 21)."""

from __future__ import annotations

import json

import pytest

from antispam.privacy import (
    conflict_ref,
    excerpt,
    mask_contacts,
    redact_conflict,
    redact_record,
    scrub_log,
    text_digest,
)
from antispam.text import normalize

pytestmark = pytest.mark.unit


def test_phone_numbers_and_ids_are_masked_and_the_model_reads_digits_the_same() -> None:
    text = "加微信：abc12345，电话 138-0013-8000，QQ 12345678，邮箱 li.lei@example.com，官网 www.888bet.com"
    masked = mask_contacts(text)
    for secret in ("abc12345", "138-0013-8000", "12345678", "li.lei@example.com"):
        assert secret not in masked
    assert "000-0000-0000" in masked and "xxx00000" in masked
    assert "www.888bet.com" in masked  # links and domains are the spam's own, not personal
    assert len(masked) == len(text)
    phone_only = "明天见，电话：１３８００１３８０００"
    assert normalize(mask_contacts(phone_only)) == normalize(phone_only)  # digits normalize to x anyway
    assert mask_contacts("今天开会") == "今天开会"


def test_excerpt_is_short_and_shows_no_contact_or_digit() -> None:
    assert excerpt("代开发票，联系13800138000，订单号 98765") == "代开发票，联系000000000…"  # 16 characters
    assert excerpt("周末一起去爬山") == "周末一起去爬山"
    assert excerpt("x" * 40).endswith("…") and len(excerpt("x" * 40)) == 17


def test_a_conflict_is_logged_as_a_hash_and_an_excerpt() -> None:
    ref = conflict_ref(normalize("加我微信abc12345领取"), "加我微信abc12345领取")
    assert ref == {"sha256": text_digest(normalize("加我微信abc12345领取")), "excerpt": "加我微信xxx00000领取"}
    assert ref["sha256"].startswith("sha256:") and len(ref["sha256"]) == 7 + 64


def test_old_entries_are_redacted_and_new_ones_stay_equal() -> None:
    old = {"normalized": "周末一起去爬山", "text": "周末一起去爬山！", "counts": {"spam": 1, "pass": 1},
           "keys": {"0": 1}}
    new = redact_conflict(old)
    assert set(new) == {"sha256", "excerpt", "counts", "keys"}
    assert new["sha256"] == text_digest("周末一起去爬山")
    assert redact_conflict(new) == new
    record = {"time": "t", "conflicts": [old], "conflict_count": 1}
    assert redact_record(record)["conflicts"] == [new] and redact_record(record)["time"] == "t"


def test_scrub_log_rewrites_only_what_quotes_a_text(tmp_path) -> None:
    log = tmp_path / "promotion.jsonl"
    lines = [{"time": "1", "conflicts": [{"normalized": "电话xxxxxxxxxxx", "text": "电话13800138000", "counts": {}}]},
             {"time": "2", "conflicts": []}]
    log.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\nnot json\n", encoding="utf-8")
    assert scrub_log(log) == 1
    text = log.read_text(encoding="utf-8")
    assert "13800138000" not in text and "xxxxxxxxxxx" not in text and text.endswith("not json\n")
    first = json.loads(text.splitlines()[0])
    assert first["conflicts"][0]["excerpt"] == "电话00000000000"
    assert scrub_log(log) == 0 and log.read_text(encoding="utf-8") == text
    assert scrub_log(tmp_path / "absent.jsonl") == 0
