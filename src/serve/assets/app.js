// scalemake serve: the dashboard. One EventSource brings a snapshot and then
// the changes each poll finds; every view re-renders from `study`.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const STATES = ["fresh", "stale", "missing", "failed", "building", "queued", "running"];
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd"];
const MAX_DRAWN_POINTS = 1500;

let study = null;       // the Snapshot, kept up to date by changes
let logNode = "";       // the node whose log is shown
let renderQueued = false;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function stateColour(state) {
  return getComputedStyle(document.documentElement).getPropertyValue("--" + state).trim() || "#ccc";
}

function fmt(x) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return x.toExponential(2).replace(/\.?0+e/, "e").replace("e+", "e");
  if (a >= 100) return x.toFixed(0);
  return x.toPrecision(4).replace(/\.?0+$/, "");
}

// ---------------------------------------------------------------- live data

function connect() {
  const source = new EventSource("/api/events");
  const conn = $("connection");
  source.addEventListener("open", () => { conn.dataset.state = "live"; conn.textContent = "live"; });
  source.addEventListener("error", () => {
    conn.dataset.state = "lost";
    conn.textContent = "reconnecting…"; // EventSource retries by itself
  });
  source.addEventListener("snapshot", (e) => {
    study = JSON.parse(e.data);
    onStudyLoaded();
  });
  source.addEventListener("change", (e) => {
    if (study) applyChange(JSON.parse(e.data));
  });
}

function applyChange(change) {
  switch (change.type) {
    case "nodes":
      study.nodes = change.nodes;
      break;
    case "points": {
      const run = study.runs[change.run];
      if (change.reset) { run.steps = []; run.evals = []; }
      run.steps.push(...change.steps);
      run.evals.push(...change.evals);
      break;
    }
    case "fits":
      study.fits = change.fits;
      break;
    case "logs":
      if (change.nodes.includes(logNode)) loadLog();
      return;
  }
  scheduleRender();
}

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderAll();
  });
}

function onStudyLoaded() {
  $("experiment").textContent = study.experiment;
  const x = $("x-axis");
  const previous = x.value;
  x.replaceChildren(el("option", { value: "tokens" }, "tokens"));
  study.cost_models.forEach((m, i) => x.append(el("option", { value: String(i) }, "compute: C_" + m)));
  if (previous) x.value = previous;
  const select = $("log-node");
  select.replaceChildren(el("option", { value: "" }, "—"));
  study.nodes.forEach((n) => select.append(el("option", { value: n.id }, n.id)));
  select.value = logNode;
  renderAll();
}

function renderAll() {
  renderDag();
  renderChart();
  renderFits();
  renderRuns();
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// ---------------------------------------------------------------- pipeline

function renderDag() {
  const nodes = study.nodes;
  const level = new Array(nodes.length).fill(0);
  // Plan order is topological: each node's inputs come first.
  nodes.forEach((n, i) => { for (const p of n.inputs) level[i] = Math.max(level[i], level[p] + 1); });
  const columns = [];
  nodes.forEach((n, i) => (columns[level[i]] ||= []).push(i));
  // Boxes as wide as the section allows (at most 220 px, at least 120 then scroll).
  const H = 26, GAP_X = 40, GAP_Y = 8, PAD = 6;
  const room = ($("dag").clientWidth || 1000) - 2 * PAD - (columns.length - 1) * GAP_X;
  const W = Math.max(120, Math.min(220, Math.floor(room / columns.length)));
  const chars = Math.floor((W - 12) / 6.2);
  const pos = [];
  columns.forEach((col, c) => col.forEach((i, r) => { pos[i] = { x: PAD + c * (W + GAP_X), y: PAD + r * (H + GAP_Y) }; }));
  const height = PAD * 2 + Math.max(...columns.map((c) => c.length)) * (H + GAP_Y);
  const width = PAD * 2 + columns.length * (W + GAP_X) - GAP_X;
  const svg = svgEl("svg", { width, height, id: "dag-svg" });
  nodes.forEach((n, i) => {
    for (const p of n.inputs) {
      const a = pos[p], b = pos[i];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(svgEl("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    }
  });
  nodes.forEach((n, i) => {
    const g = svgEl("g", { class: "node", "data-node": n.id, "data-state": n.state,
                           transform: `translate(${pos[i].x},${pos[i].y})` });
    g.append(svgEl("title", {}, `${n.id}\n${n.state}: ${n.detail}`));
    g.append(svgEl("rect", { width: W, height: H, fill: stateColour(n.state) }));
    const label = n.id.length > chars ? n.id.slice(0, chars - 1) + "…" : n.id;
    g.append(svgEl("text", { x: 8, y: H / 2 + 4 }, label));
    g.addEventListener("click", () => showLog(n.id));
    svg.append(g);
  });
  $("dag").replaceChildren(svg);
  const counts = {};
  nodes.forEach((n) => { counts[n.state] = (counts[n.state] || 0) + 1; });
  const legend = $("state-legend");
  legend.replaceChildren();
  for (const s of STATES) {
    if (!counts[s]) continue;
    const item = el("span", { "data-state-count": s });
    item.append(el("span", { class: "swatch", style: `background:${stateColour(s)}` }), `${s} ${counts[s]}`);
    legend.append(item);
  }
}

// ---------------------------------------------------------------- curves

function ticks(lo, hi, log) {
  if (log) {
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= lo && v <= hi) out.push(v);
      }
    }
    if (out.length >= 2) return out.length > 8 ? out.filter((v) => Math.abs(Math.log10(v) % 1) < 1e-9) : out;
  }
  const step = 10 ** Math.floor(Math.log10((hi - lo) / 5 || 1));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= 6) || step * 10;
  const out = [];
  for (let v = Math.ceil(lo / nice) * nice; v <= hi + nice * 1e-9; v += nice) out.push(v);
  return out;
}

function scale(lo, hi, a, b, log) {
  const f = log ? Math.log10 : (v) => v;
  const [flo, fhi] = [f(lo), f(hi)];
  const span = fhi - flo || 1;
  return (v) => a + ((f(v) - flo) / span) * (b - a);
}

function xOf(point, axis) {
  return axis === "tokens" ? point.tokens : point.compute[Number(axis)];
}

// Evenly thinned to at most MAX_DRAWN_POINTS (the last point always kept).
function thin(points) {
  if (points.length <= MAX_DRAWN_POINTS) return points;
  const stride = points.length / MAX_DRAWN_POINTS;
  const out = [];
  for (let i = 0; i < MAX_DRAWN_POINTS; i++) out.push(points[Math.floor(i * stride)]);
  out.push(points[points.length - 1]);
  return out;
}

function renderChart() {
  const axis = $("x-axis").value || "tokens";
  const series = $("y-series").value;
  const xLog = $("x-log").checked, yLog = $("y-log").checked;
  const usable = (v, log) => v !== null && isFinite(v) && (!log || v > 0);
  const curves = study.runs.map((run, r) => ({
    run, colour: PALETTE[r % PALETTE.length],
    points: run[series].filter((p) => usable(xOf(p, axis), xLog) && usable(p.loss, yLog)),
  }));
  const all = curves.flatMap((c) => c.points);
  const box = $("chart");
  const W = Math.max(box.clientWidth, 420), H = 340, M = { l: 56, r: 12, t: 10, b: 38 };
  const svg = svgEl("svg", { width: W, height: H, id: "chart-svg" });
  if (all.length === 0) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no points yet: waiting for the first metrics"));
  } else {
    const xs = all.map((p) => xOf(p, axis)), ys = all.map((p) => p.loss);
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (x0 === x1) { x0 = xLog ? x0 / 2 : x0 - 1; x1 = xLog ? x1 * 2 : x1 + 1; }
    if (y0 === y1) { y0 = yLog ? y0 / 1.1 : y0 - 0.1; y1 = yLog ? y1 * 1.1 : y1 + 0.1; }
    const sx = scale(x0, x1, M.l, W - M.r, xLog), sy = scale(y0, y1, H - M.b, M.t, yLog);
    const grid = svgEl("g", { class: "grid" }), axes = svgEl("g", { class: "axis" });
    for (const v of ticks(x0, x1, xLog)) {
      grid.append(svgEl("line", { x1: sx(v), x2: sx(v), y1: M.t, y2: H - M.b }));
      axes.append(svgEl("text", { x: sx(v), y: H - M.b + 14, "text-anchor": "middle" }, fmt(v)));
    }
    for (const v of ticks(y0, y1, yLog)) {
      grid.append(svgEl("line", { x1: M.l, x2: W - M.r, y1: sy(v), y2: sy(v) }));
      axes.append(svgEl("text", { x: M.l - 6, y: sy(v) + 4, "text-anchor": "end" }, fmt(v)));
    }
    axes.append(svgEl("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }));
    axes.append(svgEl("line", { x1: M.l, x2: M.l, y1: M.t, y2: H - M.b }));
    const xName = axis === "tokens" ? "tokens" : `compute C_${study.cost_models[Number(axis)]} (FLOP)`;
    axes.append(svgEl("text", { x: (M.l + W - M.r) / 2, y: H - 6, "text-anchor": "middle" }, xName));
    axes.append(svgEl("text", { x: 12, y: (M.t + H - M.b) / 2, "text-anchor": "middle",
                                transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})` },
                      series === "evals" ? "validation loss" : "training loss"));
    svg.append(grid, axes);
    for (const c of curves) {
      const drawn = thin(c.points);
      const d = drawn.map((p, i) => `${i ? "L" : "M"}${sx(xOf(p, axis)).toFixed(1)},${sy(p.loss).toFixed(1)}`).join("");
      const path = svgEl("path", { class: "curve", d, stroke: c.colour, "data-run": c.run.id, "data-points": c.points.length });
      path.append(svgEl("title", {}, c.run.id));
      svg.append(path);
    }
    if (axis !== "tokens" && series === "evals") drawLaws(svg, study.cost_models[Number(axis)], x0, x1, sx, sy, yLog, y0, y1);
  }
  box.replaceChildren(svg);
  const legend = $("chart-legend");
  legend.replaceChildren();
  for (const c of curves) {
    const item = el("span");
    item.append(el("span", { class: "swatch", style: `background:${c.colour}` }), `${c.run.id} (${c.run[series].length})`);
    legend.append(item);
  }
}

// Each family's current law L = (C_c / C)^α, dashed, over the plotted range.
function drawLaws(svg, costModel, x0, x1, sx, sy, yLog, y0, y1) {
  study.fits.forEach((fit) => fit.families.forEach((family, f) => {
    const law = family.laws.find((l) => l.cost_model === costModel);
    if (!law || !("Ok" in law.alpha) || !law.c_c) return;
    const alpha = law.alpha.Ok, points = [];
    for (let k = 0; k <= 40; k++) {
      const x = x0 * (x1 / x0) ** (k / 40), y = (law.c_c / x) ** alpha;
      if (y >= y0 && y <= y1 && (!yLog || y > 0)) points.push(`${points.length ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    }
    if (points.length < 2) return;
    const path = svgEl("path", { class: "law", d: points.join(""), stroke: PALETTE[(f + 8) % PALETTE.length] });
    path.append(svgEl("title", {}, `${fit.node} ${family.family}: L = (${fmt(law.c_c)} / C)^${fmt(alpha)} (${fit.source})`));
    svg.append(path);
  }));
}

// ---------------------------------------------------------------- fits

function renderFits() {
  const box = $("fits");
  if (study.fits.length === 0) { box.replaceChildren(el("p", { class: "empty" }, "no fit node in this experiment")); return; }
  const parts = [];
  for (const fit of study.fits) {
    const head = el("p");
    head.append(el("strong", {}, fit.node), ` — ${fit.source === "final" ? "final (the built node's fit.json)" : "provisional, refitted without intervals"}; ${fit.finished} of ${fit.total} runs finished`);
    parts.push(head);
    if (fit.error) { parts.push(el("p", { class: "empty" }, fit.error)); continue; }
    const table = el("table", { class: "fits", "data-fit": fit.node });
    const tr = el("tr");
    for (const h of ["family", "runs", "sizes", "cost model", "α", "C_c", "multiplier", "α_N"]) tr.append(el("th", {}, h));
    table.append(tr);
    for (const family of fit.families) {
      family.laws.forEach((law, k) => {
        const row = el("tr");
        const cell = (text, cls, title) => { const td = el("td", cls ? { class: cls } : {}, text); if (title) td.title = title; row.append(td); };
        cell(k === 0 ? family.family : "");
        cell(k === 0 ? String(family.runs) : "", "num");
        cell(k === 0 ? String(family.sizes) : "", "num");
        cell(law.cost_model);
        cell("Ok" in law.alpha ? fmt(law.alpha.Ok) : "not identifiable", "Ok" in law.alpha ? "num" : "why", law.alpha.Err);
        cell(fmt(law.c_c), "num");
        const m = law.multiplier;
        cell(!m ? "baseline" : "Ok" in m ? fmt(m.Ok) + "×" : "not identifiable", m && "Ok" in m ? "num" : "why", m && m.Err);
        cell(k === 0 ? ("Ok" in family.alpha_n ? fmt(family.alpha_n.Ok) : "not identifiable") : "", "num", family.alpha_n.Err);
        table.append(row);
      });
    }
    parts.push(table);
  }
  box.replaceChildren(...parts);
}

// ---------------------------------------------------------------- runs

function renderRuns() {
  const onlyDiff = $("only-diff").checked;
  const runs = study.runs;
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort();
  const shown = keys.filter((k) => !onlyDiff || new Set(runs.map((r) => r.params[k])).size > 1);
  const table = el("table", { id: "runs-table" });
  const head = el("tr");
  for (const h of ["run", "state", ...shown, "step", "tokens", "train loss", "val loss", "tokens/s"]) head.append(el("th", {}, h));
  table.append(head);
  for (const run of runs) {
    const node = study.nodes[run.node];
    const last = run.steps[run.steps.length - 1], lastEval = run.evals[run.evals.length - 1];
    const row = el("tr", { "data-run": run.id });
    row.append(el("td", {}, run.id));
    const state = el("td");
    state.append(el("span", { class: "state", style: `background:${stateColour(node.state)}` }, node.state));
    row.append(state);
    for (const k of shown) row.append(el("td", {}, run.params[k] ?? ""));
    row.append(el("td", { class: "num" }, last ? String(last.step) : "–"));
    row.append(el("td", { class: "num" }, last ? fmt(last.tokens) : "–"));
    row.append(el("td", { class: "num" }, last ? fmt(last.loss) : "–"));
    row.append(el("td", { class: "num" }, lastEval ? fmt(lastEval.loss) : "–"));
    row.append(el("td", { class: "num" }, last && last.tokens_per_second ? fmt(last.tokens_per_second) : "–"));
    table.append(row);
  }
  $("runs").replaceChildren(table);
}

// ---------------------------------------------------------------- logs

// The open log is in the address (#log=ID), so a link or a reload keeps it.
function showLog(id) {
  logNode = id;
  $("log-node").value = id;
  history.replaceState(null, "", id ? "#log=" + encodeURIComponent(id) : location.pathname);
  loadLog();
}

async function loadLog() {
  const pre = $("log");
  if (!logNode) { pre.textContent = "Pick a node (or click one in the pipeline)."; return; }
  const wanted = logNode;
  try {
    const response = await fetch("/api/log?node=" + encodeURIComponent(wanted));
    const text = await response.text();
    if (wanted !== logNode) return; // another node was picked meanwhile
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = text;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  } catch (e) {
    pre.textContent = "cannot read the log: " + e;
  }
}

// ---------------------------------------------------------------- wiring

for (const id of ["x-axis", "y-series", "x-log", "y-log", "only-diff"]) {
  $(id).addEventListener("change", () => study && renderAll());
}
$("log-node").addEventListener("change", (e) => showLog(e.target.value));
if (location.hash.startsWith("#log=")) {
  logNode = decodeURIComponent(location.hash.slice(5));
  loadLog();
}
window.addEventListener("resize", () => study && scheduleRender());
connect();
