// PatchingView: activation-patching heatmaps (0 = corrupt, 1 = clean) per component beside their
// attribution-patching estimate. Click cells to select them; the alpha slider then re-runs the
// kernel with those activations at alpha * clean + (1 - alpha) * corrupt.
// State: clean_tokens, corrupt_tokens string[], metric_name, clean_value, corrupt_value,
// grids [{component, positions, rows string[], cols (number | string)[], col_kind "pos" | "head" |
// "none", values float32 [rows, cols], estimate float32 [rows, cols], correlation}],
// top_clean, top_corrupt [[token, prob]].
// Request "patch" {cells: [[component, layer, pos | null, head | null]], alpha} ->
// {alpha, requested_alpha, clipped, value, normalized, top: [[token, prob]]}.
// Request "curve" {cells, n} -> {alphas, values, normalized: float32 [n] | null}: the metric over
// alpha for the selection, drawn as a curve with the slider's alpha marked.
// Layout: the grids on the left, the controls (selection, slider, curve, top tokens) in a column
// beside them that stays in view while the grids scroll (components/keep_in_view.ts).
import { decodeArray, type EncodedArray } from "../codec";
import { fmt, fmtEstimate, h } from "../components/dom";
import { gridCellAt, heatGrid, pairHeader } from "../components/heatgrid";
import { keepInView } from "../components/keep_in_view";
import { ownKeys } from "../components/keys";
import { chooseScale, legend } from "../components/scale";
import { topkTable } from "../components/table";
import { displayToken } from "../components/tokens";
import { tipRow, Tooltip } from "../components/tooltip";
import { ask, type View } from "../view";

interface GridState {
  component: string;
  positions: string;
  rows: string[];
  cols: (number | string)[];
  col_kind: "pos" | "head" | "none";
  values: EncodedArray;
  estimate: EncodedArray;
  correlation: number;
  low?: EncodedArray; // with several prompt pairs: the 95% interval over them
  high?: EncodedArray;
  n_pairs?: number;
}

interface PatchReply {
  alpha: number;
  requested_alpha: number;
  clipped: boolean;
  value: number;
  normalized: number | null;
  top: [string, number][];
}

interface CurveReply {
  alphas: EncodedArray;
  values: EncodedArray;
  normalized: EncodedArray | null;
}

type CellKey = string; // JSON of [component, layer, pos, head]

const SVG = "http://www.w3.org/2000/svg";
const svg = (tag: string, attrs: Record<string, string | number>, text?: string) => {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
};

/** The metric over alpha (x 0 .. 1) as an SVG line with dots, axes with ticks, and a marker at
 * the current alpha. ys on the 0 (corrupt) .. 1 (clean) scale when `normalized`. */
export function alphaCurve(alphas: ArrayLike<number>, ys: ArrayLike<number>, current: number, normalized: boolean): SVGSVGElement {
  const W = 300;
  const Ht = 170;
  const m = { l: 40, r: 10, t: 10, b: 32 };
  const finite = Array.from(ys).filter(Number.isFinite);
  let lo = Math.min(...finite, normalized ? 0 : Infinity);
  let hi = Math.max(...finite, normalized ? 1 : -Infinity);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (hi - lo < 1e-9) [lo, hi] = [lo - 0.5, hi + 0.5];
  const x = (a: number) => m.l + a * (W - m.l - m.r);
  const y = (v: number) => m.t + (1 - (v - lo) / (hi - lo)) * (Ht - m.t - m.b);
  const root = svg("svg", { class: "iw-patch-curve", viewBox: `0 0 ${W} ${Ht}`, width: W, height: Ht, role: "img", "aria-label": "metric over alpha" }) as SVGSVGElement;
  root.append(svg("line", { class: "iw-curve-axis", x1: m.l, x2: W - m.r, y1: Ht - m.b, y2: Ht - m.b }));
  root.append(svg("line", { class: "iw-curve-axis", x1: m.l, x2: m.l, y1: m.t, y2: Ht - m.b }));
  for (const a of [0, 0.5, 1]) root.append(svg("text", { class: "iw-curve-tick", x: x(a), y: Ht - m.b + 12, "text-anchor": "middle" }, String(a)));
  const yTicks = normalized ? [0, 0.5, 1] : [lo, (lo + hi) / 2, hi];
  for (const v of yTicks) {
    root.append(svg("line", { class: "iw-curve-grid", x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
    root.append(svg("text", { class: "iw-curve-tick", x: m.l - 4, y: y(v) + 3, "text-anchor": "end" }, normalized ? v.toFixed(1) : fmt(v)));
  }
  root.append(svg("text", { class: "iw-curve-label", x: (m.l + W - m.r) / 2, y: Ht - 4, "text-anchor": "middle" }, "α (0 = corrupt activations, 1 = clean)"));
  const pts = Array.from(alphas, (a, i) => [x(a), y(ys[i])] as const).filter(([, v]) => Number.isFinite(v));
  root.append(svg("polyline", { class: "iw-curve-line", points: pts.map((p) => p.join(",")).join(" "), fill: "none" }));
  Array.from(alphas).forEach((a, i) => {
    if (!Number.isFinite(ys[i])) return;
    const dot = svg("circle", { class: "iw-curve-dot", cx: x(a), cy: y(ys[i]), r: 2.5, "data-alpha": a, "data-value": ys[i] });
    dot.append(svg("title", {}, `α ${fmt(a)}: ${fmt(ys[i])}`));
    root.append(dot);
  });
  root.append(svg("line", { class: "iw-curve-marker", x1: x(current), x2: x(current), y1: m.t, y2: Ht - m.b, "data-alpha": current }));
  return root;
}

export const patchingView: View = (ctx) => {
  const { model, root } = ctx;
  const clean: string[] = model.get("clean_tokens");
  const corrupt: string[] = model.get("corrupt_tokens");
  const grids: GridState[] = model.get("grids");
  const tooltip = new Tooltip(root);
  const selected = new Map<CellKey, HTMLElement[]>();

  const header = h("div", { class: "iw-toolbar iw-patch-header" }, [
    h("span", { text: `metric: ${model.get("metric_name")}` }),
    h("span", { class: "iw-muted", text: `clean ${fmt(model.get("clean_value"))} · corrupt ${fmt(model.get("corrupt_value"))}` }),
    h("span", { class: "iw-muted", text: "cells: 0 = corrupt run, 1 = clean run" }),
  ]);

  // ---- the heatmaps --------------------------------------------------------------------------
  const sections = grids.map((g, gi) => {
    const exact = decodeArray(g.values).data;
    const est = decodeArray(g.estimate).data;
    const low = g.low ? decodeArray(g.low).data : null;
    const high = g.high ? decodeArray(g.high).data : null;
    const both = new Float32Array(exact.length + est.length);
    both.set(exact);
    both.set(est, exact.length);
    const scale = chooseScale(both, { cmap: "diverging", center: 0 });
    // header nodes are built per grid: a DOM node lives in one place only
    const cols = () => g.cols.map((c) => (g.col_kind === "pos" ? pairHeader(clean[c as number], corrupt[c as number]) : String(c)));
    const corner = g.col_kind === "head" ? "layer \\ head" : g.col_kind === "pos" ? "layer \\ pos" : "layer";
    const make = (kind: string, values: ArrayLike<number>) => {
      const grid = heatGrid({
        rows: g.rows,
        cols: cols(),
        corner,
        attrs: { "data-component": g.component, "data-kind": kind, "data-grid": String(gi) },
      });
      grid.paint(values, scale);
      // narrower columns than the heatgrid's default, so a prompt of about 20 tokens fits beside
      // the controls column in a 1,400 px window (wider prompts scroll inside their box)
      grid.el.style.gridTemplateColumns = `max-content repeat(${g.cols.length}, minmax(30px, 40px))`;
      return grid;
    };
    const exactGrid = make("exact", exact);
    const estGrid = make("estimate", est);
    const title = `${g.component} (layer × ${g.col_kind === "head" ? "head, all positions" : g.col_kind === "pos" ? "position" : "all positions"})`;
    const box = (label: string, grid: HTMLElement) =>
      h("div", { class: "iw-patch-box" }, [h("div", { class: "iw-muted", text: label }), h("div", { class: "iw-lens-scroll" }, [grid])]);
    const row = h("div", { class: "iw-patch-pair" }, [
      box("activation patching", exactGrid.el),
      box(`attribution patching (estimate) · r = ${fmt(g.correlation)}`, estGrid.el),
    ]);
    row.style.display = "flex";
    row.style.flexWrap = "wrap";
    row.style.gap = "12px";
    const section = h("div", { class: "iw-patch-section", attrs: { "data-component": g.component } }, [
      h("div", { class: "iw-patch-title", text: title }),
      row,
      legend(scale, "fraction of the clean metric recovered"),
    ]);
    section.style.marginBottom = "10px";
    return { section, g, exact, est, low, high, exactGrid, estGrid };
  });

  // ---- the slider and its readout ---------------------------------------------------------
  const selection = h("div", { class: "iw-patch-selection iw-muted", text: "Click cells to select them." });
  const clear = h("button", { class: "iw-button iw-patch-clear", text: "clear", attrs: { type: "button" } });
  const slider = ctx.needsKernel(
    h("input", { class: "iw-patch-alpha", attrs: { type: "range", min: 0, max: 1, step: 0.01, value: 1, "aria-label": "alpha" } }),
  );
  const number = ctx.needsKernel(
    h("input", { class: "iw-input iw-patch-alpha-number", attrs: { type: "number", step: 0.05, value: 1, "aria-label": "alpha value" } }),
  );
  number.style.width = "5em";
  const note = h("span", { class: "iw-patch-note iw-muted" });
  const readout = h("div", { class: "iw-patch-result", attrs: { "aria-live": "polite" } });
  const tops = h("div", { class: "iw-patch-tops" });
  tops.style.display = "flex";
  tops.style.flexWrap = "wrap";
  tops.style.gap = "16px";
  const refTable = (key: string, caption: string) =>
    topkTable((model.get(key) as [string, number][]).map(([token, prob]) => ({ token, prob })), caption);
  const patchedSlot = h("div", { class: "iw-patch-top" });
  tops.append(refTable("top_corrupt", "corrupt run"), patchedSlot, refTable("top_clean", "clean run"));
  const controls = h("div", { class: "iw-controls iw-patch-controls" }, [
    h("label", { class: "iw-field" }, [h("span", { text: "α" }), slider]),
    number,
    note,
    clear,
  ]);

  const curveSlot = h("div", { class: "iw-patch-curve-slot" });
  const live = h("div", { class: "iw-patch-live" }, [selection, ownKeys(controls), readout, curveSlot, tops]);
  const gridsCol = h("div", { class: "iw-patch-grids" }, sections.map((s) => s.section));
  const layout = h("div", { class: "iw-patch-layout" }, [gridsCol, live]);
  root.append(header, layout);
  const stopKeeping = keepInView(live, layout);

  // ---- selection -------------------------------------------------------------------------
  const cellOf = (g: GridState, row: number, col: number): [string, number, number | null, number | null] => [
    g.component,
    row,
    g.col_kind === "pos" ? col : null,
    g.col_kind === "head" ? col : null,
  ];
  const describe = (c: [string, number, number | null, number | null]) =>
    `${c[0]} L${c[1]}` + (c[2] !== null ? ` pos ${c[2]} (${displayToken(clean[c[2]])})` : "") + (c[3] !== null ? ` H${c[3]}` : "");
  const showSelection = () => {
    const cells = [...selected.keys()].map((k) => JSON.parse(k));
    selection.textContent = cells.length
      ? `${cells.length} cell${cells.length > 1 ? "s" : ""} selected: ${cells.map(describe).join(", ")}`
      : "Click cells to select them.";
    root.dataset.selected = String(cells.length);
  };

  root.addEventListener("click", (e) => {
    const hit = gridCellAt(e.target);
    if (!hit) return;
    const s = sections[Number(hit.cell.dataset.grid)];
    const key = JSON.stringify(cellOf(s.g, hit.row, hit.col));
    const i = hit.row * s.g.cols.length + hit.col;
    const pair = [s.exactGrid.cells[i], s.estGrid.cells[i]];
    if (selected.has(key)) {
      selected.delete(key);
      pair.forEach((c) => c.classList.remove("iw-selected"));
    } else {
      selected.set(key, pair);
      pair.forEach((c) => c.classList.add("iw-selected"));
    }
    showSelection();
    schedule();
    void fetchCurve();
  });
  clear.addEventListener("click", () => {
    selected.forEach((pair) => pair.forEach((c) => c.classList.remove("iw-selected")));
    selected.clear();
    showSelection();
    schedule();
    void fetchCurve();
  });

  // ---- the metric over alpha for the selection ------------------------------------------
  let curve: { alphas: Float32Array; ys: Float32Array; normalized: boolean } | null = null;
  let curveSeq = 0;
  const drawCurve = () => {
    if (!curve) return;
    const label = curve.normalized ? "metric over α (0 = corrupt run, 1 = clean run)" : `${model.get("metric_name")} over α`;
    curveSlot.replaceChildren(h("div", { class: "iw-patch-title", text: label }), alphaCurve(curve.alphas, curve.ys, Math.min(1, Math.max(0, currentAlpha())), curve.normalized));
  };
  async function fetchCurve() {
    if (!ctx.live) {
      curveSlot.replaceChildren(h("div", { class: "iw-muted", text: "the curve over α needs a running kernel" }));
      return;
    }
    const cells = [...selected.keys()].map((k) => JSON.parse(k));
    if (!cells.length) {
      curve = null;
      curveSlot.replaceChildren(h("div", { class: "iw-muted", text: "select cells to see the metric over α" }));
      return;
    }
    const mine = ++curveSeq;
    const r = await ask<CurveReply>(ctx, "curve", { cells, n: 11 });
    if (!r || mine !== curveSeq) return;
    const norm = r.normalized ? (decodeArray(r.normalized).data as Float32Array) : null;
    curve = { alphas: decodeArray(r.alphas).data as Float32Array, ys: norm ?? (decodeArray(r.values).data as Float32Array), normalized: norm !== null };
    drawCurve();
    curveSlot.dataset.cells = String(cells.length);
  }

  root.addEventListener("mouseover", (e) => {
    const hit = gridCellAt(e.target);
    if (!hit) return;
    const s = sections[Number(hit.cell.dataset.grid)];
    const i = hit.row * s.g.cols.length + hit.col;
    const c = cellOf(s.g, hit.row, hit.col);
    tooltip.show(hit.cell, [
      tipRow("cell", describe(c)),
      ...(c[2] !== null ? [tipRow("corrupt", displayToken(corrupt[c[2]]))] : []),
      tipRow(s.low ? `patched (${s.g.n_pairs} pairs)` : "patched", s.low && s.high ? fmtEstimate(s.exact[i], s.low[i], s.high[i]) : fmt(s.exact[i])),
      tipRow("estimate", fmt(s.est[i])),
    ]);
  });
  root.addEventListener("mouseout", (e) => {
    if (gridCellAt(e.target)) tooltip.hide();
  });

  // ---- live re-runs (latest wins: one request in flight, the newest input queued) ----------
  let inFlight = false;
  let queued = false;
  const currentAlpha = () => Number(number.value);
  const send = async () => {
    if (!ctx.live) return;
    inFlight = true;
    queued = false;
    const cells = [...selected.keys()].map((k) => JSON.parse(k));
    const alpha = currentAlpha();
    readout.classList.add("iw-busy");
    const r = await ask<PatchReply>(ctx, "patch", { cells, alpha });
    readout.classList.remove("iw-busy");
    if (r) show(r, cells.length);
    inFlight = false;
    if (queued) send();
  };
  function schedule() {
    if (inFlight) queued = true;
    else void send();
  }
  function show(r: PatchReply, n: number) {
    ctx.clearError();
    note.textContent = r.clipped ? `α = ${fmt(r.requested_alpha)} is outside [0, 1]: clipped to ${fmt(r.alpha)}` : "";
    note.classList.toggle("iw-clipped", r.clipped);
    if (r.clipped) {
      slider.value = String(r.alpha);
    }
    const norm = r.normalized === null ? "" : ` (${fmt(r.normalized)} of the way from corrupt to clean)`;
    readout.replaceChildren(
      h("span", { text: n ? `patched ${n} cell${n > 1 ? "s" : ""} at α = ${fmt(r.alpha)}: ` : "no cells selected (the corrupt run): " }),
      h("strong", { class: "iw-patch-value", text: fmt(r.value) }),
      h("span", { class: "iw-muted", text: norm }),
    );
    readout.dataset.value = String(r.value);
    readout.dataset.alpha = String(r.alpha);
    readout.dataset.cells = String(n);
    patchedSlot.replaceChildren(topkTable(r.top.map(([token, prob]) => ({ token, prob })), `patched run (α = ${fmt(r.alpha)})`));
    root.dispatchEvent(new CustomEvent("iw-patch-updated", { detail: r }));
  }
  slider.addEventListener("input", () => {
    number.value = slider.value;
    drawCurve();
    schedule();
  });
  number.addEventListener("change", () => {
    if (number.value.trim() === "" || !Number.isFinite(Number(number.value))) return;
    const a = Number(number.value);
    slider.value = String(Math.min(1, Math.max(0, a)));
    drawCurve();
    schedule();
  });
  showSelection();
  void fetchCurve();
  return stopKeeping;
};
