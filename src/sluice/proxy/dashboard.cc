#include "sluice/proxy/dashboard.h"

namespace sluice::proxy {
namespace {

// Rates and percentiles are computed in the page from successive snapshots of cumulative
// counters, so the proxy keeps no time series and a page opened late still shows rates after
// two polls. Percentiles interpolate inside the histogram bucket that holds them, over the
// calls of the last five seconds.
constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice proxy</title>
<style>
  :root { --bg: #fafafa; --fg: #1d2330; --muted: #6b7280; --line: #e5e7eb; --ok: #15803d;
          --warn: #b45309; --bad: #b91c1c; --gone: #9ca3af; }
  body { margin: 0; padding: 16px 24px; background: var(--bg); color: var(--fg);
         font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 15px; margin: 20px 0 6px; }
  #status { color: var(--muted); }
  #status.stale { color: var(--bad); font-weight: 600; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line);
           white-space: nowrap; }
  th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state { font-weight: 600; }
  .state-ready { color: var(--ok); }
  .state-ejected, .state-draining { color: var(--warn); }
  .state-unhealthy { color: var(--bad); }
  tr.state-gone td { color: var(--gone); }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
            margin-right: 6px; vertical-align: middle; }
  #chart { background: #fff; border: 1px solid var(--line); width: 100%; height: 220px; }
  #chart text { fill: var(--muted); font-size: 11px; }
  .summary span { margin-right: 18px; }
</style>
</head>
<body>
<h1>sluice proxy</h1>
<div id="status">connecting...</div>
<div class="summary" id="summary"></div>

<h2>Backends</h2>
<table id="backends">
  <thead><tr><th>backend</th><th>route</th><th>state</th><th>calls/s</th><th>p50</th>
  <th>p99</th><th>in flight</th><th>errors by status</th><th>ejections</th><th>calls</th></tr></thead>
  <tbody></tbody>
</table>

<h2 id="chart-title">Calls per second, last 5 minutes</h2>
<svg id="chart" viewBox="0 0 1000 220" preserveAspectRatio="none"></svg>

<h2>Routes</h2>
<table id="routes">
  <thead><tr><th>route</th><th>service</th><th>target</th><th>policy</th><th>ready backends</th></tr></thead>
  <tbody></tbody>
</table>

<script>
"use strict";
// The chart's span: five minutes, or ?minutes=N.
const HISTORY_MINUTES = Number(new URLSearchParams(location.search).get("minutes")) || 5;
const HISTORY_MS = HISTORY_MINUTES * 60 * 1000;
const WINDOW_MS = 5000;             // percentiles over the last five seconds of calls
const GONE_KEEP_MS = 60 * 1000;     // a backend that left stays listed this long
const CODE_NAMES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
  "DATA_LOSS", "UNAUTHENTICATED"];
const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
  "#db2777", "#4b5563", "#65a30d"];

// address -> {samples: [{t, calls, buckets}], rates: [{t, rate}], last, color, goneAt}
const backends = new Map();
let bounds = [];
let colorNext = 0;

function stateClass(state) {
  if (state === "ready" || state === "ejected" || state === "draining" || state === "gone") {
    return state;
  }
  return "unhealthy";  // connecting, idle, transient_failure
}

function percentile(bucketDelta, q) {
  const total = bucketDelta.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < bucketDelta.length; i++) {
    if (seen + bucketDelta[i] >= rank && bucketDelta[i] > 0) {
      const lo = i === 0 ? 0 : bounds[i - 1];
      const hi = i < bounds.length ? bounds[i] : bounds[bounds.length - 1] * 2;
      return lo + (hi - lo) * ((rank - seen) / bucketDelta[i]);
    }
    seen += bucketDelta[i];
  }
  return bounds[bounds.length - 1];
}

function formatSeconds(s) {
  if (s === null) return "-";
  if (s < 0.001) return (s * 1e6).toFixed(0) + " \u00b5s";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
  return s.toFixed(2) + " s";
}

function record(now, b) {
  let entry = backends.get(b.address);
  if (!entry) {
    entry = {samples: [], rates: [], color: COLORS[colorNext++ % COLORS.length]};
    backends.set(b.address, entry);
  }
  entry.goneAt = undefined;
  entry.last = b;
  const prev = entry.samples[entry.samples.length - 1];
  entry.samples.push({t: now, calls: b.calls, buckets: b.latency_buckets});
  if (prev && now > prev.t) {
    entry.rates.push({t: now, rate: Math.max(0, (b.calls - prev.calls) * 1000 / (now - prev.t))});
  }
  while (entry.samples.length > 2 && now - entry.samples[0].t > WINDOW_MS) entry.samples.shift();
  while (entry.rates.length && now - entry.rates[0].t > HISTORY_MS) entry.rates.shift();
}

function currentRate(entry) {
  if (entry.goneAt !== undefined || entry.rates.length === 0) return 0;
  return entry.rates[entry.rates.length - 1].rate;
}

function renderBackends(now) {
  const body = document.querySelector("#backends tbody");
  body.textContent = "";
  for (const [address, entry] of backends) {
    const b = entry.last;
    const state = entry.goneAt !== undefined ? "gone" : stateClass(b.state);
    const first = entry.samples[0], last = entry.samples[entry.samples.length - 1];
    const delta = last.buckets.map((n, i) => n - (first === last ? 0 : first.buckets[i]));
    const rate = currentRate(entry);
    const errors = Object.entries(b.codes).filter(([code]) => code !== "0")
        .map(([code, n]) => (CODE_NAMES[code] || code) + " " + n).join(", ");
    const row = document.createElement("tr");
    row.className = "state-" + state;
    row.dataset.backend = address;
    row.dataset.state = state;
    row.dataset.rate = rate.toFixed(2);
    const label = state === "gone"
        ? "gone (" + Math.round((now - entry.goneAt) / 1000) + " s ago)"
        : (b.state === state ? state : state + " (" + b.state + ")");
    const cells = [
      ["<span class=swatch style='background:" + entry.color + "'></span>", address],
      [null, b.route], [null, label, "state state-" + state], [null, rate.toFixed(1), "num"],
      [null, state === "gone" ? "-" : formatSeconds(percentile(delta, 0.5)), "num"],
      [null, state === "gone" ? "-" : formatSeconds(percentile(delta, 0.99)), "num"],
      [null, state === "gone" ? 0 : b.in_flight, "num"], [null, errors || "-"],
      [null, b.ejections, "num"], [null, b.calls, "num"]];
    for (const [html, text, cls] of cells) {
      const td = document.createElement("td");
      if (html) td.innerHTML = html;
      td.appendChild(document.createTextNode(String(text)));
      if (cls) td.className = cls;
      row.appendChild(td);
    }
    body.appendChild(row);
  }
}

function renderChart(now) {
  const svg = document.getElementById("chart");
  const W = 1000, H = 220, top = 10, bottom = 20;
  let max = 1;
  for (const entry of backends.values()) for (const p of entry.rates) max = Math.max(max, p.rate);
  let out = "";
  for (let i = 0; i <= 4; i++) {
    const y = top + (H - top - bottom) * i / 4;
    out += "<line x1=0 x2=" + W + " y1=" + y + " y2=" + y + " stroke='#eee'/>";
    out += "<text x=4 y=" + (y - 2) + ">" + (max * (4 - i) / 4).toFixed(0) + "/s</text>";
  }
  for (let tick = 1; tick <= 4; tick++) {
    const ago = HISTORY_MS * tick / 5;
    const x = W - W * ago / HISTORY_MS;
    const label = ago >= 60000 ? (ago / 60000).toFixed(ago % 60000 ? 1 : 0) + " min"
                               : (ago / 1000).toFixed(0) + " s";
    out += "<text x=" + (x + 3) + " y=" + (H - 5) + ">-" + label + "</text>";
  }
  for (const entry of backends.values()) {
    const points = entry.rates.map(p => {
      const x = W - W * (now - p.t) / HISTORY_MS;
      const y = top + (H - top - bottom) * (1 - p.rate / max);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    if (points.length > 1) {
      out += "<polyline fill=none stroke-width=2 stroke='" + entry.color + "' points='" +
             points.join(" ") + "'/>";
    }
  }
  svg.innerHTML = out;
}

function renderRoutes(routes) {
  const body = document.querySelector("#routes tbody");
  body.textContent = "";
  for (const r of routes) {
    const row = document.createElement("tr");
    for (const v of [r.route, r.service, r.target, r.policy, r.ready]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      row.appendChild(td);
    }
    body.appendChild(row);
  }
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/api/dashboard", {cache: "no-store"});
    const data = await response.json();
    const now = Date.now();
    bounds = data.bucket_bounds;
    const present = new Set();
    for (const b of data.backends) {
      present.add(b.address);
      record(now, b);
    }
    for (const [address, entry] of backends) {
      if (present.has(address)) continue;
      if (entry.goneAt === undefined) {
        entry.goneAt = now;
        entry.rates.push({t: now, rate: 0});
      } else if (now - entry.goneAt > GONE_KEEP_MS) {
        backends.delete(address);
      }
    }
    renderBackends(now);
    renderChart(now);
    renderRoutes(data.routes);
    const p = data.proxy;
    document.getElementById("summary").innerHTML =
        "<span>client connections: " + p.client_connections + "</span><span>backend connections: " +
        p.backend_connections + "</span><span>calls in progress: " + p.streams +
        "</span><span>calls: " + p.streams_total + "</span><span>retries: " + p.retries_total +
        "</span>";
    status.textContent = "updated " + new Date(now).toLocaleTimeString();
    status.className = "";
  } catch (e) {
    status.textContent = "cannot reach the proxy's admin port: " + e;
    status.className = "stale";
  }
}

document.getElementById("chart-title").textContent =
    "Calls per second, last " + HISTORY_MINUTES + " minute" + (HISTORY_MINUTES === 1 ? "" : "s");
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
)html";

}  // namespace

std::string_view DashboardPage() { return kPage; }

}  // namespace sluice::proxy
