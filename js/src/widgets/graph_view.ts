// GraphView: an attribution graph on a canvas. Layers bottom to top, positions left to right,
// edges coloured by sign, width and opacity by magnitude (components/graph_layout.ts).
// State: graph (GraphPayload: node arrays and CSR edges as binary buffers), supernodes
// [[name, node_ids]], can_intervene, can_suggest.
// Requests: "node" {node_id} -> dashboard {kind, layer, pos, feature, value, influence, token,
// prob, examples: Example[] | null, logit_effect {top, bottom} | null, stats | null};
// "prune" {node_threshold, edge_threshold} (the kernel then syncs a new graph);
// "intervene" {node_ids, factor} -> {rev, node_ids, factor, top, top_before, notes,
// new_value, change, estimate: float32 [n] in the graph's node order};
// "group" {name, node_ids}, "ungroup" {name}; "suggest" {} -> [{name, node_ids, top_tokens,
// cohesion, n_features}].
// Hover a node: its dashboard. Click: pin it (its input and output edges listed). Shift-click or
// shift-drag: select nodes (for a supernode or an intervention).
import { decodeArray, type EncodedArray } from "../codec";
import { type Example, exampleRow, fillLogitEffect, panel, valueTable } from "../components/dashboard";
import { fmt, h } from "../components/dom";
import {
  decodeGraph,
  drawGraph,
  edgeBatches,
  type EdgeBatch,
  type Graph,
  type GraphPayload,
  hitTest,
  KIND,
  KIND_NAME,
  type Layout,
  layoutGraph,
  nodeLabel,
  drawEdges,
  edgeScale,
  nodesInRect,
  type Palette,
  topEdges,
} from "../components/graph_layout";
import { ownKeys } from "../components/keys";
import { chooseScale } from "../components/scale";
import { topkTable } from "../components/table";
import { displayToken } from "../components/tokens";
import { tipRow, Tooltip } from "../components/tooltip";
import { ask, type View } from "../view";

interface Dashboard {
  node_id: string;
  kind: string;
  layer: number;
  pos: number;
  feature: number;
  value: number | null;
  influence: number | null;
  token: string;
  prob: number;
  examples: Example[] | null;
  logit_effect: { top: [string, number][]; bottom: [string, number][] } | null;
  stats: { density: number; max: number; n_docs: number; n_tokens: number } | null;
}

interface InterventionReply {
  rev: number;
  node_ids: string[];
  factor: number;
  top: [string, number][];
  top_before: [string, number][];
  notes: string[];
  new_value: EncodedArray;
  change: EncodedArray;
  estimate: EncodedArray;
}

interface SuggestionReply {
  name: string;
  node_ids: string[];
  top_tokens: string[];
  cohesion: number;
  n_features: number;
}

function palette(el: HTMLElement): Palette {
  const cs = getComputedStyle(el);
  const v = (name: string, dflt: string) => cs.getPropertyValue(name).trim() || dflt;
  return {
    pos: v("--iw-pos-rgb", "214, 39, 40"),
    neg: v("--iw-neg-rgb", "31, 119, 180"),
    fg: v("--iw-fg", "#1f2328"),
    muted: v("--iw-fg-muted", "#59636e"),
    bg: v("--iw-bg", "#ffffff"),
    accent: v("--iw-accent", "#1976d2"),
    select: `rgb(${v("--iw-from-rgb", "230, 120, 20")})`,
    grid: v("--iw-border", "#d0d7de"),
  };
}

export const graphView: View = (ctx) => {
  const { model, root } = ctx;
  const tooltip = new Tooltip(root);
  const dashboards = new Map<string, Promise<Dashboard | null>>();

  // ---- toolbar: counts and the threshold sliders -----------------------------------------------
  const counts = h("span", { class: "iw-gv-counts iw-muted" });
  const slider = (cls: string, label: string, min: number) => {
    const input = ctx.needsKernel(
      h("input", { class: `iw-gv-${cls}`, attrs: { type: "range", min, max: 1, step: 0.01, "aria-label": label } }),
    ) as HTMLInputElement;
    const text = h("span", { class: `iw-gv-${cls}-value iw-num` });
    const field = h("label", { class: "iw-field" }, [h("span", { text: label }), input, text]);
    return { input, text, field };
  };
  const nodeT = slider("node-threshold", "node threshold", 0.05);
  const edgeT = slider("edge-threshold", "edge threshold", 0.5);
  const toolbar = ownKeys(h("div", { class: "iw-toolbar iw-gv-toolbar" }, [nodeT.field, edgeT.field, counts]));

  // ---- the canvas and its labels ----------------------------------------------------------------
  const canvas = h("canvas", { class: "iw-gv-canvas", attrs: { "aria-label": "attribution graph" } });
  const anchor = h("div", { class: "iw-gv-anchor" });
  const brush = h("div", { class: "iw-gv-brush", attrs: { hidden: true } });
  const tokenRow = h("div", { class: "iw-gv-tokens" });
  const logitLabels = h("div", { class: "iw-gv-logit-labels" });
  const stage = h("div", { class: "iw-gv-stage" }, [canvas, logitLabels, anchor, brush]);

  // ---- side panels: pinned node, selection / intervention, supernodes -------------------------
  const pinPanel = panel("Pinned node (click a node)", "iw-gv-pinned");
  const selInfo = h("div", { class: "iw-gv-selection iw-muted" });
  const factor = ctx.needsKernel(
    h("input", { class: "iw-gv-factor", attrs: { type: "range", min: -1, max: 3, step: 0.1, value: 0, "aria-label": "factor" } }),
  ) as HTMLInputElement;
  const factorText = h("span", { class: "iw-gv-factor-value iw-num", text: "0" });
  const zero = ctx.needsKernel(h("button", { class: "iw-button iw-gv-zero", text: "ablate (×0)", attrs: { type: "button" } }));
  const clear = h("button", { class: "iw-button iw-gv-clear", text: "clear selection", attrs: { type: "button" } });
  const groupName = ctx.needsKernel(h("input", { class: "iw-input iw-gv-group-name", attrs: { type: "text", placeholder: "supernode name", "aria-label": "supernode name" } }));
  const groupBtn = ctx.needsKernel(h("button", { class: "iw-button iw-gv-group", text: "group", attrs: { type: "button" } }));
  const interResult = h("div", { class: "iw-gv-intervention", attrs: { "aria-live": "polite" } });
  const interPanel = panel("Selection: intervene or group (shift-click / shift-drag nodes)", "iw-gv-select-panel");
  interPanel.append(
    selInfo,
    ownKeys(
      h("div", { class: "iw-controls" }, [
        h("label", { class: "iw-field" }, [h("span", { text: "× value" }), factor, factorText]),
        zero,
        clear,
        groupName,
        groupBtn,
      ]),
    ),
    interResult,
  );
  const groupList = h("div", { class: "iw-gv-groups" });
  const suggestBtn = h("button", { class: "iw-button iw-gv-suggest", text: "suggest groups", attrs: { type: "button" } });
  const suggestList = h("div", { class: "iw-gv-suggestions" });
  const groupPanel = panel("Supernodes", "iw-gv-group-panel");
  groupPanel.append(groupList, suggestBtn, suggestList);
  if (!model.get("can_suggest")) suggestBtn.title = "needs the model, transcoders and a corpus";
  const side = h("div", { class: "iw-gv-side" }, [pinPanel, interPanel, groupPanel]);
  root.append(toolbar, h("div", { class: "iw-gv-main" }, [h("div", { class: "iw-gv-plot" }, [stage, tokenRow]), side]));

  // ---- state ------------------------------------------------------------------------------------
  let g: Graph = decodeGraph(model.get("graph") as GraphPayload);
  let lay: Layout;
  let batches: EdgeBatch[] = [];
  let hover = -1;
  let pinned = -1;
  const selected = new Set<number>();
  let change: Float32Array | null = null;
  let groups: { name: string; nodes: number[] }[] = [];
  let droppedSelection: string[] = []; // selected ids that a re-pruning dropped
  const pal = palette(root);
  const c2d = canvas.getContext("2d");

  const widthNow = () => Math.max(320, Math.floor(stage.clientWidth || root.clientWidth || 900));

  function readGroups(): void {
    const raw = (model.get("supernodes") ?? []) as [string, string[]][];
    groups = raw.map(([name, ids]) => ({ name, nodes: ids.map((id) => g.index.get(id)).filter((i): i is number => i !== undefined) }));
    groupList.replaceChildren(
      ...(raw.length ? [] : [h("div", { class: "iw-muted", text: "none yet: select nodes and press group" })]),
      ...raw.map(([name, ids]) => {
        const del = ctx.needsKernel(h("button", { class: "iw-button iw-gv-ungroup", text: "×", attrs: { type: "button", "aria-label": `delete ${name}` } }));
        del.addEventListener("click", () => void ask(ctx, "ungroup", { name }));
        const item = h("div", { class: "iw-gv-group-item", attrs: { "data-name": name } }, [h("strong", { text: name }), h("span", { class: "iw-muted", text: ` ${ids.length} nodes ` }), del]);
        item.addEventListener("click", (e) => {
          if (e.target !== del) selectOnly(ids);
        });
        return item;
      }),
    );
    root.dataset.groups = String(raw.length);
  }

  function layout(): void {
    lay = layoutGraph(g, widthNow());
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(lay.width * dpr);
    canvas.height = Math.round(lay.height * dpr);
    canvas.style.width = `${lay.width}px`;
    canvas.style.height = `${lay.height}px`;
    stage.style.height = `${lay.height}px`;
    c2d?.setTransform(dpr, 0, 0, dpr, 0, 0);
    // token labels along the bottom, logit labels over the top row
    tokenRow.replaceChildren(
      ...g.promptTokens.map((t, p) => {
        const s = h("span", { class: "iw-gv-token", text: displayToken(t), title: `position ${p}: ${displayToken(t)}`, attrs: { "data-pos": p } });
        s.style.left = `${lay.colX[p] - lay.colW / 2}px`;
        s.style.width = `${lay.colW}px`;
        return s;
      }),
    );
    tokenRow.style.width = `${lay.width}px`;
    const logits: HTMLElement[] = [];
    for (let i = 0; i < g.n; i++) {
      if (g.kind[i] !== KIND.logit) continue;
      const s = h("span", { class: "iw-gv-logit-label", text: displayToken(g.tokens[i]), title: `p = ${fmt(g.prob[i])}`, attrs: { "data-node": g.ids[i] } });
      s.style.left = `${lay.x[i]}px`;
      s.style.top = `${lay.y[i] - lay.r - 16}px`;
      logits.push(s);
    }
    logitLabels.replaceChildren(...logits);
  }

  // the edge layer, redrawn only when the graph, the layout or the pinned state change
  let edgeLayer: { key: string; canvas: HTMLCanvasElement } | null = null;
  function edgeCanvas(): HTMLCanvasElement | null {
    if (!c2d) return null;
    const dpr = (window.devicePixelRatio || 1) * edgeScale(g.edges.indices.length);
    const key = `${g.rev}:${lay.width}:${lay.height}:${dpr}:${pinned >= 0}`;
    if (edgeLayer?.key !== key) {
      const c = edgeLayer?.canvas ?? document.createElement("canvas");
      c.width = Math.max(1, Math.round(lay.width * dpr));
      c.height = Math.max(1, Math.round(lay.height * dpr));
      const e2d = c.getContext("2d");
      if (!e2d) return null;
      e2d.setTransform(dpr, 0, 0, dpr, 0, 0);
      e2d.clearRect(0, 0, lay.width, lay.height);
      drawEdges(e2d, batches, lay, pal, pinned >= 0 ? 0.25 : 1);
      edgeLayer = { key, canvas: c };
    }
    return edgeLayer.canvas;
  }

  // With a ResizeObserver, the first drawing waits for its first callback (after layout, before
  // the first paint), so the canvas is drawn once, at the width the page gives it.
  let sized = typeof ResizeObserver !== "function";
  function redraw(): void {
    if (c2d && sized) drawGraph(c2d, g, lay, edgeCanvas(), pal, { hover, pinned, selected, groups, change });
    root.dataset.hover = hover >= 0 ? g.ids[hover] : "";
  }

  function showCounts(): void {
    const p = (model.get("graph") as GraphPayload).prune;
    const nnz = g.edges.indices.length;
    const kept = p.kept_node_influence == null ? "" : ` · kept ${(100 * p.kept_node_influence).toFixed(1)}% of node influence`;
    counts.textContent = `${g.n} of ${p.n_full} nodes, ${nnz} edges${kept}`;
    if (p.node_threshold != null) nodeT.input.value = String(p.node_threshold);
    else nodeT.input.value = "1";
    if (p.edge_threshold != null) edgeT.input.value = String(p.edge_threshold);
    else edgeT.input.value = "1";
    nodeT.text.textContent = fmt(Number(nodeT.input.value));
    edgeT.text.textContent = fmt(Number(edgeT.input.value));
    root.dataset.nodes = String(g.n);
    root.dataset.edges = String(nnz);
    root.dataset.rev = String(g.rev);
    root.dataset.nodeThreshold = nodeT.input.value;
  }

  function load(): void {
    const keepIds = { pinned: pinned >= 0 ? g.ids[pinned] : null, selected: [...selected].map((i) => g.ids[i]) };
    g = decodeGraph(model.get("graph") as GraphPayload);
    batches = edgeBatches(g.edges);
    hover = -1;
    pinned = keepIds.pinned !== null ? (g.index.get(keepIds.pinned) ?? -1) : -1;
    selected.clear();
    for (const id of keepIds.selected) {
      const i = g.index.get(id);
      if (i !== undefined) selected.add(i);
    }
    // selected nodes that the new pruning dropped stay selected by id (see showSelection)
    droppedSelection = keepIds.selected.filter((id) => !g.index.has(id));
    change = null;
    layout();
    readGroups();
    showCounts();
    showSelection();
    showPinned();
    redraw();
  }

  // ---- hover: the node's dashboard --------------------------------------------------------------
  function dashboard(i: number): Promise<Dashboard | null> {
    const id = g.ids[i];
    let p = dashboards.get(id);
    if (!p) {
      p = ask<Dashboard>(ctx, "node", { node_id: id });
      dashboards.set(id, p);
      p.then((d) => d === null && dashboards.delete(id));
    }
    return p;
  }

  function summaryRows(i: number): HTMLElement[] {
    const rows = [tipRow("node", nodeLabel(g, i)), tipRow("kind", KIND_NAME[g.kind[i]])];
    if (g.kind[i] !== KIND.logit) rows.push(tipRow("position", `${g.pos[i]} ${displayToken(g.promptTokens[g.pos[i]] ?? "")}`));
    rows.push(tipRow(g.kind[i] === KIND.feature ? "activation" : g.kind[i] === KIND.logit ? "logit (demeaned)" : "norm", fmt(g.value[i])));
    if (g.kind[i] === KIND.logit) rows.push(tipRow("probability", fmt(g.prob[i])));
    rows.push(tipRow("influence", fmt(g.influence[i])));
    return rows;
  }

  function dashboardNodes(d: Dashboard): Node[] {
    const out: Node[] = [];
    if (d.stats) out.push(h("div", { class: "iw-muted", text: `density ${fmt(d.stats.density)} · max ${fmt(d.stats.max)} over ${d.stats.n_docs} documents` }));
    if (d.examples) {
      const acts: number[] = [];
      for (const e of d.examples) acts.push(...Array.from(decodeArray(e.acts).data));
      const scale = chooseScale(acts, { cmap: "sequential", vmin: 0 });
      const ex = h("div", { class: "iw-gv-examples" }, [
        h("div", { class: "iw-tip-key", text: "top activations" }),
        ...(d.examples.length ? d.examples.slice(0, 5).map((e) => exampleRow(e, scale)) : [h("div", { class: "iw-muted", text: "never fires in the corpus" })]),
      ]);
      out.push(ex);
    }
    if (d.logit_effect) {
      const lp = panel("logit effects", "iw-gv-logits");
      fillLogitEffect(lp, { top: d.logit_effect.top.slice(0, 5), bottom: d.logit_effect.bottom.slice(0, 5) });
      out.push(lp);
    }
    return out;
  }

  function showTip(i: number): void {
    anchor.style.left = `${lay.x[i] - lay.r}px`;
    anchor.style.top = `${lay.y[i] - lay.r}px`;
    anchor.style.width = anchor.style.height = `${2 * lay.r}px`;
    tooltip.show(anchor, [...summaryRows(i), h("div", { class: "iw-muted iw-gv-loading", text: g.kind[i] === KIND.feature ? "loading…" : "" })]);
    const id = g.ids[i];
    void dashboard(i).then((d) => {
      if (!d || hover < 0 || g.ids[hover] !== id) return;
      tooltip.show(anchor, [...summaryRows(i), ...dashboardNodes(d)]);
      root.dataset.dashboard = id;
    });
  }

  // ---- pinning: the node's edges, listed ---------------------------------------------------------
  function edgeTable(cls: string, title: string, rows: { node: number; weight: number }[]): HTMLElement {
    const top = Math.max(1e-12, ...rows.map((r) => Math.abs(r.weight)));
    const t = valueTable(
      cls,
      [title, "weight", ""],
      rows.map((r) => [h("span", { text: nodeLabel(g, r.node) }), fmt(r.weight), signedBarEl(r.weight, top)]),
      (k) => ({ "data-node": g.ids[rows[k].node], "data-weight": rows[k].weight }),
    );
    t.addEventListener("click", (e) => {
      const tr = (e.target as HTMLElement).closest("tr[data-node]") as HTMLElement | null;
      const j = tr ? g.index.get(tr.dataset.node!) : undefined;
      if (j !== undefined) pin(j);
    });
    return t;
  }
  const signedBarEl = (v: number, top: number) => {
    const bar = h("span", { class: `iw-nv-signed ${v >= 0 ? "iw-pos" : "iw-neg"}` });
    bar.style.width = `${Math.round((60 * Math.abs(v)) / top)}px`;
    return bar;
  };

  function showPinned(): void {
    const title = pinPanel.firstChild!;
    if (pinned < 0) {
      pinPanel.replaceChildren(title, h("div", { class: "iw-muted", text: "Click a node to pin it and list its input and output edges." }));
      root.dataset.pinned = "";
      return;
    }
    const i = pinned;
    const ins = topEdges(g.edges, i, 15);
    const outs = topEdges(g.out, i, 15);
    const body = h("div", { class: "iw-gv-pin-body" });
    pinPanel.replaceChildren(
      title,
      h("div", { class: "iw-gv-pin-title" }, [h("strong", { text: nodeLabel(g, i) }), h("span", { class: "iw-muted", text: ` ${g.ids[i]}` })]),
      h("div", {}, summaryRows(i)),
      ins.length ? edgeTable("iw-gv-in", `inputs (${g.edges.indptr[i + 1] - g.edges.indptr[i]})`, ins) : h("div", { class: "iw-muted", text: "no input edges shown" }),
      outs.length ? edgeTable("iw-gv-out", `outputs (${g.out.indptr[i + 1] - g.out.indptr[i]})`, outs) : h("div", { class: "iw-muted", text: "no output edges shown" }),
      body,
    );
    root.dataset.pinned = g.ids[i];
    void dashboard(i).then((d) => {
      if (d && pinned === i) body.replaceChildren(...dashboardNodes(d));
    });
  }

  function pin(i: number): void {
    pinned = pinned === i ? -1 : i;
    showPinned();
    redraw();
  }

  // ---- selection ------------------------------------------------------------------------------------
  function selectedIds(): string[] {
    return [...[...selected].map((i) => g.ids[i]), ...droppedSelection];
  }
  /** Select exactly the shown nodes among `ids` (a supernode's or a suggestion's). */
  function selectOnly(ids: string[]): void {
    selected.clear();
    droppedSelection = [];
    for (const id of ids) {
      const i = g.index.get(id);
      if (i !== undefined) selected.add(i);
    }
    showSelection();
    redraw();
  }
  function showSelection(): void {
    const ids = selectedIds();
    const feats = [...selected].filter((i) => g.kind[i] === KIND.feature).length + droppedSelection.length;
    selInfo.textContent = ids.length
      ? `${ids.length} selected (${feats} features): ${[...selected].slice(0, 8).map((i) => nodeLabel(g, i)).join(", ")}${ids.length > 8 ? ", …" : ""}` +
        (droppedSelection.length ? ` · ${droppedSelection.length} pruned away (${droppedSelection.join(", ")})` : "")
      : "Shift-click or shift-drag nodes to select them.";
    root.dataset.selected = String(ids.length);
  }

  // ---- mouse ---------------------------------------------------------------------------------------
  const at = (e: MouseEvent): [number, number] => {
    const r = canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };
  let down: { x: number; y: number; shift: boolean } | null = null;
  canvas.addEventListener("mousedown", (e) => {
    const [x, y] = at(e);
    down = { x, y, shift: e.shiftKey };
  });
  canvas.addEventListener("mousemove", (e) => {
    const [x, y] = at(e);
    if (down?.shift && Math.hypot(x - down.x, y - down.y) > 4) {
      brush.hidden = false;
      brush.style.left = `${Math.min(x, down.x)}px`;
      brush.style.top = `${Math.min(y, down.y)}px`;
      brush.style.width = `${Math.abs(x - down.x)}px`;
      brush.style.height = `${Math.abs(y - down.y)}px`;
      return;
    }
    const i = hitTest(lay, x, y);
    if (i === hover) return;
    hover = i;
    canvas.style.cursor = i >= 0 ? "pointer" : "default";
    redraw();
    if (i >= 0) showTip(i);
    else tooltip.hide();
  });
  canvas.addEventListener("mouseleave", () => {
    hover = -1;
    tooltip.hide();
    redraw();
  });
  window.addEventListener("mouseup", onUp);
  function onUp(e: MouseEvent): void {
    if (!down) return;
    const [x, y] = at(e);
    const start = down;
    down = null;
    brush.hidden = true;
    if (start.shift && Math.hypot(x - start.x, y - start.y) > 4) {
      for (const i of nodesInRect(lay, start.x, start.y, x, y)) selected.add(i);
      showSelection();
      redraw();
      return;
    }
    if (e.target !== canvas) return;
    const i = hitTest(lay, x, y);
    if (i < 0) return;
    if (e.shiftKey) {
      if (selected.has(i)) selected.delete(i);
      else selected.add(i);
      showSelection();
      redraw();
    } else pin(i);
  }

  // ---- pruning -------------------------------------------------------------------------------------
  const prune = async () => {
    nodeT.text.textContent = fmt(Number(nodeT.input.value));
    edgeT.text.textContent = fmt(Number(edgeT.input.value));
    root.classList.add("iw-busy");
    const r = await ask(ctx, "prune", { node_threshold: Number(nodeT.input.value), edge_threshold: Number(edgeT.input.value) });
    root.classList.remove("iw-busy");
    if (r) ctx.clearError();
  };
  for (const s of [nodeT, edgeT]) {
    s.input.addEventListener("input", () => (s.text.textContent = fmt(Number(s.input.value))));
    s.input.addEventListener("change", () => void prune());
  }

  // ---- interventions (latest wins: one request in flight, the newest queued) ------------------------
  let inFlight = false;
  let queued = false;
  const intervene = async () => {
    if (!ctx.live) return;
    const ids = [...[...selected].filter((i) => g.kind[i] === KIND.feature).map((i) => g.ids[i]), ...droppedSelection];
    if (!ids.length) {
      interResult.replaceChildren(h("div", { class: "iw-muted", text: "Select feature nodes first (shift-click)." }));
      return;
    }
    inFlight = true;
    queued = false;
    const f = Number(factor.value);
    interResult.classList.add("iw-busy");
    const t0 = performance.now();
    const r = await ask<InterventionReply>(ctx, "intervene", { node_ids: ids, factor: f });
    interResult.classList.remove("iw-busy");
    if (r) showIntervention(r, performance.now() - t0);
    inFlight = false;
    if (queued) void intervene();
  };
  function schedule(): void {
    factorText.textContent = fmt(Number(factor.value));
    if (inFlight) queued = true;
    else void intervene();
  }
  function showIntervention(r: InterventionReply, ms: number): void {
    ctx.clearError();
    if (r.rev !== g.rev) {
      interResult.replaceChildren(h("div", { class: "iw-muted", text: "the graph was re-pruned meanwhile: move the slider again" }));
      return;
    }
    const ch = decodeArray(r.change).data as Float32Array;
    const nv = decodeArray(r.new_value).data as Float32Array;
    const est = decodeArray(r.estimate).data as Float32Array;
    change = ch;
    const order = Array.from({ length: g.n }, (_, i) => i)
      .filter((i) => Number.isFinite(ch[i]) && (Math.abs(ch[i]) > 1e-6 || r.node_ids.includes(g.ids[i])))
      .sort((a, b) => Math.abs(ch[b]) - Math.abs(ch[a]))
      .slice(0, 15);
    const table = valueTable(
      "iw-gv-changes",
      ["node", "value", "re-run", "change", "linear estimate"],
      order.map((i) => [h("span", { text: nodeLabel(g, i) }), fmt(g.value[i]), fmt(nv[i]), fmt(ch[i]), fmt(est[i])]),
      (k) => ({ "data-node": g.ids[order[k]], "data-change": ch[order[k]], "data-estimate": est[order[k]] }),
    );
    const tops = h("div", { class: "iw-gv-tops" }, [
      topkTable(r.top_before.map(([token, prob]) => ({ token, prob })), "before"),
      topkTable(r.top.map(([token, prob]) => ({ token, prob })), `after (× ${fmt(r.factor)})`),
    ]);
    interResult.replaceChildren(
      h("div", { class: "iw-gv-inter-title", text: `${r.node_ids.length} feature${r.node_ids.length > 1 ? "s" : ""} × ${fmt(r.factor)}: re-ran the model (${Math.round(ms)} ms)` }),
      ...r.notes.map((n) => h("div", { class: "iw-gv-note", text: n })),
      tops,
      order.length ? table : h("div", { class: "iw-muted", text: "no node of the graph changed" }),
    );
    interResult.dataset.factor = String(r.factor);
    interResult.dataset.top = r.top[0]?.[0] ?? "";
    interResult.dataset.topProb = String(r.top[0]?.[1] ?? "");
    interResult.dataset.nodes = r.node_ids.join(",");
    interResult.dataset.ms = String(Math.round(ms));
    redraw();
    root.dispatchEvent(new CustomEvent("iw-graph-intervened", { detail: { ms } }));
  }
  factor.addEventListener("input", () => (factorText.textContent = fmt(Number(factor.value))));
  factor.addEventListener("change", schedule);
  zero.addEventListener("click", () => {
    factor.value = "0";
    schedule();
  });
  clear.addEventListener("click", () => {
    selected.clear();
    droppedSelection = [];
    change = null;
    showSelection();
    redraw();
  });

  // ---- supernodes ----------------------------------------------------------------------------------
  groupBtn.addEventListener("click", async () => {
    const name = (groupName as HTMLInputElement).value.trim();
    if (!name) {
      ctx.showError("Give the supernode a name first.");
      return;
    }
    if (await ask(ctx, "group", { name, node_ids: selectedIds() })) (groupName as HTMLInputElement).value = "";
  });
  suggestBtn.addEventListener("click", async () => {
    suggestList.replaceChildren(h("div", { class: "iw-muted", text: "clustering features…" }));
    const r = await ask<SuggestionReply[]>(ctx, "suggest", {});
    if (!r) {
      suggestList.replaceChildren();
      return;
    }
    suggestList.replaceChildren(
      ...(r.length ? [] : [h("div", { class: "iw-muted", text: "no group of two or more features found" })]),
      ...r.map((s) => {
        const accept = ctx.needsKernel(h("button", { class: "iw-button iw-gv-accept", text: "accept", attrs: { type: "button" } }));
        accept.addEventListener("click", () => void ask(ctx, "group", { name: s.name, node_ids: s.node_ids }));
        const item = h("div", { class: "iw-gv-suggestion", attrs: { "data-name": s.name } }, [
          h("strong", { text: s.name }),
          h("span", { class: "iw-muted", text: ` ${s.n_features} features, ${s.node_ids.length} nodes, cohesion ${fmt(s.cohesion)} ` }),
          accept,
        ]);
        item.addEventListener("mouseenter", () => selectOnly(s.node_ids));
        return item;
      }),
    );
    root.dataset.suggestions = String(r.length);
  });

  // Where a node is drawn (CSS px from the canvas's top left), for browser tests and scripts.
  (root as HTMLElement & { iwNodePosition?: (id: string) => [number, number] | null }).iwNodePosition = (id) => {
    const i = g.index.get(id);
    return i === undefined ? null : [lay.x[i], lay.y[i]];
  };

  // ---- first draw and updates --------------------------------------------------------------------
  const onGraph = () => load();
  const onGroups = () => {
    readGroups();
    redraw();
  };
  model.on("change:graph", onGraph);
  model.on("change:supernodes", onGroups);
  load();
  let ro: ResizeObserver | null = null;
  if (typeof ResizeObserver === "function") {
    let lastW = lay!.width;
    ro = new ResizeObserver(() => {
      const w = widthNow();
      if (sized && Math.abs(w - lastW) < 8) return;
      const first = !sized;
      sized = true;
      lastW = w;
      if (first && w === lay.width) redraw();
      else {
        layout();
        redraw();
      }
      if (first) ctx.mark("iw-graph-drawn");
    });
    ro.observe(stage);
  } else ctx.mark("iw-graph-drawn");
  return () => {
    model.off("change:graph", onGraph);
    model.off("change:supernodes", onGroups);
    window.removeEventListener("mouseup", onUp);
    ro?.disconnect();
  };
};
