// Device configuration: every setting of the CTH01 as a form whose allowed values come from the
// hub's command catalogue (GET /api/commands: min/max/step/unit/choices per parameter, read
// from the protocol table — nothing here repeats a range). Saving a section sends one typed
// downlink per changed setting (POST /api/devices/{eui}/downlinks); the configuration shadow
// (GET /api/devices/{eui}/config) then says pending / confirmed / failed per setting.
import {
  $, $$, api, applyRole, banner, el, initShell, isAdmin, live, pageReady, say, throttle,
} from "./app.js";

const eui = document.body.dataset.eui;
const hex2 = (n) => n.toString(16).padStart(2, "0");
const state = {
  session: null, catalogue: new Map(), shadow: new Map(), settings: new Map(),
  dirty: new Set(), local: new Map(), pollTimer: null,
};

// -- the settings of a CTH01, by section (guide chapter 4) -------------------------------------

const perChannel = (base, command, count, params, fixedName, label) => ({
  table: true, label, params,
  rows: Array.from({ length: count }, (_, k) => ({
    id: base + hex2(k), command, params, fixed: { [fixedName]: k + 1 },
    rowLabel: fixedName === "phase" ? `L${k + 1}` : `Ch ${k + 1}`,
  })),
});

const fromInterface = (it) => ({
  circuit: it.circuit,
  ct_ranges: [1, 2, 3].map((k) => it[`ct_range_${k}`]),
  reversed_channels: [1, 2, 3].filter((k) => it[`direction_${k}`] === "reverse"),
});

const fromDst = (it) => ({
  enabled: it.enabled, bias_min: it.bias_min,
  start: ["month", "week", "weekday", "minute"].map((f) => it[`start_${f}`]),
  end: ["month", "week", "weekday", "minute"].map((f) => it[`end_${f}`]),
});

const SECTIONS = [
  { id: "reporting", title: "Reporting", items: [
    { id: "61", command: "set_reporting_interval", label: "Reporting interval", params: ["minutes"],
      fromItem: (it) => ({ minutes: it.minutes ?? (it.seconds != null ? Math.round(it.seconds / 60) : null) }) },
    { id: "6c", command: "set_report_parameters", label: "Report items", params: ["parameters"],
      hint: "The quantities each periodic report carries." },
  ] },
  { id: "thresholds", title: "Thresholds and alarms", items: [
    { id: "76", command: "set_temperature_threshold", label: "Wire temperature", params: ["enabled", "condition", "min_c", "max_c"] },
    perChannel("77", "set_current_threshold", 12, ["enabled", "condition", "min_a", "max_a"], "channel", "Current, per channel"),
    perChannel("78", "set_voltage_threshold", 3, ["enabled", "condition", "min_v", "max_v"], "phase", "Voltage, per phase"),
    perChannel("79", "set_thdi_threshold", 12, ["enabled", "max_pct"], "channel", "Current THD, per channel (alarm above)"),
    perChannel("7a", "set_thdv_threshold", 3, ["enabled", "max_pct"], "phase", "Voltage THD, per phase (alarm above)"),
    { id: "7b", command: "set_voltage_unbalance_threshold", label: "Voltage unbalance (alarm above)", params: ["enabled", "max_pct"] },
    { id: "7c", command: "set_alarm_settings", label: "Alarm reports", params: ["repeat_interval_min", "repeat_count", "report_cleared"],
      hint: "The alarm repeat interval must be shorter than the reporting interval." },
  ] },
  { id: "interfaces", title: "Interfaces", items: [
    { id: "66", command: "set_voltage_interface", label: "Voltage wiring", params: ["wiring"] },
    ...["a", "b", "c", "d"].map((g, k) => ({
      id: hex2(0x67 + k), command: "set_current_interface", fixed: { group: g },
      label: `Group ${g.toUpperCase()} · channels ${3 * k + 1}–${3 * k + 3}`,
      params: ["circuit", "ct_ranges", "reversed_channels"], fromItem: fromInterface,
      hint: "4000 A (Rogowski coil) applies to all three channels of a group.",
    })),
  ] },
  { id: "time", title: "Time", items: [
    { id: "c7", command: "set_time_zone", label: "Time zone", params: ["offset_min"] },
    { id: "c6", command: "set_daylight_saving", label: "Daylight saving time", params: ["enabled", "bias_min", "start", "end"], fromItem: fromDst },
    { id: "6d", command: "set_monthly_summary_time", label: "Monthly summary", params: ["day", "hour", "minute"],
      hint: "When the previous month's summary is made (local time)." },
  ] },
  { id: "storage", title: "Storage and retransmission", items: [
    { id: "c500", command: "set_data_storage", label: "Data storage", params: ["enabled"], hint: "Needed for history queries and retransmission." },
    { id: "c501", command: "set_retransmission", label: "Data retransmission", params: ["enabled"] },
    { id: "c502", command: "set_retransmission_interval", label: "Retransmission interval", params: ["seconds"] },
    { id: "c503", command: "set_retrieval_interval", label: "History retrieval interval", params: ["seconds"] },
  ] },
  { id: "calibration", title: "Calibration", items: [
    { id: "6b", command: "set_temperature_calibration", label: "Temperature calibration", params: ["enabled", "offset_c"] },
  ] },
  { id: "general", title: "Device", items: [
    { id: "64", command: "set_bluetooth_name", label: "Bluetooth name", params: ["name"] },
    { id: "cfd8", command: "set_lorawan_version", label: "LoRaWAN version", params: ["version"] },
  ] },
];

const LABELS = {
  minutes: "Every", parameters: "Items", enabled: "Enabled", condition: "Condition",
  min_c: "Min", max_c: "Max", min_a: "Min", max_a: "Max", min_v: "Min", max_v: "Max",
  max_pct: "Above", repeat_interval_min: "Repeat every", repeat_count: "Times",
  report_cleared: "Report when cleared", wiring: "Wiring", circuit: "Circuit type",
  ct_ranges: "CT range", reversed_channels: "Reverse direction", offset_min: "UTC offset",
  bias_min: "Shift", start: "Starts", end: "Ends", day: "Day", hour: "Hour",
  minute: "Minute", seconds: "Every", offset_c: "Offset", name: "Name", version: "Version",
};
const CHOICE_LABELS = {
  single_phase: "Single-phase (3 circuits)", three_phase: "Three-phase (1 circuit)",
  "3P4W": "3P4W — three phases and neutral", "3P3W": "3P3W — three phases, no neutral",
  none: "none (unused)",
};
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKS = { 1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 5: "last" };
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

const humanize = (s) => ({ thdi: "THDi", thdv: "THDv" })[s]
  || String(s).replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
const utcOffset = (m) => `UTC${m < 0 ? "−" : "+"}${String(Math.floor(Math.abs(m) / 60)).padStart(2, "0")}:${String(Math.abs(m) % 60).padStart(2, "0")}`;
const hhmm = (minute) => `${String(Math.floor(minute / 60)).padStart(2, "0")}:${String(minute % 60).padStart(2, "0")}`;

function rangeText(spec) {
  if (!spec) return "";
  if (spec.min !== undefined) return `${spec.min}–${spec.max}${spec.unit ? " " + spec.unit : ""}`;
  if (spec.max_length) return `1–${spec.max_length} characters${spec.ascii_only ? " (ASCII)" : ""}`;
  return "";
}

// -- inputs from the catalogue -----------------------------------------------------------------

function spec(setting, name) {
  const cmd = state.catalogue.get(setting.command);
  return cmd ? cmd.get(name) : undefined;
}

function numberInput(s, attrs) {
  return el("input", { type: "number", min: s.min, max: s.max, step: s.step || 1, required: true, ...attrs });
}

function select(values, attrs, label = (v) => CHOICE_LABELS[v] || String(v)) {
  return el("select", attrs, ...values.map((v) => el("option", { value: String(v) }, label(v))));
}

function range(lo, hi) { return Array.from({ length: hi - lo + 1 }, (_, k) => lo + k); }

/** The control(s) of one parameter; every control carries data-param (and data-index). */
function control(setting, name, aria) {
  const s = spec(setting, name) || {};
  const base = { "data-param": name, "aria-label": aria };
  if (name === "reversed_channels") {
    const first = 3 * "abcd".indexOf(setting.fixed.group) + 1;
    return el("span", { class: "inputs", role: "group", "aria-label": aria },
      ...[1, 2, 3].map((k) => el("label", { class: "check" }, el("input", {
        type: "checkbox", "data-param": name, "data-index": k - 1, value: k,
        "aria-label": `${aria} channel ${first + k - 1}` }), `ch ${first + k - 1}`)));
  }
  if (name === "ct_ranges" && s.items) {
    const first = 3 * "abcd".indexOf(setting.fixed.group) + 1;
    return el("span", { class: "inputs", role: "group", "aria-label": aria },
      ...s.items.map((it, k) => el("label", { class: "field" }, el("span", {}, `ch ${first + k}`),
        select(it.choices, { "data-param": name, "data-index": k, "aria-label": `CT range channel ${first + k}`, "data-ct": true }))));
  }
  if ((name === "start" || name === "end") && s.items) {
    const [mo, wk, wd, mi] = s.items;
    return el("span", { class: "inputs", role: "group", "aria-label": aria },
      select(range(mo.min, mo.max), { "data-param": name, "data-index": 0, "aria-label": `${aria} month` }, (v) => MONTHS[v - 1]),
      select(range(wk.min, wk.max), { "data-param": name, "data-index": 1, "aria-label": `${aria} week` }, (v) => WEEKS[v] || v),
      select(range(wd.min, wd.max), { "data-param": name, "data-index": 2, "aria-label": `${aria} weekday` }, (v) => WEEKDAYS[v - 1]),
      el("input", { type: "time", required: true, min: hhmm(mi.min), max: hhmm(mi.max), "data-param": name, "data-index": 3, "data-minutes": true, "aria-label": `${aria} local time` }));
  }
  if (s.type === "bool" || name === "enabled" || name === "report_cleared") {
    return el("input", { type: "checkbox", ...base });
  }
  if (s.choices && s.multiple) {
    return el("span", { class: "inputs", role: "group", "aria-label": aria },
      ...s.choices.map((c) => el("label", { class: "check" },
        el("input", { type: "checkbox", "data-param": name, "data-multi": true, value: c }), humanize(c))));
  }
  if (s.choices) {
    const numeric = s.choices.every((c) => typeof c === "number");
    return select(s.choices, { ...base, "data-number": numeric || null },
      name === "offset_min" ? utcOffset : undefined);
  }
  if (s.max_length) {
    return el("input", { type: "text", maxlength: s.max_length, minlength: 1, required: true,
      pattern: s.ascii_only ? "[ -~]+" : null, ...base });
  }
  if (s.min !== undefined) return numberInput(s, base);
  return el("input", { type: "text", ...base });
}

// -- reading and writing a setting's controls --------------------------------------------------

function controlsOf(setting) {
  return $$(`[data-setting="${setting.id}"] [data-param]`);
}

function readParams(setting) {
  const out = { ...(setting.fixed || {}) };
  for (const name of setting.params) {
    const nodes = controlsOf(setting).filter((n) => n.dataset.param === name);
    const s = spec(setting, name) || {};
    if (name === "reversed_channels") {
      out[name] = nodes.filter((n) => n.checked).map((n) => Number(n.value));
    } else if (nodes.length && nodes[0].dataset.multi !== undefined) {
      out[name] = nodes.filter((n) => n.checked).map((n) => n.value);
    } else if (nodes.length > 1 || nodes[0].dataset.index !== undefined) {
      out[name] = nodes.sort((a, b) => a.dataset.index - b.dataset.index).map((n) => {
        if (n.dataset.minutes !== undefined) {
          const [h, m] = n.value.split(":").map(Number);
          return h * 60 + m;
        }
        return /^\d+$/.test(n.value) && !s.items?.[Number(n.dataset.index)]?.choices ? Number(n.value) : n.value;
      });
    } else {
      const n = nodes[0];
      if (n.type === "checkbox") out[name] = n.checked;
      else if (n.type === "number" || n.dataset.number !== undefined) out[name] = n.value === "" ? null : Number(n.value);
      else out[name] = n.value;
    }
  }
  return out;
}

function writeParams(setting, params) {
  for (const n of controlsOf(setting)) {
    const v = params[n.dataset.param];
    if (v === undefined || v === null) continue;
    if (n.dataset.param === "reversed_channels") n.checked = v.includes(Number(n.value));
    else if (n.dataset.multi !== undefined) n.checked = v.includes(n.value);
    else if (n.dataset.index !== undefined) {
      const x = v[Number(n.dataset.index)];
      n.value = n.dataset.minutes !== undefined ? hhmm(x) : String(x);
      if (n.dataset.ct !== undefined) n.dataset.prev = String(x);
    } else if (n.type === "checkbox") n.checked = Boolean(v);
    else n.value = String(v);
  }
}

/** The parameters the shadow holds for a setting: what was sent while pending, else what the
 * device reported. */
function shadowItem(setting) {
  const row = state.shadow.get(setting.id);
  if (!row) return null;
  return row.state === "pending" ? row.desired : (row.reported || row.desired);
}

function paramsOfItem(setting, item) {
  if (!item) return null;
  if (setting.fromItem) return setting.fromItem(item);
  const out = {};
  for (const p of setting.params) out[p] = p in item ? item[p] : undefined;
  return out;
}

function describeParams(setting, params) {
  if (!params) return "";
  return setting.params.map((p) => {
    const v = params[p];
    const s = spec(setting, p) || {};
    if (v === undefined || v === null) return null;
    if (typeof v === "boolean") return `${LABELS[p] || p} ${v ? "on" : "off"}`;
    if (p === "offset_min") return utcOffset(v);
    if (p === "start" || p === "end") return `${LABELS[p]} ${WEEKS[v[1]]} ${WEEKDAYS[v[2] - 1]} of ${MONTHS[v[0] - 1]} ${hhmm(v[3])}`;
    if (p === "parameters") return v.length ? v.map(humanize).join(", ") : "none";
    if (Array.isArray(v)) return `${LABELS[p] || p} ${v.length ? v.join("/") : "none"}`;
    return `${LABELS[p] || p} ${v}${s.unit ? " " + s.unit : ""}`;
  }).filter(Boolean).join(", ");
}

// -- rules between fields ----------------------------------------------------------------------

function reportingMinutes() {
  const input = $('[data-setting="61"] [data-param="minutes"]');
  if (input && input.value && input.checkValidity()) return Number(input.value);
  const it = shadowItem({ id: "61" });
  return it ? it.minutes ?? Math.round((it.seconds || 600) / 60) : null;
}

/** Checks the catalogue's ranges cannot express; sets custom validity on the culprit. */
function crossCheck(setting) {
  const nodes = controlsOf(setting);
  for (const n of nodes) n.setCustomValidity("");
  const p = readParams(setting);
  const lo = setting.params.find((x) => x.startsWith("min_"));
  const hi = setting.params.find((x) => x.startsWith("max_"));
  if (lo && hi && ["within", "outside"].includes(p.condition) && p[lo] > p[hi]) {
    nodes.find((n) => n.dataset.param === lo).setCustomValidity("The minimum must not exceed the maximum.");
  }
  if (setting.id === "7c") {
    const rep = reportingMinutes();
    if (rep && p.repeat_interval_min >= rep) {
      nodes.find((n) => n.dataset.param === "repeat_interval_min")
        .setCustomValidity(`Must be shorter than the reporting interval (${rep} min).`);
    }
  }
  if (setting.id === "c6" && p.enabled && JSON.stringify(p.start) === JSON.stringify(p.end)) {
    nodes.find((n) => n.dataset.param === "end").setCustomValidity("DST must end at another time than it starts.");
  }
  return nodes.every((n) => n.checkValidity());
}

/** The guide's grouping rule: 4000 A (Rogowski) on one channel sets the whole group to 4000 A;
 * leaving 4000 A on one channel moves the whole group to the new range. */
function ctRule(changed) {
  const group = $$('[data-ct]', changed.closest("[data-setting]"));
  const prev = changed.dataset.prev;
  let note = "";
  if (changed.value === "4000A" && group.some((s) => s.value !== "4000A")) {
    group.forEach((s) => { s.value = "4000A"; });
    note = "4000 A (Rogowski) set on all three channels of the group.";
  } else if (prev === "4000A" && changed.value !== "4000A") {
    group.forEach((s) => { s.value = changed.value; });
    note = `All three channels moved from 4000 A to ${changed.value}.`;
  }
  group.forEach((s) => { s.dataset.prev = s.value; });
  return note;
}

// -- rendering -----------------------------------------------------------------------------------

function stateCell(setting) {
  return el("div", { class: "state", "data-state-for": setting.id },
    el("span", { class: "badge", "data-state": "unknown" }, "unknown"),
    el("span", { class: "muted", "data-note": true }), el("span", { class: "error-text", "data-error": true }));
}

function settingBlock(setting) {
  state.settings.set(setting.id, setting);
  const inputs = setting.params.map((p) => {
    const c = control(setting, p, `${setting.label}: ${LABELS[p] || p}`);
    const s = spec(setting, p) || {};
    const hint = rangeText(s);
    if (c.tagName === "SPAN" && c.getAttribute("role") === "group") {
      return el("div", { class: "field" }, el("span", {}, LABELS[p] || p), c);
    }
    if (c.type === "checkbox") return el("label", { class: "check" }, c, LABELS[p] || p);
    return el("label", { class: "field" }, el("span", {}, LABELS[p] || p),
      el("span", {}, c, s.unit && !hint ? el("span", { class: "unit" }, ` ${s.unit}`) : null,
        hint ? el("span", { class: "unit" }, ` ${hint}`) : null));
  });
  return el("div", { class: "setting", "data-setting": setting.id, "data-command": setting.command },
    el("div", {}, el("div", { class: "title" }, setting.label),
      setting.hint ? el("div", { class: "hint" }, setting.hint) : null),
    el("div", { class: "inputs" }, ...inputs),
    stateCell(setting));
}

function tableBlock(group) {
  const first = group.rows[0];
  const head = el("tr", {}, el("th", { scope: "col" }, first.fixed.phase ? "Phase" : "Channel"),
    ...group.params.map((p) => {
      const hint = rangeText(spec(first, p));
      return el("th", { scope: "col" }, LABELS[p] || p, hint ? el("div", { class: "muted" }, el("small", {}, hint)) : null);
    }),
    el("th", { scope: "col" }, "State"));
  const rows = group.rows.map((setting) => {
    setting.label = `${group.label} ${setting.rowLabel}`;
    state.settings.set(setting.id, setting);
    return el("tr", { "data-setting": setting.id, "data-command": setting.command },
      el("th", { scope: "row" }, setting.rowLabel),
      ...setting.params.map((p) => el("td", {}, control(setting, p, `${setting.rowLabel} ${LABELS[p] || p}`))),
      el("td", {}, stateCell(setting)));
  });
  return el("div", { class: "setting setting-wide" },
    el("div", { class: "title" }, group.label),
    el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows))));
}

function sectionBlock(section) {
  const msg = el("span", { class: "msg", role: "status", "aria-live": "polite" });
  const fs = el("fieldset", { class: "setting-group", id: `section-${section.id}`, "data-section": section.id },
    el("legend", {}, section.title),
    ...section.items.map((it) => (it.table ? tableBlock(it) : settingBlock(it))),
    el("div", { class: "actions" },
      el("button", { type: "submit", class: "btn-primary", "data-needs-admin": true, "data-save": section.id }, `Save ${section.title.toLowerCase()}`),
      el("button", { type: "button", "data-revert": section.id }, "Revert"), msg));
  const form = el("form", { novalidate: true, "aria-label": section.title }, fs);
  form.addEventListener("input", (ev) => markDirty(ev.target));
  form.addEventListener("change", (ev) => {
    if (ev.target.dataset.ct !== undefined) say(msg, ctRule(ev.target));
    markDirty(ev.target);
  });
  form.addEventListener("submit", (ev) => { ev.preventDefault(); save(section, msg); });
  fs.querySelector("[data-revert]").addEventListener("click", () => {
    for (const id of settingIds(section)) { state.dirty.delete(id); state.local.delete(id); }
    refreshForms(true);
    say(msg, "");
  });
  return form;
}

function settingIds(section) {
  return section.items.flatMap((it) => (it.table ? it.rows : [it])).map((s) => s.id);
}

function markDirty(target) {
  const holder = target.closest("[data-setting]");
  if (!holder) return;
  const setting = state.settings.get(holder.dataset.setting);
  state.dirty.add(setting.id);
  state.local.delete(setting.id);
  crossCheck(setting);
  showState(setting);
}

function showState(setting) {
  const cell = $(`[data-state-for="${setting.id}"]`);
  if (!cell) return;
  const row = state.shadow.get(setting.id);
  const local = state.local.get(setting.id);
  let st = row ? row.state : "unknown";
  let text = { in_sync: "confirmed", pending: "pending", failed: "failed", timed_out: "timed out",
    reported_only: "reported", unknown: "unknown" }[st] || st;
  if (local) { st = local.state; text = local.text; }
  else if (state.dirty.has(setting.id)) { st = "unknown"; text = "edited, not sent"; }
  const badge = cell.querySelector(".badge");
  badge.dataset.state = st;
  badge.textContent = text;
  const notes = [];
  if (row && row.reported) notes.push(`device: ${describeParams(setting, paramsOfItem(setting, row.reported))}`);
  if (row && row.desired && row.state !== "in_sync") notes.push(`sent: ${describeParams(setting, paramsOfItem(setting, row.desired))}`);
  cell.querySelector("[data-note]").textContent = notes.join(" · ");
  let error = local && local.error ? local.error : "";
  if (!error && row && ["failed", "timed_out"].includes(row.state)) {
    error = row.downlink_result ? `device answered ${Object.values(row.downlink_result).join(", ")}` : row.state.replace("_", " ");
  }
  cell.querySelector("[data-error]").textContent = error;
}

function refreshForms(all = false) {
  for (const setting of state.settings.values()) {
    if (all || !state.dirty.has(setting.id)) {
      const params = paramsOfItem(setting, shadowItem(setting));
      if (params) writeParams(setting, params);
      else if (all || !state.dirty.has(setting.id)) {
        const defaults = {};
        for (const p of setting.params) {
          const s = spec(setting, p);
          if (s && s.default !== undefined && s.default !== null) defaults[p] = s.default;
        }
        writeParams(setting, defaults);
      }
    }
    showState(setting);
  }
}

// -- talking to the hub --------------------------------------------------------------------------

async function loadShadow() {
  try {
    const rows = await api(`/api/devices/${eui}/config`);
    state.shadow = new Map(rows.map((r) => [r.setting, r]));
    for (const [id, local] of state.local) {
      if (local.state === "sending") continue;
      if (!local.error) state.local.delete(id);
    }
    refreshForms();
    const pending = rows.some((r) => r.state === "pending");
    if (pending && !state.pollTimer) state.pollTimer = setInterval(loadShadow, 3000);
    if (!pending && state.pollTimer) { clearInterval(state.pollTimer); state.pollTimer = null; }
  } catch (e) {
    if (e.status !== 401) banner(`Cannot load the configuration: ${e.message}`);
  }
}

async function save(section, msg) {
  const ids = settingIds(section).filter((id) => state.dirty.has(id));
  if (!ids.length) { say(msg, "Nothing changed."); return; }
  const settings = ids.map((id) => state.settings.get(id));
  const invalid = settings.filter((s) => !crossCheck(s));
  if (invalid.length) {
    const bad = controlsOf(invalid[0]).find((n) => !n.checkValidity());
    if (bad) { bad.reportValidity(); bad.focus(); }
    say(msg, `Not sent: ${invalid.map((s) => s.label).join(", ")} out of range.`, "error");
    return;
  }
  say(msg, `Sending ${settings.length} setting${settings.length > 1 ? "s" : ""}…`);
  let sent = 0;
  for (const setting of settings) {
    state.local.set(setting.id, { state: "sending", text: "sending" });
    showState(setting);
    try {
      const params = readParams(setting);
      for (const k of Object.keys(params)) if (params[k] === null) delete params[k];
      await api(`/api/devices/${eui}/downlinks`, { method: "POST", body: { command: setting.command, params } });
      state.local.delete(setting.id);
      state.dirty.delete(setting.id);
      sent += 1;
    } catch (e) {
      if (e.status === 401) return;
      state.local.set(setting.id, { state: "refused", text: "refused", error: e.message });
      showState(setting);
    }
  }
  say(msg, sent === settings.length ? `Sent ${sent}; waiting for the device to confirm.` :
    `Sent ${sent} of ${settings.length}; see the settings marked refused.`, sent === settings.length ? "ok" : "error");
  await loadShadow();
}

async function init() {
  state.session = await initShell();
  let device, commands;
  try {
    [device, commands] = await Promise.all([api(`/api/devices/${eui}`), api("/api/commands")]);
  } catch (e) {
    if (e.status !== 401) banner(e.status === 404 ? `Unknown device ${eui}.` : `Cannot load: ${e.message}`);
    return;
  }
  $("#dev-name").textContent = device.name || eui;
  for (const c of commands) state.catalogue.set(c.command, new Map(c.parameters.map((p) => [p.name, p])));
  $("#sections").replaceChildren(...SECTIONS.map(sectionBlock));
  applyRole(state.session);
  if (!isAdmin(state.session)) {
    for (const n of $$("#sections [data-param]")) n.disabled = true;
  }
  await loadShadow();
  if (state.shadow.size < 10) {
    say($("#top-msg"), "The hub has not seen most of this device's settings yet: read them from the device.");
  }

  $("#read-all").addEventListener("click", async () => {
    try {
      await api(`/api/devices/${eui}/downlinks`, { method: "POST", body: { command: "query_all_config", params: {} } });
      say($("#top-msg"), "Asked the device for all its settings; they appear as it answers.", "ok");
      if (!state.pollTimer) state.pollTimer = setInterval(loadShadow, 3000);
      setTimeout(() => { if (state.pollTimer && ![...state.shadow.values()].some((r) => r.state === "pending")) { clearInterval(state.pollTimer); state.pollTimer = null; } }, 60000);
    } catch (e) {
      say($("#top-msg"), `Not sent: ${e.message}`, "error");
    }
  });
  $("#template-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("#template-name").value.trim();
    if (!name) return;
    try {
      const t = await api("/api/templates", { method: "POST", body: { name, from_device: eui } });
      const n = t && t.settings ? t.settings.length : 0;
      const skipped = t && t.skipped && t.skipped.length ? ` (${t.skipped.length} settings no command can set were left out)` : "";
      $("#top-msg").replaceChildren(`Template “${name}” saved with ${n} settings${skipped}. `,
        el("a", { href: "/templates" }, "Apply it to other devices"));
      $("#top-msg").dataset.kind = "ok";
    } catch (e) {
      say($("#top-msg"), `Template not saved: ${e.message}`, "error");
    }
  });
  const refresh = throttle(loadShadow, 1000);
  live({ devEui: eui, onDownlink: refresh, poll: loadShadow, pollS: 10 });
  pageReady();
}

init();
