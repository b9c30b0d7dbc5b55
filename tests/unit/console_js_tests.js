// Unit tests of the console's pure functions and its API client (antispam/console/static/console.js).
// Run by tests/unit/test_console_js.py as `node --test tests/unit/console_js_tests.js` (Node >= 18,
// nothing to install). The 401 path is tested here with a fake fetch and a fake sessionStorage.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const lib = require(path.join(__dirname, "..", "..", "antispam", "console", "static", "console.js"));

test("splitTexts keeps non-blank lines with their numbers", () => {
  assert.deepEqual(lib.splitTexts("代开发票\r\n\n  \n你好 \n"), [
    { line: 1, text: "代开发票" },
    { line: 4, text: "你好 " },
  ]);
  assert.deepEqual(lib.splitTexts(""), []);
});

test("highlightSegments without reasons is the plain text", () => {
  assert.deepEqual(lib.highlightSegments("加微信领取优惠券", undefined), [{ text: "加微信领取优惠券", reasons: [] }]);
  assert.deepEqual(lib.highlightSegments("加微信", []), [{ text: "加微信", reasons: [] }]);
  assert.deepEqual(lib.highlightSegments("", [{ start: 0, end: 1 }]), []);
});

test("highlightSegments marks spans by code point, clamps and ignores bad ones", () => {
  const r1 = { start: 0, end: 3, token: "加微信" };
  const r2 = { start: 5, end: 8, token: "优惠券" };
  const pieces = lib.highlightSegments("加微信领取优惠券", [r2, r1, { start: 4, end: 4 }, { start: "1", end: 2 },
    { start: 3.5, end: 4 }, null, { start: 7, end: 2 }]);
  assert.deepEqual(pieces, [
    { text: "加微信", reasons: [r1] },
    { text: "领取", reasons: [] },
    { text: "优惠券", reasons: [r2] },
  ]);
  // Emoji count as one character (Python str indices), not two UTF-16 units.
  const e = { start: 1, end: 3 };
  assert.deepEqual(lib.highlightSegments("😀发票x", [e]), [
    { text: "😀", reasons: [] },
    { text: "发票", reasons: [e] },
    { text: "x", reasons: [] },
  ]);
  const wide = { start: -5, end: 99 };
  assert.deepEqual(lib.highlightSegments("发票", [wide]), [{ text: "发票", reasons: [wide] }]);
});

test("overlapping spans split the text and list every reason", () => {
  const a = { start: 0, end: 4 };
  const b = { start: 2, end: 6 };
  assert.deepEqual(lib.highlightSegments("abcdefg", [a, b]), [
    { text: "ab", reasons: [a] },
    { text: "cd", reasons: [a, b] },
    { text: "ef", reasons: [b] },
    { text: "g", reasons: [] },
  ]);
});

test("formatting", () => {
  assert.equal(lib.formatNumber(0.97312), "0.973");
  assert.equal(lib.formatNumber(null), "–");
  assert.equal(lib.formatPercent(0.25), "25.0 %");
  assert.equal(lib.formatRate(3.14159), "3.14/s");
  assert.equal(lib.formatRate(null), "–");
  assert.equal(lib.formatMs(2.5), "2.50 ms");
  assert.equal(lib.formatMs(5000, true), "> 5000 ms");
});

test("verdictMix", () => {
  const mix = lib.verdictMix({ pass: 3, block: 1 });
  assert.equal(mix.total, 4);
  assert.deepEqual(mix.parts.map((p) => [p.suggestion, p.count, p.share]),
    [["block", 1, 0.25], ["review", 0, 0], ["pass", 3, 0.75]]);
  assert.equal(lib.verdictMix(undefined).total, 0);
});

test("sparkBars scales to the largest value", () => {
  const bars = lib.sparkBars([0, 2, 4, null], 400, 100);
  assert.equal(bars.length, 4);
  assert.deepEqual(bars.map((b) => b.height), [0, 50, 100, 0]);
  assert.deepEqual(bars.map((b) => b.x), [0, 100, 200, 300]);
  assert.deepEqual(lib.sparkBars([], 10, 10), []);
  // A window of 10 places with 2 values so far: two bars at the right end.
  const few = lib.sparkBars([1, 2], 100, 10, 10);
  assert.deepEqual(few.map((b) => [b.x, b.width, b.height]), [[80, 9, 5], [90, 9, 10]]);
  assert.equal(lib.sparkBars([1, 2, 3], 90, 10, 2).length, 3);  // more values than places: one each
});

test("promotionSummary reads a retrain record", () => {
  const s = lib.promotionSummary({ time: "2025-11-29T03:00:01+00:00", decision: "reject", exit_code: 3,
    version: null, serving_version: 4, reason: "F1 0.95 < 0.96 - 0.005",
    scores: { new: { f1: 0.95 }, old: { f1: 0.96 } } });
  assert.deepEqual([s.time, s.decision, s.exitCode, s.version, s.serving, s.f1New, s.f1Old],
    ["2025-11-29 03:00:01", "reject", "3", "–", "4", 0.95, 0.96]);
  assert.equal(lib.promotionSummary({ unparsed: "xx", problem: "not JSON" }).decision, "unreadable");
});

test("rollbackCommand quotes the path", () => {
  assert.equal(lib.rollbackCommand("models/cnn", 7), "rm -rf models/cnn/7");
  assert.equal(lib.rollbackCommand("/srv/my models/cnn/", 2), "rm -rf '/srv/my models/cnn/2'");
  assert.equal(lib.rollbackCommand("/x/it's", 1), "rm -rf '/x/it'\\''s/1'");
  assert.match(lib.rollbackCommand("models/cnn", undefined), /nothing to roll back/);
});

test("describeError and feedbackMessage", () => {
  assert.equal(lib.describeError(404, { error: { code: "not_found", message: "no route /x" } }),
    "404 not_found: no route /x");
  assert.equal(lib.describeError(0, null), "no answer from the service");
  assert.equal(lib.feedbackMessage(202, { data: { id: 3, duplicate: false, count: 1, conflict: false } }, "spam"),
    "Stored as spam (202 Accepted, id 3)");
  assert.match(lib.feedbackMessage(202, { data: { id: 3, duplicate: true, count: 2, conflict: true } }, "pass"),
    /already reported, 2 times now; also reported with the other label/);
  assert.equal(lib.feedbackMessage(503, { error: { code: "feedback_unavailable", message: "none" } }, "spam"),
    "503 feedback_unavailable: none");
});

test("mergeVersions joins /models states and the files on disk", () => {
  const rows = lib.mergeVersions(
    { current_version: 2, versions: [{ version: 2, state: "serving" }, { version: 3, state: "failed", error: "bad" }] },
    { versions: [{ version: 1, test: { f1: 0.9 } }, { version: 2, test: { f1: 0.95 } }, { version: 3 }] });
  assert.deepEqual(rows.map((r) => [r.version, r.state, r.kind, r.current, r.error]),
    [[3, "failed", "failed", false, "bad"], [2, "serving", "serving", true, null], [1, "on_disk", "on_disk", false, null]]);
  // A remote backend: TF Serving's states, the pinned version, vectors per version.
  const remote = lib.mergeVersions(
    { current_version: 5, versions: [{ version: 6, state: "LOADING", vectors: "loaded" },
      { version: 5, state: "AVAILABLE", vectors: "loaded" }, { version: 4, state: "AVAILABLE", vectors: "failed: no vocab" }] },
    { versions: [{ version: 6 }, { version: 5 }, { version: 4 }] });
  assert.deepEqual(remote.map((r) => [r.version, r.kind, r.error, r.note]),
    [[6, "loading", null, "vectors loaded"], [5, "serving", null, "vectors loaded"], [4, "failed", "failed: no vocab", null]]);
});

test("isReady: local backends say so, remote ones by their pinned version", () => {
  assert.equal(lib.isReady({ ready: false, current_version: 3 }), false);
  assert.equal(lib.isReady({ current_version: 3 }), true);
  assert.equal(lib.isReady({ current_version: null }), false);
  assert.equal(lib.isReady(null), false);
});

// ---- the API client and keys ---------------------------------------------------------------------

function fakeStorage() {
  const data = new Map();
  return {
    data,
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => data.set(k, String(v)),
    removeItem: (k) => data.delete(k),
  };
}

function fakeService(goodKey) {
  const seen = [];
  const fetch = async (url, init) => {
    seen.push({ url, auth: (init.headers || {}).Authorization || null, method: init.method || "GET" });
    const ok = goodKey === null || (init.headers || {}).Authorization === "Bearer " + goodKey;
    const status = ok ? 200 : 401;
    const body = ok ? { data: { url } } : { error: { code: "unauthorized", message: "a key is needed" } };
    return { status, ok, json: async () => body };
  };
  return { fetch, seen };
}

test("without keys the client never asks and sends no header", async () => {
  const service = fakeService(null);
  const storage = fakeStorage();
  let asked = 0;
  const client = lib.createClient({ fetch: service.fetch, storage, base: "http://h/svc/",
    askKey: async () => { asked += 1; return "x"; } });
  const got = await client.json("models");
  assert.equal(got.status, 200);
  assert.equal(got.body.data.url, "http://h/svc/models");
  assert.equal(asked, 0);
  assert.equal(service.seen[0].auth, null);
  assert.equal(storage.data.size, 0);
});

test("a 401 asks once, keeps the key in session storage and sends it as a bearer header", async () => {
  const service = fakeService("s3cret");
  const storage = fakeStorage();
  const reasons = [];
  const changes = [];
  const client = lib.createClient({ fetch: service.fetch, storage, base: "http://h/",
    askKey: async (reason) => { reasons.push(reason); return "s3cret"; },
    onKeyChange: (has) => changes.push(has) });
  // Two requests refused together share one prompt.
  const [a, b] = await Promise.all([client.json("models"), client.postJson("predict", { texts: ["x"] })]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  assert.equal(reasons.length, 1);
  assert.match(reasons[0], /asks for an API key/);
  assert.equal(storage.getItem("antispam.console.key"), "s3cret");
  assert.ok(client.hasKey());
  const retried = service.seen.filter((s) => s.auth === "Bearer s3cret");
  assert.deepEqual(retried.map((s) => s.method).sort(), ["GET", "POST"]);
  // Later requests send the key straight away.
  const before = service.seen.length;
  await client.json("console/api/info");
  assert.deepEqual(service.seen.slice(before).map((s) => s.auth), ["Bearer s3cret"]);
  client.forgetKey();
  assert.equal(storage.getItem("antispam.console.key"), null);
  assert.deepEqual(changes, [true, true, false]);
});

test("a refused key is asked for again; cancel gives the 401 back and forgets the bad key", async () => {
  const service = fakeService("right");
  const storage = fakeStorage();
  const answers = ["wrong", "right"];
  const reasons = [];
  const client = lib.createClient({ fetch: service.fetch, storage, base: "http://h/",
    askKey: async (reason) => { reasons.push(reason); return answers.shift(); } });
  const got = await client.json("models");
  assert.equal(got.status, 200);
  assert.equal(reasons.length, 2);
  assert.match(reasons[1], /refused/);
  assert.deepEqual(service.seen.map((s) => s.auth), [null, "Bearer wrong", "Bearer right"]);

  storage.setItem("antispam.console.key", "stale");
  const cancelling = lib.createClient({ fetch: service.fetch, storage, base: "http://h/", askKey: async () => null });
  const refused = await cancelling.json("models");
  assert.equal(refused.status, 401);
  assert.equal(refused.body.error.code, "unauthorized");
  assert.equal(storage.getItem("antispam.console.key"), null);
});

test("a client that keeps getting refused gives up after a few tries", async () => {
  const service = fakeService("never-given");
  let asked = 0;
  const client = lib.createClient({ fetch: service.fetch, storage: fakeStorage(), base: "http://h/",
    askKey: async () => { asked += 1; return "nope" + asked; } });
  const got = await client.json("models");
  assert.equal(got.status, 401);
  assert.equal(asked, 3);
});

test("no answer at all is status 0, not an exception", async () => {
  const client = lib.createClient({ fetch: async () => { throw new TypeError("network"); },
    storage: fakeStorage(), base: "http://h/", askKey: async () => null });
  assert.deepEqual(await client.json("models"), { status: 0, ok: false, body: null });
});

test("reviewShortcut: s, p, n, r; never while typing or with a modifier", () => {
  const key = (k, extra) => Object.assign({ key: k, target: { tagName: "BODY" } }, extra || {});
  assert.equal(lib.reviewShortcut(key("s")), "spam");
  assert.equal(lib.reviewShortcut(key("P")), "pass");
  assert.equal(lib.reviewShortcut(key("n")), "next");
  assert.equal(lib.reviewShortcut(key("r")), "reason");
  assert.equal(lib.reviewShortcut(key("x")), null);
  assert.equal(lib.reviewShortcut(key("s", { target: { tagName: "input" } })), null);
  assert.equal(lib.reviewShortcut(key("s", { target: { tagName: "TEXTAREA" } })), null);
  assert.equal(lib.reviewShortcut(key("s", { target: { tagName: "DIV", isContentEditable: true } })), null);
  assert.equal(lib.reviewShortcut(key("s", { ctrlKey: true })), null);
  assert.equal(lib.reviewShortcut(key("p", { metaKey: true })), null);
  assert.equal(lib.reviewShortcut(key("n", { isComposing: true })), null);
  assert.equal(lib.reviewShortcut(undefined), null);
});

test("reviewSpans: the explanation's reasons with a word for why, list matches when it has none", () => {
  const item = {
    text: "加微信领红包",
    matches: [{ term: "加微信", list: "block", start: 0, end: 3 }],
    explanation: { reasons: [
      { source: "model", kind: "token", token: "红包", start: 4, end: 6, log_odds_delta: 1.234 },
      { source: "model", kind: "window", start: 0, end: 6, spam_probability: 0.8 },
      { source: "model", kind: "token", token: "x" },
    ] },
  };
  assert.deepEqual(lib.reviewSpans(item), [
    { start: 0, end: 3, reason: "block list: 加微信" },
    { start: 4, end: 6, reason: "token 红包 (log-odds −1.23)" },
    { start: 0, end: 6, reason: "window p=0.800" },
  ]);
  const explainsLists = { matches: item.matches, explanation: { reasons: [
    { source: "block_list", term: "加微信", start: 0, end: 3 }] } };
  assert.deepEqual(lib.reviewSpans(explainsLists), [{ start: 0, end: 3, reason: "block list: 加微信" }]);
  assert.deepEqual(lib.reviewSpans({}), []);
  assert.deepEqual(lib.reviewSpans(null), []);
  const pieces = lib.highlightSegments("加微信领红包", lib.reviewSpans({ matches: item.matches }));
  assert.equal(pieces[0].text, "加微信");
  assert.equal(pieces[1].text, "领红包");
});

test("depthSeries and reviewMessage", () => {
  assert.deepEqual(lib.depthSeries([{ t: 1, depth: 3 }, { t: 2 }, null, { t: 3, depth: 0 }]), [3, null, null, 0]);
  assert.deepEqual(lib.depthSeries(undefined), []);
  assert.match(lib.reviewMessage(403, { error: { code: "forbidden", message: "x" } }), /labeler/);
  assert.match(lib.reviewMessage(409, { error: { code: "lease_lost", message: "x" } }), /lease ran out/);
  assert.match(lib.reviewMessage(409, { error: { code: "already_decided", message: "x" } }), /already decided/);
  assert.match(lib.reviewMessage(503, { error: { code: "review_unavailable", message: "store down" } }), /unavailable/);
});

// ---- Campaigns view (issue 24) -------------------------------------------------------------------

test("contactKind names the API's kinds and passes unknown ones through", () => {
  assert.equal(lib.contactKind("wechat"), "WeChat");
  assert.equal(lib.contactKind("qq"), "QQ");
  assert.equal(lib.contactKind("fax"), "fax");
  assert.equal(lib.contactKind("constructor"), "constructor"); // not Object.prototype's
  assert.equal(lib.contactKind(undefined), "contact");
});

test("formatAge in seconds, minutes, hours", () => {
  assert.equal(lib.formatAge(0), "0 s");
  assert.equal(lib.formatAge(59.9), "59 s");
  assert.equal(lib.formatAge(60), "1 min");
  assert.equal(lib.formatAge(3599), "59 min");
  assert.equal(lib.formatAge(3600 + 5 * 60), "1 h 05 min");
  assert.equal(lib.formatAge(-1), "–");
  assert.equal(lib.formatAge(null), "–");
});

test("campaignSummary: example, spans, contacts once each, age", () => {
  const m = { kind: "mobile", value: "13800138000", start: 5, end: 16 };
  const again = { kind: "mobile", value: "13800138000", start: 20, end: 31 };
  const bad = { kind: "wechat", value: "abc_12345", start: "x", end: 3 };
  const s = lib.campaignSummary({ key: "t:1", by: "text", size: 12, senders: 9, first_seen: 1000,
    example: { text: "优惠活动，详询13800138000", contacts: [m, again, bad, { kind: "qq" }, null] } }, 1000 + 125);
  assert.equal(s.text, "优惠活动，详询13800138000");
  assert.deepEqual(s.spans, [m, again]); // the bad span is not highlighted...
  assert.deepEqual(s.contacts, [m, bad]); // ...but its contact can still be blocked; duplicates once
  assert.equal(s.senders, 9);
  assert.equal(s.size, 12);
  assert.equal(s.age, "2 min");
  assert.equal(s.foundBy, "near-duplicate texts");
  assert.equal(lib.campaignSummary({ by: "contact" }, 5).foundBy, "the same contact");
  assert.equal(lib.campaignSummary({ by: ["contact", "text"] }, 5).foundBy, "the same contact and near-duplicate texts");
  const empty = lib.campaignSummary(null, 5);
  assert.deepEqual([empty.text, empty.contacts, empty.senders, empty.age], ["", [], null, "–"]);
});

test("campaign contacts highlight through highlightSegments by code point", () => {
  const s = lib.campaignSummary({ example: { text: "😀加微信abc_12345", contacts: [
    { kind: "wechat", value: "abc_12345", start: 4, end: 13 }] } }, 0);
  const pieces = lib.highlightSegments(s.text, s.spans);
  assert.deepEqual(pieces.map((p) => [p.text, p.reasons.length]), [["😀加微信", 0], ["abc_12345", 1]]);
});

test("blockListMessage: added, already there, refused", () => {
  assert.equal(lib.blockListMessage(200, { data: { term: "13800138000", added: true, file: "/srv/lists/block.txt",
    reload_seconds: 2 } }), "Added 13800138000 to block.txt. This worker blocks it now, every other worker within 2 s.");
  assert.equal(lib.blockListMessage(200, { data: { term: "13800138000", added: false, file: "/srv/lists/block.txt" } }),
    "13800138000 is already on the block list (block.txt): nothing added.");
  assert.equal(lib.blockListMessage(403, { error: { code: "forbidden", message: "this key lacks the role admin" } }),
    "403 forbidden: this key lacks the role admin");
  assert.equal(lib.blockListMessage(0, null), "no answer from the service");
});
