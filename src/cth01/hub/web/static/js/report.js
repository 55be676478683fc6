// Monthly energy report (GET /api/reports/energy?month=&tariff_id=): per channel and per tenant,
// priced with a flat or time-of-use tariff; CSV export (/api/reports/energy.csv) and a printable
// page (print CSS; PDF through the browser's print dialog). Tariffs: /api/tariffs (admin).
import {
  $, $$, api, applyRole, banner, DASH, download, el, fmtTime, hubNow, initShell, pageReady, say,
} from "./app.js";

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];  // index = the API's day 0..6
const state = { session: null, tariffs: [], report: null };

const kwh = (v) => (v === null || v === undefined ? DASH : Number(v).toFixed(3));
function money(v, currency) {
  if (v === null || v === undefined) return DASH;
  return `${Number(v).toFixed(2)}${currency ? " " + currency : ""}`;
}
const when = (v) => (typeof v === "number" ? fmtTime(v, false) : v || "");

function bandsText(bands, currency) {
  if (!bands) return "";
  const list = Array.isArray(bands) ? bands : Object.entries(bands).map(([name, b]) => ({ name, ...(typeof b === "object" ? b : { energy_kwh: b }) }));
  return list.map((b) => `${b.name}: ${kwh(b.energy_kwh)} kWh${b.cost !== undefined && b.cost !== null ? " · " + money(b.cost, currency) : ""}`).join("; ");
}

function params() {
  const p = new URLSearchParams({ month: $("#month").value });
  if ($("#tariff").value) p.set("tariff_id", $("#tariff").value);
  return p;
}

function render() {
  const r = state.report;
  const cur = r.currency || (r.tariff && r.tariff.currency) || "";
  const priced = Boolean(r.tariff);
  const [year, mon] = r.month.split("-").map(Number);
  const monthName = new Date(Date.UTC(year, mon - 1, 15)).toLocaleString("en", { month: "long", timeZone: "UTC" });
  $("#report-title").textContent = `${monthName} ${year}`;
  const tariffName = r.tariff ? (typeof r.tariff === "string" ? r.tariff : r.tariff.name) : null;
  $("#report-period").textContent = [`${when(r.start)} – ${when(r.end)}`, r.timezone ? `time zone ${r.timezone}` : null,
    tariffName ? `tariff ${tariffName}` : "no tariff"].filter(Boolean).join(" · ");
  $("#total-kwh").textContent = `${kwh(r.total && r.total.energy_kwh)} kWh`;
  $("#total-cost").textContent = priced ? money(r.total && r.total.cost, cur) : DASH;
  $("#tenant-count").textContent = String((r.tenants || []).length);
  $("#tenants").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Tenant"), el("th", { scope: "col", class: "num" }, "Energy (kWh)"),
      el("th", { scope: "col", class: "num" }, `Cost${cur ? " (" + cur + ")" : ""}`))),
    el("tbody", {}, ...(r.tenants || []).map((t) => el("tr", { "data-tenant": t.tenant ?? "" },
      el("td", {}, t.tenant || el("span", { class: "muted" }, "unassigned")),
      el("td", { class: "num", "data-col": "energy_kwh", "data-value": t.energy_kwh ?? "" }, kwh(t.energy_kwh)),
      el("td", { class: "num", "data-col": "cost", "data-value": t.cost ?? "" }, priced ? money(t.cost) : DASH)))),
    el("tfoot", {}, el("tr", {}, el("th", { scope: "row" }, "Total"),
      el("td", { class: "num", "data-col": "energy_kwh" }, kwh(r.total && r.total.energy_kwh)),
      el("td", { class: "num", "data-col": "cost" }, priced ? money(r.total && r.total.cost) : DASH))));
  $("#channels").replaceChildren(
    el("thead", {}, el("tr", {}, ...["Device", "Ch", "Circuit", "Tenant"].map((h) => el("th", { scope: "col" }, h)),
      el("th", { scope: "col", class: "num" }, "Energy (kWh)"), el("th", { scope: "col", class: "hide-narrow" }, "Source"),
      el("th", { scope: "col", class: "num" }, `Cost${cur ? " (" + cur + ")" : ""}`))),
    el("tbody", {}, ...(r.channels || []).map((c) => el("tr", { "data-eui": c.dev_eui, "data-channel": c.channel },
      el("td", {}, el("a", { href: `/devices/${c.dev_eui}` }, c.device_name || c.dev_eui)),
      el("td", {}, String(c.channel)),
      el("td", {}, c.circuit || el("span", { class: "muted" }, DASH)),
      el("td", {}, c.tenant || el("span", { class: "muted" }, "unassigned")),
      el("td", { class: "num", "data-col": "energy_kwh", "data-value": c.energy_kwh ?? "" }, kwh(c.energy_kwh)),
      el("td", { class: "hide-narrow muted" }, c.source || ""),
      el("td", { class: "num", "data-col": "cost", "data-value": c.cost ?? "" }, priced ? money(c.cost) : DASH,
        c.bands ? el("div", { class: "bands" }, bandsText(c.bands, "")) : null)))));
  $("#report-notes").textContent = "Energy: imported active energy of each channel over the local month — " +
    "from the device's own monthly summary where it sent one (source device_summary), else computed from its readings." +
    (priced ? " Tenant costs include the tariff's standing charge." : "");
  $("#printed-at").textContent = `Printed ${fmtTime(Date.now() / 1000, false)}`;
}

async function loadReport() {
  const msg = $("#report-msg");
  say(msg, "Loading…");
  const p = params();
  history.replaceState(null, "", `?${p}`);
  try {
    state.report = await api(`/api/reports/energy?${p}`);
    render();
    say(msg, "");
  } catch (e) {
    if (e.status === 401) return;
    say(msg, e.status === 404 ? "This hub has no report API yet (GET /api/reports/energy)." : `Cannot load: ${e.message}`, "error");
  }
}

async function exportCsv() {
  const msg = $("#report-msg");
  try {
    const res = await api(`/api/reports/energy.csv?${params()}`, { raw: true });
    const name = (/filename="?([^";]+)"?/.exec(res.headers.get("Content-Disposition") || "") || [])[1]
      || `energy_${$("#month").value}.csv`;
    download(name, await res.blob());
  } catch (e) {
    if (e.status !== 401) say(msg, `Cannot export: ${e.message}`, "error");
  }
}

// -- tariffs ------------------------------------------------------------------------------------

function tariffSummary(t) {
  const standing = t.standing_charge_per_month ? ` + ${t.standing_charge_per_month} ${t.currency}/month` : "";
  if (t.kind === "tou") {
    const bands = (t.bands || []).filter((b) => b.name !== "*").map((b) =>
      `${b.name} ${b.price_per_kwh}/kWh ${b.days.map((d) => DAYS[d]).join(",")} ${b.start}–${b.end}`);
    const rest = t.price_per_kwh === null || t.price_per_kwh === undefined ? []
      : [`other hours ${t.price_per_kwh}/kWh`];
    return `${t.currency}: ${[...bands, ...rest].join("; ")}${standing}`;
  }
  return `${t.price_per_kwh} ${t.currency}/kWh${standing}`;
}

function renderTariffs() {
  const sel = $("#tariff");
  const keep = sel.value;
  sel.replaceChildren(el("option", { value: "" }, "No tariff (energy only)"),
    ...state.tariffs.map((t) => el("option", { value: t.id }, `${t.name} (${t.kind === "tou" ? "time of use" : "flat"})`)));
  sel.value = keep;
  $("#tariff-list").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Kind"),
      el("th", { scope: "col" }, "Prices"), el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Actions")))),
    el("tbody", {}, ...(state.tariffs.length ? state.tariffs.map((t) => el("tr", { "data-tariff-id": t.id },
      el("td", {}, t.name), el("td", {}, t.kind === "tou" ? "time of use" : "flat"), el("td", {}, tariffSummary(t)),
      el("td", { class: "nowrap" },
        el("button", { type: "button", "data-needs-admin": true, onclick: () => editTariff(t) }, "Edit"), " ",
        el("button", { type: "button", class: "btn-danger", "data-needs-admin": true, onclick: () => deleteTariff(t) }, "Delete"))))
      : [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No tariff yet."))])));
  applyRole(state.session, $("#tariff-list"));
}

async function loadTariffs() {
  try {
    state.tariffs = await api("/api/tariffs");
  } catch (e) {
    state.tariffs = [];
    if (e.status === 404) say($("#t-msg"), "This hub has no tariff API yet (/api/tariffs).", "error");
  }
  renderTariffs();
}

function bandRow(b = { name: "", price_per_kwh: "", days: [0, 1, 2, 3, 4], start: "07:00", end: "22:00" }) {
  const k = $$("#band-rows tr").length + 1;
  const row = el("tr", {},
    el("td", {}, el("input", { "data-band": "name", value: b.name, required: true, "aria-label": `Band ${k} name`, size: 10 })),
    el("td", {}, el("input", { "data-band": "price_per_kwh", type: "number", min: 0, step: "0.0001", value: b.price_per_kwh, required: true, "aria-label": `Band ${k} price per kWh` })),
    el("td", {}, el("span", { class: "inputs", role: "group", "aria-label": `Band ${k} days` }, ...DAYS.map((d, i) => el("label", { class: "check" },
      el("input", { type: "checkbox", "data-band-day": i, checked: b.days.includes(i) }), d)))),
    el("td", {}, el("input", { "data-band": "start", type: "time", value: b.start, required: true, "aria-label": `Band ${k} from` })),
    el("td", {}, el("input", { "data-band": "end", type: "time", value: b.end, required: true, "aria-label": `Band ${k} to` })),
    el("td", {}, el("button", { type: "button", "aria-label": `Remove band ${k}`, onclick: (ev) => ev.target.closest("tr").remove() }, "✕")));
  $("#band-rows").append(row);
}

function editTariff(t) {
  $("#tariff-form-h").textContent = t ? `Edit tariff “${t.name}”` : "New tariff";
  $("#t-id").value = t ? t.id : "";
  $("#t-name").value = t ? t.name : "";
  $("#t-currency").value = t ? t.currency : "EUR";
  $("#t-kind").value = t ? t.kind : "flat";
  $("#t-price").value = t && t.price_per_kwh !== null ? t.price_per_kwh : "";
  $("#t-standing").value = t && t.standing_charge_per_month ? t.standing_charge_per_month : "";
  $("#band-rows").replaceChildren();
  for (const b of ((t && t.bands) || []).filter((x) => x.name !== "*")) bandRow(b);
  showKind();
  if (t) $("#t-name").focus();
}

function showKind() {
  const tou = $("#t-kind").value === "tou";
  $("#t-bands").hidden = $("#t-bands").disabled = !tou;
  $("#t-price").required = !tou;
  $("#t-price-hint").hidden = !tou;
}

async function deleteTariff(t) {
  if (!confirm(`Delete the tariff “${t.name}”?`)) return;
  const priced = $("#tariff").value === String(t.id);
  try {
    await api(`/api/tariffs/${t.id}`, { method: "DELETE" });
    await loadTariffs();
    if (priced) await loadReport();  // the report shown was priced with it
  } catch (e) { say($("#t-msg"), `Not deleted: ${e.message}`, "error"); }
}

async function saveTariff(ev) {
  ev.preventDefault();
  const form = $("#tariff-form");
  if (!form.reportValidity()) return;
  const kind = $("#t-kind").value;
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  const body = { name: $("#t-name").value.trim(), currency: $("#t-currency").value.trim(), kind,
    price_per_kwh: num("#t-price") };
  if (num("#t-standing") !== null) body.standing_charge_per_month = num("#t-standing");
  if (kind === "tou") {
    body.bands = $$("#band-rows tr").map((tr) => ({
      name: $("[data-band=name]", tr).value.trim(),
      price_per_kwh: Number($("[data-band=price_per_kwh]", tr).value),
      days: $$("[data-band-day]", tr).filter((c) => c.checked).map((c) => Number(c.dataset.bandDay)),
      start: $("[data-band=start]", tr).value, end: $("[data-band=end]", tr).value,
    }));
  }
  const id = $("#t-id").value;
  try {
    const saved = await api(id ? `/api/tariffs/${id}` : "/api/tariffs", { method: id ? "PUT" : "POST", body });
    say($("#t-msg"), `Saved “${body.name}”.`, "ok");
    editTariff(null);
    await loadTariffs();
    if (saved && saved.id !== undefined) {
      $("#tariff").value = String(saved.id);
      await loadReport();  // priced with what was just saved
    }
  } catch (e) { say($("#t-msg"), `Not saved: ${e.message}`, "error"); }
}

async function init() {
  state.session = await initShell();
  const p = new URLSearchParams(location.search);
  const now = new Date((await hubNow()) * 1000);
  $("#month").value = p.get("month") || `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
  await loadTariffs();
  if (p.get("tariff_id")) $("#tariff").value = p.get("tariff_id");
  $("#report-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadReport(); });
  $("#tariff").addEventListener("change", loadReport);
  $("#export-csv").addEventListener("click", exportCsv);
  $("#print").addEventListener("click", () => window.print());
  $("#t-kind").addEventListener("change", () => {
    showKind();
    if ($("#t-kind").value === "tou" && !$$("#band-rows tr").length) bandRow();
  });
  $("#add-band").addEventListener("click", () => bandRow());
  $("#t-cancel").addEventListener("click", () => editTariff(null));
  $("#tariff-form").addEventListener("submit", saveTariff);
  await loadReport();
  pageReady();
}

init();
