/* Sentinel Ray analyst dashboard: plain JavaScript over the HTTP API, charts by uPlot
 * (vendored in the package). Times arrive and are sent in UTC; everything shown is IST.
 * Live by polling: every POLL_MS the open view asks only for what is newer than it holds. */
"use strict";
(() => {
  const IST = "Asia/Kolkata";
  const IST_OFFSET_MS = 330 * 60e3;
  const DAY_MS = 864e5;
  const POLL_MS = 5000;           // bars, posts, alerts, risk, the queue
  const SLOW_POLL_MS = 15000;     // quality, freshness, pipelines, trending
  // the longest range each interval may ask for (the API refuses more)
  const MAX_RANGE_MS = { "1m": 30 * DAY_MS, "1h": 365 * DAY_MS, "1d": 3650 * DAY_MS };
  const SPAN_MS = { "1h": 30 * DAY_MS, "1d": 365 * DAY_MS };
  const BUCKET_MS = { "1m": 60e3, "1h": 3600e3, "1d": DAY_MS };
  const PALETTE = ["#2f81f7", "#e36209", "#1a7f37", "#8250df", "#cf222e", "#0a7ea4", "#9a6700", "#57606a"];
  const DISPOSITIONS = ["true_positive", "false_positive", "unsure"];

  const $ = (sel, root = document) => root.querySelector(sel);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c != null) node.append(c instanceof Node ? c : String(c));
    return node;
  };

  // ---- time: parse UTC from the API, show IST ------------------------------------------
  const HAS_ZONE = /(?:[zZ]|[+-]\d\d:?\d\d)$/;
  /** ms since the epoch of an API time; a time without a zone is UTC (the API's rule). */
  function ms(t) {
    if (t == null) return null;
    if (typeof t === "number") return t;
    const s = String(t);
    return Date.parse(HAS_ZONE.test(s) || !s.includes("T") ? s : s + "Z");
  }
  const istParts = new Intl.DateTimeFormat("en-GB", {
    timeZone: IST, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23",
  });
  function parts(t) {
    const out = {};
    for (const p of istParts.formatToParts(new Date(t))) out[p.type] = p.value;
    return out;
  }
  /** "2026-11-04 10:42 IST" */
  function ist(t, { seconds = false, zone = true } = {}) {
    const m = ms(t);
    if (m == null || Number.isNaN(m)) return "-";
    const p = parts(m);
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${seconds ? ":" + p.second : ""}${zone ? " IST" : ""}`;
  }
  /** the IST calendar day of a moment, "YYYY-MM-DD" */
  function istDay(t) {
    const p = parts(ms(t));
    return `${p.year}-${p.month}-${p.day}`;
  }
  /** 00:00 IST of an IST day, as ms UTC */
  function istMidnight(day) {
    const [y, m, d] = day.split("-").map(Number);
    return Date.UTC(y, m - 1, d) - IST_OFFSET_MS;
  }
  const iso = (m) => new Date(m).toISOString();
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  /** x-axis labels in IST, 24-hour: "10:45", with the day under the first tick of each day */
  function timeTicks(u, splits, axisIdx, space, incr) {
    let prevDay = null, prevYear = null;
    return splits.map((s) => {
      if (s == null) return null;
      const p = parts(s * 1e3);
      const day = `${Number(p.day)} ${MONTHS[Number(p.month) - 1]}`;
      const label = incr >= 86400 ? day + (p.year !== prevYear ? `\n${p.year}` : "")
        : `${p.hour}:${p.minute}` + (day !== prevDay ? `\n${day}` : "");
      prevDay = day;
      prevYear = p.year;
      return label;
    });
  }
  const timeAxis = { stroke: "#57606a", grid: { stroke: "#eef0f3" }, values: timeTicks, size: 44 };
  function age(seconds) {
    if (seconds == null) return "-";
    const s = Math.max(0, seconds);
    if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }
  function num(v, digits = 2) {
    if (v == null || Number.isNaN(Number(v))) return "-";
    const f = 10 ** digits;
    return (Math.round(Number(v) * f) / f + 0).toLocaleString("en-IN", { maximumFractionDigits: digits }); // + 0: no "-0"
  }
  const pct = (v) => (v == null ? "-" : `${(v * 100).toFixed(v > 0.999 && v < 1 ? 2 : 1)}%`);
  const compact = (v) => (v == null ? "-" : Math.abs(v) >= 1e7 ? `${(v / 1e7).toFixed(1)}Cr`
    : Math.abs(v) >= 1e5 ? `${(v / 1e5).toFixed(1)}L` : Math.abs(v) >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : `${Math.round(v)}`);

  // ---- the API -------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }
  async function api(path, params = null, init = {}) {
    const url = new URL(path, document.baseURI);
    if (params) for (const [k, v] of Object.entries(params)) if (v != null && v !== "") url.searchParams.set(k, v);
    const res = await fetch(url, init);
    let body = null;
    try { body = await res.json(); } catch (_) { body = null; }
    if (!res.ok) throw new ApiError(res.status, (body && body.detail) || `${res.status} ${res.statusText}`);
    return body;
  }

  // ---- state ---------------------------------------------------------------------------
  const S = {
    token: sessionStorage.getItem("sentinel.token") || "",
    actor: sessionStorage.getItem("sentinel.actor") || "",
    stocks: new Map(),         // ticker -> summary (last_ts, last_close)
    marketNow: null,           // newest bar of any ticker (ms): "now" for replayed history
    ticker: null, interval: "1m", day: null,
    view: null,                // {start, end, live} of the timeline (ms)
    bars: [], posts: new Map(), filings: [], alerts: [], risk: [],
    queue: [], selectedAlert: null, markers: [],
    charts: { price: null, risk: null, quality: {} },
    lastTick: null, ticking: false, slowAt: 0,
  };
  // a failure nobody awaited still shows in the console (the browser tests fail on it)
  window.addEventListener("unhandledrejection", (e) => console.error("dashboard:", e.reason && (e.reason.stack || e.reason)));
  window.sentinelDashboard = S; // for tests and the curious: the page's state, read-only by convention

  function toast(text, error = false) {
    const t = $("#toast");
    t.textContent = text;
    t.className = "toast" + (error ? " error" : "");
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, error ? 7000 : 3500);
  }

  // ---- header: clock, links, token -------------------------------------------------------
  function tickClock() { $("#clock").textContent = ist(Date.now(), { seconds: true }); }
  function setLinks() {
    const host = location.hostname || "127.0.0.1";
    $("#ray-link").href = `${location.protocol}//${host}:8265/`;
    $("#grafana-link").href = `${location.protocol}//${host}:3000/d/sentinel-ray`;
  }
  function showTokenState() {
    $("#token-state").textContent = S.token ? "token kept for this browser session" : "no token: read-only";
    $("#token").placeholder = S.token ? "••••••• (kept)" : "SENTINEL_API_TOKEN";
    $("#actor").value = S.actor;
  }
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("#token").value.trim();
    if (token) { S.token = token; sessionStorage.setItem("sentinel.token", token); }
    S.actor = $("#actor").value.trim();
    sessionStorage.setItem("sentinel.actor", S.actor);
    $("#token").value = "";
    showTokenState();
    toast(S.token ? "token kept for this session" : "enter the API token to change alerts");
  });
  function forgetToken() { S.token = ""; sessionStorage.removeItem("sentinel.token"); showTokenState(); }

  // ---- alert workflow ------------------------------------------------------------------------
  async function changeAlert(alertId, change) {
    if (!S.token) {
      toast("Enter the API token (top right) to acknowledge or close alerts.", true);
      $("#token").focus();
      return null;
    }
    try {
      const updated = await api(`api/alerts/${encodeURIComponent(alertId)}`, null, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${S.token}` },
        body: JSON.stringify({ ...change, actor: S.actor || "dashboard" }),
      });
      toast(`${alertId}: ${updated.state}${updated.disposition ? " / " + updated.disposition : ""}`);
      await loadQueue();
      if (S.selectedAlert === alertId) renderAlertDetail(updated);
      if (S.ticker === updated.ticker) refreshTickerAlerts().catch(() => {});
      return updated;
    } catch (e) {
      if (e.status === 401) forgetToken();
      toast(`${alertId}: ${e.message}`, true);
      return null;
    }
  }

  function alertActions(alert) {
    const box = el("span", { class: "actions" });
    const stop = (e) => e.stopPropagation();
    box.addEventListener("click", stop);
    if (alert.state === "open") {
      box.append(el("button", { class: "ack", title: "acknowledge: I am looking at it",
        onclick: () => changeAlert(alert.alert_id, { state: "acknowledged" }) }, "acknowledge"));
    }
    if (alert.state !== "closed") {
      const pick = el("select", { class: "close-as", "aria-label": "close with a disposition" },
        el("option", { value: "" }, "close as…"), DISPOSITIONS.map((d) => el("option", { value: d }, d.replace("_", " "))));
      pick.addEventListener("change", () => {
        if (pick.value) changeAlert(alert.alert_id, { state: "closed", disposition: pick.value });
      });
      box.append(pick);
    } else {
      box.append(el("button", { class: "reopen", onclick: () => changeAlert(alert.alert_id, { state: "open" }) }, "reopen"));
    }
    return box;
  }

  const scoreClass = (s) => (s >= 80 ? "s-hi" : s >= 60 ? "s-mid" : "s-lo");
  function reasonTexts(alert, n = 3) { return (alert.reasons || []).slice(0, n).map((r) => r.text); }

  // ---- alert queue -------------------------------------------------------------------------
  async function loadQueue() {
    const state = $("#queue-state").value;
    const asked = (S.queueAsked = (S.queueAsked || 0) + 1);
    const rows = await api("api/alerts", { state, start: iso(Date.now() - 365 * DAY_MS), limit: 500 });
    // a slower answer to an older question (another state filter) must not overwrite a newer one
    if (asked !== S.queueAsked || state !== $("#queue-state").value) return;
    rows.sort((a, b) => b.peak_score - a.peak_score || ms(b.opened_at) - ms(a.opened_at));
    S.queue = rows;
    renderQueue();
  }
  function renderQueue(force = false) {
    const list = $("#alert-queue");
    // re-draw only what changed: a refresh must not pull a control from under the analyst's hand
    const signature = JSON.stringify([S.selectedAlert, S.queue.map((a) => [a.alert_id, a.state, a.disposition, a.peak_score, a.posts])]);
    if (!force && signature === list.dataset.signature) return;
    if (!force && list.contains(document.activeElement) && document.activeElement.tagName === "SELECT") return;
    list.dataset.signature = signature;
    list.replaceChildren();
    $("#queue-count").textContent = `${S.queue.length} alert${S.queue.length === 1 ? "" : "s"}`;
    if (!S.queue.length) {
      list.append(el("li", { class: "empty" }, "No alerts in this state over the last year."));
      return;
    }
    for (const a of S.queue) {
      const li = el("li", { "data-alert-id": a.alert_id, "data-state": a.state, "data-ticker": a.ticker,
        class: S.selectedAlert === a.alert_id ? "selected" : null, onclick: () => focusAlert(a) },
      el("div", { class: "row1" },
        el("span", { class: `score ${scoreClass(a.peak_score)}`, title: "peak risk score" }, a.peak_score.toFixed(0)),
        el("span", { class: "tk" }, a.ticker),
        el("span", { class: `state ${a.state}` }, a.state + (a.disposition ? ` · ${a.disposition.replace("_", " ")}` : "")),
        el("span", { class: "muted" }, `opened ${ist(a.opened_at)}`)),
      el("ul", { class: "reasons" }, reasonTexts(a).map((t) => el("li", {}, t))),
      el("div", { class: "row1" }, el("span", { class: "muted" }, `${a.posts} posts in evidence · peak ${ist(a.peak_ts)}`)),
      alertActions(a));
      list.append(li);
    }
  }
  $("#queue-state").addEventListener("change", () => loadQueue().catch((e) => toast(e.message, true)));

  // ---- stocks, trending ---------------------------------------------------------------------
  async function loadStocks() {
    const rows = await api("api/stocks");
    S.stocks = new Map(rows.map((r) => [r.ticker, r]));
    let newest = null;
    for (const r of rows) if (r.last_ts && (newest == null || ms(r.last_ts) > newest)) newest = ms(r.last_ts);
    S.marketNow = newest;
    const list = $("#tickers");
    // the label carries the summary the cache keeps: latest risk and open alerts
    const label = (r) => [r.name, r.risk_score != null ? `risk ${Math.round(r.risk_score)}` : null,
      r.open_alerts ? `${r.open_alerts} open alert${r.open_alerts > 1 ? "s" : ""}` : null].filter(Boolean).join(" · ");
    list.replaceChildren(...rows.filter((r) => r.bars > 0).map((r) => el("option", { value: r.ticker }, label(r))));
  }

  async function loadTrending() {
    const end = S.marketNow ? Math.min(Date.now(), S.marketNow + 60e3) : null;
    const body = await api("api/trending", { hours: 24, end: end ? iso(end) : null, limit: 12 });
    $("#trending-window").textContent = `24 h to ${ist(body.end)}`;
    const tbody = $("#trending tbody");
    tbody.replaceChildren();
    if (!body.tickers.length) {
      tbody.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no chatter z-scores in the window")));
    }
    for (const t of body.tickers) {
      tbody.append(el("tr", { class: "click", "data-ticker": t.ticker, onclick: () => openTicker(t.ticker, S.interval) },
        el("td", {}, el("b", {}, t.ticker)), el("td", {}, num(t.max_posts_z, 1)), el("td", {}, t.max_posts_60m),
        el("td", {}, num(t.max_promo_z, 1)), el("td", {}, ist(t.peak_ts, { zone: false }))));
    }
  }

  // ---- the timeline -------------------------------------------------------------------------
  function viewFor(ticker, interval, day, focus) {
    // focus: {start, end} of an alert's evidence (ms), or null for the ticker's latest data
    const stock = S.stocks.get(ticker);
    const latest = stock && stock.last_ts ? ms(stock.last_ts) : Date.now();
    if (interval === "1m") {
      let start, end;
      if (focus) {
        start = istMidnight(istDay(focus.start));
        end = istMidnight(istDay(focus.end)) + DAY_MS;
      } else {
        start = istMidnight(day || istDay(latest));
        end = start + DAY_MS;
      }
      return { start, end, live: latest < end };
    }
    const anchor = focus ? focus.end : latest;
    const start = istMidnight(istDay(anchor - SPAN_MS[interval]));
    const end = focus ? Math.max(istMidnight(istDay(anchor)) + DAY_MS, start + DAY_MS) : start + SPAN_MS[interval] + DAY_MS;
    return { start, end, live: latest < end || !focus };
  }

  /** the end of what the view asks for: its end, or now (bounded by the API's maximum) when live */
  function fetchEnd(from, interval) {
    const v = S.view;
    if (!v.live) return v.end;
    return Math.min(Math.max(Date.now() + 60e3, v.end), from + MAX_RANGE_MS[interval]);
  }

  async function openTicker(ticker, interval, { day = null, focus = null } = {}) {
    ticker = (ticker || "").trim().toUpperCase();
    if (!ticker) return;
    S.ticker = ticker;
    S.interval = interval;
    S.view = viewFor(ticker, interval, day, focus);
    S.day = istDay(S.view.start);
    $("#ticker").value = ticker;
    $("#day").value = S.day;
    for (const b of document.querySelectorAll(".seg button")) b.classList.toggle("on", b.dataset.interval === interval);
    $("label.day").hidden = interval !== "1m"; // a day is what a 1m view shows; 1h and 1d show a span
    history.replaceState(null, "", `#ticker=${ticker}&interval=${interval}${interval === "1m" ? "&day=" + S.day : ""}`);
    const title = $("#timeline-title");
    title.textContent = `${ticker} · loading…`;
    try {
      await loadTimeline();
    } catch (e) {
      title.textContent = `${ticker}: ${e.message}`;
      title.classList.add("err");
      S.bars = []; S.risk = []; S.posts = new Map(); S.filings = []; S.alerts = [];
      drawTimeline();
      return;
    }
    title.classList.remove("err");
  }

  async function loadTimeline() {
    const { ticker, interval } = S;
    const v = S.view;
    const end = fetchEnd(v.start, interval);
    const range = { start: iso(v.start), end: iso(end) };
    const postsStart = Math.max(v.start, end - 365 * DAY_MS);
    const [prices, risk, posts, filings, alerts] = await Promise.all([
      api(`api/stocks/${ticker}/prices`, { ...range, interval }),
      api(`api/stocks/${ticker}/risk/history`, { ...range, interval }),
      api(`api/stocks/${ticker}/posts`, { start: iso(postsStart), end: range.end, limit: 1000 }),
      api(`api/stocks/${ticker}/filings`, { ...range, limit: 500 }),
      api("api/alerts", { ticker, ...range, limit: 500 }),
    ]);
    if (ticker !== S.ticker || interval !== S.interval || v !== S.view) return; // a newer view won
    S.bars = prices.bars.map((b) => ({ ...b, t: ms(b.ts) }));
    S.risk = risk.points.map((p) => ({ ...p, t: ms(p.ts) }));
    S.posts = new Map(posts.posts.map((p) => [`${p.platform}:${p.post_id}`, { ...p, t: ms(p.ts) }]));
    S.filings = filings.filings.map((f) => ({ ...f, t: ms(f.ts) }));
    S.alerts = alerts.map((a) => ({ ...a, t: ms(a.opened_at) }));
    const chart = $("#price-chart");
    chart.dataset.start = iso(v.start);
    chart.dataset.end = iso(end);
    drawTimeline();
  }

  /** live: ask for what is newer than what the view holds, and merge it in */
  async function pollTimeline() {
    const v = S.view;
    if (!S.ticker || !v || !v.live) return;
    const { ticker, interval } = S;
    const lastBar = S.bars.length ? S.bars[S.bars.length - 1].t : v.start;
    const lastRisk = S.risk.length ? S.risk[S.risk.length - 1].t : v.start;
    const lastPost = Math.max(v.start, ...[...S.posts.values()].map((p) => p.t)) - 15 * 60e3;
    const [prices, risk, posts, alerts] = await Promise.all([
      api(`api/stocks/${ticker}/prices`, { start: iso(lastBar), end: iso(fetchEnd(lastBar, interval)), interval }),
      api(`api/stocks/${ticker}/risk/history`, { start: iso(lastRisk), end: iso(fetchEnd(lastRisk, interval)), interval }),
      api(`api/stocks/${ticker}/posts`, { start: iso(Math.max(v.start, lastPost)),
        end: iso(fetchEnd(Math.max(v.start, lastPost), "1h")), limit: 1000 }),
      api("api/alerts", { ticker, start: iso(v.start), end: iso(fetchEnd(v.start, interval)), limit: 500 }),
    ]);
    if (ticker !== S.ticker || interval !== S.interval || v !== S.view) return;
    let changed = false;
    const fresh = prices.bars.map((b) => ({ ...b, t: ms(b.ts) }));
    if (fresh.length) {
      const kept = S.bars.filter((b) => b.t < fresh[0].t);
      const merged = kept.concat(fresh);
      if (merged.length !== S.bars.length || JSON.stringify(fresh) !== JSON.stringify(S.bars.slice(kept.length))) {
        S.bars = merged;
        changed = true;
      }
    }
    const freshRisk = risk.points.map((p) => ({ ...p, t: ms(p.ts) }));
    if (freshRisk.length) {
      const kept = S.risk.filter((p) => p.t < freshRisk[0].t);
      if (kept.length + freshRisk.length !== S.risk.length || freshRisk[freshRisk.length - 1].score !== S.risk[S.risk.length - 1]?.score) {
        changed = true;
      }
      S.risk = kept.concat(freshRisk);
    }
    for (const p of posts.posts) {
      const key = `${p.platform}:${p.post_id}`;
      if (!S.posts.has(key)) { S.posts.set(key, { ...p, t: ms(p.ts) }); changed = true; }
    }
    const alertsNow = alerts.map((a) => ({ ...a, t: ms(a.opened_at) }));
    if (JSON.stringify(alertsNow.map((a) => [a.alert_id, a.state, a.last_bar_ts, a.peak_score]))
        !== JSON.stringify(S.alerts.map((a) => [a.alert_id, a.state, a.last_bar_ts, a.peak_score]))) {
      S.alerts = alertsNow;
      changed = true;
    }
    if (changed) drawTimeline();
  }

  async function refreshTickerAlerts() {
    if (!S.view) return;
    const alerts = await api("api/alerts", { ticker: S.ticker, start: iso(S.view.start),
      end: iso(fetchEnd(S.view.start, S.interval)), limit: 500 });
    S.alerts = alerts.map((a) => ({ ...a, t: ms(a.opened_at) }));
    drawTimeline();
  }

  function bucketOf(t, interval) {
    if (interval === "1d") return Math.floor((t + IST_OFFSET_MS) / DAY_MS) * DAY_MS - IST_OFFSET_MS;
    return Math.floor(t / BUCKET_MS[interval]) * BUCKET_MS[interval];
  }

  /** the markers over the chart: posts grouped per bar, filings, alerts (each with its episode) */
  function buildMarkers() {
    const groups = new Map();
    for (const p of S.posts.values()) {
      const b = bucketOf(p.t, S.interval);
      if (!groups.has(b)) groups.set(b, []);
      groups.get(b).push(p);
    }
    const markers = [];
    for (const [b, posts] of groups) {
      posts.sort((x, y) => y.t - x.t);
      const promo = posts.some((p) => p.is_pump_signal);
      markers.push({ kind: "posts", t: b, lane: 0, r: Math.min(9, 3 + 1.6 * Math.log2(posts.length)), promo, items: posts });
    }
    for (const f of S.filings) markers.push({ kind: "filing", t: bucketOf(f.t, S.interval), lane: 1, r: 5, item: f });
    for (const a of S.alerts) markers.push({ kind: "alert", t: bucketOf(a.t, S.interval), lane: 2, r: 7, item: a });
    return markers;
  }

  const LANE_Y = [9, 24, 40]; // CSS px from the top of the plot

  function drawCandles(u) {
    const [xs, o, h, l, c] = u.data;
    if (!xs.length) return;
    const ctx = u.ctx;
    const [i0, i1] = [u.series[0].idxs ? u.series[0].idxs[0] : 0, u.series[0].idxs ? u.series[0].idxs[1] : xs.length - 1];
    const span = Math.max(1, i1 - i0 + 1);
    const px = u.bbox.width / span;
    const body = Math.max(1, Math.min(14 * uPlot.pxRatio, px * 0.7));
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    for (let i = i0; i <= i1; i++) {
      if (o[i] == null) continue;
      const x = Math.round(u.valToPos(i, "x", true)); // ordinal x: bar i sits at i
      const up = c[i] >= o[i];
      ctx.strokeStyle = ctx.fillStyle = up ? "#1a7f37" : "#cf222e";
      ctx.lineWidth = Math.max(1, uPlot.pxRatio);
      ctx.beginPath();
      ctx.moveTo(x, u.valToPos(h[i], "y", true));
      ctx.lineTo(x, u.valToPos(l[i], "y", true));
      ctx.stroke();
      const yo = u.valToPos(o[i], "y", true), yc = u.valToPos(c[i], "y", true);
      ctx.fillRect(x - body / 2, Math.min(yo, yc), body, Math.max(1, Math.abs(yc - yo)));
    }
    ctx.restore();
  }

  /** where a time sits on the ordinal x axis (bars side by side, no overnight or weekend gaps):
   * on its bar, or halfway to the next bar when it falls between two; null outside the bars */
  function xIndex(t) {
    const xs = S.xs || [];
    const s = t / 1e3, bucket = BUCKET_MS[S.interval] / 1e3;
    if (!xs.length || s < xs[0] || s >= xs[xs.length - 1] + bucket) return null;
    let lo = 0, hi = xs.length - 1;
    while (lo < hi) { // the last bar at or before s
      const mid = (lo + hi + 1) >> 1;
      if (xs[mid] <= s) lo = mid; else hi = mid - 1;
    }
    return s < xs[lo] + bucket ? lo : lo + 0.5;
  }

  function drawMarkers(u) {
    const ctx = u.ctx, pr = uPlot.pxRatio;
    const left = u.bbox.left, top = u.bbox.top, width = u.bbox.width / pr;
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    // alert episodes: a band from the opening bar to the last bar
    for (const a of S.alerts) {
      const i0 = xIndex(ms(a.opened_at)), i1 = xIndex(ms(a.last_bar_ts));
      if (i0 == null && i1 == null) continue;
      const x0 = u.valToPos((i0 == null ? 0 : i0) - 0.5, "x", true);
      const x1 = u.valToPos((i1 == null ? S.xs.length - 1 : i1) + 0.5, "x", true);
      ctx.fillStyle = a.state === "closed" ? "rgba(87,96,106,0.08)" : "rgba(207,34,46,0.10)";
      ctx.fillRect(x0, top, Math.max(2 * pr, x1 - x0), u.bbox.height);
    }
    const hits = [];
    for (const m of S.markers) {
      const idx = xIndex(m.t);
      if (idx == null) continue;
      const x = u.valToPos(idx, "x");
      if (x < -2 || x > width + 2) continue;
      const y = LANE_Y[m.lane];
      hits.push({ ...m, x, y });
      const cx = left + x * pr, cy = top + y * pr, r = m.r * pr;
      ctx.beginPath();
      if (m.kind === "posts") {
        ctx.fillStyle = m.promo ? "#e36209" : "#2f81f7";
        ctx.globalAlpha = 0.85;
        ctx.arc(cx, cy, r, 0, 2 * Math.PI);
      } else if (m.kind === "filing") {
        ctx.fillStyle = "#8250df";
        ctx.globalAlpha = 0.95;
        ctx.rect(cx - r, cy - r, 2 * r, 2 * r);
      } else {
        ctx.fillStyle = m.item.state === "closed" ? "#57606a" : "#cf222e";
        ctx.globalAlpha = 1;
        ctx.moveTo(cx, cy - r);
        ctx.lineTo(cx + r, cy + r);
        ctx.lineTo(cx - r, cy + r);
        ctx.closePath();
      }
      ctx.fill();
    }
    ctx.restore();
    S.markerHits = hits;
  }

  function markerAt(x, y) {
    let best = null, bestD = Infinity;
    for (const m of S.markerHits || []) {
      const d = Math.hypot(m.x - x, m.y - y);
      if (d <= m.r + 4 && d < bestD) { best = m; bestD = d; }
    }
    return best;
  }

  function priceChartOpts(width) {
    const interval = S.interval;
    return {
      width, height: 330,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), IST),
      cursor: { sync: { key: "sentinel-x" }, drag: { x: true, y: false } },
      legend: { live: true },
      // ordinal x (distr 2): bars side by side, nights and weekends take no room; x scale values are bar indices
      scales: { x: { time: true, distr: 2 }, vol: { range: (u, min, max) => [0, (max || 1) * 4] } },
      series: [
        { label: "IST", value: (u, v) => (v == null ? "-" : ist(v * 1e3, { zone: false })) },
        { label: "open", stroke: "transparent", paths: () => null, points: { show: false }, value: (u, v) => num(v) },
        { label: "high", stroke: "transparent", paths: () => null, points: { show: false }, value: (u, v) => num(v) },
        { label: "low", stroke: "transparent", paths: () => null, points: { show: false }, value: (u, v) => num(v) },
        { label: "close", stroke: "#24292f", paths: () => null, points: { show: false }, value: (u, v) => num(v) },
        { label: "volume", scale: "vol", stroke: "rgba(87,96,106,0.7)", fill: "rgba(87,96,106,0.28)",
          paths: uPlot.paths.bars({ size: [0.7, 16] }), points: { show: false }, value: (u, v) => compact(v) },
      ],
      axes: [
        timeAxis,
        { label: "price (₹)", labelSize: 18, stroke: "#57606a", size: 64, grid: { stroke: "#eef0f3" }, values: (u, vals) => vals.map((v) => num(v)) },
        { scale: "vol", side: 1, stroke: "#8c959f", grid: { show: false }, size: 52, values: (u, vals) => vals.map(compact) },
      ],
      hooks: {
        draw: [drawCandles, drawMarkers],
        setScale: [(u, key) => {
          if (key === "x" && S.charts.risk) {
            const { min, max } = u.scales.x;
            const r = S.charts.risk.scales.x;
            if (r.min !== min || r.max !== max) S.charts.risk.setScale("x", { min, max });
          }
        }],
        ready: [(u) => {
          u.over.addEventListener("click", (e) => {
            const rect = u.over.getBoundingClientRect();
            const m = markerAt(e.clientX - rect.left, e.clientY - rect.top);
            if (m) openMarker(m);
          });
          u.over.addEventListener("mousemove", (e) => {
            const rect = u.over.getBoundingClientRect();
            u.over.style.cursor = markerAt(e.clientX - rect.left, e.clientY - rect.top) ? "pointer" : "";
          });
        }],
      },
    };
  }

  function riskChartOpts(width) {
    const guide = (u) => {
      const ctx = u.ctx;
      ctx.save();
      ctx.setLineDash([4 * uPlot.pxRatio, 4 * uPlot.pxRatio]);
      ctx.lineWidth = uPlot.pxRatio;
      for (const [level, color] of [[60, "#cf222e"], [40, "#b35900"]]) {
        const y = Math.round(u.valToPos(level, "y", true));
        ctx.strokeStyle = color;
        ctx.beginPath();
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
        ctx.stroke();
      }
      ctx.restore();
    };
    return {
      width, height: 130,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), IST),
      cursor: { sync: { key: "sentinel-x" }, drag: { x: true, y: false } },
      scales: { x: { time: true, distr: 2 }, y: { range: [0, 100] } },
      series: [
        { label: "IST", value: (u, v) => (v == null ? "-" : ist(v * 1e3, { zone: false })) },
        { label: "risk", stroke: "#cf222e", width: 1.5, fill: "rgba(207,34,46,0.12)", points: { show: false },
          value: (u, v) => (v == null ? "-" : v.toFixed(1)) },
        { label: "volume", stroke: "#57606a", width: 1, show: false, points: { show: false }, value: (u, v) => num(v, 2) },
        { label: "price", stroke: "#0a7ea4", width: 1, show: false, points: { show: false }, value: (u, v) => num(v, 2) },
        { label: "promo", stroke: "#e36209", width: 1, show: false, points: { show: false }, value: (u, v) => num(v, 2) },
        { label: "chatter", stroke: "#8250df", width: 1, show: false, points: { show: false }, value: (u, v) => num(v, 2) },
      ],
      axes: [
        timeAxis,
        { stroke: "#57606a", size: 64, grid: { stroke: "#eef0f3" }, splits: () => [0, 20, 40, 60, 80, 100] },
        // an empty right axis as wide as the price chart's volume axis: both plots span the same x pixels
        { side: 1, size: 52, grid: { show: false }, ticks: { show: false }, splits: () => [0, 100], values: () => ["", ""] },
      ],
      hooks: { draw: [guide] },
    };
  }

  function drawTimeline() {
    S.markers = buildMarkers();
    const chartEl = $("#price-chart"), riskEl = $("#risk-chart");
    const width = Math.max(300, chartEl.clientWidth || 800);
    const xs = S.bars.map((b) => b.t / 1e3);
    S.xs = xs;
    const data = [xs, S.bars.map((b) => b.open), S.bars.map((b) => b.high), S.bars.map((b) => b.low),
      S.bars.map((b) => b.close), S.bars.map((b) => b.volume)];
    // risk on the bars' own x values (a bar without a score is a gap), so both charts share x
    const riskAt = new Map(S.risk.map((p) => [p.t, p]));
    const riskXs = xs;
    const pick = (k) => riskXs.map((x) => { const p = riskAt.get(x * 1e3); return p ? p[k] : null; });
    const riskData = [riskXs, pick("score"), pick("volume_score"), pick("price_score"), pick("promo_score"), pick("chatter_score")];
    const reuse = S.charts.price && S.charts.price._interval === S.interval && S.charts.price._ticker === S.ticker;
    if (reuse) {
      S.charts.price.setData(data);
      S.charts.risk.setData(riskData);
    } else {
      if (S.charts.price) S.charts.price.destroy();
      if (S.charts.risk) S.charts.risk.destroy();
      S.charts.price = S.charts.risk = null;
      chartEl.replaceChildren();
      riskEl.replaceChildren();
      S.charts.price = new uPlot(priceChartOpts(width), data, chartEl);
      S.charts.price._interval = S.interval;
      S.charts.price._ticker = S.ticker;
      S.charts.risk = new uPlot(riskChartOpts(width), riskData, riskEl);
    }
    if (xs.length) S.charts.price.setScale("x", { min: -0.6, max: xs.length - 0.4 }); // half a bar either side
    chartEl.dataset.bars = String(S.bars.length);
    chartEl.dataset.ticker = S.ticker || "";
    chartEl.dataset.interval = S.interval;
    chartEl.dataset.lastTs = S.bars.length ? iso(S.bars[S.bars.length - 1].t) : "";
    chartEl.dataset.markers = String(S.markers.length);
    riskEl.dataset.points = String(S.risk.length);
    const stock = S.stocks.get(S.ticker);
    const last = S.bars[S.bars.length - 1];
    const offChart = [...S.posts.values()].filter((p) => xIndex(bucketOf(p.t, S.interval)) == null).length;
    $("#timeline-title").textContent = `${S.ticker}${stock ? " · " + stock.name : ""} · ${S.interval} bars ` +
      `${ist(S.view.start)} … ${S.view.live ? "now" : ist(S.view.end)} · ${S.bars.length} bars` +
      (last ? ` · last ${num(last.close)} at ${ist(last.t)}` : "") +
      ` · ${S.posts.size} posts, ${S.filings.length} filings, ${S.alerts.length} alerts` +
      (offChart ? ` (${offChart} posts outside the bars shown)` : "") + (S.view.live ? " · live" : "");
    const lastRisk = S.risk[S.risk.length - 1];
    $("#risk-now").textContent = lastRisk ? `latest ${lastRisk.score.toFixed(1)} at ${ist(lastRisk.t)}` : "no risk scores in this range";
  }

  // ---- details of a marker -----------------------------------------------------------------------
  function detailBox(title, ...body) {
    const box = $("#detail");
    box.hidden = false;
    box.replaceChildren(el("button", { class: "close", "aria-label": "close", onclick: () => { box.hidden = true; S.selectedAlert = null; } }, "×"),
      el("h4", {}, title), ...body);
    return box;
  }
  function postNode(p) {
    return el("div", { class: "post" },
      el("div", { class: "meta" }, `${ist(p.ts)} · ${p.platform}${p.author ? " · " + p.author : ""}` +
        (p.engagement != null ? ` · engagement ${p.engagement}` : "") +
        (p.promo_score != null ? ` · promo ${p.promo_score.toFixed(2)}` : "") +
        (p.sentiment != null ? ` · sentiment ${p.sentiment.toFixed(2)}` : "")),
      p.is_pump_signal ? el("span", { class: "promo-tag" }, "promotional " +
        ((p.promo_evidence || []).length ? `(${p.promo_evidence.join(", ")}) ` : "")) : null,
      el("span", { class: "text" }, p.text),
      p.url ? el("span", {}, " ", el("a", { href: p.url, target: "_blank", rel: "noopener noreferrer" }, "open")) : null);
  }
  function openMarker(m) {
    if (m.kind === "posts") {
      detailBox(`${m.items.length} post${m.items.length === 1 ? "" : "s"} · ${ist(m.t)}${S.interval === "1m" ? "" : " bucket"}`,
        ...m.items.slice(0, 200).map(postNode));
    } else if (m.kind === "filing") {
      const f = m.item;
      detailBox(`Filing · ${f.exchange} · ${ist(f.ts)}`, el("p", {}, el("b", {}, f.subject)),
        el("p", {}, f.company), f.details ? el("p", {}, f.details) : null,
        f.attachment_url ? el("a", { href: f.attachment_url, target: "_blank", rel: "noopener noreferrer" }, "attachment") : null);
    } else {
      showAlert(m.item.alert_id);
    }
  }

  async function showAlert(alertId) {
    S.selectedAlert = alertId;
    for (const li of document.querySelectorAll("#alert-queue li[data-alert-id]")) {
      li.classList.toggle("selected", li.dataset.alertId === alertId);
    }
    try {
      renderAlertDetail(await api(`api/alerts/${encodeURIComponent(alertId)}`));
    } catch (e) {
      detailBox(`Alert ${alertId}`, el("p", { class: "err" }, e.message));
    }
  }

  async function renderAlertDetail(a) {
    const wanted = new Set(a.evidence.post_ids);
    let posts = [...S.posts.values()].filter((p) => wanted.has(`${p.platform}:${p.post_id}`));
    const box = detailBox(`Alert ${a.alert_id}`,
      el("p", {}, el("span", { class: `score ${scoreClass(a.peak_score)}` }, a.peak_score.toFixed(0)), " ",
        el("b", {}, a.ticker), ` (${a.exchange}) `, el("span", { class: `state ${a.state}` }, a.state +
          (a.disposition ? ` · ${a.disposition.replace("_", " ")}` : "")), " ", alertActions(a)),
      el("table", {},
        el("tr", {}, el("th", {}, "opened"), el("td", {}, ist(a.opened_at)), el("th", {}, "peak"), el("td", {}, ist(a.peak_ts))),
        el("tr", {}, el("th", {}, "last bar"), el("td", {}, ist(a.last_bar_ts)), el("th", {}, "detected by"), el("td", {}, a.detected_by))),
      el("h4", {}, "Reasons at the peak"),
      el("ul", { class: "reasons" }, (a.reasons || []).map((r) => el("li", {}, r.text +
        (r.strength != null ? ` (strength ${r.strength.toFixed(2)})` : "")))),
      el("h4", {}, `Evidence: bars ${ist(a.evidence.start)} … ${ist(a.evidence.end)}, ${a.evidence.post_ids.length} posts`),
      el("div", { class: "evidence-posts" }, posts.length ? posts.slice(0, 100).map(postNode) : el("p", { class: "muted" }, "loading posts…")),
      el("h4", {}, "Audit trail"),
      el("table", { class: "tbl" }, el("tr", {}, ["at (IST)", "actor", "action", "state", "disposition", "note"].map((h) => el("th", {}, h))),
        a.events.map((e) => el("tr", {}, el("td", {}, ist(e.at, { zone: false })), el("td", {}, e.actor), el("td", {}, e.action),
          el("td", {}, `${e.from_state || "-"} → ${e.to_state}`), el("td", {}, e.disposition || ""), el("td", {}, e.note || "")))));
    box.dataset.alertId = a.alert_id;
    box.dataset.state = a.state;
    if (posts.length < wanted.size) {
      // evidence posts outside the loaded view: ask for the evidence range itself
      try {
        const body = await api(`api/stocks/${a.ticker}/posts`, { start: iso(ms(a.evidence.start)),
          end: iso(ms(a.evidence.end) + 60e3), limit: 1000 });
        posts = body.posts.filter((p) => wanted.has(`${p.platform}:${p.post_id}`));
      } catch (_) { /* keep what we have */ }
      const holder = $(".evidence-posts", box);
      if (holder && S.selectedAlert === a.alert_id) {
        holder.replaceChildren(...(posts.length ? posts.slice(0, 100).map(postNode) : [el("p", { class: "muted" }, "no posts")]));
      }
    }
  }

  function focusAlert(a) {
    S.selectedAlert = a.alert_id;
    const focus = { start: ms(a.evidence_start || a.opened_at), end: ms(a.last_bar_ts) };
    openTicker(a.ticker, "1m", { focus }).then(() => showAlert(a.alert_id));
  }

  // ---- data quality and pipeline health ------------------------------------------------------
  function badge(status) {
    const cls = (status || "no data").replace(/\s+/g, "");
    return el("span", { class: `badge ${cls}` }, status || "no data");
  }
  async function loadHealth() {
    const [report, freshness] = await Promise.all([api("api/data/quality", { hours: 24 }), api("api/data/freshness")]);
    $("#health-window").textContent = `last ${report.window_hours} h, as of ${ist(report.generated_at)}`;
    const tiles = $("#datasets");
    tiles.replaceChildren();
    for (const [name, d] of Object.entries(report.datasets)) {
      tiles.append(el("div", { class: "tile", "data-dataset": name, "data-status": d.status },
        el("div", {}, el("span", { class: "name" }, name), " ", badge(d.status)),
        el("div", { class: "muted" }, `${num(d.rows_in, 0)} rows · valid ${pct(d.validity)} · quarantined ${num(d.rows_quarantined, 0)}`),
        d.sources.map((s) => el("div", {}, badge(s.status), ` ${s.source}: ${num(s.rows_in, 0)} rows, valid ${pct(s.validity)}, last ${ist(s.last_seen)}`,
          s.alerts.map((al) => el("div", { class: "err" }, al.message))))));
    }
    const ftb = $("#freshness tbody");
    ftb.replaceChildren(...freshness.map((f) => el("tr", {}, el("td", {}, f.dataset), el("td", {}, f.source),
      el("td", { title: ist(f.newest_ingested_at) }, `${age(f.age_s)} ago`), el("td", {}, ist(f.newest_event_ts, { zone: false })),
      el("td", {}, num(f.rows, 0)))));
    if (!freshness.length) ftb.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no data yet")));
    const ptb = $("#pipelines tbody");
    ptb.replaceChildren(...report.pipelines.map((p) => el("tr", {}, el("td", {}, p.pipeline), el("td", {}, badge(p.status)),
      el("td", {}, num(p.runs, 0)), el("td", {}, pct(p.success_rate)), el("td", {}, ist(p.last_run_at, { zone: false })),
      el("td", { class: p.last_error ? "err" : "muted" }, p.last_error || "none"))));
    if (!report.pipelines.length) ptb.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no runs in the window")));
    const alerts = report.alerts || [];
    $("#quality-alerts").replaceChildren(...(alerts.length ? [el("h3", {}, "Quality alerts"),
      el("table", { class: "tbl" }, alerts.slice(0, 20).map((a) => el("tr", {}, el("td", {}, ist(a.raised_at, { zone: false })),
        el("td", {}, badge(a.severity)), el("td", {}, `${a.dataset}/${a.source}`), el("td", {}, a.message))))] : []));
    drawQualityCharts(report.trend || []);
  }

  function drawQualityCharts(trend) {
    const keys = [...new Set(trend.map((r) => `${r.dataset}/${r.source}`))].sort();
    const xs = [...new Set(trend.map((r) => ms(r.bucket)))].sort((a, b) => a - b);
    const at = new Map(trend.map((r) => [`${r.dataset}/${r.source}@${ms(r.bucket)}`, r]));
    const series = (field, map = (v) => v) => keys.map((k) => xs.map((x) => {
      const r = at.get(`${k}@${x}`);
      return r && r[field] != null ? map(r[field]) : null;
    }));
    const specs = [
      ["q-validity", "validity", (v) => v * 100, { range: [0, 100] }, (v) => `${v}%`],
      ["q-volume", "rows_in", (v) => v, { range: (u, min, max) => [0, Math.max(1, max) * 1.1] }, compact],
      ["q-freshness", "freshness_s", (v) => Math.max(0.01, v), { distr: 3 }, (v) => age(v)],
    ];
    for (const [id, field, map, yScale, fmt] of specs) {
      const host = document.getElementById(id);
      host.dataset.series = String(keys.length);
      host.dataset.points = String(xs.length);
      const data = [xs.map((x) => x / 1e3), ...series(field, map)];
      const width = Math.max(220, host.clientWidth || 300);
      if (S.charts.quality[id] && S.charts.quality[id]._keys === keys.join("|")) {
        S.charts.quality[id].setData(data);
        continue;
      }
      if (S.charts.quality[id]) S.charts.quality[id].destroy();
      host.replaceChildren();
      if (!keys.length) { host.append(el("p", { class: "muted" }, "no metrics in the window")); S.charts.quality[id] = null; continue; }
      const chart = new uPlot({
        width, height: 170,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), IST),
        scales: { x: { time: true }, y: yScale },
        legend: { show: true, live: false },
        series: [{ label: "IST" }, ...keys.map((k, i) => ({ label: k, stroke: PALETTE[i % PALETTE.length], width: 1.5,
          spanGaps: true, points: { show: xs.length < 60, size: 4 }, value: (u, v) => (v == null ? "-" : fmt(v)) }))],
        axes: [timeAxis,
          { stroke: "#57606a", size: 70, grid: { stroke: "#eef0f3" }, values: (u, vals) => vals.map((v) => (v == null ? "" : fmt(v))) }],
      }, data, host);
      chart._keys = keys.join("|");
      if (xs.length === 1) chart.setScale("x", { min: xs[0] / 1e3 - 3600, max: xs[0] / 1e3 + 3600 });
      S.charts.quality[id] = chart;
    }
  }

  // ---- the loop -----------------------------------------------------------------------------------
  function setLive(ok, message) {
    const live = $("#live");
    live.className = "live" + (ok ? "" : " down");
    live.textContent = ok ? `live · ${ist(Date.now(), { seconds: true, zone: false }).slice(11)}` : "offline";
    live.title = message || "refreshed every 5 s";
  }

  async function tick() {
    if (S.ticking) return;
    S.ticking = true;
    try {
      const jobs = [loadQueue(), pollTimeline()];
      if (Date.now() - S.slowAt >= SLOW_POLL_MS) {
        S.slowAt = Date.now();
        jobs.push(loadHealth(), loadTrending());
      }
      const results = await Promise.allSettled(jobs);
      const failed = results.filter((r) => r.status === "rejected");
      setLive(!failed.length, failed.length ? failed[0].reason.message : null);
    } finally {
      S.ticking = false;
    }
  }

  function readHash() {
    const out = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      const [k, v] = part.split("=");
      if (k) out[decodeURIComponent(k)] = decodeURIComponent(v || "");
    }
    return out;
  }

  $("#ticker-form").addEventListener("submit", (e) => {
    e.preventDefault();
    openTicker($("#ticker").value, S.interval, { day: S.interval === "1m" && $("#day").value ? $("#day").value : null });
  });
  for (const b of document.querySelectorAll(".seg button")) {
    b.addEventListener("click", () => openTicker($("#ticker").value || S.ticker, b.dataset.interval));
  }
  $("#day").addEventListener("change", () => {
    if ($("#day").value) openTicker($("#ticker").value || S.ticker, "1m", { day: $("#day").value });
  });
  window.addEventListener("resize", () => {
    const w = $("#price-chart").clientWidth;
    if (S.charts.price && w) { S.charts.price.setSize({ width: w, height: 330 }); S.charts.risk.setSize({ width: w, height: 130 }); }
  });

  async function start() {
    tickClock();
    setInterval(tickClock, 1000);
    setLinks();
    showTokenState();
    const hash = readHash();
    const interval = ["1m", "1h", "1d"].includes(hash.interval) ? hash.interval : "1m";
    await Promise.allSettled([loadStocks(), loadQueue()]);
    let ticker = hash.ticker;
    if (!ticker && S.queue.length) ticker = S.queue[0].ticker;
    if (!ticker) ticker = [...S.stocks.values()].find((s) => s.bars > 0)?.ticker || "RELIANCE";
    S.slowAt = Date.now();
    await Promise.allSettled([openTicker(ticker, interval, { day: hash.day || null }), loadHealth(), loadTrending()]);
    document.body.dataset.ready = "1";
    setLive(true);
    setInterval(() => { tick(); }, POLL_MS);
  }
  start().catch((e) => toast(e.message, true));
})();
