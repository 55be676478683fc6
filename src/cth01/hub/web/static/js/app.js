// What every page shares: the API client (session cookie, CSRF header, 401 -> /login), the
// session and role, the header (theme, sign-in state, live indicator, alarm count), live
// updates (server-sent events, polling when the hub has none), formatting and small DOM
// helpers. Pages import from here; nothing here knows a page.

export class ApiError extends Error {
  constructor(status, detail, path) {
    super(typeof detail === "string" ? detail : describeDetail(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.path = path;
  }
}

function describeDetail(detail) {
  if (detail == null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {  // FastAPI validation errors
    return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  if (detail.reason) return detail.command ? `${detail.command}: ${detail.reason}` : detail.reason;
  return JSON.stringify(detail);
}

export function loginUrl() {
  const next = location.pathname + location.search;
  return `/login?next=${encodeURIComponent(next)}`;
}

/** Call the hub's API. Writes carry the CSRF header; a 401 goes to the sign-in page unless
 * `allow401` (then null is returned). Errors throw ApiError with the API's reason. */
export async function api(path, { method = "GET", body, allow401 = false, raw = false } = {}) {
  const headers = { Accept: raw ? "*/*" : "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CTH01-CSRF"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `the hub is not reachable (${e.message})`, path);
  }
  if (res.status === 401 && !allow401) {
    location.assign(loginUrl());
    throw new ApiError(401, "sign in needed", path);
  }
  if (res.status === 401) return null;
  if (!res.ok) {
    let detail = `HTTP ${res.status}`;
    try { detail = (await res.json()).detail ?? detail; } catch (e) { /* not JSON */ }
    throw new ApiError(res.status, detail, path);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

// -- session and roles -----------------------------------------------------------------------

let sessionPromise = null;

/** {name, role} of the signed-in user, or null (not signed in, or a hub without sessions). */
export function getSession() {
  if (!sessionPromise) {
    sessionPromise = api("/api/session", { allow401: true }).catch(() => null);
  }
  return sessionPromise;
}

export const isAdmin = (session) => Boolean(session && session.role === "admin");
export const isAnonymous = (session) => Boolean(session && session.name === "anonymous"
  && session.role === "read");

/** Elements marked `data-needs-admin` are disabled (with the reason) unless the user is an
 * admin; `data-admin-only` ones are hidden. The API refuses such writes anyway. */
export function applyRole(session, root = document) {
  const admin = isAdmin(session);
  const why = session && !isAnonymous(session)
    ? `${session.name} has the ${session.role} role; this needs admin`
    : "sign in with an admin token to change this";
  for (const el of root.querySelectorAll("[data-needs-admin]")) {
    el.disabled = !admin;
    if (!admin) el.title = why; else el.removeAttribute("title");
  }
  for (const el of root.querySelectorAll("[data-admin-only]")) el.hidden = !admin;
  for (const el of root.querySelectorAll("[data-read-note]")) {
    el.hidden = admin;
    el.textContent = why.charAt(0).toUpperCase() + why.slice(1) + ".";
  }
}

// -- the header ------------------------------------------------------------------------------

export function banner(message, kind = "error") {
  const b = document.getElementById("banner");
  if (!b) return;
  b.hidden = !message;
  b.textContent = message || "";
  b.dataset.kind = kind;
}

function initTheme() {
  const btn = document.getElementById("theme-toggle");
  const root = document.documentElement;
  const show = () => {
    const light = root.dataset.theme === "light";
    btn.setAttribute("aria-pressed", String(light));
    btn.textContent = light ? "Dark theme" : "Light theme";
  };
  btn.addEventListener("click", () => {
    root.dataset.theme = root.dataset.theme === "light" ? "dark" : "light";
    try { localStorage.setItem("cth01-theme", root.dataset.theme); } catch (e) { /* ok */ }
    show();
    document.dispatchEvent(new CustomEvent("cth01:theme"));
  });
  show();
}

async function initSessionUi() {
  const session = await getSession();
  const who = document.getElementById("who");
  // a hub with anonymous reads answers {"name": "anonymous", "role": "read"}: not signed in
  const signedIn = Boolean(session) && !isAnonymous(session);
  document.getElementById("sign-in").hidden = signedIn;
  const out = document.getElementById("sign-out");
  out.hidden = !signedIn;
  if (session) {
    who.textContent = signedIn ? `${session.name} · ${session.role}` : "read-only (not signed in)";
    who.dataset.role = session.role;
  }
  out.addEventListener("click", async () => {
    try { await api("/api/session", { method: "DELETE", allow401: true }); } catch (e) { /* gone */ }
    location.assign("/login");
  });
  applyRole(session);
  return session;
}

async function refreshAlarmCount() {
  const pill = document.getElementById("nav-alarms");
  try {
    const rows = await api("/api/alarms?status=active&limit=1000", { allow401: true });
    if (!rows) return;
    pill.textContent = String(rows.length);
    pill.hidden = rows.length === 0;
    pill.setAttribute("aria-label", `${rows.length} active`);
  } catch (e) { pill.hidden = true; }
}

/** Set up the header; resolves to the session (or null). */
export async function initShell() {
  initTheme();
  refreshAlarmCount();
  return initSessionUi();
}

/** Mark the page as loaded (its first data shown, its controls wired): `body[data-ready]`. */
export function pageReady() {
  document.body.dataset.ready = "true";
}

// -- hub time ----------------------------------------------------------------------------------

/** The hub's clock in Unix seconds (a virtual fleet runs its own, faster, clock). */
export async function hubNow() {
  try {
    const h = await fetch("/api/health", { credentials: "same-origin" }).then((r) => r.json());
    if (typeof h.time === "number") return h.time;
  } catch (e) { /* fall back to this computer's clock */ }
  return Date.now() / 1000;
}

// -- live updates ----------------------------------------------------------------------------

/** Subscribe to the hub's event stream (`readings`, `alarm`, `downlink`). When the hub has no
 * stream, or it drops, `poll` runs every `pollS` seconds instead. Returns a stop function. */
export function live({ devEui = null, onReadings, onAlarm, onDownlink, poll, pollS = 20 } = {}) {
  const badge = document.getElementById("live");
  const show = (text, state) => {
    if (!badge) return;
    badge.hidden = false;
    badge.textContent = text;
    badge.dataset.state = state;
  };
  let timer = null;
  const startPolling = () => {
    if (timer || !poll) return;
    show("Polling", "poll");
    timer = setInterval(poll, pollS * 1000);
  };
  if (typeof EventSource === "undefined") { startPolling(); return () => clearInterval(timer); }
  const url = "/api/stream" + (devEui ? `?dev_eui=${encodeURIComponent(devEui)}` : "");
  const source = new EventSource(url, { withCredentials: true });
  let opened = false;
  const parse = (e) => { try { return JSON.parse(e.data); } catch (x) { return null; } };
  source.addEventListener("open", () => {
    opened = true;
    if (timer) { clearInterval(timer); timer = null; }
    show("Live", "live");
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED || !opened) {
      source.close();
      startPolling();
    } else {
      show("Reconnecting…", "wait");
    }
  });
  if (onReadings) source.addEventListener("readings", (e) => onReadings(parse(e) || {}));
  source.addEventListener("alarm", (e) => { refreshAlarmCount(); if (onAlarm) onAlarm(parse(e)); });
  if (onDownlink) source.addEventListener("downlink", (e) => onDownlink(parse(e)));
  return () => { source.close(); if (timer) clearInterval(timer); };
}

/** `fn` at most once per `ms`, trailing call kept (bursts of events -> one refetch). */
export function throttle(fn, ms = 1000) {
  let last = 0, pending = null;
  return (...args) => {
    const wait = last + ms - Date.now();
    if (pending) return;
    if (wait <= 0) { last = Date.now(); fn(...args); return; }
    pending = setTimeout(() => { pending = null; last = Date.now(); fn(...args); }, wait);
  };
}

// -- formatting ------------------------------------------------------------------------------

export const DASH = "—";

export function fmtNum(v, digits = 0) {
  if (v === null || v === undefined || Number.isNaN(v)) return DASH;
  return Number(v).toFixed(digits);
}

/** Power in W, kW or MW (3 significant decimals at most). */
export function fmtPower(w, unit = "W") {
  if (w === null || w === undefined) return DASH;
  const a = Math.abs(w);
  if (a >= 1e6) return `${(w / 1e6).toFixed(3)} M${unit}`;
  if (a >= 1e3) return `${(w / 1e3).toFixed(2)} k${unit}`;
  return `${Math.round(w)} ${unit}`;
}

export const fmtKwh = (kwh, digits = 3) => (kwh === null || kwh === undefined ? DASH
  : `${Number(kwh).toFixed(digits)} kWh`);

const pad = (n) => String(n).padStart(2, "0");

/** Local date and time, "2026-01-31 14:05:09" (seconds optional). */
export function fmtTime(ts, seconds = true) {
  if (ts === null || ts === undefined || ts === "") return DASH;
  const d = new Date(ts * 1000);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${day} ${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? ":" + pad(d.getSeconds()) : ""}`;
}

export function isoUtc(ts) {
  return new Date(ts * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function fmtAgo(ts, now) {
  if (!ts) return "never";
  const s = Math.max(0, now - ts);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A `<time>` element: local time shown, UTC ISO in `datetime`. */
/** A <time>; with `day` (a Unix time), only the clock time when `ts` is on the same local
 * day (the full date and time in its tooltip) — for columns of times close together. */
export function timeEl(ts, seconds = true, day = null) {
  if (!ts) return el("span", { class: "muted" }, DASH);
  const text = fmtTime(ts, seconds);
  const short = day && fmtTime(day).slice(0, 10) === text.slice(0, 10);
  return el("time", { datetime: isoUtc(ts), "data-ts": String(ts), title: text },
    short ? text.slice(11) : text);
}

// -- DOM -------------------------------------------------------------------------------------

/** Create an element: el("a", {href: "/", class: "x"}, "text", child...). Text is never
 * parsed as HTML. Attributes that are false/null/undefined are left out. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Save text or a Blob as a file (the browser's download). */
export function download(filename, data, type = "text/csv") {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A CSV line per row (RFC 4180 quoting). */
export function toCsv(rows) {
  const cell = (v) => {
    if (v === null || v === undefined) return "";
    const s = String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return rows.map((r) => r.map(cell).join(",")).join("\n") + "\n";
}

/** A status message in an element with role=status. */
export function say(node, message, kind = "info") {
  if (!node) return;
  node.textContent = message || "";
  node.dataset.kind = kind;
}

// -- the device's vocabulary -----------------------------------------------------------------

export const GROUPS = ["a", "b", "c", "d"];
export const groupOf = (ch) => GROUPS[Math.floor((ch - 1) / 3)];

export const STATUS_LABELS = {
  online: "Joined", alarm: "Alarm", offline: "Offline", never: "Never seen",
};

export function statusLed(status) {
  const label = STATUS_LABELS[status] || status || "unknown";
  return el("span", { class: `status status-${status}`, "data-status": status },
    el("span", { class: "led", "aria-hidden": "true" }), label);
}

export const ALARM_ITEMS = {
  temperature_alarm: "Temperature", current_alarm: "Current", voltage_alarm: "Voltage",
  thdi_alarm: "Current THD", thdv_alarm: "Voltage THD",
  voltage_unbalance_alarm: "Voltage unbalance", power_failure_alarm: "Power failure",
};

export function deviceLabel(dev) {
  return (dev && (dev.name || dev.device_name)) || (dev && dev.dev_eui) || "";
}
