"""Sender context (issue 24): ids are checked and hashed with a keyed HMAC."""

from __future__ import annotations

import pytest

from antispam.errors import ApiError
from antispam.senders import ID_CHARS, SenderHasher, check_id, ids_of


def test_check_id_accepts_strings_and_refuses_the_rest() -> None:
    assert check_id("user-42", "sender_id") == "user-42"
    assert check_id(" 用户 ", "sender_id") == " 用户 "  # as sent: spaces are part of an id
    assert check_id(None, "sender_id") is None
    for bad in (42, "", "x" * (ID_CHARS + 1), "a\nb", "a\x85", "\ud800", ["a"]):
        with pytest.raises(ApiError) as caught:
            check_id(bad, "sender_id")
        assert caught.value.status == 400 and "sender_id" in caught.value.message


def test_ids_of_one_or_one_per_text() -> None:
    assert ids_of({}, "sender_id", 2) == [None, None]
    assert ids_of({"sender_id": "a"}, "sender_id", 2) == ["a", "a"]
    assert ids_of({"sender_ids": ["a", None]}, "sender_id", 2) == ["a", None]
    for body in ({"sender_ids": ["a"]}, {"sender_ids": "a"}, {"sender_ids": ["a", "b"], "sender_id": "c"},
                 {"sender_ids": ["a", 3]}):
        with pytest.raises(ApiError):
            ids_of(body, "sender_id", 2)


def test_hashes_are_keyed_stable_and_never_the_id() -> None:
    one, same, other = SenderHasher("k" * 16), SenderHasher("k" * 16), SenderHasher("j" * 16)
    assert one("alice") == same("alice") != other("alice")
    assert one("alice") != one("bob") and one("alice") != one("alice", "room")
    assert "alice" not in one("alice") and len(one("alice")) == 32
    assert SenderHasher()("alice") != SenderHasher()("alice")  # no key: a random one per process
    assert "k" * 16 not in repr(one)
    with pytest.raises(ValueError):
        SenderHasher("short")
