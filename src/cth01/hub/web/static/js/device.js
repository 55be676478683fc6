// One device, live: the latest reading (GET /api/devices/{eui}/latest) laid out as the meter
// is wired — supply (L1-L3, THDv, unbalance, temperature) and the four CT groups a-d with
// their channels; refreshed when the event stream says the device reported.
import {
  $, $$, ALARM_ITEMS, api, applyRole, banner, DASH, el, fmtPower, GROUPS, initShell, isAdmin,
  live, pageReady, say, throttle, timeEl,
} from "./app.js";

const eui = document.body.dataset.eui;
const state = { device: null, latest: null, editing: false, session: null };

// How each quantity is shown: digits after the point and unit (values as stored).
const SHOW = {
  current_a: [2, "A"], thdi_pct: [2, "%"], power_factor_pct: [0, "%"],
  voltage_v: [2, "V"], thdv_pct: [2, "%"], voltage_unbalance_pct: [2, "%"], temperature_c: [2, "°C"],
};

function fmt(quantity, v) {
  if (v === null || v === undefined) return DASH;
  if (quantity === "active_power_w") return fmtPower(v);
  if (quantity === "imported_active_wh") return `${(v / 1000).toFixed(3)} kWh`;
  const [digits, unit] = SHOW[quantity] || [2, ""];
  return `${Number(v).toFixed(digits)} ${unit}`;
}

function deviceColumnKind(col) {
  if (col.startsWith("voltage_l")) return "voltage_v";
  if (col.startsWith("thdv_l")) return "thdv_pct";
  return col;
}

function setCell(node, col, quantity, values) {
  const v = values ? values[col] : undefined;
  const text = fmt(quantity, v);
  if (node.textContent !== text && node.textContent !== "" && node.textContent !== DASH) {
    node.classList.remove("flash");
    void node.offsetWidth;  // restart the animation
    node.classList.add("flash");
  }
  node.textContent = text;
  node.dataset.value = v === null || v === undefined ? "" : String(v);
}

function channelInfo(ch) {
  const fromLatest = state.latest && (state.latest.channels || []).find((c) => c.channel === ch);
  const fromDevice = state.device && (state.device.channels || []).find((c) => c.channel === ch);
  return { ...(fromDevice || {}), ...(fromLatest || {}) };
}

function isThreePhase(group) {
  const first = channelInfo(GROUPS.indexOf(group) * 3 + 1);
  if (first.phase) return /^three/.test(first.phase);
  const wiring = (state.device && state.device.wiring) || "";
  return new RegExp(`${group}:three`).test(wiring);
}

function circuitCell(ch) {
  const info = channelInfo(ch);
  if (state.editing) {
    const input = (field, placeholder) => el("input", {
      value: info[field] || "", "data-channel": ch, "data-field": field, maxlength: 80,
      "aria-label": `Channel ${ch} ${field}`, placeholder,
    });
    return el("td", { class: "circuit" }, input("circuit", "circuit name"), input("tenant", "tenant"));
  }
  return el("td", {},
    el("span", { "data-col": `c${ch}_circuit` }, info.circuit || ""),
    info.circuit ? null : el("span", { class: "muted" }, "—"),
    el("div", { class: "muted" }, el("small", { "data-col": `c${ch}_tenant` }, info.tenant || "")));
}

function groupPanel(group) {
  const three = isThreePhase(group);
  const first = GROUPS.indexOf(group) * 3 + 1;
  const rows = [];
  for (let k = 0; k < 3; k++) {
    const ch = first + k;
    const cells = [
      el("th", { scope: "row" }, String(ch), three ? el("span", { class: "muted" }, ` L${k + 1}`) : null),
      circuitCell(ch),
      el("td", { class: "num", "data-col": `c${ch}_current_a` }, DASH),
    ];
    const own = (q) => el("td", { class: "num", "data-col": `c${ch}_${q}` }, DASH);
    if (!three) {
      cells.push(own("active_power_w"), own("power_factor_pct"), own("imported_active_wh"));
    } else if (k === 0) {
      for (const q of ["active_power_w", "power_factor_pct", "imported_active_wh"]) {
        cells.push(el("td", { class: "num", rowspan: 3, "data-col": `c${ch}_${q}`,
          title: "three-phase circuit total" }, DASH));
      }
    }
    cells.push(el("td", { class: "num", "data-col": `c${ch}_thdi_pct` }, DASH));
    rows.push(el("tr", { "data-channel": ch }, ...cells));
  }
  return el("section", { class: "panel group", "data-group": group, "aria-label": `Group ${group.toUpperCase()}` },
    el("h3", {}, `Group ${group.toUpperCase()}`,
      el("span", { class: "kind" }, three ? "three-phase circuit (power, PF and energy: circuit total)"
        : "three single-phase circuits")),
    el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Ch"), el("th", { scope: "col" }, "Circuit · tenant"),
        el("th", { scope: "col", class: "num" }, "Current"),
        el("th", { scope: "col", class: "num" }, "Power"), el("th", { scope: "col", class: "num" }, "PF"),
        el("th", { scope: "col", class: "num" }, "Energy"), el("th", { scope: "col", class: "num" }, "THDi"))),
      el("tbody", {}, ...rows))));
}

const wiringShown = () => GROUPS.map((g) => (isThreePhase(g) ? "3" : "1")).join("");

function renderGroups() {
  $("#groups").replaceChildren(...GROUPS.map(groupPanel));
  $("#groups").dataset.wiring = wiringShown();
  fillValues();
}

function fillValues() {
  const values = state.latest ? state.latest.values || {} : null;
  for (const node of $$("[data-col]", document)) {
    const col = node.dataset.col;
    const m = /^c(\d+)_(.+)$/.exec(col);
    if (m && ["circuit", "tenant"].includes(m[2])) continue;
    setCell(node, col, m ? m[2] : deviceColumnKind(col), values);
  }
  const ts = state.latest && state.latest.ts;
  const line = $("#reading-time");
  line.replaceChildren(...(ts ? ["Latest reading ", timeEl(ts)] : ["No reading stored yet."]));
  if (ts) line.dataset.ts = String(ts);
}

function renderHead() {
  const d = state.device;
  $("#dev-name").textContent = d.name || d.dev_eui;
  document.title = `${d.name || d.dev_eui} · cth01 hub`;
  const parts = [`DevEUI ${d.dev_eui}`];
  if (d.site) parts.push(`site ${d.site}`);
  if (d.tenant) parts.push(`tenant ${d.tenant}`);
  if (d.reporting_interval_s) parts.push(`reports every ${Math.round(d.reporting_interval_s / 60)} min`);
  $("#dev-sub").textContent = parts.join(" · ");
}

async function loadLatest() {
  try {
    state.latest = await api(`/api/devices/${eui}/latest`);
    // a group rewired (single <-> three-phase) is laid out again
    if ($("#groups").dataset.wiring && $("#groups").dataset.wiring !== wiringShown() && !state.editing) {
      renderGroups();
    } else {
      fillValues();
    }
  } catch (e) {
    if (e.status === 404) {  // the device is known (load() checked): it has not reported yet
      state.latest = null;
      fillValues();
    } else if (e.status !== 401) {
      banner(`Cannot load the latest reading: ${e.message}`);
    }
  }
}

async function loadAlarms() {
  const list = $("#device-alarms");
  try {
    const rows = await api(`/api/alarms?dev_eui=${eui}&status=active`);
    list.replaceChildren(...(rows.length ? rows.map((a) => el("li", { "data-alarm-id": a.id },
      el("strong", {}, ALARM_ITEMS[a.item] || a.item), a.channel ? ` channel ${a.channel}` : "",
      ` — ${a.condition.replaceAll("_", " ")} since `, timeEl(a.first_at),
      a.acknowledged_at ? el("span", { class: "muted" }, " (acknowledged)") : "")) :
      [el("li", { class: "muted" }, "None.")]));
  } catch (e) {
    list.replaceChildren(el("li", { class: "muted" }, `Cannot load alarms: ${e.message}`));
  }
}

async function load() {
  try {
    state.device = await api(`/api/devices/${eui}`);
  } catch (e) {
    if (e.status !== 401) banner(e.status === 404 ? `Unknown device ${eui}.` : e.message);
    return;
  }
  renderHead();
  await loadLatest();
  renderGroups();
  loadAlarms();
}

// -- editing names (admin) -------------------------------------------------------------------

function initEditing() {
  const form = $("#names-form");
  $("#edit-names").addEventListener("click", () => {
    state.editing = true;
    form.hidden = false;
    $("#f-name").value = state.device.name || "";
    $("#f-site").value = state.device.site || "";
    $("#f-tenant").value = state.device.tenant || "";
    renderGroups();
    applyRole(state.session, form);
    $("#f-name").focus();
  });
  $("#cancel-names").addEventListener("click", () => {
    state.editing = false;
    form.hidden = true;
    renderGroups();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const channels = {};
    for (const input of $$("#groups input[data-channel]")) {
      const ch = input.dataset.channel;
      channels[ch] = channels[ch] || {};
      channels[ch][input.dataset.field] = input.value.trim();
    }
    const msg = $("#names-msg");
    say(msg, "Saving…");
    try {
      state.device = await api(`/api/devices/${eui}`, { method: "PATCH", body: {
        name: $("#f-name").value.trim(), site: $("#f-site").value.trim(),
        tenant: $("#f-tenant").value.trim(), channels,
      } });
      state.editing = false;
      form.hidden = true;
      renderHead();
      await loadLatest();
      renderGroups();
      say(msg, "");
    } catch (e) {
      say(msg, `Not saved: ${e.message}`, "error");
    }
  });
}

state.session = await initShell();
$("#edit-names").hidden = !isAdmin(state.session);
initEditing();
await load();
const refreshLatest = throttle(loadLatest, 1000);
live({
  devEui: eui,
  onReadings: (data) => {
    if (!data || !data.devices || data.devices.includes(eui)) refreshLatest();
  },
  onAlarm: () => loadAlarms(),
  poll: () => { loadLatest(); loadAlarms(); },
  pollS: 15,
});
pageReady();
