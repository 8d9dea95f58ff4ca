// GraphView: the layout and drawing logic (components/graph_layout.ts) and the view in happy-dom
// against the static-export shim (requests answered from a table, as the kernel would).
import { describe, expect, it } from "vitest";
import { csrToDense, encodeArray, encodeStrings } from "../src/codec";
import {
  type Ctx2D,
  decodeGraph,
  drawGraph,
  EDGE_LEVELS,
  edgeBatches,
  type GraphPayload,
  hitTest,
  KIND,
  layoutGraph,
  drawEdges,
  edgeScale,
  nodesInRect,
  topEdges,
  transposeCSR,
} from "../src/components/graph_layout";
import { type Answer, cleanUpAfterEach, click, mount, tick } from "./mount";

const EVIL = '<img src=x onerror="window.__pwned=1">';
cleanUpAfterEach();

// A graph of 3 prompt tokens, 2 layers: embeddings e0..e2, features f0 (L0 p1), f1 (L0 p1),
// f2 (L1 p2), error (L1 p2), logit at p2. Edges (target <- source, weight).
const IDS = ["E_5_0", "E_6_1", "E_7_2", "0_3_1", "0_9_1", "1_4_2", "err_1_2", "3_11_2"];
const KINDS = [0, 0, 0, 1, 1, 1, 2, 3];
const LAYERS = [-1, -1, -1, 0, 0, 1, 1, 2];
const POS = [0, 1, 2, 1, 1, 2, 2, 2];
const EDGES: [number, number, number][] = [
  [3, 1, 0.8], // f0 <- e1
  [4, 1, -0.3], // f1 <- e1
  [5, 3, 1.2], // f2 <- f0
  [5, 4, 0.1],
  [7, 5, 2.0], // logit <- f2
  [7, 6, -0.5], // logit <- error
  [7, 2, 0.4], // logit <- e2
];

function csrOf(n: number, edges: [number, number, number][]) {
  const sorted = [...edges].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const indptr = new Array(n + 1).fill(0);
  for (const [t] of sorted) indptr[t + 1]++;
  for (let i = 0; i < n; i++) indptr[i + 1] += indptr[i];
  return {
    format: "csr" as const,
    shape: [n, n] as [number, number],
    indptr: encodeArray(indptr, [n + 1], "int32"),
    indices: encodeArray(sorted.map((e) => e[1]), [sorted.length], "int32"),
    data: encodeArray(sorted.map((e) => e[2]), [sorted.length], "float32"),
  };
}

function payload(rev = 0, keep = IDS.length): GraphPayload {
  const n = keep;
  const f32 = (v: number[]) => encodeArray(v.slice(0, n), [n], "float32");
  const i32 = (v: number[]) => encodeArray(v.slice(0, n), [n], "int32");
  return {
    rev,
    n,
    n_layers: 2,
    n_pos: 3,
    prompt: "x",
    prompt_tokens: encodeStrings(["<bos>", " Mary", EVIL]),
    kind: encodeArray(KINDS.slice(0, n), [n], "uint8"),
    layer: i32(LAYERS),
    pos: i32(POS),
    feature: i32([5, 6, 7, 3, 9, 4, -1, 11]),
    value: f32([1, 1, 1, 0.8, 0.3, 1.3, 0.5, 1.9]),
    influence: f32([0.1, 0.5, 0.2, 0.4, 0.05, 0.6, 0.1, 0]),
    prob: f32([0, 0, 0, 0, 0, 0, 0, 0.7]),
    ids: encodeStrings(IDS.slice(0, n)),
    tokens: encodeStrings(["<bos>", " Mary", EVIL, " Mary", " Mary", EVIL, EVIL, EVIL].slice(0, n)),
    edges: csrOf(n, EDGES.filter(([t, s]) => t < n && s < n)),
    prune: { pruned: true, node_threshold: 0.8, edge_threshold: 0.98, kept_node_influence: 0.9, kept_edge_influence: 0.95, n_full: 20 },
  };
}

describe("graph layout", () => {
  const g = decodeGraph(payload());
  const l = layoutGraph(g, 600);

  it("puts embeddings at the bottom, logits on top, layers in between, positions left to right", () => {
    const y = (i: number) => l.y[i];
    expect(y(0)).toBeGreaterThan(y(3)); // embedding below layer 0
    expect(y(3)).toBeGreaterThan(y(5)); // layer 0 below layer 1
    expect(y(5)).toBeGreaterThan(y(7)); // layer 1 below logits
    expect(y(5)).toBe(y(6)); // feature and error of one layer share the row
    expect(l.x[0]).toBeLessThan(l.x[1]);
    expect(l.x[1]).toBeLessThan(l.x[2]);
    for (let i = 0; i < g.n; i++) {
      const [top, bottom] = l.rowY[KINDS[i] === KIND.embedding ? 0 : KINDS[i] === KIND.logit ? 3 : LAYERS[i] + 1];
      expect(l.y[i]).toBeGreaterThan(top);
      expect(l.y[i]).toBeLessThan(bottom);
      expect(Math.abs(l.x[i] - l.colX[POS[i]])).toBeLessThan(l.colW / 2);
    }
  });

  it("keeps the nodes of one cell apart, the most influential first, and grows the row to fit", () => {
    expect(Math.hypot(l.x[3] - l.x[4], l.y[3] - l.y[4])).toBeGreaterThanOrEqual(2 * l.r);
    expect(l.x[3]).toBeLessThan(l.x[4]); // f0 has more influence than f1
    const many = { n: 40, nLayers: 1, nPos: 2, kind: new Uint8Array(40).fill(1), layer: new Int32Array(40), pos: new Int32Array(40), influence: new Float32Array(40) };
    const tall = layoutGraph(many, 300);
    const few = layoutGraph({ ...many, n: 2 }, 300);
    expect(tall.height).toBeGreaterThan(few.height);
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) seen.add(`${tall.x[i].toFixed(1)},${tall.y[i].toFixed(1)}`);
    expect(seen.size).toBe(40);
  });

  it("hit-tests the nearest node and selects by rectangle", () => {
    expect(hitTest(l, l.x[5] + 1, l.y[5] - 1)).toBe(5);
    expect(hitTest(l, l.x[5] + 40, l.y[5] + 40)).toBe(-1);
    const inRow = nodesInRect(l, 0, l.rowY[0][0], 600, l.rowY[0][1]);
    expect(inRow.sort()).toEqual([0, 1, 2]);
  });

  it("transposes CSR and lists edges by magnitude", () => {
    const t = transposeCSR(g.edges);
    const d = csrToDense(g.edges);
    const dt = csrToDense(t);
    for (let r = 0; r < g.n; r++) for (let c = 0; c < g.n; c++) expect(dt[c * g.n + r]).toBe(d[r * g.n + c]);
    expect(topEdges(g.edges, 7).map((e) => [e.node, e.weight])).toEqual([[5, 2], [6, -0.5], [2, expect.closeTo(0.4, 6)]]);
    expect(topEdges(g.out, 1).map((e) => e.node)).toEqual([3, 4]);
  });

  it("batches edges by sign and magnitude, each edge once", () => {
    const batches = edgeBatches(g.edges);
    const pairs = batches.flatMap((b) => Array.from({ length: b.pairs.length / 2 }, (_, k) => [b.pairs[2 * k], b.pairs[2 * k + 1], b.positive, b.level] as const));
    expect(pairs.length).toBe(EDGES.length);
    for (const [t, s, w] of EDGES) {
      const hit = pairs.filter(([a, b]) => a === s && b === t);
      expect(hit.length).toBe(1);
      expect(hit[0][2]).toBe(w > 0);
    }
    const levelOf = (s: number, t: number) => pairs.find(([a, b]) => a === s && b === t)![3];
    expect(levelOf(5, 7)).toBe(EDGE_LEVELS - 1); // the largest |w|
    expect(levelOf(5, 7)).toBeGreaterThan(levelOf(3, 5));
    expect(levelOf(3, 5)).toBeGreaterThan(levelOf(4, 5));
    for (let i = 1; i < batches.length; i++) expect(batches[i].level).toBeGreaterThanOrEqual(batches[i - 1].level);
    const strong = batches.find((b) => b.level === EDGE_LEVELS - 1)!;
    const weak = batches.find((b) => b.level === Math.min(...batches.map((x) => x.level)))!;
    expect(strong.width).toBeGreaterThan(weak.width);
    expect(strong.alpha).toBeGreaterThan(weak.alpha);
    expect(edgeBatches(g.edges, (s) => s !== 1).flatMap((b) => b.pairs).length).toBe(2 * (EDGES.length - 2));
  });

  it("strokes one segment per edge in its batch's colour, width and opacity", () => {
    const rec = recorder();
    const batches = edgeBatches(g.edges);
    drawEdges(rec.ctx, batches, l, { pos: "1, 2, 3", neg: "4, 5, 6" }, 0.5);
    const strokes = rec.calls.filter((c) => c[0] === "stroke");
    expect(strokes.length).toBe(EDGES.length);
    expect(rec.calls.filter((c) => c[0] === "lineTo").length).toBe(EDGES.length);
    // the state at each stroke: the strongest edge (f2 -> logit, +2.0) last and widest
    const last = rec.states[rec.states.length - 1];
    expect(last.strokeStyle).toBe("rgb(1, 2, 3)");
    expect(last.lineWidth).toBe(batches[batches.length - 1].width);
    expect(last.globalAlpha).toBeCloseTo(batches[batches.length - 1].alpha * 0.5);
    const neg = rec.states.filter((st) => st.strokeStyle === "rgb(4, 5, 6)").length;
    expect(neg).toBe(EDGES.filter((e) => e[2] < 0).length);
    expect(edgeScale(100)).toBe(1);
    expect(edgeScale(20000)).toBe(0.5);
  });

  it("draws the edge raster, row lines, the pinned node's edges on top, groups and change rings", () => {
    const rec = recorder();
    const pal = { pos: "1, 2, 3", neg: "4, 5, 6", fg: "#000", muted: "#777", bg: "#fff", accent: "#00f", select: "#f80", grid: "#ddd" };
    const img = {} as CanvasImageSource;
    drawGraph(rec.ctx, g, l, img, pal, { hover: -1, pinned: -1, selected: new Set(), groups: [] });
    expect(rec.calls.filter((c) => c[0] === "drawImage").length).toBe(1);
    const rowLines = l.rowY.length - 1;
    expect(rec.calls.filter((c) => c[0] === "lineTo").length).toBe(rowLines);
    expect(rec.calls.filter((c) => c[0] === "arc").length).toBe(3); // the feature nodes
    expect(rec.calls.filter((c) => c[0] === "rect").length).toBe(5);
    const labels = rec.calls.filter((c) => c[0] === "fillText").map((c) => c[1]);
    expect(labels).toEqual(["tokens", "L0", "L1", "logits"]);
    const rec2 = recorder();
    const change = new Float32Array(g.n).fill(NaN);
    change[7] = -1;
    drawGraph(rec2.ctx, g, l, img, pal, { hover: -1, pinned: 5, selected: new Set([3]), groups: [{ name: "grp", nodes: [3, 4] }], change });
    // f2 has 2 inputs and 1 output
    expect(rec2.calls.filter((c) => c[0] === "lineTo").length).toBe(rowLines + 3);
    expect(rec2.calls.filter((c) => c[0] === "arc").length).toBe(3 + 2 + 1); // + pinned & selected rings + change ring
    expect(rec2.calls.some((c) => c[0] === "fillText" && c[1] === "grp")).toBe(true);
    expect(rec2.calls.filter((c) => c[0] === "strokeRect").length).toBe(1);
  });
});

function recorder() {
  const calls: unknown[][] = [];
  const states: { strokeStyle: string; lineWidth: number; globalAlpha: number }[] = [];
  const fn = (name: string) =>
    function (this: any, ...a: unknown[]) {
      calls.push([name, ...a]);
      if (name === "stroke") states.push({ strokeStyle: this.strokeStyle, lineWidth: this.lineWidth, globalAlpha: this.globalAlpha });
    };
  const ctx = {
    beginPath: fn("beginPath"), moveTo: fn("moveTo"), lineTo: fn("lineTo"), stroke: fn("stroke"), fill: fn("fill"),
    arc: fn("arc"), rect: fn("rect"), clearRect: fn("clearRect"), save: fn("save"), restore: fn("restore"),
    setTransform: fn("setTransform"), fillText: fn("fillText"), strokeRect: fn("strokeRect"), drawImage: fn("drawImage"),
    strokeStyle: "", fillStyle: "", lineWidth: 1, globalAlpha: 1, font: "", textAlign: "left", textBaseline: "alphabetic",
  } as unknown as Ctx2D;
  return { ctx, calls, states };
}

describe("graph view", () => {
  const dash = {
    node_id: "1_4_2", kind: "feature", layer: 1, pos: 2, feature: 4, value: 1.3, influence: 0.6, token: EVIL, prob: 0,
    examples: [{ doc: 1, pos: 2, value: 3, tokens: [" a", EVIL], acts: encodeArray([0, 3], [2], "float32"), center: 1 }],
    logit_effect: { top: [[" Mary", 0.9]], bottom: [[EVIL, -0.4]] }, stats: { density: 0.01, max: 3, n_docs: 30, n_tokens: 900 },
  };
  const f32n = (v: number[]) => encodeArray(v, [v.length], "float32");
  const answers: Answer[] = [
    ["node", { node_id: "1_4_2" }, dash],
    ["intervene", { node_ids: ["1_4_2"], factor: 0 }, {
      rev: 0, node_ids: ["1_4_2"], factor: 0, top: [[" John", 0.6]], top_before: [[" Mary", 0.7]], notes: [],
      new_value: f32n([NaN, NaN, NaN, 0.8, 0.3, 0, NaN, 0.2]), change: f32n([NaN, NaN, NaN, 0, 0, -1.3, NaN, -1.7]),
      estimate: f32n([NaN, NaN, NaN, 0, 0, -1.3, NaN, -2.0]),
    }],
    ["prune", { node_threshold: 0.5, edge_threshold: 0.98 }, { rev: 1, n: 6, kept_node_influence: 0.6 }],
    ["group", { name: "mover", node_ids: ["1_4_2"] }, {}],
  ];
  const state = () => ({ _view: "graph_view", graph: payload(), supernodes: [["names", ["0_3_1", "0_9_1"]]], can_intervene: true, can_suggest: false });
  const move = (el: Element, x: number, y: number, extra: MouseEventInit = {}) =>
    el.dispatchEvent(new MouseEvent("mousemove", { clientX: x, clientY: y, bubbles: true, ...extra }));

  function setup() {
    const m = mount(state(), answers);
    const root = m.el.querySelector(".iw-root") as HTMLElement;
    const canvas = root.querySelector("canvas")!;
    const l = layoutGraph(decodeGraph(payload()), 900);
    return { ...m, root, canvas, l };
  }

  it("shows tokens as text along the bottom, counts and supernodes", () => {
    const { root } = setup();
    const toks = [...root.querySelectorAll(".iw-gv-token")].map((e) => e.textContent);
    expect(toks).toEqual(["<bos>", "·Mary", EVIL.replaceAll(" ", "·")]);
    expect(root.querySelector("img, script")).toBeNull();
    expect(root.querySelector(".iw-gv-logit-label")!.textContent).toBe(EVIL.replaceAll(" ", "·"));
    expect(root.querySelector(".iw-gv-counts")!.textContent).toContain("8 of 20 nodes, 7 edges");
    expect(root.dataset.groups).toBe("1");
    expect(root.querySelector(".iw-gv-group-item")!.textContent).toContain("names");
  });

  it("hovering a node shows its dashboard fetched on demand", async () => {
    const { root, canvas, l } = setup();
    move(canvas, l.x[5], l.y[5]);
    expect(root.dataset.hover).toBe("1_4_2");
    const tip = root.querySelector(".iw-tooltip") as HTMLElement;
    expect(tip.hidden).toBe(false);
    expect(tip.textContent).toContain("L1 F4");
    await tick();
    expect(root.dataset.dashboard).toBe("1_4_2");
    expect(tip.textContent).toContain("top activations");
    expect(tip.textContent).toContain("·Mary"); // logit effect
    expect(tip.querySelector("img")).toBeNull();
    move(canvas, 2, 2);
    expect(tip.hidden).toBe(true);
  });

  it("clicking pins a node and lists its input and output edges with weights", () => {
    const { root, canvas, l } = setup();
    canvas.dispatchEvent(new MouseEvent("mousedown", { clientX: l.x[5], clientY: l.y[5], bubbles: true }));
    canvas.dispatchEvent(new MouseEvent("mouseup", { clientX: l.x[5], clientY: l.y[5], bubbles: true }));
    expect(root.dataset.pinned).toBe("1_4_2");
    const ins = [...root.querySelectorAll(".iw-gv-in tbody tr")].map((r) => [(r as HTMLElement).dataset.node, Number((r as HTMLElement).dataset.weight)]);
    expect(ins).toEqual([["0_3_1", expect.closeTo(1.2, 5)], ["0_9_1", expect.closeTo(0.1, 5)]]);
    const outs = [...root.querySelectorAll(".iw-gv-out tbody tr")].map((r) => (r as HTMLElement).dataset.node);
    expect(outs).toEqual(["3_11_2"]);
    // clicking an input row pins that node
    click(root.querySelector(".iw-gv-in tbody tr td")!);
    expect(root.dataset.pinned).toBe("0_3_1");
  });

  it("shift-click selects; the factor slider intervenes and shows the re-run beside the estimate", async () => {
    const { root, canvas, l } = setup();
    const sc = (i: number) => {
      canvas.dispatchEvent(new MouseEvent("mousedown", { clientX: l.x[i], clientY: l.y[i], shiftKey: true, bubbles: true }));
      canvas.dispatchEvent(new MouseEvent("mouseup", { clientX: l.x[i], clientY: l.y[i], shiftKey: true, bubbles: true }));
    };
    sc(5);
    expect(root.dataset.selected).toBe("1");
    const factor = root.querySelector("input.iw-gv-factor") as HTMLInputElement;
    factor.value = "0";
    factor.dispatchEvent(new Event("change", { bubbles: true }));
    await tick();
    const out = root.querySelector(".iw-gv-intervention") as HTMLElement;
    expect(out.dataset.top).toBe(" John");
    const rows = [...out.querySelectorAll(".iw-gv-changes tbody tr")].map((r) => [(r as HTMLElement).dataset.node, Number((r as HTMLElement).dataset.change), Number((r as HTMLElement).dataset.estimate)]);
    expect(rows).toEqual([["3_11_2", expect.closeTo(-1.7, 5), expect.closeTo(-2, 5)], ["1_4_2", expect.closeTo(-1.3, 5), expect.closeTo(-1.3, 5)]]);
    expect(out.textContent).toContain("before");
    // group the selection
    (root.querySelector(".iw-gv-group-name") as HTMLInputElement).value = "mover";
    click(root.querySelector(".iw-gv-group")!);
    await tick();
    expect(root.querySelector(".iw-error")).toBeNull();
  });

  it("the threshold slider asks the kernel to re-prune and redraws the graph it syncs", async () => {
    const { root, model } = setup();
    const s = root.querySelector("input.iw-gv-node-threshold") as HTMLInputElement;
    s.value = "0.5";
    s.dispatchEvent(new Event("change", { bubbles: true }));
    await tick();
    expect(root.querySelector(".iw-error")).toBeNull();
    model.set("graph", payload(1, 6)); // what the kernel syncs after pruning
    expect(root.dataset.rev).toBe("1");
    expect(root.dataset.nodes).toBe("6");
    expect(root.querySelectorAll(".iw-gv-logit-label").length).toBe(0);
  });
});



