// predictd dashboard: fetches the JSON API and draws it. No framework, no external requests.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 30000;
const MIN_WIDTH = 320;

const $ = (id) => document.getElementById(id);

function query(params) {
  const kept = Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "");
  return new URLSearchParams(kept).toString();
}

const KEY_STORE = "predictd-api-key";

class NeedsKey extends Error {}

async function getJSON(path, params) {
  const url = params ? `${path}?${query(params)}` : path;
  const headers = { accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(url, { headers });
  if (response.status === 401 || response.status === 403) {
    throw new NeedsKey(`${url} answered HTTP ${response.status}: an API key with the read scope is needed`);
  }
  if (!response.ok) {
    throw new Error(`${url} answered HTTP ${response.status}`);
  }
  return response.json();
}

async function postJSON(path, body) {
  const headers = { accept: "application/json", "content-type": "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const message = answer && answer.error ? answer.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return answer;
}

function askForKey(message) {
  $("auth").hidden = false;
  $("error").textContent = message;
  $("error").hidden = false;
  document.body.dataset.state = "needs-key";
}

const format = {
  int: (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US")),
  ms: (n) => (n === null || n === undefined ? "–" : `${Number(n).toFixed(1)} ms`),
  pct: (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`),
  num: (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits)),
  time: (iso) => new Date(iso).toISOString().replace("T", " ").slice(0, 16) + " UTC",
};

function setStat(id, value, text) {
  const el = $(id);
  el.dataset.value = value === null || value === undefined ? "" : String(value);
  el.textContent = text;
}

function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function emptyChart(el, message) {
  el.replaceChildren();
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = message;
  el.append(p);
}

// Bars: [{label, value, title}] left to right.
function widthOf(el) {
  return Math.max(MIN_WIDTH, Math.round(el.clientWidth) || MIN_WIDTH);
}

function barChart(el, bars, { height = 170, formatValue = format.int, labelEvery = 1 } = {}) {
  if (!bars.length || bars.every((b) => !b.value)) {
    emptyChart(el, "no data in this window");
    return;
  }
  const WIDTH = widthOf(el);
  const top = 14, bottom = 22, left = 4;
  const max = Math.max(...bars.map((b) => b.value)) || 1;
  const plot = height - top - bottom;
  const step = (WIDTH - left) / bars.length;
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img" });
  root.append(svg("line", { class: "axis", x1: 0, x2: WIDTH, y1: top + plot, y2: top + plot }));
  root.append(svg("text", { x: left, y: 10 }, `max ${formatValue(max)}`));
  bars.forEach((bar, i) => {
    const h = (bar.value / max) * plot;
    const rect = svg("rect", {
      class: "bar",
      x: left + i * step + step * 0.1,
      y: top + plot - h,
      width: Math.max(1, step * 0.8),
      height: h,
      "data-value": bar.value,
    });
    rect.append(svg("title", {}, `${bar.title || bar.label}: ${formatValue(bar.value)}`));
    root.append(rect);
    if (i % labelEvery === 0) {
      root.append(svg("text", { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle" }, bar.label));
    }
  });
  el.replaceChildren(root);
}

// Lines: series = [{name, points: [{x (ms), y}]}], drawn over a shared time axis.
function lineChart(el, series, { height = 190, yMax = null, formatValue = format.num } = {}) {
  const all = series.flatMap((s) => s.points).filter((p) => p.y !== null && p.y !== undefined);
  if (!all.length) {
    emptyChart(el, "no data in this window");
    return;
  }
  const WIDTH = widthOf(el);
  const top = 16, bottom = 22, left = 4, right = 110;
  const xs = all.map((p) => p.x);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const max = yMax ?? (Math.max(...all.map((p) => p.y)) || 1);
  const plot = height - top - bottom;
  const span = WIDTH - left - right;
  const xOf = (x) => left + (x1 === x0 ? span / 2 : ((x - x0) / (x1 - x0)) * span);
  const yOf = (y) => top + plot - (y / max) * plot;
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img" });
  root.append(svg("line", { class: "axis", x1: 0, x2: WIDTH - right, y1: top + plot, y2: top + plot }));
  root.append(svg("text", { x: left, y: 11 }, `max ${formatValue(max)}`));
  root.append(svg("text", { x: left, y: height - 6 }, format.time(new Date(x0).toISOString())));
  root.append(svg("text", { x: WIDTH - right, y: height - 6, "text-anchor": "end" }, format.time(new Date(x1).toISOString())));
  series.forEach((s, i) => {
    const points = s.points.filter((p) => p.y !== null && p.y !== undefined);
    if (points.length > 1) {
      root.append(svg("polyline", { class: `s${i}`, points: points.map((p) => `${xOf(p.x)},${yOf(p.y)}`).join(" ") }));
    }
    for (const p of points) {
      const dot = svg("circle", { class: `dot${i}`, cx: xOf(p.x), cy: yOf(p.y), r: 2.5 });
      dot.append(svg("title", {}, `${s.name} ${format.time(new Date(p.x).toISOString())}: ${formatValue(p.y)}`));
      root.append(dot);
    }
    root.append(svg("text", { x: WIDTH - right + 8, y: top + 12 + i * 16 }, s.name));
    root.append(svg("circle", { class: `dot${i}`, cx: WIDTH - right + 2, cy: top + 8 + i * 16, r: 4 }));
  });
  el.replaceChildren(root);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function badge(text, kind) {
  const td = document.createElement("td");
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = text;
  td.append(span);
  return td;
}

function fillTable(table, rows, emptyText) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "empty");
    td.colSpan = table.tHead.rows[0].cells.length;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    body.append(tr);
  }
}

function interval(hours) {
  if (hours <= 2) return "minute";
  if (hours <= 72) return "hour";
  return "day";
}

function renderSummary(summary) {
  setStat("stat-total", summary.total, format.int(summary.total));
  setStat("stat-errors", summary.errors, format.int(summary.errors));
  setStat("stat-cache", summary.cache_hit_rate, format.pct(summary.cache_hit_rate));
  setStat("stat-confidence", summary.avg_confidence, format.num(summary.avg_confidence));
  setStat("stat-p50", summary.p50_latency_ms, format.ms(summary.p50_latency_ms));
  setStat("stat-p95", summary.p95_latency_ms, format.ms(summary.p95_latency_ms));
  setStat("stat-p99", summary.p99_latency_ms, format.ms(summary.p99_latency_ms));
}

const STEP_MS = { minute: 60e3, hour: 3600e3, day: 86400e3 };

// The API returns only buckets that saw traffic; the chart shows the whole window.
function filled(series, from) {
  const step = STEP_MS[series.interval];
  const byTime = new Map(series.points.map((p) => [new Date(p.ts).getTime(), p]));
  const buckets = [];
  for (let t = Math.floor(new Date(from).getTime() / step) * step; t <= Date.now(); t += step) {
    buckets.push(byTime.get(t) || { ts: new Date(t).toISOString(), count: 0 });
  }
  return buckets;
}

function renderTimeseries(series, from) {
  const points = filled(series, from);
  const short = (iso) => (series.interval === "day" ? iso.slice(5, 10) : iso.slice(11, 16));
  barChart(
    $("volume"),
    points.map((p) => ({ label: short(new Date(p.ts).toISOString()), value: p.count, title: format.time(p.ts) })),
    { labelEvery: Math.max(1, Math.ceil(points.length / 12)) },
  );
  const line = (key) => series.points.map((p) => ({ x: new Date(p.ts).getTime(), y: p[key] }));
  lineChart(
    $("latency"),
    [
      { name: "p50", points: line("p50_latency_ms") },
      { name: "p95", points: line("p95_latency_ms") },
      { name: "p99", points: line("p99_latency_ms") },
    ],
    { formatValue: format.ms },
  );
}

function renderDistribution(distribution) {
  const total = distribution.total;
  fillTable(
    $("labels"),
    distribution.labels.map((l) => {
      const row = [cell(String(l.label)), cell(format.int(l.count), "num"), cell(format.pct(total ? l.count / total : null), "num")];
      row[1].dataset.value = String(l.count);
      return row;
    }),
    "no predictions in this window",
  );
  barChart(
    $("confidence"),
    distribution.confidence.map((b) => ({ label: b.ge.toFixed(1), value: b.count, title: `${b.ge.toFixed(1)}–${b.lt.toFixed(1)}` })),
  );
}

function renderPerformance(performance) {
  const rows = [...performance.items].reverse();
  const at = (r) => new Date(r.computed_at).getTime();
  const realised = rows.map((r) => ({ x: at(r), y: r.metrics ? r.metrics.accuracy : null }));
  const estimated = rows.map((r) => ({ x: at(r), y: r.estimated ? r.estimated.accuracy : null }));
  lineChart($("accuracy"), [
    { name: "realised", points: realised },
    { name: "estimated", points: estimated },
  ], { yMax: 1 });
  const labelled = rows.some((r) => r.metrics && r.metrics.accuracy !== null);
  $("accuracy-note").textContent = rows.length
    ? labelled
      ? "Realised accuracy from feedback; estimated from confidence, before labels arrive."
      : "No feedback yet: realised accuracy appears once labels arrive (POST /feedback)."
    : "The monitor has not run for this model yet (predictd monitor run, or PREDICTD_MONITOR_INTERVAL_S).";
}

function renderDrift(reports) {
  const report = reports.items[0];
  const summary = $("drift-summary");
  if (!report) {
    summary.textContent = "No drift report yet: run `predictd drift run` or enable the monitor.";
    fillTable($("drift"), [], "no report");
    return;
  }
  summary.dataset.status = report.status;
  summary.textContent =
    `v${report.model_version}, ${format.time(report.computed_at)}: ` +
    (report.drift_detected ? "DRIFT DETECTED. " : "") + report.message;
  const entries = [
    ...Object.entries(report.features || {}),
    ...Object.entries(report.outputs || {}).map(([k, v]) => [`answers: ${k}`, v]),
  ];
  fillTable(
    $("drift"),
    entries.map(([name, f]) => {
      if (f.status !== "ok") {
        return [cell(name), cell("not tested"), cell("–"), cell("–"), cell("–"), cell(format.int(f.rows), "num"), cell("–")];
      }
      const row = [
        cell(name),
        cell(f.method),
        cell(format.num(f.statistic), "num"),
        cell(f.p_value === null ? "–" : format.num(f.p_value, 4), "num"),
        cell(format.num(f.psi), "num"),
        cell(format.int(f.rows), "num"),
        badge(f.drifted ? "yes" : "no", f.drifted ? "yes" : "no"),
      ];
      row[0].dataset.feature = name;
      row[2].dataset.value = String(f.statistic);
      return row;
    }),
    report.status === "ok" ? "no features" : "not tested",
  );
}

function renderAlerts(alerts) {
  fillTable(
    $("alerts"),
    alerts.items.map((a) => {
      const row = [badge(a.severity, a.severity), cell(a.rule), cell(a.model_name || "(server)"), cell(a.title), cell(a.status), cell(format.time(a.created_at))];
      row[1].dataset.id = String(a.id);
      return row;
    }),
    "no open alerts",
  );
}

// Pending actions. Their texts come from the agent's evidence: shown as text, never as HTML.
let canReview = false; // the key holds approve (or admin): buttons are offered
const EVIDENCE_CHARS = 300;

function age(iso) {
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function describe(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : format.num(value);
  if (typeof value !== "object") return String(value);
  if (Array.isArray(value)) return value.map(describe).join(", ");
  if (value.title || value.message) {  // an alert
    return [value.title, value.message].filter(Boolean).join(": ");
  }
  return Object.entries(value).map(([k, v]) => `${k}=${typeof v === "object" && v !== null ? JSON.stringify(v) : describe(v)}`).join(", ");
}

function evidenceCell(evidence) {
  const td = document.createElement("td");
  td.className = "evidence";
  const entries = Object.entries(evidence || {});
  if (!entries.length) {
    td.textContent = "–";
    return td;
  }
  const list = document.createElement("ul");
  for (const [key, value] of entries) {
    const item = document.createElement("li");
    const text = `${key}: ${describe(value)}`;
    item.dataset.key = key;
    item.textContent = text.length > EVIDENCE_CHARS ? `${text.slice(0, EVIDENCE_CHARS - 1)}…` : text;
    item.title = text;
    list.append(item);
  }
  td.append(list);
  return td;
}

function button(text, className, onClick) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = className;
  el.textContent = text;
  if (onClick) el.addEventListener("click", onClick);
  return el;
}

function actionsNote(text, kind) {
  const note = $("actions-note");
  note.textContent = text;
  note.dataset.kind = kind || "";
}

async function decide(action, verb, comment, td) {
  td.querySelectorAll("button, input").forEach((el) => { el.disabled = true; });
  try {
    await postJSON(`/actions/${action.id}/${verb}`, comment ? { comment } : {});
    actionsNote(`Action ${action.id} ${verb === "approve" ? "approved: the executor runs it shortly" : "rejected"}.`, "done");
  } catch (error) {
    actionsNote(`Action ${action.id} was not ${verb === "approve" ? "approved" : "rejected"}: ${error.message}`, "error");
  }
  await refreshActions(true);
}

function askWhyNot(action, td) {
  const form = document.createElement("form");
  const input = document.createElement("input");
  input.name = "comment";
  input.required = true;
  input.maxLength = 2000;
  input.placeholder = "why not? (required)";
  input.setAttribute("aria-label", `reason for rejecting action ${action.id}`);
  const confirm = button("Reject", "confirm-reject");
  confirm.type = "submit";
  form.append(input, confirm, button("Cancel", "cancel", () => refreshActions(true)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const comment = input.value.trim();
    if (comment) decide(action, "reject", comment, td);
  });
  td.replaceChildren(form);
  input.focus();
}

function decisionCell(action) {
  const td = document.createElement("td");
  td.className = "decision";
  td.hidden = !canReview;
  if (canReview) {
    td.append(
      button("Approve", "approve", () => decide(action, "approve", null, td)),
      button("Reject", "reject", () => askWhyNot(action, td)),
    );
  }
  return td;
}

function renderActions(listing, force) {
  // A reason being typed is not wiped by the periodic refresh.
  if (!force && $("actions").querySelector("form")) return;
  $("actions").tHead.rows[0].cells[6].hidden = !canReview;
  fillTable(
    $("actions"),
    listing.actions.map((a) => {
      const version = a.model_version === null ? "" : ` v${a.model_version}`;
      const row = [
        badge(a.risk, a.risk),
        cell(a.action_type.replaceAll("_", " ")),
        cell(`${a.model_name}${version}`),
        cell(a.reason),
        evidenceCell(a.evidence),
        cell(age(a.created_at)),
        decisionCell(a),
      ];
      row[5].title = `proposed ${format.time(a.created_at)} by ${a.requested_by}` +
        (a.expires_at ? `; expires ${format.time(a.expires_at)}` : "");
      return row;
    }),
    "no actions waiting for approval",
  );
  const rows = $("actions").tBodies[0].rows;
  listing.actions.forEach((a, i) => { rows[i].dataset.id = String(a.id); });
  // The outcome of a decision stays until the next one; otherwise, what this key may do.
  if (!["done", "error"].includes($("actions-note").dataset.kind)) {
    actionsNote(canReview
      ? "Approved actions run within seconds (the server's executor, or `predictd actions run`)."
      : "Read-only: a key with the approve scope can approve or reject here.", "info");
  }
}

async function refreshActions(force) {
  try {
    renderActions(await getJSON("/actions", { status: "pending" }), force);
  } catch (error) {
    actionsNote(`Could not load the actions: ${error.message}`, "load-error");
  }
}

async function loadIdentity() {
  const me = await getJSON("/whoami");
  canReview = me.scopes.includes("approve") || me.scopes.includes("admin");
  document.body.dataset.review = String(canReview);
}

async function loadModels(select) {
  const { models } = await getJSON("/models");
  const wanted = new URLSearchParams(location.search).get("model");
  select.replaceChildren(
    ...models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = m.production_version ? `${m.name} (v${m.production_version})` : m.name;
      return option;
    }),
  );
  const chosen = models.find((m) => m.name === wanted) || models.find((m) => m.production_version) || models[0];
  if (chosen) select.value = chosen.name;
}

async function refresh() {
  const model = $("model").value || null;
  const hours = Number($("hours").value);
  const from = new Date(Date.now() - hours * 3600 * 1000).toISOString();
  document.body.dataset.from = from;
  document.body.dataset.model = model || "";
  const scope = { from, model };
  try {
    const [summary, series, distribution, performance, drift, alerts, actions] = await Promise.all([
      getJSON("/analytics/summary", scope),
      getJSON("/analytics/timeseries", { ...scope, interval: interval(hours) }),
      getJSON("/analytics/distribution", scope),
      getJSON("/analytics/performance", { model, limit: 200 }),
      getJSON("/drift/reports", { model, limit: 1 }),
      getJSON("/alerts", { status: "open" }),
      getJSON("/actions", { status: "pending" }),
    ]);
    renderSummary(summary);
    renderTimeseries(series, from);
    renderDistribution(distribution);
    renderPerformance(performance);
    renderDrift(drift);
    renderAlerts(alerts);
    renderActions(actions);
    $("error").hidden = true;
    $("auth").hidden = true;
    $("updated").textContent = `updated ${format.time(new Date().toISOString())}, every ${REFRESH_MS / 1000} s`;
    document.body.dataset.state = "ready";
  } catch (error) {
    if (error instanceof NeedsKey) {
      askForKey(error.message);
      return;
    }
    $("error").textContent = `Could not load the figures: ${error.message}`;
    $("error").hidden = false;
    document.body.dataset.state = "error";
  }
}

async function start() {
  const hours = new URLSearchParams(location.search).get("hours");
  if (hours && [...$("hours").options].some((o) => o.value === hours)) $("hours").value = hours;
  $("auth").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("key").value.trim());
    $("auth").hidden = true;
    await loadModels($("model")).catch(() => {});
    await loadIdentity().catch(() => {});
    await refresh();
  });
  try {
    await loadModels($("model"));
    await loadIdentity();
  } catch (error) {
    if (error instanceof NeedsKey) {
      askForKey(error.message);
    } else {
      $("error").textContent = `Could not list the models: ${error.message}`;
      $("error").hidden = false;
    }
  }
  $("model").addEventListener("change", refresh);
  $("hours").addEventListener("change", refresh);
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
