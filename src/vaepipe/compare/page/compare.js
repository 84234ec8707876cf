// The comparison page over every experiment (vaepipe.compare.build writes data.js beside it).
// Every name and value is anyone's text (a fork's experiments, a teammate's params): it reaches
// the page only through textContent and attributes, never as markup.
"use strict";

const DATA = window.COMPARE;
const RUNS = DATA.runs;
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
  "#c7c7c7", "#dbdb8d", "#9edae5"];
const SVG = "http://www.w3.org/2000/svg";

// ---- columns: every param and metric some run has ----
const COLUMNS = [];
const first = (key) => { const at = DATA.headline.indexOf(key); return at < 0 ? DATA.headline.length : at; };
for (const kind of ["params", "metrics"]) {
  const keys = new Set();
  RUNS.forEach((run) => Object.keys(run[kind]).forEach((key) => keys.add(key)));
  [...keys].sort((a, b) => first(a) - first(b) || a.localeCompare(b))
    .forEach((key) => COLUMNS.push({ kind, key, id: `${kind}:${key}` }));
}
const value = (run, column) => {
  const found = run[column.kind][column.key];
  return found === undefined ? null : found;
};
for (const column of COLUMNS) {
  const values = RUNS.map((run) => value(run, column));
  column.numeric = values.some((v) => v !== null) && values.every((v) => v === null || typeof v === "number");
  // a param set in some runs only differs; a metric only where two runs have it (a queued run has none)
  const compared = column.kind === "params" ? values : values.filter((v) => v !== null);
  column.varies = new Set(compared.map((v) => JSON.stringify(v))).size > 1;
}
const NUMERIC = COLUMNS.filter((column) => column.numeric && column.varies);

const state = {
  sort: null, descending: false, text: "", ranges: {}, brushes: {}, hideConstant: true,
  baseline: RUNS.findIndex((run) => run.kind === "commit" && run.status === "done"),
  selected: new Set(RUNS.map((run, i) => i).filter((i) => RUNS[i].status === "done")),
};

// ---- small helpers ----
function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, val] of Object.entries(props)) {
    if (key === "text") node.textContent = val;
    else if (key === "class") node.className = val;
    else if (key === "style") Object.assign(node.style, val);  // CSSOM: the page's policy refuses style attributes
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), val);
    else node.setAttribute(key, val);
  }
  children.forEach((child) => node.append(child));
  return node;
}
function svgElement(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, val] of Object.entries(attributes)) node.setAttribute(key, val);
  if (text !== undefined) node.textContent = text;
  return node;
}
function shown(v, isParam) {
  if (v === null) return "–";
  if (typeof v !== "number") return String(v);
  if (isParam || Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(4);
}
function runLabel(run) { return run.name + (run.kind === "experiment" && run.baseline ? ` (from ${run.baseline})` : ""); }
function colour(i) { return PALETTE[[...state.selected].sort((a, b) => a - b).indexOf(i) % PALETTE.length]; }
function extent(values) {
  const finite = values.filter((v) => typeof v === "number");
  if (!finite.length) return [0, 1];
  let low = Math.min(...finite), high = Math.max(...finite);
  if (low === high) { low -= 0.5; high += 0.5; }
  return [low, high];
}

// ---- which rows pass: the text filter, the ranges under the columns, the brushes ----
function passesFilters(run) {
  if (state.text) {
    const needle = state.text.toLowerCase();
    const cells = [runLabel(run), run.status, ...run.refs, ...COLUMNS.map((c) => shown(value(run, c), c.kind === "params"))];
    if (!cells.some((cell) => cell.toLowerCase().includes(needle))) return false;
  }
  for (const [id, [low, high]] of Object.entries(state.ranges)) {
    const v = value(run, COLUMNS.find((c) => c.id === id));
    if ((low !== null || high !== null) && typeof v !== "number") return false;
    if ((low !== null && v < low) || (high !== null && v > high)) return false;
  }
  return true;
}
function passesBrushes(run) {
  return Object.entries(state.brushes).every(([id, [low, high]]) => {
    const v = value(run, COLUMNS.find((c) => c.id === id));
    return typeof v === "number" && v >= low && v <= high;
  });
}
function visibleRows() {
  const rows = RUNS.map((run, i) => i).filter((i) => passesFilters(RUNS[i]) && passesBrushes(RUNS[i]));
  if (state.sort) {
    const column = COLUMNS.find((c) => c.id === state.sort);
    const key = (i) => (column ? value(RUNS[i], column) : RUNS[i].name);
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null || y === null) return (x === null) - (y === null);  // missing values last
      const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return state.descending ? -order : order;
    });
  }
  return rows;
}
function tableColumns() { return COLUMNS.filter((c) => c.varies || !state.hideConstant); }

// ---- the table ----
function withinNoise(metric, difference) {
  const std = DATA.spread[metric];
  return std === undefined ? null : Math.abs(difference) <= DATA.noise_sigmas * Math.SQRT2 * std;
}
function headerCell(label, sortId, extraClass = "") {
  const classes = ["sortable", extraClass];
  if (state.sort === sortId) classes.push(state.descending ? "sorted-desc" : "sorted-asc");
  return element("th", {
    class: classes.join(" "), text: label, title: "sort", "data-sort": sortId,
    onclick: () => {
      state.descending = state.sort === sortId ? !state.descending : false;
      state.sort = sortId;
      render();
    },
  });
}
function rangeInput(column, end) {
  const current = (state.ranges[column.id] || [null, null])[end];
  const input = element("input", { class: "range", type: "number", step: "any", placeholder: end ? "max" : "min",
    "data-range": `${column.id}:${end ? "max" : "min"}` });
  if (current !== null) input.value = current;
  input.addEventListener("change", () => {
    const range = state.ranges[column.id] || [null, null];
    range[end] = input.value === "" ? null : Number(input.value);
    state.ranges[column.id] = range;
    render();
  });
  return input;
}
function renderTable(rows) {
  const columns = tableColumns();
  const table = document.getElementById("table");
  const names = element("tr", {}, element("th", { text: "☑" }), element("th", { text: "◉" }),
    headerCell("experiment", "name", "name"), element("th", { class: "name", text: "status" }),
    element("th", { class: "name", text: "explorer" }));
  const ranges = element("tr", {}, ...Array.from({ length: 5 }, () => element("th")));
  for (const column of columns) {
    names.append(headerCell(column.key, column.id));
    names.lastChild.classList.add(column.kind);
    ranges.append(element("th", {}, ...(column.numeric ? [rangeInput(column, 0), rangeInput(column, 1)] : [])));
  }
  const body = element("tbody");
  const base = RUNS[state.baseline];
  for (const i of rows) {
    const run = RUNS[i];
    const select = element("input", { type: "checkbox", "aria-label": "draw this run" });
    select.checked = state.selected.has(i);
    select.addEventListener("change", () => { select.checked ? state.selected.add(i) : state.selected.delete(i); render(); });
    const pick = element("input", { type: "radio", name: "baseline", "aria-label": "baseline" });
    pick.checked = i === state.baseline;
    pick.addEventListener("change", () => { state.baseline = i; render(); });
    const name = element("td", { class: "name" }, element("span", { class: "run-name", text: run.name }));
    if (run.refs.length) name.append(element("small", { text: ` ${run.kind === "commit" ? run.id.slice(0, 7) : ""}` }));
    if (run.kind === "experiment" && run.baseline) name.append(element("small", { text: ` from ${run.baseline}` }));
    const explorer = run.explorer
      ? element("a", { href: run.explorer, target: "_blank", rel: "noopener", text: "open", class: "explorer-link" })
      : element("span", { text: "–", title: run.explorer_missing });
    const row = element("tr", { "data-run": String(i), class: i === state.baseline ? "baseline" : "" },
      element("td", {}, select), element("td", {}, pick), name,
      element("td", { class: `status status-${run.status}`, text: run.status + (run.stale.length ? " *" : ""),
        title: run.stale.length ? `not run for these params, so not shown: ${run.stale.join(", ")}` : "" }),
      element("td", { class: "name" }, explorer));
    for (const column of columns) {
      const v = value(run, column);
      const cell = element("td", { text: shown(v, column.kind === "params"), "data-column": column.id });
      const b = base ? value(base, column) : null;
      if (column.kind === "metrics" && i !== state.baseline && typeof v === "number" && typeof b === "number" && v !== b) {
        const difference = v - b;
        const noise = withinNoise(column.key, difference);
        const mark = noise ? " ≈" : "";
        cell.append(element("span", { class: `delta ${difference > 0 ? "up" : difference < 0 ? "down" : ""}`,
          text: `${difference >= 0 ? "+" : ""}${shown(difference)}${mark}` }));
      }
      row.append(cell);
    }
    body.append(row);
  }
  table.replaceChildren(element("thead", {}, names, ranges), body);
  const counts = {};
  RUNS.forEach((run) => { counts[run.status] = (counts[run.status] || 0) + 1; });
  document.getElementById("shown").textContent = `${rows.length} of ${RUNS.length} rows`;
  document.getElementById("summary").textContent = `${RUNS.length} runs: ` +
    Object.entries(counts).map(([status, n]) => `${n} ${status}`).join(", ") +
    (base ? `; baseline ${runLabel(base)}` : "");
}

function csvCell(v) {
  let text = v === null ? "" : String(v);
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;  // no formula in a spreadsheet
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
function downloadCsv() {
  const columns = tableColumns();
  const lines = [["experiment", "status", ...columns.map((c) => c.key)].map(csvCell).join(",")];
  for (const i of visibleRows()) {
    const run = RUNS[i];
    lines.push([run.name, run.status, ...columns.map((c) => value(run, c))].map(csvCell).join(","));
  }
  const link = element("a", { href: URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" })),
    download: "experiments.csv" });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// ---- parallel coordinates, brushed ----
const PCP = { height: 260, top: 34, bottom: 26, gap: 120, left: 60 };
function renderPcp() {
  const svg = document.getElementById("pcp");
  const axes = NUMERIC;
  const width = PCP.left * 2 + Math.max(1, axes.length - 1) * PCP.gap;
  svg.setAttribute("width", width);
  svg.setAttribute("height", PCP.height);
  svg.replaceChildren();
  if (!axes.length) { svg.append(svgElement("text", { x: 10, y: 20 }, "no number differs between the runs")); return; }
  const span = PCP.height - PCP.top - PCP.bottom;
  const scales = axes.map((column) => {
    const [low, high] = extent(RUNS.map((run) => value(run, column)));
    return { column, low, high, y: (v) => PCP.top + span * (1 - (v - low) / (high - low)),
      v: (y) => low + (1 - (y - PCP.top) / span) * (high - low) };
  });
  const x = (k) => PCP.left + k * PCP.gap;
  const kept = [], faded = [];
  RUNS.forEach((run, i) => {
    if (!passesFilters(run)) return;
    const points = scales.map((scale, k) => {
      const v = value(run, scale.column);
      return typeof v === "number" ? `${x(k)},${scale.y(v).toFixed(1)}` : null;
    }).filter(Boolean);
    if (!points.length) return;
    const inside = passesBrushes(run);
    const line = svgElement("polyline", { points: points.join(" "), fill: "none", "data-run": String(i),
      stroke: inside ? (state.selected.has(i) ? colour(i) : "#555") : "#ddd", "stroke-width": inside ? 1.6 : 1 });
    line.append(svgElement("title", {}, runLabel(run)));
    (inside ? kept : faded).push(line);
  });
  const lines = svgElement("g");
  lines.append(...faded, ...kept);  // the runs inside every brush on top
  svg.append(lines);
  scales.forEach((s, k) => {
    const g = svgElement("g", { class: "pcp-axis", "data-column": s.column.id });
    g.append(svgElement("line", { class: "axis", x1: x(k), x2: x(k), y1: PCP.top, y2: PCP.top + span }));
    g.append(svgElement("text", { x: x(k), y: 14, "text-anchor": "middle" }, s.column.key));
    g.append(svgElement("text", { x: x(k) + 4, y: PCP.top + 4, "font-size": 10 }, shown(s.high)));
    g.append(svgElement("text", { x: x(k) + 4, y: PCP.top + span, "font-size": 10 }, shown(s.low)));
    const brush = state.brushes[s.column.id];
    if (brush) {
      const [y1, y2] = [s.y(brush[1]), s.y(brush[0])];
      g.append(svgElement("rect", { class: "brush", x: x(k) - 10, width: 20, y: y1, height: Math.max(1, y2 - y1) }));
    }
    const grip = svgElement("rect", { x: x(k) - 14, width: 28, y: PCP.top - 4, height: span + 8, fill: "transparent",
      class: "grip" });
    grip.addEventListener("pointerdown", (event) => startBrush(event, s, svg));
    g.append(grip);
    svg.append(g);
  });
}
function startBrush(event, scale, svg) {
  event.preventDefault();
  const top = () => svg.getBoundingClientRect().top;
  const start = event.clientY - top();
  let moved = false;
  const move = (e) => {
    const now = e.clientY - top();
    if (Math.abs(now - start) < 3) return;
    moved = true;
    const [a, b] = [scale.v(Math.max(start, now)), scale.v(Math.min(start, now))];
    state.brushes[scale.column.id] = [a, b];
    renderPcp();
  };
  const up = () => {
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", up);
    if (!moved) delete state.brushes[scale.column.id];  // a click releases the axis
    render();
  };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

// ---- a scatter of any column against any other ----
function axesOf(svg, width, height, margin, xs, ys, xLabel, yLabel) {
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.replaceChildren();
  const [x0, x1] = extent(xs), [y0, y1] = extent(ys);
  const px = (v) => margin + (width - 2 * margin) * (v - x0) / (x1 - x0);
  const py = (v) => height - margin - (height - 2 * margin) * (v - y0) / (y1 - y0);
  svg.append(svgElement("line", { class: "axis", x1: margin, x2: width - margin, y1: height - margin, y2: height - margin }));
  svg.append(svgElement("line", { class: "axis", x1: margin, x2: margin, y1: margin, y2: height - margin }));
  svg.append(svgElement("text", { x: width / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  svg.append(svgElement("text", { x: 12, y: height / 2, transform: `rotate(-90 12 ${height / 2})`, "text-anchor": "middle" }, yLabel));
  svg.append(svgElement("text", { x: margin, y: height - margin + 14, "text-anchor": "middle" }, shown(x0)));
  svg.append(svgElement("text", { x: width - margin, y: height - margin + 14, "text-anchor": "middle" }, shown(x1)));
  svg.append(svgElement("text", { x: margin - 4, y: height - margin, "text-anchor": "end" }, shown(y0)));
  svg.append(svgElement("text", { x: margin - 4, y: margin + 4, "text-anchor": "end" }, shown(y1)));
  return [px, py];
}
function renderScatter(rows) {
  const svg = document.getElementById("scatter");
  const cx = NUMERIC.find((c) => c.id === document.getElementById("scatterX").value);
  const cy = NUMERIC.find((c) => c.id === document.getElementById("scatterY").value);
  if (!cx || !cy) { svg.replaceChildren(); return; }
  const points = rows.map((i) => [i, value(RUNS[i], cx), value(RUNS[i], cy)])
    .filter(([, a, b]) => typeof a === "number" && typeof b === "number");
  const [px, py] = axesOf(svg, 460, 340, 56, points.map((p) => p[1]), points.map((p) => p[2]), cx.key, cy.key);
  for (const [i, a, b] of points) {
    const dot = svgElement("circle", { cx: px(a), cy: py(b), r: 5, fill: state.selected.has(i) ? colour(i) : "#555",
      class: "point", "data-run": String(i) });
    dot.append(svgElement("title", {}, `${runLabel(RUNS[i])}: ${cx.key} ${shown(a)}, ${cy.key} ${shown(b)}`));
    svg.append(dot, svgElement("text", { x: px(a) + 7, y: py(b) - 5, "font-size": 10 }, RUNS[i].name));
  }
}

// ---- the selected runs' curves, overlaid ----
function drawnRuns(rows) { return rows.filter((i) => state.selected.has(i)); }
function renderCurves(rows) {
  const svg = document.getElementById("curves");
  const name = document.getElementById("curve").value;
  const from = document.getElementById("fromEpoch1").checked ? 1 : 0;
  const series = drawnRuns(rows).filter((i) => RUNS[i].curves && RUNS[i].curves[name] && RUNS[i].curves.epoch)
    .map((i) => [i, RUNS[i].curves.epoch.map((e, k) => [e, RUNS[i].curves[name][k]]).filter(([e, v]) => e >= from && v !== null)]);
  const all = series.flatMap(([, points]) => points);
  const [px, py] = axesOf(svg, 460, 340, 56, all.map((p) => p[0]), all.map((p) => p[1]), "epoch", name);
  const legend = document.getElementById("curveLegend");
  legend.replaceChildren();
  for (const [i, points] of series) {
    const line = svgElement("polyline", { fill: "none", stroke: colour(i), "stroke-width": 1.6, class: "curve",
      "data-run": String(i), points: points.map(([e, v]) => `${px(e).toFixed(1)},${py(v).toFixed(1)}`).join(" ") });
    line.append(svgElement("title", {}, runLabel(RUNS[i])));
    svg.append(line);
    legend.append(element("span", { class: "swatch", style: { background: colour(i) } }), element("span", { text: RUNS[i].name }));
  }
}

// ---- one figure of every selected run, in a row ----
const POINTS = "projection points";
function renderFigures(rows) {
  const chosen = document.getElementById("figure").value;
  const container = document.getElementById("figures");
  const epochControl = document.getElementById("epochControl");
  const slider = document.getElementById("epoch");
  const runs = drawnRuns(rows);
  const epochs = [...new Set(runs.flatMap((i) => Object.keys(RUNS[i].projection || {}).map(Number)))].sort((a, b) => a - b);
  epochControl.hidden = chosen !== POINTS || !epochs.length;
  if (!epochControl.hidden) {
    slider.max = String(epochs.length - 1);
    slider.value = String(Math.min(Number(slider.value), epochs.length - 1));
  }
  const epoch = epochs[Number(slider.value)];
  document.getElementById("epochValue").textContent = epoch === undefined ? "" : String(epoch);
  container.replaceChildren();
  for (const i of runs) {
    const run = RUNS[i];
    const caption = element("figcaption", { text: runLabel(run) });
    let body;
    if (chosen === POINTS) {
      const points = (run.projection || {})[String(epoch)];
      body = points ? projectionCanvas(points) : element("div", { class: "missing", text: "no points for this epoch" });
    } else if (run.figures[chosen]) {
      body = element("img", { src: run.figures[chosen], alt: `${chosen} of ${run.name}`, loading: "lazy" });
    } else {
      const stale = run.stale.includes(`plots/${chosen}.png`);
      body = element("div", { class: "missing", text: stale ? "stale: an earlier run's" : run.status === "done" ? "none" : run.status });
    }
    container.append(element("figure", { "data-run": String(i) }, body, caption));
  }
}
function projectionCanvas(points) {
  const canvas = element("canvas", { width: 220, height: 220, class: "points" });
  const context = canvas.getContext("2d");
  const [x0, x1] = extent(points.map((p) => p[0])), [y0, y1] = extent(points.map((p) => p[1]));
  const labels = [...new Set(points.map((p) => p[2]))].sort();
  for (const [x, y, label] of points) {
    context.fillStyle = PALETTE[labels.indexOf(label) % PALETTE.length];
    context.fillRect(6 + 208 * (x - x0) / (x1 - x0), 214 - 208 * (y - y0) / (y1 - y0), 2, 2);
  }
  return canvas;
}

// ---- wiring ----
function fillSelect(id, options, chosen) {
  const select = document.getElementById(id);
  options.forEach(([val, label]) => select.append(element("option", { value: val, text: label })));
  if (options.some(([val]) => val === chosen)) select.value = chosen;
  select.addEventListener("change", render);
}
function render() {
  const rows = visibleRows();
  renderTable(rows);
  renderPcp();
  renderScatter(rows);
  renderCurves(rows);
  renderFigures(rows);
}
function setUp() {
  const numeric = NUMERIC.map((c) => [c.id, `${c.key} (${c.kind === "params" ? "param" : "metric"})`]);
  fillSelect("scatterX", numeric, "metrics:test.kl");
  fillSelect("scatterY", numeric, "metrics:test.recon");
  const curveNames = new Set();
  RUNS.forEach((run) => Object.keys(run.curves || {}).filter((key) => key !== "epoch").forEach((key) => curveNames.add(key)));
  fillSelect("curve", [...curveNames].sort().map((key) => [key, key]), "test_loss");
  const figures = DATA.figures.filter((name) => RUNS.some((run) => run.figures[name] || run.stale.includes(`plots/${name}.png`)));
  if (RUNS.some((run) => run.projection)) figures.push(POINTS);
  fillSelect("figure", figures.map((name) => [name, name]), "samples");
  document.getElementById("filter").addEventListener("input", (e) => { state.text = e.target.value; render(); });
  document.getElementById("hideConstant").addEventListener("change", (e) => { state.hideConstant = e.target.checked; render(); });
  document.getElementById("fromEpoch1").addEventListener("change", render);
  document.getElementById("epoch").addEventListener("input", render);
  document.getElementById("csv").addEventListener("click", downloadCsv);
  document.getElementById("clearFilters").addEventListener("click", () => {
    state.text = ""; state.ranges = {}; state.brushes = {};
    document.getElementById("filter").value = "";
    render();
  });
  render();
}
setUp();
window.comparePage = { state, render, visibleRows, columns: COLUMNS };
