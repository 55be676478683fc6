// Configuration templates: save a device's configuration (POST /api/templates {from_device}),
// look at one, apply it to many devices (POST /api/templates/{id}/apply), delete it.
import { $, $$, api, applyRole, banner, el, initShell, pageReady, say, timeEl } from "./app.js";

const state = { session: null, devices: [], templates: [] };

const humanize = (s) => String(s).replace(/^set_/, "").replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());

function paramsText(params) {
  return Object.entries(params || {}).map(([k, v]) => `${k.replaceAll("_", " ")} ${Array.isArray(v) ? v.join("/") : v}`).join(", ");
}

function templateCard(t) {
  const msg = el("span", { class: "msg", role: "status", "aria-live": "polite" });
  const picks = el("fieldset", { class: "channel-picks" }, el("legend", {}, "Apply to"),
    el("label", { class: "check" }, el("input", { type: "checkbox", "data-all": true }), el("strong", {}, "all devices")),
    ...state.devices.map((d) => el("label", { class: "check" },
      el("input", { type: "checkbox", name: "dev", value: d.dev_eui }), d.name ? `${d.name} (${d.dev_eui})` : d.dev_eui)));
  picks.querySelector("[data-all]").addEventListener("change", (ev) => {
    for (const c of $$("input[name=dev]", picks)) c.checked = ev.target.checked;
  });
  const form = el("form", { class: "toolbar", "aria-label": `Apply ${t.name}` }, picks,
    el("button", { type: "submit", class: "btn-primary", "data-needs-admin": true }, "Apply"),
    el("button", { type: "button", class: "btn-danger", "data-needs-admin": true, "data-delete": t.id }, "Delete"), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const euis = $$("input[name=dev]:checked", picks).map((c) => c.value);
    if (!euis.length) { say(msg, "Pick at least one device.", "error"); return; }
    say(msg, "Queuing…");
    try {
      const r = await api(`/api/templates/${t.id}/apply`, { method: "POST", body: { dev_euis: euis } });
      const n = r && r.queued ? r.queued.length : 0;
      msg.replaceChildren(`Queued ${n} downlink${n === 1 ? "" : "s"} for ${euis.length} device${euis.length === 1 ? "" : "s"}: `,
        ...euis.flatMap((e, k) => [k ? ", " : "", el("a", { href: `/devices/${e}/config` }, e)]));
      msg.dataset.kind = "ok";
    } catch (e) {
      say(msg, `Not applied: ${e.message}`, "error");
    }
  });
  form.querySelector("[data-delete]").addEventListener("click", async () => {
    if (!confirm(`Delete the template “${t.name}”?`)) return;
    try {
      await api(`/api/templates/${t.id}`, { method: "DELETE" });
      await load();
    } catch (e) { say(msg, `Not deleted: ${e.message}`, "error"); }
  });
  const settings = t.settings || [];
  return el("article", { class: "panel", "data-template-id": t.id },
    el("h3", {}, t.name, el("span", { class: "muted" }, ` · ${settings.length} settings`),
      t.created_at ? el("span", { class: "muted" }, " · saved ", timeEl(t.created_at, false)) : null,
      t.source_dev_eui || t.from_device ? el("span", { class: "muted" }, ` · from ${t.source_dev_eui || t.from_device}`) : null),
    el("details", {}, el("summary", {}, "Settings"),
      el("div", { class: "table-wrap" }, el("table", {},
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Setting"), el("th", { scope: "col" }, "Values"))),
        el("tbody", {}, ...settings.map((s) => el("tr", {}, el("td", {}, humanize(s.command)), el("td", {}, paramsText(s.params)))))))),
    form);
}

async function load() {
  try {
    state.templates = await api("/api/templates");
  } catch (e) {
    if (e.status !== 401) banner(e.status === 404 ? "This hub has no template API yet (GET /api/templates)." : `Cannot load templates: ${e.message}`);
    $("#template-list").replaceChildren();
    return;
  }
  const list = $("#template-list");
  list.replaceChildren(...(state.templates.length ? state.templates.map(templateCard)
    : [el("p", { class: "muted" }, "No template yet: save one from a device.")]));
  applyRole(state.session, list);
}

async function init() {
  state.session = await initShell();
  try { state.devices = await api("/api/devices"); } catch (e) { state.devices = []; }
  const pick = $("#nt-device");
  pick.replaceChildren(...state.devices.map((d) => el("option", { value: d.dev_eui }, d.name ? `${d.name} (${d.dev_eui})` : d.dev_eui)));
  const from = new URLSearchParams(location.search).get("from");
  if (from) pick.value = from;
  $("#new-template").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("#nt-msg");
    try {
      const t = await api("/api/templates", { method: "POST", body: { name: $("#nt-name").value.trim(), from_device: pick.value } });
      say(msg, `Saved “${t.name}”.`, "ok");
      $("#nt-name").value = "";
      await load();
    } catch (e) { say(msg, `Not saved: ${e.message}`, "error"); }
  });
  await load();
  pageReady();
}

init();
