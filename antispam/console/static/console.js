/* antispam console: plain JavaScript (ES2020), no build step, no dependencies.
 *
 * The pure functions first: they are exported to Node for the unit tests
 * (tests/unit/test_console_js.py) and to the page as window.AntispamConsole. start() then
 * wires the page. Everything comes from this origin: /predict, /feedback, /models and
 * /console/api/*. Text reaches the page through textContent and DOM nodes only, never innerHTML.
 *
 * Keys: the API has none yet (issue 11). When it answers 401, the console asks for a key once,
 * keeps it in sessionStorage (this tab only) and sends it as "Authorization: Bearer <key>".
 */
(function (root, factory) {
  "use strict";
  const lib = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = lib;
  } else {
    root.AntispamConsole = lib;
    if (root.document) {
      if (root.document.readyState === "loading") {
        root.document.addEventListener("DOMContentLoaded", function () { lib.start(root); });
      } else {
        lib.start(root);
      }
    }
  }
}(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const KEY_STORAGE = "antispam.console.key";
  const SUGGESTIONS = ["block", "review", "pass"];
  const LIVE_REFRESH_MS = 10000;
  const REVIEW_REFRESH_MS = 15000;
  const REVIEW_HOURS = 6;
  const MAX_SKIPPED = 100; // the API's limit on exclude
  const CAMPAIGNS_LIMIT = 20;
  const CONTACT_KINDS = {
    mobile: "mobile", landline: "landline", qq: "QQ", wechat: "WeChat", url: "URL", domain: "domain", email: "e-mail",
  };

  // ---- pure functions ------------------------------------------------------------------------

  /** The non-blank lines of the textarea as {line (1-based), text}; a trailing "\r" is dropped. */
  function splitTexts(raw) {
    const out = [];
    String(raw).split("\n").forEach(function (line, i) {
      const text = line.endsWith("\r") ? line.slice(0, -1) : line;
      if (text.trim()) {
        out.push({ line: i + 1, text: text });
      }
    });
    return out;
  }

  function sameReasons(a, b) {
    return a.length === b.length && a.every(function (r, i) { return r === b[i]; });
  }

  /** The text cut into pieces [{text, reasons}] in order; a piece with reasons is highlighted.
   *
   * reasons: [{start, end, ...}] as the API will send them with explain=true: offsets in code
   * points into the text as sent (Python string indices), end exclusive. Offsets are clamped to
   * the text; empty, reversed or non-integer spans are ignored; overlapping spans split the text
   * so each piece lists every reason that covers it. Astral characters (emoji) count as one. */
  function highlightSegments(text, reasons) {
    const chars = Array.from(String(text));
    const n = chars.length;
    const spans = (Array.isArray(reasons) ? reasons : [])
      .filter(function (r) { return r && Number.isInteger(r.start) && Number.isInteger(r.end); })
      .map(function (r) { return { reason: r, start: Math.max(0, r.start), end: Math.min(n, r.end) }; })
      .filter(function (s) { return s.start < s.end; });
    if (n === 0) {
      return [];
    }
    const cuts = new Set([0, n]);
    spans.forEach(function (s) { cuts.add(s.start); cuts.add(s.end); });
    const points = Array.from(cuts).sort(function (a, b) { return a - b; });
    const pieces = [];
    for (let i = 0; i + 1 < points.length; i++) {
      const a = points[i];
      const b = points[i + 1];
      const covering = spans.filter(function (s) { return s.start <= a && b <= s.end; })
        .map(function (s) { return s.reason; });
      const last = pieces[pieces.length - 1];
      if (last && sameReasons(last.reasons, covering)) {
        last.text += chars.slice(a, b).join("");
      } else {
        pieces.push({ text: chars.slice(a, b).join(""), reasons: covering });
      }
    }
    return pieces;
  }

  function isNumber(x) {
    return typeof x === "number" && Number.isFinite(x);
  }

  function formatNumber(x, digits) {
    return isNumber(x) ? x.toFixed(digits === undefined ? 3 : digits) : "–";
  }

  function formatPercent(x) {
    return isNumber(x) ? (100 * x).toFixed(1) + " %" : "–";
  }

  function formatRate(x) {
    if (!isNumber(x)) {
      return "–";
    }
    return (x < 10 ? x.toFixed(2) : x.toFixed(1)) + "/s";
  }

  /** Milliseconds from the live summary; above = the quantile is past the largest bucket. */
  function formatMs(ms, above) {
    if (!isNumber(ms)) {
      return "–";
    }
    const shown = ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0);
    return (above ? "> " : "") + shown + " ms";
  }

  /** {block, review, pass} counts → [{suggestion, count, share}] in that order, and the total. */
  function verdictMix(verdicts) {
    const counts = verdicts || {};
    const total = SUGGESTIONS.reduce(function (sum, s) { return sum + (counts[s] || 0); }, 0);
    return {
      total: total,
      parts: SUGGESTIONS.map(function (s) {
        const count = counts[s] || 0;
        return { suggestion: s, count: count, share: total ? count / total : 0 };
      }),
    };
  }

  /** Bars for a small chart in a width×height box: one per value (null = 0), scaled to the
   * largest, in ``slots`` places (at least one per value) filled from the right, so a window that
   * has just started shows a few thin bars at its end, not one bar as wide as the chart. */
  function sparkBars(values, width, height, slots) {
    const list = (values || []).map(function (v) { return isNumber(v) && v > 0 ? v : 0; });
    if (!list.length) {
      return [];
    }
    const places = Math.max(list.length, Number.isInteger(slots) ? slots : 0);
    const top = Math.max.apply(null, list) || 1;
    const step = width / places;
    const gap = step > 4 ? 1 : 0;
    const first = places - list.length;
    return list.map(function (v, i) {
      const h = v > 0 ? Math.max(1, (v / top) * height) : 0;
      return { x: (first + i) * step, y: height - h, width: Math.max(step - gap, 0.5), height: h, value: v };
    });
  }

  /** What a key press does in the Review view: "spam", "pass", "next" (skip or take), "reason"
   * (focus the reason field) or null. Nothing while typing in a field or with a modifier held, so
   * a reason containing "s" or a browser shortcut never decides an item. */
  function reviewShortcut(event) {
    const e = event || {};
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) {
      return null;
    }
    const target = e.target || {};
    const tag = String(target.tagName || "").toUpperCase();
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable) {
      return null;
    }
    return { s: "spam", p: "pass", n: "next", r: "reason" }[String(e.key || "").toLowerCase()] || null;
  }

  /** The spans to highlight in a review item's text: the explanation's reasons (the serving
   * version's, with offsets) and the decision's own list matches, each with a word for why. */
  function reviewSpans(item) {
    const it = item || {};
    const explained = (it.explanation && Array.isArray(it.explanation.reasons) ? it.explanation.reasons : [])
      .filter(function (r) { return r && Number.isInteger(r.start) && Number.isInteger(r.end); })
      .map(function (r) {
        let why = r.source === "model" ? "model" : String(r.source || "reason").replace(/_/g, " ") + ": " + (r.term || "");
        if (r.kind === "token") {
          why = "token " + r.token + (isNumber(r.log_odds_delta) ? " (log-odds −" + formatNumber(r.log_odds_delta, 2) + ")" : "");
        } else if (r.kind === "window") {
          why = "window p=" + formatNumber(r.spam_probability);
        }
        return { start: r.start, end: r.end, reason: why };
      });
    const explainsLists = explained.some(function (r) { return r.reason.indexOf(" list: ") > 0; });
    const listed = (explainsLists || !Array.isArray(it.matches) ? [] : it.matches)
      .filter(function (m) { return m && Number.isInteger(m.start) && Number.isInteger(m.end); })
      .map(function (m) {
        return { start: m.start, end: m.end, reason: (m.list || "block") + " list: " + (m.term || "") };
      });
    return listed.concat(explained);
  }

  /** The depth history of GET /review/stats as chart values (null for a missing point). */
  function depthSeries(history) {
    return (Array.isArray(history) ? history : []).map(function (point) {
      return point && isNumber(point.depth) ? point.depth : null;
    });
  }

  /** What a refused review request means for a moderator. */
  function reviewMessage(status, body) {
    const code = body && body.error ? body.error.code : null;
    if (status === 403) {
      return "This key cannot review: a moderator's key needs the labeler role.";
    }
    if (code === "lease_lost") {
      return "Someone else holds this item now (your lease ran out). Take the next one.";
    }
    if (code === "already_decided") {
      return "This item was already decided. Take the next one.";
    }
    if (code === "review_unavailable") {
      return "The review queue is unavailable: " + describeError(status, body);
    }
    return describeError(status, body);
  }

  /** One line of promotion.jsonl, as the table shows it. */
  function promotionSummary(record) {
    const r = record || {};
    const scores = r.scores || {};
    const pick = function (side) {
      return scores[side] && isNumber(scores[side].f1) ? scores[side].f1 : null;
    };
    return {
      time: typeof r.time === "string" ? r.time.replace("T", " ").replace(/\+00:00$|Z$/, "") : "–",
      decision: r.decision || (r.unparsed ? "unreadable" : "–"),
      exitCode: r.exit_code === undefined || r.exit_code === null ? "–" : String(r.exit_code),
      version: r.version === undefined || r.version === null ? "–" : String(r.version),
      serving: r.serving_version === undefined || r.serving_version === null ? "–" : String(r.serving_version),
      f1New: pick("new"),
      f1Old: pick("old"),
      reason: r.reason || r.problem || "",
      dryRun: Boolean(r.dry_run),
    };
  }

  /** A POSIX shell word for a path (single quotes unless it is plainly safe). */
  function shellQuote(word) {
    const s = String(word);
    return /^[A-Za-z0-9_./:=+-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'";
  }

  function rollbackCommand(modelDir, newest) {
    if (!isNumber(newest)) {
      return "# no version on disk: nothing to roll back";
    }
    const dir = String(modelDir || "models/cnn").replace(/\/+$/, "");
    return "rm -rf " + shellQuote(dir + "/" + newest);
  }

  function authHeader(key) {
    return key ? { Authorization: "Bearer " + key } : {};
  }

  /** "404 not_found: no route /x" from an error answer of the API (or whatever came back). */
  function describeError(status, body) {
    const error = body && body.error;
    if (error && error.code) {
      return status + " " + error.code + ": " + (error.message || "");
    }
    return status ? "HTTP " + status : "no answer from the service";
  }

  /** What POST /feedback answered, in words. */
  function feedbackMessage(status, body, label) {
    if (status !== 202 || !body || !body.data) {
      return describeError(status, body);
    }
    const d = body.data;
    const parts = ["Stored as " + label + " (" + status + " Accepted"];
    if (d.id !== undefined) {
      parts[0] += ", id " + d.id;
    }
    parts[0] += ")";
    if (d.duplicate) {
      parts.push("already reported" + (d.count ? ", " + d.count + " times now" : ""));
    }
    if (d.conflict) {
      parts.push("also reported with the other label: retrain will leave this text out");
    }
    return parts.join("; ");
  }

  /** Versions from GET /models (states) and /console/api/versions (files), newest first. */
  function mergeVersions(models, disk) {
    const rows = new Map();
    ((disk && disk.versions) || []).forEach(function (v) {
      rows.set(v.version, { version: v.version, state: "on_disk", error: null, disk: v });
    });
    ((models && models.versions) || []).forEach(function (v) {
      if (!isNumber(v.version)) {
        return;
      }
      const row = rows.get(v.version) || { version: v.version, disk: null };
      row.state = v.state || "on_disk";
      row.error = v.error || (typeof v.vectors === "string" && v.vectors.indexOf("failed") === 0 ? v.vectors : null);
      row.note = typeof v.vectors === "string" && !row.error ? "vectors " + v.vectors : null;
      rows.set(v.version, row);
    });
    const current = models ? models.current_version : null;
    return Array.from(rows.values())
      .map(function (row) {
        row.current = row.version === current;
        row.kind = stateKind(row.state, row.current, row.error);
        return row;
      })
      .sort(function (a, b) { return b.version - a.version; });
  }

  /** The colour of a version's state: local states as they are, TF Serving's (AVAILABLE, LOADING,
   * …) by what they mean here; the version new requests go to is "serving". */
  function stateKind(state, current, error) {
    const s = String(state || "").toLowerCase();
    if (current || s === "serving") {
      return "serving";
    }
    if (error || s === "failed" || s === "end" || s === "unknown") {
      return "failed";
    }
    if (s === "loading" || s === "start" || s === "unloading") {
      return "loading";
    }
    return "on_disk";
  }

  /** Whether /models says a version can answer (remote backends tell it by current_version). */
  function isReady(models) {
    if (!models) {
      return false;
    }
    if (typeof models.ready === "boolean") {
      return models.ready;
    }
    return models.current_version !== null && models.current_version !== undefined;
  }

  /** A contact kind of the API in words ("wechat" → "WeChat"). */
  function contactKind(kind) {
    return Object.prototype.hasOwnProperty.call(CONTACT_KINDS, kind) ? CONTACT_KINDS[kind] : String(kind || "contact");
  }

  /** Seconds as "45 s", "12 min" or "3 h 05 min" (negative or missing: "–"). */
  function formatAge(seconds) {
    if (!isNumber(seconds) || seconds < 0) {
      return "–";
    }
    if (seconds < 60) {
      return Math.floor(seconds) + " s";
    }
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) {
      return minutes + " min";
    }
    const rest = minutes % 60;
    return Math.floor(minutes / 60) + " h " + (rest < 10 ? "0" : "") + rest + " min";
  }

  /** A campaign of GET /console/api/campaigns as the view shows it. Contacts are the example's,
   * each once (kind and value), in order of position; spans with bad offsets are dropped here
   * as highlightSegments drops them. */
  function campaignSummary(campaign, nowSeconds) {
    const c = campaign || {};
    const example = c.example || {};
    const seen = new Set();
    const contacts = (Array.isArray(example.contacts) ? example.contacts : []).filter(function (k) {
      return k && typeof k.value === "string" && k.value && typeof k.kind === "string";
    });
    const unique = contacts.filter(function (k) {
      const key = k.kind + "\u0000" + k.value;
      if (seen.has(key)) {
        return false;
      }
      seen.add(key);
      return true;
    });
    const first = isNumber(c.first_seen) ? c.first_seen : null;
    return {
      text: typeof example.text === "string" ? example.text : "",
      spans: contacts.filter(function (k) { return Number.isInteger(k.start) && Number.isInteger(k.end); }),
      contacts: unique,
      senders: isNumber(c.senders) ? c.senders : null,
      size: isNumber(c.size) ? c.size : null,
      firstSeen: first,
      age: first !== null && isNumber(nowSeconds) ? formatAge(nowSeconds - first) : "–",
      foundBy: (Array.isArray(c.by) ? c.by : [c.by]).map(function (by) {
        return by === "contact" ? "the same contact" : "near-duplicate texts";
      }).filter(function (v, i, all) { return all.indexOf(v) === i; }).join(" and "),
    };
  }

  /** What POST /console/api/blocklist answered, in words. */
  function blockListMessage(status, body) {
    if (status !== 200 || !body || !body.data) {
      return describeError(status, body);
    }
    const d = body.data;
    const file = d.file ? String(d.file).split("/").pop() : "the block list";
    if (!d.added) {
      return d.term + " is already on the block list (" + file + "): nothing added.";
    }
    const reload = isNumber(d.reload_seconds) ? " within " + d.reload_seconds + " s" : " at its next reload";
    return "Added " + d.term + " to " + file + ". This worker blocks it now, every other worker" + reload + ".";
  }

  /** A client for the API: JSON in and out, and the key asked for on a 401 (see the top). */
  function createClient(options) {
    const fetchFn = options.fetch;
    const storage = options.storage;
    const base = options.base;
    let asking = null;

    function getKey() {
      try {
        return storage.getItem(KEY_STORAGE) || "";
      } catch (e) {
        return "";
      }
    }

    function setKey(key) {
      try {
        if (key) {
          storage.setItem(KEY_STORAGE, key);
        } else {
          storage.removeItem(KEY_STORAGE);
        }
      } catch (e) {
        // storage refused (private mode): the key lives until the page closes, in no storage at all
      }
      if (options.onKeyChange) {
        options.onKeyChange(Boolean(key));
      }
    }

    function ask(reason) {
      // Requests refused together share one prompt.
      if (!asking) {
        asking = Promise.resolve(options.askKey(reason)).finally(function () { asking = null; });
      }
      return asking;
    }

    async function send(path, init) {
      const request = init || {};
      for (let attempt = 0; ; attempt++) {
        const key = getKey();
        const headers = Object.assign({}, request.headers || {}, authHeader(key));
        const response = await fetchFn(new URL(path, base).toString(),
          Object.assign({}, request, { headers: headers, credentials: "same-origin" }));
        if (response.status !== 401 || attempt >= 3) {
          return response;
        }
        const now = getKey();
        if (now && now !== key) {
          continue; // another request got a key meanwhile
        }
        const given = await ask(key ? "The key was refused. Enter another one."
          : "This service asks for an API key.");
        if (!given) {
          if (key) {
            setKey("");
          }
          return response;
        }
        setKey(given);
      }
    }

    async function json(path, init) {
      let response;
      try {
        response = await send(path, init);
      } catch (e) {
        return { status: 0, ok: false, body: null };
      }
      let body = null;
      try {
        body = await response.json();
      } catch (e) {
        body = null;
      }
      return { status: response.status, ok: response.ok, body: body };
    }

    function postJson(path, payload) {
      return json(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(payload),
      });
    }

    return {
      send: send,
      json: json,
      postJson: postJson,
      hasKey: function () { return Boolean(getKey()); },
      forgetKey: function () { setKey(""); },
    };
  }

  // ---- the page ------------------------------------------------------------------------------

  function el(doc, tag, attrs, children) {
    const node = doc.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      const value = attrs[name];
      if (value === null || value === undefined || value === false) {
        return;
      }
      if (name === "text") {
        node.textContent = value;
      } else if (name === "className") {
        node.className = value;
      } else {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    });
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) {
        node.append(child);
      }
    });
    return node;
  }

  function facts(doc, pairs) {
    return el(doc, "dl", { className: "facts" }, pairs.filter(Boolean).map(function (pair) {
      return el(doc, "div", {}, [el(doc, "dt", { text: pair[0] }), el(doc, "dd", {}, [pair[1]])]);
    }));
  }

  function badge(doc, word, kind) {
    return el(doc, "span", { className: "badge " + (kind || word), text: word });
  }

  function card(doc, label, value, sub, extra) {
    return el(doc, "div", { className: "card" }, [
      el(doc, "p", { className: "label", text: label }),
      el(doc, "p", { className: "value", text: value }),
      sub ? el(doc, "p", { className: "sub", text: sub }) : null,
      extra || null,
    ]);
  }

  function table(doc, head, rows) {
    return el(doc, "div", { className: "scroll" }, [el(doc, "table", {}, [
      el(doc, "thead", {}, [el(doc, "tr", {}, head.map(function (h) {
        return el(doc, "th", { scope: "col", text: h });
      }))]),
      el(doc, "tbody", {}, rows.map(function (row) {
        return el(doc, "tr", {}, row.map(function (cell) {
          return el(doc, "td", isNumber(cell) ? { className: "num" } : {}, [String(cell)]);
        }));
      })),
    ])]);
  }

  function askKeyWithDialog(doc, reason) {
    const dialog = doc.getElementById("key-dialog");
    const form = doc.getElementById("key-form");
    const input = doc.getElementById("key-input");
    const cancel = doc.getElementById("key-cancel");
    return new Promise(function (resolve) {
      doc.getElementById("key-reason").textContent = reason;
      input.value = "";
      function done(value) {
        form.removeEventListener("submit", onSubmit);
        cancel.removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) {
          dialog.close();
        }
        resolve(value);
      }
      function onSubmit(event) {
        event.preventDefault();
        const value = input.value.trim();
        if (value) {
          done(value);
        }
      }
      function onCancel(event) {
        if (event) {
          event.preventDefault();
        }
        done(null);
      }
      form.addEventListener("submit", onSubmit);
      cancel.addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      dialog.showModal();
      input.focus();
    });
  }

  function start(win) {
    const doc = win.document;
    const $ = function (id) { return doc.getElementById(id); };
    const serviceRoot = new URL("../", new URL("./", win.location.href)).href; // /console/ → /
    const client = createClient({
      fetch: win.fetch.bind(win),
      storage: win.sessionStorage,
      base: serviceRoot,
      askKey: function (reason) { return askKeyWithDialog(doc, reason); },
      onKeyChange: function (has) { $("forget-key").hidden = !has; },
    });
    const state = { info: null, view: null, liveTimer: null, reviewTimer: null, objectUrls: [], interval: 10,
      review: { item: null, skipped: [], done: [], busy: false } };
    const views = ["try", "review", "models", "live", "campaigns"];

    function setStatus(id, text, problem) {
      const node = $(id);
      node.textContent = text;
      node.classList.toggle("problem", Boolean(problem));
    }

    // -- header, info --------------------------------------------------------------------------

    async function loadServing() {
      const got = await client.json("models");
      if (!got.ok || !got.body) {
        setStatus("serving", "Service status unavailable: " + describeError(got.status, got.body), true);
        return null;
      }
      const m = got.body;
      const version = m.current_version === null || m.current_version === undefined ? "no version" : "v" + m.current_version;
      setStatus("serving", (m.model || "model") + " " + version + " · " + (m.backend || "?") + " backend · " +
        (isReady(m) ? "ready" : "not ready"), !isReady(m));
      return m;
    }

    async function loadInfo() {
      const got = await client.json("console/api/info");
      if (!got.ok || !got.body) {
        return;
      }
      state.info = got.body.data;
      const info = state.info;
      const policy = $("try-policy");
      policy.textContent = "";
      if (info.policies && info.policies.length) {
        // Not reachable yet: the API has no policies. Shown as a picker once it lists some.
        const select = el(doc, "select", { id: "try-policy-select" }, info.policies.map(function (p) {
          return el(doc, "option", { value: p.name || p, text: p.name || p });
        }));
        policy.append(el(doc, "label", { for: "try-policy-select", text: "Policy" }), select);
      } else {
        const t = info.thresholds;
        policy.append("Policy: ", el(doc, "strong", { text: "default" }),
          " (" + (t.source === "version" ? "the serving version's operating points" : "the service's thresholds") +
          ": review ≥ " + formatNumber(t.review, 4) + ", block ≥ " + formatNumber(t.block, 4) +
          (t.min_tokens_to_block ? ", block needs ≥ " + t.min_tokens_to_block + " tokens" : "") + ")");
      }
    }

    // -- Try -----------------------------------------------------------------------------------

    function renderText(text, reasons) {
      const p = el(doc, "p", { className: "result-text", lang: "zh-CN" });
      highlightSegments(text, reasons).forEach(function (piece) {
        if (piece.reasons.length) {
          const why = piece.reasons.map(function (r) {
            return r.token || r.reason || r.label || ("weight " + formatNumber(r.weight));
          }).join(", ");
          p.append(el(doc, "mark", { title: why, text: piece.text }));
        } else {
          p.append(doc.createTextNode(piece.text));
        }
      });
      return p;
    }

    function renderResult(item, line) {
      const suggestion = SUGGESTIONS.indexOf(item.suggestion) >= 0 ? item.suggestion : "review";
      const status = el(doc, "span", { className: "status", role: "status" });
      const buttons = ["spam", "pass"].map(function (label) {
        return el(doc, "button", {
          type: "button", className: "secondary small", "data-label": label,
          "aria-label": "Mark line " + line + " as " + label, text: "Mark " + label,
        });
      });
      buttons.forEach(function (button) {
        button.addEventListener("click", async function () {
          const label = button.getAttribute("data-label");
          buttons.forEach(function (b) { b.disabled = true; });
          status.textContent = "Sending…";
          const got = await client.postJson("feedback", { text: item.text, label: label });
          status.textContent = feedbackMessage(got.status, got.body, label);
          status.classList.toggle("problem", got.status !== 202);
          status.setAttribute("data-status", String(got.status));
          buttons.forEach(function (b) { b.disabled = false; });
        });
      });
      const coverage = item.coverage || {};
      return el(doc, "li", { className: "result " + suggestion, "data-suggestion": suggestion }, [
        renderText(item.text, item.reasons),
        facts(doc, [
          ["Line", String(line)],
          ["Verdict", badge(doc, item.label || "?", item.label === "spam" ? "spam" : "pass")],
          ["Probability", el(doc, "span", { title: String(item.spam_probability), text: formatNumber(item.spam_probability) })],
          ["Suggestion", badge(doc, suggestion)],
          ["Coverage", (coverage.scored !== undefined ? coverage.scored + "/" + coverage.tokens : "–") + " tokens"],
          item.capped ? ["Capped", item.capped.replace(/_/g, " ")] : null,
          item.model ? ["Model", item.model.name + " v" + item.model.version] : null,
        ]),
        el(doc, "div", { className: "actions" }, buttons.concat([status])),
      ]);
    }

    async function onTry(event) {
      event.preventDefault();
      const texts = splitTexts($("try-texts").value);
      const results = $("try-results");
      if (!texts.length) {
        setStatus("try-status", "Enter at least one text (one per line).", true);
        return;
      }
      const limit = state.info && state.info.limits ? state.info.limits.max_texts : null;
      if (limit && texts.length > limit) {
        setStatus("try-status", texts.length + " texts: the service takes at most " + limit + " per request.", true);
        return;
      }
      const submit = $("try-submit");
      submit.disabled = true;
      setStatus("try-status", "Scoring " + texts.length + (texts.length === 1 ? " text…" : " texts…"));
      const payload = { texts: texts.map(function (t) { return t.text; }) };
      const select = $("try-policy-select");
      if (select) {
        payload.policy = select.value;
      }
      const started = win.performance.now();
      const got = await client.postJson("predict", payload);
      submit.disabled = false;
      if (!got.ok || !got.body || !Array.isArray(got.body.data)) {
        let message = describeError(got.status, got.body);
        const index = /texts\[(\d+)\]/.exec(message);
        if (index && texts[Number(index[1])]) {
          message += " (line " + texts[Number(index[1])].line + ")";
        }
        setStatus("try-status", message, true);
        return;
      }
      results.textContent = "";
      got.body.data.forEach(function (item, i) {
        results.append(renderResult(item, texts[i].line));
      });
      const spam = got.body.data.filter(function (d) { return d.label === "spam"; }).length;
      const explained = got.body.data.some(function (d) { return Array.isArray(d.reasons) && d.reasons.length; });
      setStatus("try-status", got.body.data.length + " scored in " + Math.round(win.performance.now() - started) +
        " ms: " + spam + " spam, " + (got.body.data.length - spam) + " pass." +
        (explained ? " Highlighted: the spans the service gave as reasons (hover for why)."
          : " Spans are highlighted once the API explains its verdicts."));
    }

    // -- Models --------------------------------------------------------------------------------

    function releaseImages() {
      state.objectUrls.forEach(function (url) { win.URL.revokeObjectURL(url); });
      state.objectUrls = [];
    }

    async function loadImage(path, alt) {
      const response = await client.send(path);
      if (!response.ok) {
        return el(doc, "p", { className: "hint", text: alt + ": not available (" + response.status + ")" });
      }
      const url = win.URL.createObjectURL(await response.blob());
      state.objectUrls.push(url);
      return el(doc, "figure", {}, [el(doc, "img", { src: url, alt: alt }), el(doc, "figcaption", { className: "hint", text: alt })]);
    }

    async function loadVersion(version, servingVersion) {
      const box = $("version-detail");
      box.hidden = false;
      box.textContent = "";
      box.append(el(doc, "h3", { text: "Version " + version }), el(doc, "p", { className: "status", text: "Loading…" }));
      const got = await client.json("console/api/versions/" + version);
      box.textContent = "";
      const title = el(doc, "h3", { id: "version-title", tabindex: "-1" }, ["Version " + version + " ",
        version === servingVersion ? badge(doc, "serving") : null]);
      box.append(title);
      if (!got.ok || !got.body) {
        box.append(el(doc, "p", { className: "problem", text: describeError(got.status, got.body) }));
        return;
      }
      const d = got.body.data;
      const m = d.metrics || {};
      const test = m.test || {};
      if (d.metrics_problem) {
        box.append(el(doc, "p", { className: "problem", text: "metrics.json: " + d.metrics_problem }));
      }
      box.append(facts(doc, [
        ["Kind", m.model || "–"],
        ["Exported", m.exported_at || "–"],
        ["Best epoch", m.best_epoch !== undefined ? m.best_epoch + " of " + (m.epochs_run || "?") : "–"],
        ["Test F1", formatNumber(test.f1)],
        ["Precision", formatNumber(test.precision)],
        ["Recall", formatNumber(test.recall)],
        ["Accuracy", formatNumber(test.accuracy)],
        ["ROC-AUC", formatNumber(test.roc_auc)],
        ["Test texts", test.count !== undefined ? String(test.count) : "–"],
        m.retrain ? ["Published by", "nightly retrain"] : null,
      ]));
      const c = test.confusion;
      if (c) {
        box.append(el(doc, "h4", { text: "Confusion matrix (test split, spam at p ≥ 0.5)" }),
          el(doc, "div", { className: "scroll" }, [el(doc, "table", { className: "confusion", id: "confusion-table" }, [
            el(doc, "thead", {}, [el(doc, "tr", {}, [el(doc, "th", { scope: "col", text: "true \\ predicted" }),
              el(doc, "th", { scope: "col", text: "spam" }), el(doc, "th", { scope: "col", text: "pass" })])]),
            el(doc, "tbody", {}, [
              el(doc, "tr", {}, [el(doc, "th", { scope: "row", text: "spam" }),
                el(doc, "td", { text: String(c.spam_as_spam) }), el(doc, "td", { text: String(c.spam_as_pass) })]),
              el(doc, "tr", {}, [el(doc, "th", { scope: "row", text: "pass" }),
                el(doc, "td", { text: String(c.pass_as_spam) }), el(doc, "td", { text: String(c.pass_as_pass) })]),
            ]),
          ])]));
      }
      // Issue 20: where this version's block and review start (chosen on validation for a target
      // precision / recall, on calibrated probabilities); the default policy applies these.
      const op = m.operating_points;
      if (op && op.block && op.review) {
        box.append(el(doc, "h4", { text: "Operating points (validation, calibrated: " +
          ((m.calibration && m.calibration.method) || "no") + ")" }), table(doc,
          ["suggestion", "p ≥", "aimed at", "precision", "recall", "flagged", "ordinary flagged"],
          [["block", formatNumber(op.block.threshold, 4), "precision " + formatNumber(op.block.target),
            formatNumber(op.block.precision), formatNumber(op.block.recall),
            formatPercent(op.block.flagged_share), formatPercent(op.block.pass_share)],
           ["review", formatNumber(op.review.threshold, 4), "recall " + formatNumber(op.review.target),
            formatNumber(op.review.precision), formatNumber(op.review.recall),
            formatPercent(op.review.flagged_share), formatPercent(op.review.pass_share)]]));
      } else {
        box.append(el(doc, "p", { className: "hint", id: "points-note",
          text: "Uncalibrated version without operating points: served at the fixed thresholds 0.5 / 0.9." }));
      }
      const at = test.at_thresholds;
      if (at && Object.keys(at).length) {
        box.append(el(doc, "h4", { text: "At the thresholds" }), table(doc,
          ["p ≥", "precision", "recall", "F1", "false-positive rate", "flagged"],
          Object.keys(at).map(function (k) {
            const s = at[k];
            return [k, formatNumber(s.precision), formatNumber(s.recall), formatNumber(s.f1),
              formatPercent(s.false_positive_rate), s.flagged === undefined ? "–" : s.flagged];
          })));
      }
      releaseImages();
      const images = (d.report && d.report.images) || {};
      const kinds = Object.keys(images);
      if (kinds.length) {
        box.append(el(doc, "h4", { text: "Training report" }));
        const holder = el(doc, "div", { className: "images" });
        box.append(holder);
        const alts = { curves: "Training curves: loss and validation scores per epoch",
          confusion: "Confusion matrix on the test split" };
        for (const kind of ["curves", "confusion"]) {
          if (images[kind]) {
            holder.append(await loadImage(images[kind], alts[kind]));
          }
        }
      } else {
        box.append(el(doc, "p", { className: "hint", id: "report-note",
          text: "Metrics only: " + ((d.report && d.report.note) || "no training report") + "." }));
      }
      const history = Array.isArray(m.history) ? m.history : [];
      if (history.length) {
        const details = el(doc, "details", {}, [el(doc, "summary", { text: "Per-epoch history (" + history.length + " epochs)" }),
          table(doc, ["epoch", "training loss", "validation loss", "validation accuracy", "validation F1"],
            history.map(function (h) {
              return [h.epoch, formatNumber(h.loss, 4), formatNumber(h.validation_loss, 4),
                formatNumber(h.validation_accuracy), formatNumber(h.validation_f1)];
            }))]);
        box.append(details);
      }
      box.append(el(doc, "details", {}, [el(doc, "summary", { text: "metrics.json" }),
        el(doc, "pre", { text: JSON.stringify(d.metrics, null, 2) })]));
    }

    function renderVersions(models, disk) {
      const body = $("versions-table").querySelector("tbody");
      body.textContent = "";
      const rows = mergeVersions(models, disk);
      const serving = models ? models.current_version : null;
      rows.forEach(function (row) {
        const t = row.disk && row.disk.test;
        const details = el(doc, "button", { type: "button", className: "secondary small",
          "aria-controls": "version-detail", "aria-label": "Details of version " + row.version, text: "Details" });
        details.addEventListener("click", function () {
          loadVersion(row.version, serving).then(function () { $("version-title").focus(); });
        });
        const stateCell = el(doc, "td", {}, [badge(doc, String(row.state).toLowerCase().replace(/_/g, " "), row.kind)]);
        if (row.error || row.note) {
          stateCell.append(el(doc, "div", { className: "hint", text: row.error || row.note }));
        }
        body.append(el(doc, "tr", { className: row.current ? "current" : null, "data-version": row.version }, [
          el(doc, "th", { scope: "row", text: String(row.version) }),
          stateCell,
          el(doc, "td", { text: (row.disk && row.disk.exported_at) || (row.disk ? "–" : "not on disk") }),
          el(doc, "td", { className: "num", text: formatNumber(t && t.f1) }),
          el(doc, "td", { className: "num", text: formatNumber(t && t.precision) }),
          el(doc, "td", { className: "num", text: formatNumber(t && t.recall) }),
          el(doc, "td", { text: row.disk && row.disk.report_images.length ? row.disk.report_images.join(", ") : "–" }),
          el(doc, "td", {}, [details]),
        ]));
      });
      if (!rows.length) {
        body.append(el(doc, "tr", {}, [el(doc, "td", { colspan: 8, text: "No version on disk yet." })]));
      }
      return rows;
    }

    function renderPromotions(log) {
      const body = $("promotions-table").querySelector("tbody");
      body.textContent = "";
      if (!log || !log.exists) {
        $("promotions-note").textContent = "No promotion log yet" + (log ? " at " + log.path : "") +
          ": the nightly retrain appends one line per run.";
        return;
      }
      $("promotions-note").textContent = "The last " + log.records.length + " runs from " + log.path + ", newest first.";
      log.records.slice().reverse().forEach(function (record) {
        const s = promotionSummary(record);
        body.append(el(doc, "tr", {}, [
          el(doc, "td", { text: s.time }),
          el(doc, "td", {}, [badge(doc, s.decision + (s.dryRun ? " (dry run)" : ""),
            ["publish", "reject", "busy", "error"].indexOf(s.decision) >= 0 ? s.decision : "other")]),
          el(doc, "td", { className: "num", text: s.exitCode }),
          el(doc, "td", { className: "num", text: s.version }),
          el(doc, "td", { className: "num", text: s.serving }),
          el(doc, "td", { className: "num", text: formatNumber(s.f1New, 4) }),
          el(doc, "td", { className: "num", text: formatNumber(s.f1Old, 4) }),
          el(doc, "td", { className: "reason", text: s.reason }),
        ]));
      });
    }

    async function loadModels() {
      const view = $("view-models");
      view.removeAttribute("data-loaded");
      setStatus("models-status", "Loading…");
      const results = await Promise.all([client.json("models"), client.json("console/api/versions"),
        client.json("console/api/promotions?limit=20")]);
      const models = results[0].ok ? results[0].body : null;
      const disk = results[1].ok && results[1].body ? results[1].body.data : null;
      const log = results[2].ok && results[2].body ? results[2].body.data : null;
      const problems = results.filter(function (r) { return !r.ok; })
        .map(function (r) { return describeError(r.status, r.body); });
      setStatus("models-status", problems.join("; "), problems.length > 0);
      const cards = $("models-serving");
      cards.textContent = "";
      if (models) {
        cards.append(
          card(doc, "Model", models.model || "–", disk ? disk.model_dir : null),
          card(doc, "Serving version", models.current_version === null ? "none" : "v" + models.current_version,
            isReady(models) ? "ready" : "not ready"),
          card(doc, "Backend", models.backend || "–", isNumber(models.poll_seconds) ? "polls every " + models.poll_seconds + " s" : null),
          card(doc, "Versions on disk", disk ? String(disk.count) : "–",
            disk ? "high-water mark " + disk.high_water_mark : null));
      }
      const rows = renderVersions(models, disk);
      renderPromotions(log);
      const newest = rows.filter(function (r) { return r.disk; }).map(function (r) { return r.version; })[0];
      $("rollback-command").textContent = rollbackCommand(disk ? disk.model_dir : null, newest);
      const pick = models && isNumber(models.current_version) ? models.current_version : newest;
      if (isNumber(pick)) {
        await loadVersion(pick, models ? models.current_version : null);
      }
      view.setAttribute("data-loaded", "1");
    }

    // -- Live ----------------------------------------------------------------------------------

    function renderChart(series, slots) {
      const svg = $("live-chart");
      const ns = "http://www.w3.org/2000/svg";
      while (svg.firstChild) {
        svg.removeChild(svg.firstChild);
      }
      const base = doc.createElementNS(ns, "line");
      [["x1", 0], ["y1", 119.5], ["x2", 600], ["y2", 119.5]].forEach(function (a) { base.setAttribute(a[0], a[1]); });
      svg.append(base);
      const values = series.map(function (s) { return s.predict_per_second; });
      const peak = values.reduce(function (top, v) { return isNumber(v) && v > top ? v : top; }, 0);
      $("live-chart-caption").textContent = "/predict requests per second, per " + state.interval + "-second interval" +
        (series.length ? " (peak " + formatRate(peak) + ")" : ": no interval yet");
      sparkBars(values, 600, 116, slots).forEach(function (bar, i) {
        const rect = doc.createElementNS(ns, "rect");
        rect.setAttribute("x", bar.x.toFixed(2));
        rect.setAttribute("y", (bar.y + 4).toFixed(2));
        rect.setAttribute("width", bar.width.toFixed(2));
        rect.setAttribute("height", bar.height.toFixed(2));
        const title = doc.createElementNS(ns, "title");
        title.textContent = formatRate(bar.value) + " (interval " + (i + 1) + ")";
        rect.append(title);
        svg.append(rect);
      });
    }

    async function loadLive() {
      win.clearTimeout(state.liveTimer);
      const minutes = $("live-minutes").value;
      const got = await client.json("console/api/live?minutes=" + encodeURIComponent(minutes));
      if (state.view === "live") {
        state.liveTimer = win.setTimeout(loadLive, LIVE_REFRESH_MS);
      }
      if (!got.ok || !got.body) {
        setStatus("live-status", describeError(got.status, got.body), true);
        return;
      }
      const d = got.body.data;
      const w = d.window;
      const p = w.predict;
      // Issue 23: with the decision log in a shared store, verdicts and rates are every process's.
      const shared = d.shared && d.shared.source === "decision_log" ? d.shared : null;
      const here = "this process" + (d.process ? " (pid " + d.process.pid + ")" : "");
      const mix = verdictMix(shared ? shared.verdicts : w.verdicts);
      const bar = el(doc, "div", { className: "mix", role: "img",
        "aria-label": mix.parts.map(function (part) { return part.suggestion + " " + part.count; }).join(", ") });
      mix.parts.forEach(function (part) {
        const seg = el(doc, "span", { className: part.suggestion });
        seg.style.width = (100 * part.share).toFixed(2) + "%"; // CSSOM: allowed under the CSP
        bar.append(seg);
      });
      const backendErrors = Object.keys(w.errors.backend).map(function (k) { return k + " " + w.errors.backend[k]; });
      const cards = $("live-cards");
      cards.textContent = "";
      cards.append(
        shared
          ? card(doc, "Predict requests", formatRate(shared.requests_per_second),
            shared.requests + " in " + Math.round(shared.seconds) + " s · " +
            formatRate(shared.texts_per_second).replace("/s", " texts/s") + " · all processes (decision log)")
          : card(doc, "Predict requests", formatRate(p.requests_per_second),
            p.requests + " in " + Math.round(w.seconds) + " s · " + formatRate(p.texts_per_second).replace("/s", " texts/s") +
            " · " + here),
        card(doc, "Latency p50", formatMs(p.latency_ms.p50, p.latency_ms.p50_above_buckets), "predict, from buckets · " + here),
        card(doc, "Latency p99", formatMs(p.latency_ms.p99, p.latency_ms.p99_above_buckets), "predict, from buckets · " + here),
        card(doc, "Verdicts", String(mix.total),
          mix.parts.map(function (part) { return part.suggestion + " " + part.count; }).join(" · ") +
          (shared ? " · all processes (decision log)" : " · " + here), bar),
        card(doc, "Cache hit rate", formatPercent(w.cache.hit_rate), w.cache.hits + " hits, " + w.cache.misses + " misses"),
        card(doc, "Fallbacks", String(w.fallbacks), "REST after gRPC"),
        card(doc, "Errors (5xx)", String(w.errors.server),
          "4xx " + w.errors.client + (backendErrors.length ? " · backend: " + backendErrors.join(", ") : "")));
      state.interval = d.interval_seconds;
      renderChart(d.series, Math.round(Number(minutes) * 60 / d.interval_seconds));
      const body = $("live-routes").querySelector("tbody");
      body.textContent = "";
      Object.keys(w.by_route).forEach(function (route) {
        body.append(el(doc, "tr", {}, [el(doc, "td", { text: route }), el(doc, "td", { className: "num", text: String(w.by_route[route]) })]));
      });
      if (!Object.keys(w.by_route).length) {
        body.append(el(doc, "tr", {}, [el(doc, "td", { colspan: 2, text: "No requests in this window." })]));
      }
      const updated = new Date(d.now * 1000).toLocaleTimeString();
      setStatus("live-status", "Updated " + updated + " · covering " + Math.round(w.seconds) + " s · sampled every " +
        d.interval_seconds + " s (" + d.sampling + ") · verdicts and rates: " +
        (shared ? "all processes, from the decision log" : here + (d.shared && d.shared.why ? " (" + d.shared.why + ")" : "")));
      $("view-live").setAttribute("data-loaded", "1");
    }

    // -- Review --------------------------------------------------------------------------------

    function renderBars(svgId, values, slots, describe) {
      const svg = $(svgId);
      const ns = "http://www.w3.org/2000/svg";
      while (svg.firstChild) {
        svg.removeChild(svg.firstChild);
      }
      const base = doc.createElementNS(ns, "line");
      [["x1", 0], ["y1", 119.5], ["x2", 600], ["y2", 119.5]].forEach(function (a) { base.setAttribute(a[0], a[1]); });
      svg.append(base);
      sparkBars(values, 600, 116, slots).forEach(function (bar, i) {
        const rect = doc.createElementNS(ns, "rect");
        rect.setAttribute("x", bar.x.toFixed(2));
        rect.setAttribute("y", (bar.y + 4).toFixed(2));
        rect.setAttribute("width", bar.width.toFixed(2));
        rect.setAttribute("height", bar.height.toFixed(2));
        const title = doc.createElementNS(ns, "title");
        title.textContent = describe(bar.value, i);
        rect.append(title);
        svg.append(rect);
      });
    }

    async function loadReviewStats() {
      win.clearTimeout(state.reviewTimer);
      const got = await client.json("review/stats?hours=" + REVIEW_HOURS);
      if (state.view === "review") {
        state.reviewTimer = win.setTimeout(loadReviewStats, REVIEW_REFRESH_MS);
      }
      const cards = $("review-cards");
      if (!got.ok || !got.body) {
        cards.textContent = "";
        setStatus("review-stats-status", "Queue figures unavailable: " + reviewMessage(got.status, got.body), true);
        return;
      }
      setStatus("review-stats-status", "");
      const d = got.body.data;
      cards.textContent = "";
      cards.append(
        card(doc, "Queue depth", String(d.depth), "review " + d.by_source.review + " · appeal " + d.by_source.appeal),
        card(doc, "Oldest waiting", formatAge(d.oldest_age_seconds), d.depth ? "since it entered the queue" : "queue empty"),
        card(doc, "Being reviewed", String(d.leased), "leased to a moderator now"),
        card(doc, "Decided", String(d.decided.spam + d.decided.pass),
          "last " + d.hours + " h: spam " + d.decided.spam + " · pass " + d.decided.pass),
        card(doc, "Appeal callbacks", String(d.callbacks.pending) + " pending",
          d.callbacks.delivered + " delivered · " + d.callbacks.failed + " failed"));
      const values = depthSeries(d.history);
      const peak = values.reduce(function (top, v) { return isNumber(v) && v > top ? v : top; }, 0);
      const step = d.history.length > 1 ? d.history[1].t - d.history[0].t : 0;
      $("review-chart-caption").textContent = "Queue depth over the last " + d.hours + " hours, every " +
        formatAge(step) + " (peak " + peak + ")";
      renderBars("review-chart", values, values.length, function (value, i) {
        const at = d.history[i] ? new Date(d.history[i].t * 1000).toLocaleTimeString() : "";
        return value + " waiting at " + at;
      });
      $("view-review").setAttribute("data-loaded", "1");
    }

    function showItem(item) {
      state.review.item = item;
      const box = $("review-item");
      box.hidden = !item;
      $("review-spam").disabled = !item;
      $("review-pass").disabled = !item;
      $("review-skip").disabled = !item;
      if (!item) {
        return;
      }
      box.className = "result " + (item.source === "appeal" ? "block" : "review");
      box.setAttribute("data-item", String(item.id));
      const text = renderText(item.text, reviewSpans(item));
      text.id = "review-text";
      $("review-text").replaceWith(text);
      const explanation = item.explanation || {};
      const facts_ = $("review-facts");
      facts_.textContent = "";
      facts_.append(facts(doc, [
        ["Item", "#" + item.id],
        ["Source", badge(doc, item.source, item.source === "appeal" ? "block" : "review")],
        ["Asked by", (item.model_name || "model") + " v" + (item.model_version === null ? "?" : item.model_version) +
          " · policy " + (item.policy || "default")],
        ["Decision", el(doc, "span", {}, [badge(doc, item.suggestion || "?"), " p=" + formatNumber(item.probability) +
          (item.decided_by && item.decided_by !== "model" ? " by " + item.decided_by.replace(/_/g, " ") : "")])],
        isNumber(explanation.spam_probability) ? ["Serving now", (isNumber(explanation.model_version) ?
          "v" + explanation.model_version + " " : "") + "p=" + formatNumber(explanation.spam_probability)] : null,
        item.data_id ? ["Data id", item.data_id] : null,
        ["Waiting", formatAge(Date.now() / 1000 - item.enqueued_at)],
        ["Lease", "until " + new Date(item.lease.until * 1000).toLocaleTimeString()],
      ]));
      const appeal = $("review-appeal");
      appeal.hidden = item.source !== "appeal";
      appeal.textContent = item.source === "appeal" ? "Appeal: " + (item.appeal_reason || "(no reason given)") : "";
      $("review-reason").value = "";
      $("review-note").textContent = explanation.problem ? explanation.problem :
        "Highlighted: list matches and the spans the serving version gives as reasons (hover for why).";
    }

    async function takeNext() {
      if (state.review.busy) {
        return;
      }
      state.review.busy = true;
      setStatus("review-status", "Taking the next item…");
      const got = await client.postJson("review/next", { exclude: state.review.skipped });
      state.review.busy = false;
      if (!got.ok || !got.body) {
        showItem(null);
        setStatus("review-status", reviewMessage(got.status, got.body), true);
        return;
      }
      const item = got.body.data;
      showItem(item);
      setStatus("review-status", item ? "Item #" + item.id + " is yours for " + formatAge(item.lease.seconds) + "."
        : "Nothing to review" + (state.review.skipped.length ? " (besides " + state.review.skipped.length +
          " skipped)" : "") + ".");
      loadReviewStats();
    }

    async function decide(verdict) {
      const item = state.review.item;
      if (!item || state.review.busy) {
        return;
      }
      state.review.busy = true;
      const reason = $("review-reason").value.trim();
      setStatus("review-status", "Saving " + verdict + " for #" + item.id + "…");
      const payload = { lease: item.lease.token, verdict: verdict };
      if (reason) {
        payload.reason = reason;
      }
      const got = await client.postJson("review/" + item.id + "/decision", payload);
      state.review.busy = false;
      if (!got.ok) {
        setStatus("review-status", reviewMessage(got.status, got.body), true);
        if (got.status === 409) {
          showItem(null);
        }
        return;
      }
      state.review.done.push({ id: item.id, verdict: verdict });
      $("view-review").setAttribute("data-decided", String(state.review.done.length));
      showItem(null);
      await takeNext();
      const status = $("review-status");
      status.textContent = "#" + item.id + " marked " + verdict + ". " + status.textContent;
    }

    async function skip() {
      const item = state.review.item;
      if (!item) {
        return takeNext();
      }
      if (state.review.busy) {
        return;
      }
      state.review.busy = true;
      await client.postJson("review/" + item.id + "/release", { lease: item.lease.token });
      state.review.busy = false;
      state.review.skipped = state.review.skipped.concat([item.id]).slice(-MAX_SKIPPED);
      showItem(null);
      return takeNext();
    }

    function onReviewKey(event) {
      if (state.view !== "review" || event.defaultPrevented) {
        return;
      }
      const action = reviewShortcut(event);
      if (!action) {
        return;
      }
      event.preventDefault();
      if (action === "reason") {
        $("review-reason").focus();
      } else if (action === "next") {
        skip();
      } else if (state.review.item) {
        decide(action);
      }
    }

    // -- Campaigns -----------------------------------------------------------------------------

    function renderExample(summary) {
      const p = el(doc, "p", { className: "result-text", lang: "zh-CN" });
      highlightSegments(summary.text, summary.spans).forEach(function (piece) {
        if (piece.reasons.length) {
          const what = piece.reasons.map(function (k) { return contactKind(k.kind) + " " + k.value; }).join(", ");
          p.append(el(doc, "mark", { className: "contact", title: what, text: piece.text }));
        } else {
          p.append(doc.createTextNode(piece.text));
        }
      });
      return p;
    }

    function listedBadge() {
      return badge(doc, "on the block list", "block");
    }

    function markListed(value) {
      // The same contact may be in several campaigns: every one of its buttons becomes the badge.
      Array.prototype.forEach.call($("campaigns-list").querySelectorAll("li[data-contact]"), function (li) {
        if (li.getAttribute("data-contact") === value) {
          const open = li.querySelector(".open-block");
          if (open) {
            open.replaceWith(listedBadge());
          }
          const confirm = li.querySelector(".confirm");
          if (confirm) {
            confirm.hidden = true;
          }
        }
      });
    }

    function renderContact(contact, index, file) {
      const status = el(doc, "span", { className: "status", role: "status" });
      const label = contactKind(contact.kind) + " " + contact.value;
      const row = el(doc, "li", { "data-contact": contact.value, "data-kind": contact.kind }, [
        badge(doc, contactKind(contact.kind), "other"),
        el(doc, "code", { text: contact.value }),
      ]);
      if (contact.listed) {
        row.append(listedBadge(), status);
        return row;
      }
      const open = el(doc, "button", { type: "button", className: "secondary small open-block",
        "aria-label": "Block " + label + "…", text: "Block…" });
      const add = el(doc, "button", { type: "button", className: "small confirm-block",
        text: "Add to the block list" });
      const cancel = el(doc, "button", { type: "button", className: "secondary small", text: "Cancel" });
      const question = el(doc, "span", { text: "Add " + contact.value + " to " + file + "?" });
      const confirm = el(doc, "span", { className: "confirm", id: "confirm-" + index }, [question, add, cancel]);
      confirm.hidden = true;
      open.setAttribute("aria-controls", "confirm-" + index);
      open.setAttribute("aria-expanded", "false");
      open.addEventListener("click", function () {
        confirm.hidden = false;
        open.setAttribute("aria-expanded", "true");
        status.textContent = "";
        add.focus();
      });
      cancel.addEventListener("click", function () {
        confirm.hidden = true;
        open.setAttribute("aria-expanded", "false");
        open.focus();
      });
      add.addEventListener("click", async function () {
        add.disabled = true;
        cancel.disabled = true;
        status.textContent = "Adding…";
        const got = await client.postJson("console/api/blocklist", { kind: contact.kind, value: contact.value });
        add.disabled = false;
        cancel.disabled = false;
        status.textContent = blockListMessage(got.status, got.body);
        status.classList.toggle("problem", got.status !== 200);
        status.setAttribute("data-status", String(got.status));
        if (got.status === 200) {
          markListed(contact.value);
        }
      });
      row.append(open, confirm, status);
      return row;
    }

    function renderCampaign(campaign, now, file, number) {
      const summary = campaignSummary(campaign, now);
      const first = summary.firstSeen !== null ? new Date(summary.firstSeen * 1000).toLocaleTimeString() : "–";
      const contacts = el(doc, "ul", { className: "contacts", "aria-label": "Contacts in this example" },
        summary.contacts.map(function (contact, i) { return renderContact(contact, number + "-" + i, file); }));
      return el(doc, "li", { className: "result campaign" }, [
        renderExample(summary),
        facts(doc, [
          ["Senders", String(summary.senders === null ? "–" : summary.senders)],
          ["Messages", String(summary.size === null ? "–" : summary.size)],
          ["First seen", first + " (" + summary.age + " ago)"],
          ["Found by", summary.foundBy],
        ]),
        summary.contacts.length ? contacts : el(doc, "p", { className: "hint", text: "No contact in this example." }),
      ]);
    }

    async function loadCampaigns() {
      const got = await client.json("console/api/campaigns?limit=" + CAMPAIGNS_LIMIT);
      const list = $("campaigns-list");
      if (!got.ok || !got.body) {
        setStatus("campaigns-status", describeError(got.status, got.body), true);
        return;
      }
      const d = got.body.data;
      list.textContent = "";
      if (d.unavailable) {
        setStatus("campaigns-status", "The campaign tracker cannot answer: " + d.unavailable, true);
      } else {
        const now = Date.now() / 1000;
        const file = d.block_file ? String(d.block_file).split("/").pop() : "block.txt";
        d.campaigns.forEach(function (c, i) { list.append(renderCampaign(c, now, file, i)); });
        $("campaigns-window").textContent = "One advert, lightly varied, sent by at least " + d.min_senders +
          " senders within " + formatAge(d.window_seconds) + ". Most senders first.";
        setStatus("campaigns-status", (d.campaigns.length ? "The largest " + d.campaigns.length + " shown. "
          : "No active campaign. ") + "Updated " + new Date().toLocaleTimeString() + ".");
      }
      $("view-campaigns").setAttribute("data-loaded", "1");
    }

    // -- views ---------------------------------------------------------------------------------

    function route() {
      const wanted = (win.location.hash || "#try").slice(1);
      const view = views.indexOf(wanted) >= 0 ? wanted : "try";
      if (view === state.view) {
        return;
      }
      state.view = view;
      views.forEach(function (name) {
        $("view-" + name).hidden = name !== view;
        const link = $("nav-" + name);
        if (name === view) {
          link.setAttribute("aria-current", "page");
        } else {
          link.removeAttribute("aria-current");
        }
      });
      win.clearTimeout(state.liveTimer);
      win.clearTimeout(state.reviewTimer);
      if (view === "models") {
        loadModels();
      } else if (view === "live") {
        loadLive();
      } else if (view === "review") {
        loadReviewStats();
      } else if (view === "campaigns") {
        loadCampaigns();
      }
    }

    $("try-form").addEventListener("submit", onTry);
    $("live-minutes").addEventListener("change", loadLive);
    $("live-refresh").addEventListener("click", loadLive);
    $("campaigns-refresh").addEventListener("click", loadCampaigns);
    $("forget-key").addEventListener("click", function () { client.forgetKey(); });
    $("forget-key").hidden = !client.hasKey();
    $("review-next").addEventListener("click", function () { skip(); });
    $("review-skip").addEventListener("click", function () { skip(); });
    $("review-spam").addEventListener("click", function () { decide("spam"); });
    $("review-pass").addEventListener("click", function () { decide("pass"); });
    doc.addEventListener("keydown", onReviewKey);
    doc.addEventListener("visibilitychange", function () {
      if (state.view === "live" && !doc.hidden) {
        loadLive();
      } else if (state.view === "review" && !doc.hidden) {
        loadReviewStats();
      } else if (doc.hidden) {
        win.clearTimeout(state.liveTimer);
        win.clearTimeout(state.reviewTimer);
      }
    });
    win.addEventListener("hashchange", route);
    route();
    $("try-submit").disabled = false;
    if (win.performance && win.performance.mark) {
      win.performance.mark("console-interactive");
    }
    loadInfo();
    loadServing();
  }

  return {
    splitTexts: splitTexts,
    highlightSegments: highlightSegments,
    formatNumber: formatNumber,
    formatPercent: formatPercent,
    formatRate: formatRate,
    formatMs: formatMs,
    reviewShortcut: reviewShortcut,
    reviewSpans: reviewSpans,
    depthSeries: depthSeries,
    reviewMessage: reviewMessage,
    verdictMix: verdictMix,
    sparkBars: sparkBars,
    promotionSummary: promotionSummary,
    shellQuote: shellQuote,
    rollbackCommand: rollbackCommand,
    authHeader: authHeader,
    describeError: describeError,
    feedbackMessage: feedbackMessage,
    mergeVersions: mergeVersions,
    stateKind: stateKind,
    isReady: isReady,
    contactKind: contactKind,
    formatAge: formatAge,
    campaignSummary: campaignSummary,
    blockListMessage: blockListMessage,
    createClient: createClient,
    start: start,
  };
}));
