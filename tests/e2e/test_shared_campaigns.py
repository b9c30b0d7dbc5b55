"""Issue 24 acceptance: two real ``antispam serve`` processes sharing one Redis count a campaign
once. A campaign whose messages alternate between the two processes gets the same ``campaign``
figures (size, distinct senders, first crossing) as the same messages sent to one process that
counts alone; each of the two on its own would have seen only half the senders.

Redis is the one .ci/run starts (ANTISPAM_TEST_REDIS_URL); without it this module skips.
"""

from __future__ import annotations

import http.client
import json
import random
import urllib.parse
import uuid
from typing import Any, Iterator

import pytest

from tests.helpers.serve_process import ServeProcess
from tests.helpers.stores import redis_url

MIN_SENDERS = 4
SENDERS = 12


def predict(port: int, text: str, sender: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/predict?" + urllib.parse.urlencode({"text": text, "sender_id": sender}))
        answer = conn.getresponse()
        body = json.loads(answer.read())
        assert answer.status == 200, body
        return body["data"]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from antispam.testing.tinymodel import build_version

    url = redis_url()
    root = tmp_path_factory.mktemp("campaigns")
    build_version(root / "models" / "cnn")
    common = ("--backend", "local", "--model-base", str(root / "models"), "--model-name", "cnn",
              "--cache-size", "0", "--deadline-ms", "60000", "--campaign-min-senders", str(MIN_SENDERS),
              "--sender-key", "e2e-campaign-key-0123456789")
    shared = [ServeProcess(*common, "--redis-url", url, cwd=root) for _ in range(2)]
    alone = ServeProcess(*common, cwd=root)
    try:
        for process in [*shared, alone]:
            process.wait_ready(timeout=180)
        yield {"shared": [p.port for p in shared], "alone": alone.port}
    finally:
        for process in [*shared, alone]:
            process.stop()


def campaign_messages() -> list[tuple[str, str]]:
    """One ad, varied the way senders vary it, from SENDERS senders, two messages from one of
    them. Its words are drawn at random for this run: an earlier run's ad in the same Redis
    shares no sentence or shingles with it, so its counts do not add in."""
    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)
    words = ["".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(9)) for _ in range(3)]
    ad = f"{words[0]}，{words[1]}，加微信 ad{run} 详聊，{words[2]}"
    variants = [ad, " ".join(ad), ad.replace("，", "🔥"), "在吗？" + ad, ad + "！！！",
                ad.replace(words[0][3], "的")]
    messages = [(rng.choice(variants), f"sender-{run}-{i}") for i in range(SENDERS)]
    messages.insert(5, (ad, messages[0][1]))  # a sender who sends twice counts once
    return messages


def test_a_campaign_split_across_two_processes_is_counted_once(ports: dict[str, Any]) -> None:
    messages = campaign_messages()
    shared = [predict(ports["shared"][i % 2], text, sender) for i, (text, sender) in enumerate(messages)]
    alone = [predict(ports["alone"], text, sender) for text, sender in messages]

    def figures(items: list[dict[str, Any]]) -> list[tuple[int, int] | None]:
        return [(c["size"], c["senders"]) if (c := item.get("campaign")) else None for item in items]

    print(f"\nshared Redis: {figures(shared)}\none process:  {figures(alone)}")
    assert figures(shared) == figures(alone)
    first = next(i for i, item in enumerate(alone) if "campaign" in item)
    assert first == MIN_SENDERS - 1  # the 4th message, from the 4th distinct sender
    assert figures(alone)[4:6] == [(5, 5), (6, 5)]  # the 6th message is a repeat of sender 0
    assert figures(alone)[-1] == (len(messages), SENDERS)
    # Each process of the pair saw only about half the senders; yet both marked the campaign.
    assert {i % 2 for i, item in enumerate(shared) if "campaign" in item} == {0, 1}
    assert all("sender-" not in json.dumps(item) for item in shared + alone)  # ids never echoed
