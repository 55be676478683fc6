// History charts: any quantity of one device, several channels (or phases) overlaid, over any
// range. The hub downsamples (GET /api/devices/{eui}/readings?...&points=N): zooming or panning
// asks it again for the new range, so detail appears as you zoom. Export: the data shown as
// CSV, the chart as PNG.
import {
  $, $$, api, banner, download, el, fmtTime, hubNow, initShell, isoUtc, pageReady, say, toCsv,
} from "./app.js";

const eui = document.body.dataset.eui;
const PALETTE = ["#5cb8ff", "#ffb547", "#3ddc84", "#ff6b6b", "#c792ea", "#4dd0e1",
  "#f48fb1", "#d4e157", "#ff8a65", "#90a4ae", "#7986cb", "#a1887f"];
const PHASE_QUANTITIES = { voltage: "voltage_l{}_v", thdv: "thdv_l{}_pct" };
const DIGITS = { W: 0, var: 0, VA: 0, Wh: 0, varh: 0, VAh: 0, A: 2, V: 2, "%": 2, "°C": 2 };

const state = {
  device: null, quantity: "active_power_w", picks: [1], start: 0, end: 0, points: 500,
  envelope: false, series: [], unit: "", chart: null, loading: 0,
};

const isChannelQuantity = (q) => !(q in PHASE_QUANTITIES) && !["voltage_unbalance_pct", "temperature_c"].includes(q);

/** The series a choice stands for: [{key, label, quantity, channel}]. */
function seriesOf(quantity, picks) {
  if (quantity in PHASE_QUANTITIES) {
    return picks.map((k) => ({ key: `L${k}`, label: `L${k}`, quantity: PHASE_QUANTITIES[quantity].replace("{}", k), channel: null, color: PALETTE[k - 1] }));
  }
  if (!isChannelQuantity(quantity)) {
    return [{ key: quantity, label: $("#quantity").selectedOptions[0].textContent.replace(/ \(.*\)$/, ""), quantity, channel: null, color: PALETTE[0] }];
  }
  return picks.map((ch) => {
    const info = (state.device && state.device.channels || []).find((c) => c.channel === ch) || {};
    return { key: `ch${ch}`, label: `Ch ${ch}${info.circuit ? " " + info.circuit : ""}`, quantity, channel: ch, color: PALETTE[(ch - 1) % PALETTE.length] };
  });
}

// -- controls <-> state <-> URL ----------------------------------------------------------------

function renderPicks() {
  const box = $("#series-picks");
  const q = $("#quantity").value;
  const legend = el("legend", {}, q in PHASE_QUANTITIES ? "Phases" : isChannelQuantity(q) ? "Channels" : "Series");
  const picks = [];
  if (q in PHASE_QUANTITIES) {
    for (let k = 1; k <= 3; k++) picks.push({ value: k, text: `L${k}`, color: PALETTE[k - 1] });
  } else if (isChannelQuantity(q)) {
    for (let ch = 1; ch <= 12; ch++) {
      const info = (state.device && state.device.channels || []).find((c) => c.channel === ch) || {};
      picks.push({ value: ch, text: `${ch}${info.circuit ? " · " + info.circuit : ""}`, color: PALETTE[(ch - 1) % PALETTE.length] });
    }
  }
  box.hidden = picks.length === 0;
  box.replaceChildren(legend, ...picks.map((p) => el("label", { class: "check" },
    el("input", { type: "checkbox", name: "pick", value: p.value, checked: state.picks.includes(p.value) }),
    el("span", { class: "swatch", style: `background:${p.color}`, "aria-hidden": "true" }), p.text)));
}

const toLocalInput = (ts) => {
  const d = new Date(ts * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
};
const fromLocalInput = (v) => (v ? Math.floor(new Date(v).getTime() / 1000) : null);

function readControls() {
  state.quantity = $("#quantity").value;
  state.picks = $$("#series-picks input[name=pick]:checked").map((i) => Number(i.value));
  state.points = Math.max(10, Math.min(10000, Number($("#points").value) || 500));
  state.envelope = $("#envelope").checked;
  const s = fromLocalInput($("#start").value), e = fromLocalInput($("#end").value);
  if (s !== null) state.start = s;
  if (e !== null) state.end = e;
}

function writeControls() {
  $("#quantity").value = state.quantity;
  renderPicks();
  $("#points").value = String(state.points);
  $("#envelope").checked = state.envelope;
  $("#start").value = toLocalInput(state.start);
  $("#end").value = toLocalInput(state.end);
  const p = new URLSearchParams({ quantity: state.quantity, start: state.start, end: state.end });
  if (state.picks.length) p.set("series", state.picks.join(","));
  if (state.points !== 500) p.set("points", state.points);
  if (state.envelope) p.set("envelope", "1");
  history.replaceState(null, "", `?${p}`);
}

// -- data -------------------------------------------------------------------------------------

async function load() {
  const series = seriesOf(state.quantity, state.picks);
  writeControls();
  const status = $("#status");
  if (!series.length) { say(status, "Pick at least one channel.", "error"); return; }
  if (state.start >= state.end) { say(status, "The range must end after it starts.", "error"); return; }
  const ticket = ++state.loading;
  say(status, "Loading…");
  try {
    const docs = await Promise.all(series.map((s) => {
      const p = new URLSearchParams({ quantity: s.quantity, start: Math.floor(state.start), end: Math.ceil(state.end), points: state.points });
      if (s.channel) p.set("channel", s.channel);
      return api(`/api/devices/${eui}/readings?${p}`);
    }));
    if (ticket !== state.loading) return;  // a newer request won
    state.series = series.map((s, k) => ({ ...s, points: docs[k].points }));
    state.unit = docs[0] ? docs[0].unit : "";
    const n = state.series.reduce((a, s) => a + s.points.length, 0);
    say(status, `${n} points · ${fmtTime(state.start, false)} – ${fmtTime(state.end, false)}`);
    $("#chart").dataset.points = String(n);
    draw();
    renderTable();
  } catch (e) {
    if (ticket === state.loading) say(status, `Cannot load: ${e.message}`, "error");
  }
}

/** x values (bucket starts) and per series mean/min/max aligned on them. */
function aligned() {
  const xs = [...new Set(state.series.flatMap((s) => s.points.map((p) => p.ts)))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, k) => [x, k]));
  const cols = state.series.map((s) => {
    const mean = new Array(xs.length).fill(null), min = mean.slice(), max = mean.slice(), count = mean.slice();
    for (const p of s.points) {
      const k = index.get(p.ts);
      mean[k] = p.mean; min[k] = p.min; max[k] = p.max; count[k] = p.count;
    }
    return { mean, min, max, count };
  });
  return { xs, cols };
}

// -- chart ------------------------------------------------------------------------------------

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function fmtValue(v) {
  if (v === null || v === undefined) return "—";
  return `${Number(v).toFixed(DIGITS[state.unit] ?? 2)} ${state.unit}`;
}

function draw() {
  const box = $("#chart");
  if (typeof window.uPlot !== "function") {
    if (!$("#vendor-missing")) {
      banner("The chart library (uPlot) did not load: run `make vendor` on the hub. The data is listed in the table below.");
    }
    $("#data-details").open = true;
    return;
  }
  const { xs, cols } = aligned();
  const data = [xs];
  const series = [{ label: "Time", value: (u, v) => (v == null ? "—" : fmtTime(v)) }];
  const bands = [];
  state.series.forEach((s, k) => {
    data.push(cols[k].mean);
    series.push({ label: s.label, stroke: s.color, width: 2, spanGaps: false, value: (u, v) => fmtValue(v) });
    if (state.envelope) {
      const at = data.length;
      data.push(cols[k].max, cols[k].min);
      const edge = (label) => ({ label, stroke: s.color + "66", width: 1, dash: [4, 4],
        points: { show: false }, value: (u, v) => fmtValue(v) });
      series.push(edge(`${s.label} max`), edge(`${s.label} min`));
      bands.push({ series: [at, at + 1], fill: s.color + "22" });
    }
  });
  const text = cssVar("--text"), grid = cssVar("--chart-grid");
  const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const opts = {
    width: Math.max(300, box.clientWidth - 16), height: 380,
    scales: { x: { time: true, range: () => [state.start, state.end] } },
    series, bands,
    axes: [axis, { ...axis, size: 80, label: state.unit, labelSize: 20, values: (u, ticks) => ticks.map((t) => t.toLocaleString()) }],
    cursor: { drag: { x: true, y: false, setScale: false } },
    legend: { live: true },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 4) return;
        const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        zoomTo(a, b);
      }],
    },
  };
  if (state.chart) state.chart.destroy();
  box.replaceChildren();
  state.chart = new window.uPlot(opts, data, box);
}

function zoomTo(a, b) {
  if (b - a < 60) { const mid = (a + b) / 2; a = mid - 30; b = mid + 30; }
  state.start = Math.floor(a);
  state.end = Math.ceil(b);
  load();
}

function pan(fraction) {
  const span = state.end - state.start;
  zoomTo(state.start + span * fraction, state.end + span * fraction);
}

function zoomOut() {
  const span = state.end - state.start, mid = (state.start + state.end) / 2;
  zoomTo(mid - span, mid + span);
}

// -- table and exports ------------------------------------------------------------------------

function renderTable() {
  const { xs, cols } = aligned();
  const table = $("#data-table");
  table.tHead.replaceChildren(el("tr", {}, el("th", { scope: "col" }, "Time"),
    ...state.series.map((s) => el("th", { scope: "col", class: "num" }, `${s.label} (${state.unit})`))));
  const body = table.tBodies[0];
  body.replaceChildren(...xs.map((x, k) => el("tr", { "data-ts": x },
    el("td", {}, fmtTime(x)),
    ...state.series.map((s, j) => el("td", { class: "num", "data-series": s.key, "data-value": cols[j].mean[k] ?? "" },
      cols[j].mean[k] === null ? "—" : Number(cols[j].mean[k]).toFixed(DIGITS[state.unit] ?? 2))))));
  if (!xs.length) {
    body.append(el("tr", {}, el("td", { colspan: state.series.length + 1, class: "muted" },
      "No readings in this range.")));
  }
}

function baseName() {
  return `${eui}_${state.quantity}_${state.picks.join("-") || "all"}_${Math.floor(state.start)}_${Math.ceil(state.end)}`;
}

function exportCsv() {
  const { xs, cols } = aligned();
  const header = ["time_utc", "ts"];
  for (const s of state.series) {
    const name = s.channel ? `ch${s.channel}_${s.quantity}` : s.quantity;
    header.push(`${name}_mean`, `${name}_min`, `${name}_max`, `${name}_count`);
  }
  const rows = [header, ...xs.map((x, k) => [isoUtc(x), x,
    ...cols.flatMap((c) => [c.mean[k], c.min[k], c.max[k], c.count[k]])])];
  download(`${baseName()}.csv`, toCsv(rows));
}

function exportPng() {
  const u = state.chart;
  if (!u) { say($("#status"), "No chart to export.", "error"); return; }
  const src = u.ctx.canvas;
  const ratio = src.width / u.width;
  const head = 40 * ratio, foot = (20 + 20 * Math.ceil(state.series.length / 4)) * ratio;
  const canvas = document.createElement("canvas");
  canvas.width = src.width;
  canvas.height = src.height + head + foot;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = cssVar("--panel") || "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = cssVar("--text") || "#000";
  ctx.font = `${16 * ratio}px system-ui, sans-serif`;
  const title = `${(state.device && state.device.name) || eui} · ${$("#quantity").selectedOptions[0].textContent} · ${fmtTime(state.start, false)} – ${fmtTime(state.end, false)}`;
  ctx.fillText(title, 12 * ratio, 26 * ratio);
  ctx.drawImage(src, 0, head);
  ctx.font = `${13 * ratio}px system-ui, sans-serif`;
  state.series.forEach((s, k) => {
    const x = (12 + (k % 4) * 220) * ratio, y = src.height + head + (20 + 20 * Math.floor(k / 4)) * ratio;
    ctx.fillStyle = s.color;
    ctx.fillRect(x, y - 10 * ratio, 12 * ratio, 12 * ratio);
    ctx.fillStyle = cssVar("--text") || "#000";
    ctx.fillText(s.label, x + 18 * ratio, y);
  });
  canvas.toBlob((blob) => download(`${baseName()}.png`, blob, "image/png"), "image/png");
}

// -- start ------------------------------------------------------------------------------------

async function init() {
  await initShell();
  try {
    state.device = await api(`/api/devices/${eui}`);
    $("#dev-name").textContent = state.device.name || eui;
  } catch (e) {
    if (e.status !== 401) banner(e.status === 404 ? `Unknown device ${eui}.` : e.message);
    return;
  }
  const p = new URLSearchParams(location.search);
  const now = await hubNow();
  state.quantity = p.get("quantity") || "active_power_w";
  if ([...$("#quantity").options].every((o) => o.value !== state.quantity)) state.quantity = "active_power_w";
  state.picks = (p.get("series") || "1").split(",").map(Number).filter((n) => n > 0);
  state.end = Number(p.get("end")) || Math.ceil(now);
  state.start = Number(p.get("start")) || state.end - 86400;
  state.points = Number(p.get("points")) || 500;
  state.envelope = p.get("envelope") === "1";
  writeControls();

  $("#quantity").addEventListener("change", () => {
    const q = $("#quantity").value;
    state.picks = q in PHASE_QUANTITIES ? [1, 2, 3] : isChannelQuantity(q) ? (state.picks.length ? state.picks.filter((c) => c <= 12) : [1]) : [];
    state.quantity = q;
    renderPicks();
  });
  $("#controls").addEventListener("submit", (ev) => { ev.preventDefault(); readControls(); load(); });
  for (const b of $$("[data-range]")) {
    b.addEventListener("click", async () => {
      readControls();
      state.end = Math.ceil(await hubNow());
      state.start = state.end - Number(b.dataset.range);
      load();
    });
  }
  $("#pan-left").addEventListener("click", () => pan(-0.5));
  $("#pan-right").addEventListener("click", () => pan(0.5));
  $("#zoom-out").addEventListener("click", zoomOut);
  $("#export-csv").addEventListener("click", exportCsv);
  $("#export-png").addEventListener("click", exportPng);
  $("#chart").addEventListener("keydown", (ev) => {
    const span = state.end - state.start, mid = (state.start + state.end) / 2;
    if (ev.key === "ArrowLeft") pan(-0.25);
    else if (ev.key === "ArrowRight") pan(0.25);
    else if (ev.key === "+" || ev.key === "=") zoomTo(mid - span / 4, mid + span / 4);
    else if (ev.key === "-") zoomOut();
    else return;
    ev.preventDefault();
  });
  let width = $("#chart").clientWidth;
  new ResizeObserver(() => {
    const w = $("#chart").clientWidth;
    if (state.chart && Math.abs(w - width) > 8) { width = w; state.chart.setSize({ width: Math.max(300, w - 16), height: 380 }); }
  }).observe($("#chart"));
  document.addEventListener("cth01:theme", () => { if (state.chart) draw(); });
  await load();
  pageReady();
}

init();
