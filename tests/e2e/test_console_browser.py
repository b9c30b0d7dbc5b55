"""The moderator's console in a real browser: headless Chromium driven by Selenium.

1. ``antispam serve --backend local`` on a tiny model (antispam/testing/tinymodel.py) with a
   feedback store, a training report (real PNGs from network/report.py) and a promotion log.
   The browser goes through Try (two texts scored, one marked spam: the row is in the feedback
   DB), Models (versions, metrics, confusion matrix, report images, promotion log, rollback
   command) and Live (the requests just made), at 1280 px and at 375 px, and by keyboard. It
   measures page weight (bytes transferred for ``/console`` cold) and time to interactive
   (navigation start → the Score button enabled) and checks that the Content-Security-Policy
   blocked nothing.
2. A test-only server (the real app with a fake backend, behind a router that answers 401 without
   ``Authorization: Bearer s3cret``, and a ``/predict`` stand-in that sends ``reasons``) checks
   the key prompt and the span highlighting, which the real API cannot show yet.

Screenshots go to a pytest temp folder (printed with ``-s``) and, when ``ANTISPAM_CONSOLE_SHOTS``
names a folder, there too. No browser is downloaded: Debian's ``chromium`` and
``chromium-driver`` are used where they are, and the test skips without them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from antispam.testing import tinymodel
from tests.helpers.serve_process import ServeProcess

CHROMIUM = os.environ.get("ANTISPAM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("ANTISPAM_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]
KEY = "s3cret"
WAIT = 30.0

if not (os.path.isfile(CHROMIUM) and os.path.isfile(CHROMEDRIVER)):
    pytest.skip(f"needs Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install chromium chromium-driver", allow_module_level=True)
pytest.importorskip("selenium", reason="selenium is in the [dev] extras")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Records what the CSP refused; injected by DevTools, so the policy does not apply to it.
CSP_WATCH = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
             "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")


# Elements that stick out of a 375-px screen (inside a horizontally scrolling box is fine).
WIDER_THAN_THE_SCREEN = """
    const out = [];
    for (const node of document.querySelectorAll('body *')) {
        if (node.closest('.scroll') || !node.getClientRects().length) continue;
        const box = node.getBoundingClientRect();
        if (box.right > 375.5)
            out.push(node.tagName + '#' + node.id + '.' + node.className + ' ' + Math.round(box.right));
    }
    return out.concat(window.innerWidth > 375 ? ['innerWidth ' + window.innerWidth] : []);
"""


# -- equipment -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Path]]:
    folder = tmp_path_factory.mktemp("console-artifacts")
    extra = os.environ.get("ANTISPAM_CONSOLE_SHOTS")
    print(f"\nconsole screenshots: {folder}" + (f" and {extra}" if extra else ""))

    def paths(name: str) -> list[Path]:
        found = [folder / name]
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            found.append(Path(extra) / name)
        return found

    return paths


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")  # new and empty: a cold cache
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download anything
        driver = webdriver.Chrome(options=options, service=service)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_WATCH})
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT) -> Any:
    return WebDriverWait(driver, timeout).until(condition, message=f"waiting for {what}")


def by_id(driver: Any, element_id: str) -> Any:
    return driver.find_element(By.ID, element_id)


def screenshot(driver: Any, paths: list[Path], width: int = 1280, mobile: bool = False) -> None:
    """The whole page at ``width`` CSS pixels (DevTools device metrics: also below Chrome's window minimum)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile})
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 6000)")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": int(height), "deviceScaleFactor": 1, "mobile": mobile})
    for path in paths:
        driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def no_csp_violations_or_errors(driver: Any) -> None:
    assert driver.execute_script("return window.__csp") == []
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    # A 401 the key prompt answers is logged by Chromium as a failed resource; nothing else may be.
    assert [e for e in errors if " 401 " not in e["message"]] == []


# -- the real service ----------------------------------------------------------------------------

HISTORY = [{"epoch": e, "loss": loss, "validation_loss": vloss, "validation_accuracy": acc, "validation_f1": f1}
           for e, loss, vloss, acc, f1 in [(1, 0.31, 0.22, 0.93, 0.92), (2, 0.15, 0.17, 0.95, 0.95),
                                           (3, 0.09, 0.16, 0.96, 0.96), (4, 0.05, 0.18, 0.96, 0.958)]]
CONFUSION = {"spam_as_spam": 765, "spam_as_pass": 36, "pass_as_spam": 29, "pass_as_pass": 852}
TEST = {"count": 1682, "accuracy": 0.9614, "precision": 0.9635, "recall": 0.9551, "f1": 0.9592, "roc_auc": 0.991,
        "confusion": CONFUSION,
        "at_thresholds": {"0.5": {"precision": 0.9635, "recall": 0.9551, "f1": 0.9592, "false_positive_rate": 0.0329,
                                  "flagged": 794},
                          "0.9": {"precision": 0.9736, "recall": 0.9226, "f1": 0.9474, "false_positive_rate": 0.0227,
                                  "flagged": 759}}}


def give_version_a_report(model_base: Path, report_dir: Path) -> None:
    """What ``antispam train`` leaves: metrics.json in the version and the same run's report.

    The figures are made up for the test (the tiny model was never trained)."""
    from antispam.network.report import write_report

    run = {"model": "cnn", "version": 1, "history": HISTORY, "best_epoch": 3, "epochs_run": 4,
           "stopped_because": "patience", "source_vectors": "0123456789abcdef", "wall_seconds": 42.0,
           "test": TEST}
    metrics = {**run, "exported_at": "2025-11-29T10:13:00+00:00"}
    (model_base / "cnn" / "1" / "assets.extra" / "metrics.json").write_text(json.dumps(metrics))
    write_report(report_dir / "cnn-v1", run)
    log = [{"time": "2025-11-28T03:00:02+00:00", "decision": "publish", "exit_code": 0, "version": 1,
            "serving_version": None, "reason": "first version: published without a comparison",
            "scores": {"new": {"f1": 0.9592}, "old": None}, "dry_run": False},
           {"time": "2025-11-29T03:00:05+00:00", "decision": "reject", "exit_code": 3, "version": None,
            "serving_version": 1, "reason": "F1 0.9480 < serving 0.9592 - tolerance 0.005",
            "scores": {"new": {"f1": 0.948}, "old": {"f1": 0.9592}}, "dry_run": False}]
    (model_base / "cnn" / "promotion.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    root = tmp_path_factory.mktemp("console-service")
    model_base, report_dir, feedback_db = root / "models", root / "reports", root / "feedback.db"
    tinymodel.build_version(model_base / "cnn")
    give_version_a_report(model_base, report_dir)
    server = ServeProcess("--backend", "local", "--model-base", str(model_base), "--model-name", "cnn",
                          "--report-dir", str(report_dir), "--feedback-db", str(feedback_db), cwd=root)
    try:
        url = server.wait_ready()
        yield url, feedback_db, model_base
    finally:
        server.stop()


def static_bytes() -> int:
    from antispam.console.handlers import load_static

    return sum(len(body) for name, (body, _type) in load_static().items())


def test_try_feedback_models_and_live_in_chromium(browser: Any, service: tuple[str, Path, Path],
                                                   shots: Callable[[str], list[Path]]) -> None:
    url, feedback_db, model_base = service
    driver = browser
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})

    # -- cold load: time to interactive and page weight -----------------------------------------
    driver.get(url + "/console")
    assert driver.current_url == url + "/console/"
    wait(driver, lambda d: by_id(d, "try-submit").is_enabled(), "the Score button")
    wait(driver, lambda d: "ready" in by_id(d, "serving").text and "thresholds" in by_id(d, "try-policy").text,
         "the first API calls")
    assert by_id(driver, "serving").text == "cnn v1 · local backend · ready"
    assert "Policy: default" in by_id(driver, "try-policy").text
    assert driver.find_elements(By.ID, "try-policy-select") == []  # no policies in the API yet
    timing = driver.execute_script("""
        const nav = performance.getEntriesByType('navigation')[0];
        const mark = performance.getEntriesByName('console-interactive')[0];
        const resources = performance.getEntriesByType('resource').map(r => ({
            name: r.name.replace(location.origin, ''), transfer: r.transferSize, body: r.encodedBodySize}));
        return {interactive_ms: mark.startTime, dom_content_loaded_ms: nav.domContentLoadedEventEnd,
                load_ms: nav.loadEventEnd, redirect_ms: nav.redirectEnd - nav.redirectStart,
                document: {name: '/console/', transfer: nav.transferSize, body: nav.encodedBodySize}, resources};
    """)
    entries = [timing["document"], *timing["resources"]]
    weight = {"transferred_bytes": sum(e["transfer"] for e in entries),
              "body_bytes": sum(e["body"] for e in entries),
              "static_files_bytes": static_bytes(),
              "requests": [e["name"] for e in entries]}
    measured = {"time_to_interactive_ms": round(timing["interactive_ms"], 1),
                "dom_content_loaded_ms": round(timing["dom_content_loaded_ms"], 1),
                "load_event_ms": round(timing["load_ms"], 1), "page_weight": weight,
                "entries": entries}
    print("\nconsole cold load:", json.dumps(measured, indent=2))
    for path in shots("measurements.json"):
        path.write_text(json.dumps(measured, indent=2))
    assert {"/console/", "/console/console.js", "/console/console.css", "/models", "/console/api/info"} \
        <= set(weight["requests"])
    assert all(e["transfer"] > 0 for e in entries)  # nothing from a cache: a cold load
    assert weight["transferred_bytes"] < 100_000
    # Time to interactive is a measurement (printed above and in measurements.json), not an
    # assertion: a wall-clock limit here would fail on a loaded machine, not on a slow page.

    # -- Try: two texts (and a blank line), results, feedback -----------------------------------
    box = by_id(driver, "try-texts")
    box.send_keys(tinymodel.SPAM_TEXT, Keys.ENTER, Keys.ENTER, tinymodel.PASS_TEXT)
    by_id(driver, "try-submit").click()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#try-results li")) == 2, "two results")
    spam, passed = driver.find_elements(By.CSS_SELECTOR, "#try-results li")
    assert spam.find_element(By.CSS_SELECTOR, ".result-text").text == tinymodel.SPAM_TEXT
    assert passed.find_element(By.CSS_SELECTOR, ".result-text").text == tinymodel.PASS_TEXT
    assert spam.find_elements(By.TAG_NAME, "mark") == []  # no reasons from the API yet: plain text
    assert spam.get_attribute("data-suggestion") in ("block", "review")
    assert passed.get_attribute("data-suggestion") == "pass"
    spam_facts = spam.find_element(By.CSS_SELECTOR, "dl.facts").text
    for word in ("Line", "Verdict", "spam", "Probability", "Suggestion", "Coverage", "tokens", "Model", "cnn v1"):
        assert word in spam_facts
    assert "Line\n3" in passed.find_element(By.CSS_SELECTOR, "dl.facts").text  # the blank line counted
    assert "2 scored" in by_id(driver, "try-status").text

    spam.find_element(By.CSS_SELECTOR, "button[data-label='spam']").click()
    status = spam.find_element(By.CSS_SELECTOR, ".actions .status")
    wait(driver, lambda d: status.get_attribute("data-status") == "202", "the feedback answer")
    assert status.text.startswith("Stored as spam (202 Accepted, id 1)")
    from antispam.feedback import FeedbackStore

    with FeedbackStore(str(feedback_db)) as store:
        stored = store.samples()
    assert [(s.text, s.label) for s in stored] == [(tinymodel.SPAM_TEXT, 0)]
    screenshot(driver, shots("console-try.png"))

    # -- Models ---------------------------------------------------------------------------------
    by_id(driver, "nav-models").click()
    wait(driver, lambda d: by_id(d, "view-models").get_attribute("data-loaded") == "1", "the Models view")
    assert by_id(driver, "nav-models").get_attribute("aria-current") == "page"
    assert not by_id(driver, "view-try").is_displayed()
    rows = driver.find_elements(By.CSS_SELECTOR, "#versions-table tbody tr")
    assert len(rows) == 1
    cells = [c.text for c in rows[0].find_elements(By.CSS_SELECTOR, "th, td")]
    assert cells[:6] == ["1", "serving", "2025-11-29T10:13:00+00:00", "0.959", "0.964", "0.955"]
    assert cells[6] == "confusion, curves"
    confusion = by_id(driver, "confusion-table").text
    assert "765" in confusion and "852" in confusion
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#version-detail img")) == 2, "the report images")
    for image in driver.find_elements(By.CSS_SELECTOR, "#version-detail img"):
        wait(driver, lambda d, image=image: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", image), "an image to load")
        assert image.get_attribute("src").startswith("blob:")
    promotions = driver.find_elements(By.CSS_SELECTOR, "#promotions-table tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in promotions] == ["reject", "publish"]
    assert by_id(driver, "rollback-command").text == f"rm -rf {model_base / 'cnn' / '1'}"
    screenshot(driver, shots("console-models.png"))

    # -- Live: after some traffic (30 texts, 10 of them repeats the cache answers) ----------------
    for i in range(30):
        text = [f"{tinymodel.SPAM_TEXT} {i}", f"{tinymodel.PASS_TEXT} {i}", tinymodel.PASS_TEXT][i % 3]
        with urllib.request.urlopen(url + "/predict?text=" + urllib.parse.quote(text), timeout=30) as answer:
            assert answer.status == 200
    by_id(driver, "nav-live").click()
    wait(driver, lambda d: by_id(d, "view-live").get_attribute("data-loaded") == "1", "the Live view")
    cards = {c.find_element(By.CSS_SELECTOR, ".label").text: c.text
             for c in driver.find_elements(By.CSS_SELECTOR, "#live-cards .card")}
    assert set(cards) == {"Predict requests", "Latency p50", "Latency p99", "Verdicts", "Cache hit rate",
                          "Fallbacks", "Errors (5xx)"}
    assert cards["Verdicts"].split("\n")[1] == "32" and "ms" in cards["Latency p99"]
    # Digits are masked ("... 7" and "... 8" are one text), so most of the 32 texts are repeats.
    hits, misses = re.fullmatch(r"Cache hit rate\n[\d.]+ %\n(\d+) hits, (\d+) misses", cards["Cache hit rate"]).groups()
    assert int(hits) + int(misses) == 32 and int(hits) >= 10
    routes = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
              for r in driver.find_elements(By.CSS_SELECTOR, "#live-routes tbody tr")}
    assert routes["predict"] == "31" and routes["feedback"] == "1"
    assert driver.find_elements(By.CSS_SELECTOR, "#live-chart rect")
    screenshot(driver, shots("console-live.png"))

    # -- phone width: nothing wider than the screen -----------------------------------------------
    for view in ("try", "models", "live"):
        by_id(driver, f"nav-{view}").click()
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 375, "height": 800, "deviceScaleFactor": 1, "mobile": True})
        wait(driver, lambda d: d.execute_script("return document.documentElement.clientWidth") == 375,
             "the phone width")
        too_wide = driver.execute_script(WIDER_THAN_THE_SCREEN)
        assert too_wide == [], f"{view} at 375 px"
        screenshot(driver, shots(f"console-{view}-375.png"), width=375, mobile=True)
    no_csp_violations_or_errors(driver)


def test_the_console_works_by_keyboard(browser: Any, service: tuple[str, Path, Path]) -> None:
    url = service[0]
    driver = browser
    driver.get("about:blank")  # a fresh page, with the focus at its start
    driver.get(url + "/console/#try")
    wait(driver, lambda d: by_id(d, "try-submit").is_enabled(), "the Score button")
    order = []
    for _ in range(9):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        active = driver.switch_to.active_element
        order.append(active.get_attribute("id") or active.get_attribute("class") or active.tag_name)
    assert order[:8] == ["skip", "nav-try", "nav-review", "nav-models", "nav-live", "nav-campaigns", "try-texts",
                         "try-submit"]
    # Keyboard only: type, submit with Enter on the button, then mark the result as pass.
    by_id(driver, "try-texts").send_keys("你好，今天开会吗")
    by_id(driver, "try-texts").send_keys(Keys.TAB)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#try-results li")) == 1, "one result")
    for _ in range(2):
        driver.switch_to.active_element.send_keys(Keys.TAB)
    button = driver.switch_to.active_element
    assert button.tag_name == "button" and button.get_attribute("aria-label") == "Mark line 1 as pass"
    button.send_keys(Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#try-results .actions .status")
         .get_attribute("data-status") == "202", "the feedback answer")
    # Views by keyboard: the nav links are links, Enter follows them.
    by_id(driver, "nav-live").send_keys(Keys.ENTER)
    wait(driver, lambda d: by_id(d, "view-live").is_displayed(), "the Live view")
    no_csp_violations_or_errors(driver)


def test_review_view_takes_and_decides_by_keyboard(browser: Any, service: tuple[str, Path, Path],
                                                   shots: Callable[[str], list[Path]]) -> None:
    """Issue 23: the Review view. Items are put in the service's own queue (the SQLite file it
    serves from); the moderator takes, decides and skips with the keys documented on screen."""
    from antispam.feedback import FeedbackStore
    from antispam.review_stores import review_queue_for
    from antispam.text import normalize

    url, feedback_db, _model_base = service
    store = FeedbackStore(feedback_db)
    queue = review_queue_for(store)
    assert queue is not None
    # What the other tests' /predict calls sent to review (the decision log feeds the queue) is
    # decided first, by another moderator, so this one sees exactly the three items below.
    while (held := queue.take("setup", 60)) is not None:
        queue.decide(held.id, held.lease_token or "", "setup", "pass", None, normalize)
    base = {"index": 0, "key_id": "anonymous", "time": 1.0, "policy": "default", "model_name": "cnn",
            "model_version": 1, "decided_by": "model"}
    queue.enqueue([
        {**base, "source": "review", "request_id": "rv-1", "data_id": "msg-1", "probability": 0.71,
         "suggestion": "review", "text": "加微信领红包，限时优惠",
         "matches": [{"term": "加微信", "list": "block", "start": 0, "end": 3}]},
        {**base, "source": "review", "request_id": "rv-2", "probability": 0.64, "suggestion": "review",
         "text": "周末一起去爬山吗", "matches": []},
        {**base, "source": "appeal", "request_id": "rv-3", "probability": 0.97, "suggestion": "block",
         "text": "代开发票请联系我们", "appeal_reason": "我们是正规公司", "matches": []},
    ])
    driver = browser
    driver.get("about:blank")
    driver.get(url + "/console/#review")
    wait(driver, lambda d: by_id(d, "view-review").get_attribute("data-loaded") == "1", "the queue figures")
    keys = by_id(driver, "review-keys").text
    assert "s spam" in keys and "p pass" in keys and "n next" in keys  # the shortcuts, on screen
    cards = by_id(driver, "review-cards").text
    assert "Queue depth\n3" in cards and "appeal 1" in cards, cards
    assert len(driver.find_elements(By.CSS_SELECTOR, "#review-chart rect")) > 0

    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("n")  # take the first item
    wait(driver, lambda d: by_id(d, "review-item").is_displayed(), "the first item")
    marks = driver.find_elements(By.CSS_SELECTOR, "#review-text mark")
    assert ("加微信", "block list: 加微信") in [(m.text, m.get_attribute("title")) for m in marks]
    assert by_id(driver, "review-text").text == "加微信领红包，限时优惠"
    facts_text = by_id(driver, "review-facts").text
    assert "cnn v1 · policy default" in facts_text and "review" in facts_text and "msg-1" in facts_text
    screenshot(driver, shots("console-review.png"))
    first = by_id(driver, "review-item").get_attribute("data-item")
    body.send_keys("s")  # spam; the next item comes by itself
    wait(driver, lambda d: d.find_element(By.ID, "view-review").get_attribute("data-decided") == "1", "the verdict")
    wait(driver, lambda d: by_id(d, "review-item").get_attribute("data-item") not in (None, first), "the next item")
    assert by_id(driver, "review-text").text == "周末一起去爬山吗"
    body.send_keys("r")  # the reason field; typing there decides nothing
    reason = driver.switch_to.active_element
    assert reason.get_attribute("id") == "review-reason"
    reason.send_keys("peers planning a hike, pass")
    assert driver.find_element(By.ID, "view-review").get_attribute("data-decided") == "1"
    by_id(driver, "review-pass").click()
    wait(driver, lambda d: d.find_element(By.ID, "view-review").get_attribute("data-decided") == "2", "the pass")
    wait(driver, lambda d: by_id(d, "review-appeal").is_displayed(), "the appeal")
    assert by_id(driver, "review-appeal").text == "Appeal: 我们是正规公司"
    screenshot(driver, shots("console-review-appeal-375.png"), width=375, mobile=True)
    body.send_keys("n")  # skip the appeal: released, and the queue has nothing else
    wait(driver, lambda d: "besides 1 skipped" in by_id(d, "review-status").text, "the empty queue")
    assert not by_id(driver, "review-item").is_displayed()

    decided = {item.request_id: item for item in (queue.get(i) for i in range(1, 500)) if item is not None}
    assert (decided["rv-1"].state, decided["rv-1"].verdict) == ("decided", "spam")
    assert (decided["rv-2"].verdict, decided["rv-2"].reason) == ("pass", "peers planning a hike, pass")
    assert decided["rv-3"].state == "queued" and decided["rv-3"].lease_holder is None  # released
    feedback = {row.text: row.label for row in store.rows()}
    assert feedback["加微信领红包，限时优惠"] == 1 and feedback["周末一起去爬山吗"] == 0
    store.close()
    no_csp_violations_or_errors(driver)


# -- a test-only server: keys and explained verdicts ----------------------------------------------


class KeyedServer:
    """The real app (fake backend, fake feedback store) behind a router that wants a key for
    everything but the page's own files, and a ``/predict`` that explains its verdicts."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.seen: list[tuple[str, str | None]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.port = 0

    async def _main(self) -> None:
        import tornado.httpserver
        import tornado.netutil
        import tornado.routing
        import tornado.web

        from antispam.app import make_app
        from antispam.config import ServeConfig
        from antispam.testing.fakes import FakeBackend, FakeFeedbackStore

        seen = self.seen

        class NeedsKey(tornado.routing.Matcher):
            def match(self, request: Any) -> dict[str, Any] | None:
                auth = request.headers.get("Authorization")
                seen.append((request.path, auth))
                if request.path == "/console" or (request.path.startswith("/console/")
                                                  and "/" not in request.path[len("/console/"):]):
                    return None  # the page itself carries no data
                return None if auth == f"Bearer {KEY}" else {}

        class Unauthorized(tornado.web.RequestHandler):
            def prepare(self) -> None:
                self.set_status(401)
                self.set_header("WWW-Authenticate", "Bearer")
                self.finish({"error": {"code": "unauthorized", "message": "a key is needed"}})

        class Explained(tornado.web.RequestHandler):
            def post(self) -> None:
                texts = json.loads(self.request.body)["texts"]
                self.finish({"data": [{
                    "text": text, "predict": 0, "label": "spam", "spam_probability": 0.97, "suggestion": "block",
                    "model": {"name": "cnn", "version": 7}, "coverage": {"tokens": 5, "scored": 5},
                    "reasons": [{"start": 0, "end": 3, "token": "加微信", "weight": 0.8},
                                {"start": 5, "end": 8, "token": "优惠券", "weight": 0.6}],
                } for text in texts]})

        app = make_app(ServeConfig(model_base=str(self.tmp / "models")), FakeBackend(),
                       feedback_store=FakeFeedbackStore())
        router = tornado.routing.RuleRouter([
            tornado.routing.Rule(NeedsKey(), tornado.web.Application([(r".*", Unauthorized)])),
            tornado.routing.Rule(tornado.routing.PathMatches(r"/predict"),
                                 tornado.web.Application([(r"/predict", Explained)])),
            tornado.routing.Rule(tornado.routing.AnyMatches(), app),
        ])
        self._stop = asyncio.Event()
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server = tornado.httpserver.HTTPServer(router)
        server.add_sockets(sockets)
        self.loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop.wait()
        server.stop()

    def __enter__(self) -> KeyedServer:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_key_prompt_on_401_and_highlighted_spans(browser: Any, tmp_path: Path,
                                                 shots: Callable[[str], list[Path]]) -> None:
    driver = browser
    with KeyedServer(tmp_path) as server:
        url = f"http://127.0.0.1:{server.port}"
        driver.get(url + "/console/")
        dialog = by_id(driver, "key-dialog")
        wait(driver, lambda d: dialog.get_attribute("open") is not None, "the key prompt")
        assert "asks for an API key" in by_id(driver, "key-reason").text
        screenshot(driver, shots("console-key-prompt.png"))
        by_id(driver, "key-input").send_keys("wrong", Keys.ENTER)
        wait(driver, lambda d: "refused" in by_id(d, "key-reason").text, "the second prompt")
        assert dialog.get_attribute("open") is not None
        by_id(driver, "key-input").send_keys(KEY, Keys.ENTER)
        wait(driver, lambda d: "ready" in by_id(d, "serving").text, "the service status with the key")
        assert by_id(driver, "serving").text == "fake-model v7 · fake backend · ready"
        assert driver.execute_script("return sessionStorage.getItem('antispam.console.key')") == KEY
        assert driver.execute_script("return localStorage.length") == 0
        assert by_id(driver, "forget-key").is_displayed()
        assert ("/models", f"Bearer {KEY}") in server.seen
        assert ("/models", "Bearer wrong") in server.seen
        # The page's own files never needed the key.
        assert ("/console/console.js", None) in server.seen

        by_id(driver, "try-texts").send_keys("加微信领取优惠券")
        by_id(driver, "try-submit").click()
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#try-results li"), "the explained result")
        marks = driver.find_elements(By.CSS_SELECTOR, "#try-results .result-text mark")
        assert [(m.text, m.get_attribute("title")) for m in marks] == [("加微信", "加微信"), ("优惠券", "优惠券")]
        assert driver.find_element(By.CSS_SELECTOR, "#try-results .result-text").text == "加微信领取优惠券"
        screenshot(driver, shots("console-try-highlighted.png"))

        by_id(driver, "forget-key").click()
        assert driver.execute_script("return sessionStorage.getItem('antispam.console.key')") is None
        assert not by_id(driver, "forget-key").is_displayed()
        no_csp_violations_or_errors(driver)


# -- the Campaigns view (issue 24) ---------------------------------------------------------------

CAMPAIGN_BIG = "本店新品上市全场八折优惠😀欢迎新老顾客光临选购，咨询电话13800138000"
CAMPAIGN_SMALL = "低息贷款当天放款，无抵押无担保，详情请联系王经理，加微信 abc_12345 或 QQ 12345678"


class CampaignServer:
    """The real app (fake backend) on 127.0.0.1 in a thread, with a lists folder of its own and a
    campaign threshold of 3 senders; :meth:`send` posts texts with sender ids to its /predict."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.lists = tmp / "lists"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.port = 0

    async def _main(self) -> None:
        import tornado.httpserver
        import tornado.netutil

        from antispam.app import make_app
        from antispam.config import ServeConfig
        from antispam.testing.fakes import FakeBackend

        config = ServeConfig(model_base=str(self.tmp / "models"), lists_dir=str(self.lists),
                             lists_poll_seconds=3600.0, cache_size=0, campaign_min_senders=3)
        app = make_app(config, FakeBackend())
        self._stop = asyncio.Event()
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        self.loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop.wait()
        server.stop()

    def send(self, text: str, senders: int) -> None:
        """The same text from ``senders`` senders, through the public API."""
        for i in range(senders):
            body = json.dumps({"text": text, "sender_id": f"user-{text[:3]}-{i}"}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}/predict", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as r:
                assert r.status == 200

    def __enter__(self) -> CampaignServer:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_campaigns_view_and_block_a_contact(browser: Any, tmp_path: Path,
                                            shots: Callable[[str], list[Path]]) -> None:
    driver = browser
    with CampaignServer(tmp_path) as server:
        server.send(CAMPAIGN_BIG, 7)
        server.send(CAMPAIGN_SMALL, 4)
        url = f"http://127.0.0.1:{server.port}"
        driver.get(url + "/console/#campaigns")
        view = by_id(driver, "view-campaigns")
        wait(driver, lambda d: view.get_attribute("data-loaded") == "1", "the campaigns")
        assert by_id(driver, "nav-campaigns").get_attribute("aria-current") == "page"
        items = driver.find_elements(By.CSS_SELECTOR, "#campaigns-list > li")
        texts = [i.find_element(By.CSS_SELECTOR, ".result-text").text for i in items]
        assert texts == [CAMPAIGN_BIG, CAMPAIGN_SMALL]  # most senders first, one entry per campaign
        first = items[0]
        marks = first.find_elements(By.CSS_SELECTOR, ".result-text mark.contact")
        assert [(m.text, m.get_attribute("title")) for m in marks] == [("13800138000", "mobile 13800138000")]
        assert "Senders\n7" in first.text or "Senders 7" in first.text.replace("\n", " ")
        small = items[1]
        kinds = [li.get_attribute("data-kind") for li in small.find_elements(By.CSS_SELECTOR, ".contacts li")]
        assert kinds == ["wechat", "qq"]
        assert "at least 3 senders within 10 min" in by_id(driver, "campaigns-window").text
        screenshot(driver, shots("console-campaigns.png"))

        # Block the phone number: first a confirmation, then the file, then the badge.
        row = first.find_element(By.CSS_SELECTOR, '.contacts li[data-contact="13800138000"]')
        row.find_element(By.CSS_SELECTOR, ".open-block").click()
        confirm = row.find_element(By.CSS_SELECTOR, ".confirm")
        assert confirm.is_displayed() and "Add 13800138000 to block.txt?" in confirm.text
        assert not (server.lists / "block.txt").exists()  # nothing written before the confirmation
        screenshot(driver, shots("console-campaigns-confirm.png"))
        row.find_element(By.CSS_SELECTOR, ".confirm-block").click()
        status = row.find_element(By.CSS_SELECTOR, ".status")
        wait(driver, lambda d: status.get_attribute("data-status") == "200", "the block list answer")
        assert status.text.startswith("Added 13800138000 to block.txt.")
        assert (server.lists / "block.txt").read_text(encoding="utf-8").splitlines()[-1] == "13800138000"
        assert row.find_elements(By.CSS_SELECTOR, ".badge.block")  # "on the block list" instead of the button
        assert not row.find_elements(By.CSS_SELECTOR, ".open-block")
        screenshot(driver, shots("console-campaigns-blocked.png"))
        screenshot(driver, shots("console-campaigns-375.png"), width=375, mobile=True)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 375, "height": 900, "deviceScaleFactor": 1, "mobile": True})
        assert driver.execute_script(WIDER_THAN_THE_SCREEN) == []
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        # By keyboard: Enter opens the question with the focus on its button; Cancel closes it,
        # gives the focus back and writes nothing. Then a reload shows the listed contact.
        wechat = small.find_element(By.CSS_SELECTOR, '.contacts li[data-contact="abc_12345"]')
        opener = wechat.find_element(By.CSS_SELECTOR, ".open-block")
        opener.send_keys(Keys.ENTER)
        assert driver.switch_to.active_element.get_attribute("class") == "small confirm-block"
        assert opener.get_attribute("aria-expanded") == "true"
        driver.switch_to.active_element.send_keys(Keys.TAB)
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        assert not wechat.find_element(By.CSS_SELECTOR, ".confirm").is_displayed()
        assert driver.switch_to.active_element == opener
        assert "abc_12345" not in (server.lists / "block.txt").read_text(encoding="utf-8")
        by_id(driver, "campaigns-refresh").click()
        wait(driver, lambda d: d.find_elements(
            By.CSS_SELECTOR, '#campaigns-list li[data-contact="13800138000"] .badge.block'), "the listed contact")
        no_csp_violations_or_errors(driver)
