// Fleet overview: GET /api/overview, searchable and sortable, refreshed by the event stream.
import {
  $, $$, api, banner, DASH, el, fmtAgo, fmtKwh, fmtPower, hubNow, initShell, live, pageReady, statusLed,
  STATUS_LABELS, throttle, timeEl,
} from "./app.js";

const SEVERITY = { alarm: 0, offline: 1, online: 2, never: 3 };
const state = { rows: [], now: Date.now() / 1000, sort: { key: "status", dir: 1 } };

const pct = (c) => (c === null || c === undefined ? null : c <= 1 ? c * 100 : c);
const label = (r) => r.name || r.dev_eui;

function sortValue(r, key) {
  if (key === "status") return [SEVERITY[r.status] ?? 9, label(r).toLowerCase()];
  if (key === "name") return [label(r).toLowerCase()];
  if (key === "completeness") return [pct(r.completeness) ?? -1];
  const v = r[key];
  return [v === null || v === undefined ? -Infinity : typeof v === "string" ? v.toLowerCase() : v];
}

function compare(a, b) {
  const { key, dir } = state.sort;
  const va = sortValue(a, key), vb = sortValue(b, key);
  for (let k = 0; k < va.length; k++) {
    if (va[k] < vb[k]) return -dir;
    if (va[k] > vb[k]) return dir;
  }
  return a.dev_eui < b.dev_eui ? -1 : 1;
}

function matches(r) {
  const q = $("#search").value.trim().toLowerCase();
  const st = $("#status-filter").value;
  if (st && r.status !== st) return false;
  if (!q) return true;
  return [r.dev_eui, r.name, r.site, r.tenant].some((v) => (v || "").toLowerCase().includes(q));
}

function completenessCell(c) {
  const p = pct(c);
  if (p === null) return el("td", { class: "num muted", "data-col": "completeness" }, DASH);
  const cls = p >= 99 ? "" : p >= 90 ? "low" : "bad";
  return el("td", { class: "num", "data-col": "completeness", "data-value": String(c) },
    `${p.toFixed(1)} %`,
    el("span", { class: `bar ${cls}`, "aria-hidden": "true" },
      el("span", { style: `width:${Math.max(0, Math.min(100, p))}%` })));
}

function row(r) {
  const href = `/devices/${r.dev_eui}`;
  return el("tr", { "data-eui": r.dev_eui, "data-status": r.status },
    el("td", { "data-col": "status" }, statusLed(r.status)),
    el("td", { "data-col": "name" },
      el("a", { href }, label(r)),
      r.name ? el("div", { class: "muted nowrap" }, el("small", {}, r.dev_eui)) : null),
    el("td", { class: "hide-narrow", "data-col": "site" }, r.site || DASH),
    el("td", { class: "hide-narrow", "data-col": "tenant" }, r.tenant || DASH),
    el("td", { "data-col": "last_seen" }, timeEl(r.last_seen, false),
      r.last_seen ? el("div", { class: "muted" }, el("small", {}, fmtAgo(r.last_seen, state.now))) : null),
    el("td", { class: "num", "data-col": "total_power_w", "data-value": r.total_power_w ?? "" },
      fmtPower(r.total_power_w)),
    el("td", { class: "num", "data-col": "today_kwh", "data-value": r.today_kwh ?? "" },
      fmtKwh(r.today_kwh, 2)),
    el("td", { class: "num", "data-col": "active_alarms", "data-value": r.active_alarms ?? 0 },
      r.active_alarms ? el("a", { href: `/alarms?dev_eui=${r.dev_eui}&status=active` },
        String(r.active_alarms)) : "0"),
    completenessCell(r.completeness));
}

function render() {
  const shown = state.rows.filter(matches).sort(compare);
  const body = $("#fleet tbody");
  body.replaceChildren(...shown.map(row));
  if (!shown.length) {
    body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" },
      state.rows.length ? "No device matches the search." : "No devices yet.")));
  }
  for (const th of $$("#fleet thead th")) {
    th.setAttribute("aria-sort", th.dataset.key === state.sort.key
      ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
  }
  const counts = {};
  for (const r of state.rows) counts[r.status] = (counts[r.status] || 0) + 1;
  const sum = (k) => state.rows.reduce((s, r) => s + (r[k] || 0), 0);
  $("#t-devices").textContent = String(state.rows.length);
  $("#t-status").textContent = Object.entries(STATUS_LABELS)
    .filter(([k]) => counts[k]).map(([k, v]) => `${counts[k]} ${v.toLowerCase()}`).join(" · ");
  $("#t-power").textContent = fmtPower(sum("total_power_w"));
  $("#t-energy").textContent = fmtKwh(sum("today_kwh"), 2);
  $("#t-alarms").textContent = String(sum("active_alarms"));
  $("#fleet-summary").textContent = `${shown.length} of ${state.rows.length} devices shown`;
}

async function load() {
  try {
    const [rows, now] = await Promise.all([api("/api/overview"), hubNow()]);
    state.rows = rows;
    state.now = now;
    banner("");
    render();
  } catch (e) {
    if (e.status !== 401) banner(`Cannot load the fleet: ${e.message}`);
  }
}

function initControls() {
  const params = new URLSearchParams(location.search);
  $("#search").value = params.get("q") || "";
  $("#status-filter").value = params.get("status") || "";
  const remember = () => {
    const p = new URLSearchParams();
    if ($("#search").value) p.set("q", $("#search").value);
    if ($("#status-filter").value) p.set("status", $("#status-filter").value);
    history.replaceState(null, "", p.toString() ? `?${p}` : location.pathname);
    render();
  };
  $("#search").addEventListener("input", remember);
  $("#status-filter").addEventListener("change", remember);
  for (const th of $$("#fleet thead th")) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.key;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (
        ["total_power_w", "today_kwh", "active_alarms", "last_seen"].includes(key) ? -1 : 1) };
      render();
    });
  }
}

initShell();
initControls();
load().then(pageReady);
const refresh = throttle(load, 5000);  // a busy fleet reports all the time
live({ onReadings: refresh, onAlarm: refresh, poll: load, pollS: 30 });
