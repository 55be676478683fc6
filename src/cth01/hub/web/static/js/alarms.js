// Alarms, active and past, filtered by device and type; acknowledge (admin); the threshold that
// fired, from the device's configuration shadow.
import {
  $, ALARM_ITEMS, api, applyRole, banner, DASH, el, initShell, live, pageReady, throttle, timeEl,
} from "./app.js";

const state = { session: null, devices: [], alarms: [], shadows: new Map() };

const UNITS = {
  temperature_alarm: "°C", current_alarm: "A", voltage_alarm: "V", thdi_alarm: "%",
  thdv_alarm: "%", voltage_unbalance_alarm: "%",
};
const SETTING_IDS = {
  temperature_alarm: "76", current_alarm: "77", voltage_alarm: "78", thdi_alarm: "79",
  thdv_alarm: "7a", voltage_unbalance_alarm: "7b",
};
const PER_CHANNEL = new Set(["current_alarm", "voltage_alarm", "thdi_alarm", "thdv_alarm"]);

function settingId(alarm) {
  const base = SETTING_IDS[alarm.item];
  if (!base) return null;
  return PER_CHANNEL.has(alarm.item) ? base + (alarm.channel - 1).toString(16).padStart(2, "0") : base;
}

function thresholdValues(item) {
  const lo = Object.keys(item).find((k) => k.startsWith("min_"));
  const hi = Object.keys(item).find((k) => k.startsWith("max_"));
  return [item[lo], item[hi]];
}

function describeThreshold(item, unit) {
  if (!item) return null;
  const [lo, hi] = thresholdValues(item);
  const u = unit ? ` ${unit}` : "";
  if (!item.enabled || item.condition === "disabled") return "disabled";
  switch (item.condition) {
    case "below": return `below ${lo}${u}`;
    case "above": return `above ${hi}${u}`;
    case "within": return `within ${lo}–${hi}${u}`;
    case "outside": return `outside ${lo}–${hi}${u}`;
    default: return `${item.condition} ${lo}–${hi}${u}`;
  }
}

/** What made the alarm fire, as text (or null when unknown). */
function thresholdText(alarm) {
  if (alarm.threshold !== undefined && alarm.threshold !== null) {
    return typeof alarm.threshold === "string" ? alarm.threshold
      : describeThreshold(alarm.threshold, UNITS[alarm.item]);
  }
  const shadow = state.shadows.get(alarm.dev_eui);
  if (!shadow) return null;
  const bySetting = new Map(shadow.map((r) => [r.setting, r.reported || r.desired]));
  if (/_threshold$/.test(alarm.condition)) {
    return describeThreshold(bySetting.get(settingId(alarm)), UNITS[alarm.item]);
  }
  if (/_range$/.test(alarm.condition) && alarm.item === "current_alarm" && alarm.channel) {
    const group = "abcd"[Math.floor((alarm.channel - 1) / 3)];
    const iface = bySetting.get((0x67 + "abcd".indexOf(group)).toString(16));
    const range = iface && iface[`ct_range_${(alarm.channel - 1) % 3 + 1}`];
    return range ? `CT range ${range}` : null;
  }
  if (/_range$/.test(alarm.condition) && alarm.item === "voltage_alarm") return "rated 0–500 V";
  if (alarm.item === "power_failure_alarm") return "12 V supply lost";
  return null;
}

function fmtValue(alarm) {
  if (alarm.last_value === null || alarm.last_value === undefined) return DASH;
  return `${alarm.last_value} ${UNITS[alarm.item] || ""}`.trim();
}

function deviceName(euiValue) {
  const d = state.devices.find((x) => x.dev_eui === euiValue);
  return d && d.name ? d.name : euiValue;
}

function ackCell(alarm) {
  if (alarm.acknowledged_at) {
    return el("td", { "data-col": "ack" }, el("span", { class: "nowrap" }, "✓ ", alarm.acknowledged_by || ""),
      el("div", { class: "muted" }, el("small", {}, timeEl(alarm.acknowledged_at, false))));
  }
  const btn = el("button", { type: "button", "data-ack": alarm.id, "data-needs-admin": true,
    "aria-label": `Acknowledge alarm ${alarm.id}` }, "Acknowledge");
  btn.addEventListener("click", () => acknowledge(alarm, btn));
  return el("td", { "data-col": "ack" }, btn);
}

async function acknowledge(alarm, btn) {
  btn.disabled = true;
  btn.textContent = "Acknowledging…";
  try {
    const row = await api(`/api/alarms/${alarm.id}/ack`, { method: "POST" });
    Object.assign(alarm, row);
    render();
    banner("");
  } catch (e) {
    btn.disabled = false;
    btn.textContent = "Acknowledge";
    banner(e.status === 403 ? "Acknowledging needs an admin sign-in." : `Not acknowledged: ${e.message}`);
  }
}

function head(past) {
  return el("thead", {}, el("tr", {},
    ...["Device", "Alarm", "Condition", "Value", "Threshold", "First", "Last", "Count"]
      .map((h) => el("th", { scope: "col", class: ["Value", "Count"].includes(h) ? "num" : "" }, h)),
    past ? el("th", { scope: "col" }, "Cleared") : null,
    el("th", { scope: "col" }, "Acknowledged")));
}

function row(a, past) {
  const threshold = thresholdText(a);
  return el("tr", { "data-alarm-id": a.id, "data-status": a.status },
    el("td", { "data-col": "device" }, el("a", { href: `/devices/${a.dev_eui}` }, deviceName(a.dev_eui))),
    el("td", { "data-col": "item" }, ALARM_ITEMS[a.item] || a.item, a.channel ? ` · ch ${a.channel}` : ""),
    el("td", { "data-col": "condition" }, el("span", { class: `badge alarm-${a.status}` }, a.condition.replaceAll("_", " "))),
    el("td", { class: "num", "data-col": "value" }, fmtValue(a)),
    el("td", { "data-col": "threshold" }, threshold || el("span", { class: "muted" }, "not known")),
    el("td", { "data-col": "first" }, timeEl(a.first_at)),
    el("td", { "data-col": "last" }, timeEl(a.last_at, true, a.first_at)),
    el("td", { class: "num", "data-col": "count" }, String(a.count)),
    past ? el("td", { "data-col": "cleared" }, timeEl(a.cleared_at, true, a.first_at), a.cleared_by ? el("div", { class: "muted" }, el("small", {}, a.cleared_by)) : null) : null,
    ackCell(a));
}

function render() {
  const ack = $("#f-ack").value;
  const show = $("#f-status").value;
  const keep = (a) => !ack || (ack === "yes") === Boolean(a.acknowledged_at);
  const active = state.alarms.filter((a) => a.status !== "dismissed" && keep(a));
  const past = state.alarms.filter((a) => a.status === "dismissed" && keep(a));
  $("#active-section").hidden = show === "dismissed";
  $("#past-section").hidden = show === "active";
  const fill = (table, rows, isPast, none) => {
    table.replaceChildren(head(isPast), el("tbody", {}, ...(rows.length ? rows.map((a) => row(a, isPast))
      : [el("tr", {}, el("td", { colspan: isPast ? 10 : 9, class: "muted" }, none))])));
  };
  fill($("#active-alarms"), active, false, "No active alarm.");
  fill($("#past-alarms"), past, true, "No past alarm.");
  $("#alarm-summary").textContent = `${active.length} active · ${past.length} past (${state.alarms.length} loaded)`;
  applyRole(state.session);
}

async function loadShadows() {
  const euis = [...new Set(state.alarms.map((a) => a.dev_eui))].filter((e) => !state.shadows.has(e));
  await Promise.all(euis.map(async (e) => {
    try { state.shadows.set(e, await api(`/api/devices/${e}/config`)); } catch (x) { /* unknown */ }
  }));
}

async function load() {
  const p = new URLSearchParams({ limit: "1000" });
  for (const [id, key] of [["#f-device", "dev_eui"], ["#f-item", "item"], ["#f-status", "status"]]) {
    if ($(id).value) p.set(key, $(id).value);
  }
  try {
    state.alarms = await api(`/api/alarms?${p}`);
    await loadShadows();
    render();
    banner("");
  } catch (e) {
    if (e.status !== 401) banner(`Cannot load alarms: ${e.message}`);
  }
}

function filtersToUrl() {
  const p = new URLSearchParams();
  for (const [id, key] of [["#f-device", "dev_eui"], ["#f-item", "item"], ["#f-status", "status"], ["#f-ack", "ack"]]) {
    if ($(id).value) p.set(key, $(id).value);
  }
  history.replaceState(null, "", p.toString() ? `?${p}` : location.pathname);
}

async function init() {
  state.session = await initShell();
  for (const [item, text] of Object.entries(ALARM_ITEMS)) $("#f-item").append(el("option", { value: item }, text));
  try { state.devices = await api("/api/devices"); } catch (e) { state.devices = []; }
  for (const d of state.devices) $("#f-device").append(el("option", { value: d.dev_eui }, d.name ? `${d.name} (${d.dev_eui})` : d.dev_eui));
  const p = new URLSearchParams(location.search);
  $("#f-device").value = p.get("dev_eui") || "";
  $("#f-item").value = p.get("item") || "";
  $("#f-status").value = p.get("status") || "";
  $("#f-ack").value = p.get("ack") || "";
  $("#filters").addEventListener("change", (ev) => {
    filtersToUrl();
    if (ev.target.id === "f-ack") render(); else load();
  });
  $("#filters").addEventListener("submit", (ev) => ev.preventDefault());
  await load();
  const refresh = throttle(() => { state.shadows.clear(); load(); }, 2000);
  live({ onAlarm: refresh, poll: load, pollS: 30 });
  pageReady();
}

init();
