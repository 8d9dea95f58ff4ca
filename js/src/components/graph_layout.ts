// Attribution-graph layout and drawing, kept apart from the DOM so vitest can check them.
// Rows bottom to top: token embeddings, then each layer's features and error nodes, then the
// logits. Columns left to right: prompt positions. The nodes of one (row, position) cell sit on
// a small grid inside the cell, most influential first; a row is as tall as its fullest cell.
import { decodeArray, decodeCSR, decodeStrings, type CSR, type EncodedArray, type EncodedCSR, type EncodedStrings } from "../codec";

export const KIND = { embedding: 0, feature: 1, error: 2, logit: 3 } as const;
export const KIND_NAME = ["embedding", "feature", "error", "logit"];

export interface GraphPayload {
  rev: number;
  n: number;
  n_layers: number;
  n_pos: number;
  prompt: string;
  prompt_tokens: EncodedStrings;
  kind: EncodedArray;
  layer: EncodedArray;
  pos: EncodedArray;
  feature: EncodedArray;
  value: EncodedArray;
  influence: EncodedArray;
  prob: EncodedArray;
  ids: EncodedStrings;
  tokens: EncodedStrings;
  edges: EncodedCSR;
  prune: {
    pruned: boolean;
    node_threshold: number | null;
    edge_threshold: number | null;
    kept_node_influence: number | null;
    kept_edge_influence: number | null;
    n_full: number;
  };
}

export interface Graph {
  rev: number;
  n: number;
  nLayers: number;
  nPos: number;
  promptTokens: string[];
  kind: Uint8Array;
  layer: Int32Array;
  pos: Int32Array;
  feature: Int32Array;
  value: Float32Array;
  influence: Float32Array;
  prob: Float32Array;
  ids: string[];
  tokens: string[];
  /** rows = targets, columns = sources */
  edges: CSR;
  /** the transpose: rows = sources (outgoing edges), columns = targets */
  out: CSR;
  index: Map<string, number>;
}

export function decodeGraph(p: GraphPayload): Graph {
  const edges = decodeCSR(p.edges);
  const ids = decodeStrings(p.ids);
  const index = new Map<string, number>();
  ids.forEach((id, i) => index.set(id, i));
  return {
    rev: p.rev,
    n: p.n,
    nLayers: p.n_layers,
    nPos: p.n_pos,
    promptTokens: decodeStrings(p.prompt_tokens),
    kind: decodeArray(p.kind).data as Uint8Array,
    layer: decodeArray(p.layer).data as Int32Array,
    pos: decodeArray(p.pos).data as Int32Array,
    feature: decodeArray(p.feature).data as Int32Array,
    value: decodeArray(p.value).data as Float32Array,
    influence: decodeArray(p.influence).data as Float32Array,
    prob: decodeArray(p.prob).data as Float32Array,
    ids,
    tokens: decodeStrings(p.tokens),
    edges,
    out: transposeCSR(edges),
    index,
  };
}

/** The transpose of a CSR matrix (counting sort by column; entries keep their row order). */
export function transposeCSR(m: CSR): CSR {
  const [rows, cols] = m.shape;
  const nnz = m.indices.length;
  const indptr = new Int32Array(cols + 1);
  for (let i = 0; i < nnz; i++) indptr[m.indices[i] + 1]++;
  for (let c = 0; c < cols; c++) indptr[c + 1] += indptr[c];
  const fill = indptr.slice(0, cols);
  const indices = new Int32Array(nnz);
  const data = new Float32Array(nnz);
  for (let r = 0; r < rows; r++) {
    for (let i = m.indptr[r]; i < m.indptr[r + 1]; i++) {
      const at = fill[m.indices[i]]++;
      indices[at] = r;
      data[at] = m.data[i];
    }
  }
  return { shape: [cols, rows], indptr, indices, data };
}

/** The row a node is drawn in, 0 = bottom (embeddings) .. nLayers + 1 = top (logits). */
export function rowOf(kind: number, layer: number, nLayers: number): number {
  if (kind === KIND.embedding) return 0;
  if (kind === KIND.logit) return nLayers + 1;
  return layer + 1;
}

export interface Layout {
  width: number;
  height: number;
  /** node centres, CSS pixels from the canvas's top left */
  x: Float32Array;
  y: Float32Array;
  r: number;
  /** x of each position's column centre */
  colX: Float32Array;
  colW: number;
  /** [top, bottom] y of each row (index = row, 0 = embeddings) */
  rowY: [number, number][];
  left: number;
}

export interface LayoutOptions {
  left?: number; // room for the row labels
  right?: number;
  top?: number;
  bottom?: number;
  maxR?: number;
  minR?: number;
  minRowH?: number;
}

export function layoutGraph(g: Pick<Graph, "n" | "nLayers" | "nPos" | "kind" | "layer" | "pos" | "influence">, width: number, opts: LayoutOptions = {}): Layout {
  const left = opts.left ?? 56;
  const right = opts.right ?? 8;
  const top = opts.top ?? 8;
  const bottom = opts.bottom ?? 8;
  const nRows = g.nLayers + 2;
  const nPos = Math.max(1, g.nPos);
  const colW = Math.max(4, (width - left - right) / nPos);
  const r = Math.max(opts.minR ?? 2, Math.min(opts.maxR ?? 6, colW / 7));
  const step = 2 * r + 2;
  const perLine = Math.max(1, Math.floor((colW - 4) / step));
  // nodes of each (row, pos) cell, most influential first
  const cells = new Map<number, number[]>();
  for (let i = 0; i < g.n; i++) {
    const row = rowOf(g.kind[i], g.layer[i], g.nLayers);
    const key = row * nPos + Math.min(Math.max(g.pos[i], 0), nPos - 1);
    let list = cells.get(key);
    if (!list) cells.set(key, (list = []));
    list.push(i);
  }
  const lines = new Int32Array(nRows).fill(1);
  for (const [key, list] of cells) {
    list.sort((a, b) => g.influence[b] - g.influence[a] || a - b);
    const row = Math.floor(key / nPos);
    lines[row] = Math.max(lines[row], Math.ceil(list.length / perLine));
  }
  const pad = 6;
  const rowH = Array.from(lines, (l) => Math.max(opts.minRowH ?? 44, l * step + 2 * pad));
  const height = top + bottom + rowH.reduce((a, b) => a + b, 0);
  const rowY: [number, number][] = [];
  let yb = height - bottom; // rows stack upwards from the bottom
  for (let row = 0; row < nRows; row++) {
    rowY.push([yb - rowH[row], yb]);
    yb -= rowH[row];
  }
  const colX = new Float32Array(nPos);
  for (let p = 0; p < nPos; p++) colX[p] = left + (p + 0.5) * colW;
  const x = new Float32Array(g.n);
  const y = new Float32Array(g.n);
  for (const [key, list] of cells) {
    const row = Math.floor(key / nPos);
    const p = key % nPos;
    const inLine = Math.min(perLine, list.length);
    list.forEach((i, j) => {
      const line = Math.floor(j / perLine);
      const k = j % perLine;
      const n = line === Math.floor((list.length - 1) / perLine) ? list.length - line * perLine : inLine;
      x[i] = colX[p] + (k - (n - 1) / 2) * step;
      y[i] = rowY[row][1] - pad - r - line * step;
    });
  }
  return { width, height, x, y, r, colX, colW, rowY, left };
}

/** The node under (px, py), the nearest within r + 3 px, or -1. */
export function hitTest(l: Layout, px: number, py: number): number {
  let best = -1;
  let bestD = (l.r + 3) ** 2;
  for (let i = 0; i < l.x.length; i++) {
    const d = (l.x[i] - px) ** 2 + (l.y[i] - py) ** 2;
    if (d <= bestD) {
      bestD = d;
      best = i;
    }
  }
  return best;
}

/** The nodes whose centres fall in the rectangle (any two corners). */
export function nodesInRect(l: Layout, x0: number, y0: number, x1: number, y1: number): number[] {
  const [a, b] = [Math.min(x0, x1), Math.max(x0, x1)];
  const [c, d] = [Math.min(y0, y1), Math.max(y0, y1)];
  const out: number[] = [];
  for (let i = 0; i < l.x.length; i++) if (l.x[i] >= a && l.x[i] <= b && l.y[i] >= c && l.y[i] <= d) out.push(i);
  return out;
}

export const EDGE_LEVELS = 6;


export interface EdgeBatch {
  positive: boolean;
  level: number; // 0 (faint, thin) .. EDGE_LEVELS - 1 (strong, thick)
  alpha: number;
  width: number;
  /** flat [source, target, source, target, ...] node indices */
  pairs: number[];
}

/** Edges grouped by sign and magnitude level (|w| / max |w|, square-root scaled), so the
 * canvas strokes one path per group; weaker groups come first and are drawn under stronger. */
export function edgeBatches(edges: CSR, keep?: (source: number, target: number) => boolean): EdgeBatch[] {
  let top = 0;
  for (let i = 0; i < edges.data.length; i++) top = Math.max(top, Math.abs(edges.data[i]));
  const batches: EdgeBatch[] = [];
  for (let level = 0; level < EDGE_LEVELS; level++) {
    for (const positive of [true, false]) {
      const t = (level + 1) / EDGE_LEVELS;
      batches.push({ positive, level, alpha: 0.08 + 0.72 * t, width: 0.4 + 2.6 * t * t, pairs: [] });
    }
  }
  if (top === 0) return [];
  const rows = edges.shape[0];
  for (let tgt = 0; tgt < rows; tgt++) {
    for (let i = edges.indptr[tgt]; i < edges.indptr[tgt + 1]; i++) {
      const w = edges.data[i];
      if (w === 0 || !Number.isFinite(w)) continue;
      const src = edges.indices[i];
      if (keep && !keep(src, tgt)) continue;
      const level = Math.min(EDGE_LEVELS - 1, Math.floor(Math.sqrt(Math.abs(w) / top) * EDGE_LEVELS));
      batches[level * 2 + (w > 0 ? 0 : 1)].pairs.push(src, tgt);
    }
  }
  return batches.filter((b) => b.pairs.length);
}

export interface EdgeRow {
  node: number;
  weight: number;
}

/** A row of a CSR matrix as (column, weight) pairs, largest |weight| first, at most `k`. */
export function topEdges(m: CSR, row: number, k = 20): EdgeRow[] {
  const out: EdgeRow[] = [];
  for (let i = m.indptr[row]; i < m.indptr[row + 1]; i++) out.push({ node: m.indices[i], weight: m.data[i] });
  out.sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight));
  return out.slice(0, k);
}

/** A short label for a node: "L1 F42", "err L0", the token for embeddings and logits. */
export function nodeLabel(g: Graph, i: number): string {
  const k = g.kind[i];
  if (k === KIND.feature) return `L${g.layer[i]} F${g.feature[i]}`;
  if (k === KIND.error) return `err L${g.layer[i]}`;
  if (k === KIND.logit) return `logit ${JSON.stringify(g.tokens[i])}`;
  return `token ${JSON.stringify(g.tokens[i])}`;
}

/** The part of a 2-D context the drawing uses (a recording fake stands in for it in tests). */
export type Ctx2D = Pick<
  CanvasRenderingContext2D,
  "beginPath" | "moveTo" | "lineTo" | "stroke" | "fill" | "arc" | "rect" | "clearRect" | "save" | "restore" | "setTransform" | "fillText" | "strokeRect" | "drawImage"
> & {
  strokeStyle: string | CanvasGradient | CanvasPattern;
  fillStyle: string | CanvasGradient | CanvasPattern;
  lineWidth: number;
  globalAlpha: number;
  font: string;
  textAlign: CanvasTextAlign;
  textBaseline: CanvasTextBaseline;
};

export interface Palette {
  pos: string; // "r, g, b"
  neg: string;
  fg: string;
  muted: string;
  bg: string;
  accent: string;
  select: string;
  grid: string;
}

export interface DrawState {
  hover: number;
  pinned: number;
  selected: Set<number>;
  /** nodes of the supernodes, each drawn with a box around its members */
  groups: { name: string; nodes: number[] }[];
  /** per-node change after an intervention (NaN where none), drawn as a ring */
  change?: Float32Array | null;
}

/** Draw the graph: row bands, edges in batches, then nodes (pinned node's edges on top). */
/** Stroke the edge batches (one path per edge: Skia rasterizes many short paths faster than
 * one long one) into `ctx`, whose transform maps layout pixels to its own. dim scales every
 * edge's opacity (the edges fade while a node is pinned). */
export function drawEdges(ctx: Ctx2D, batches: EdgeBatch[], l: Pick<Layout, "x" | "y">, pal: Pick<Palette, "pos" | "neg">, dim = 1): void {
  for (const b of batches) {
    ctx.strokeStyle = `rgb(${b.positive ? pal.pos : pal.neg})`;
    ctx.globalAlpha = b.alpha * dim;
    ctx.lineWidth = b.width;
    const p = b.pairs;
    for (let i = 0; i < p.length; i += 2) {
      ctx.beginPath();
      ctx.moveTo(l.x[p[i]], l.y[p[i]]);
      ctx.lineTo(l.x[p[i + 1]], l.y[p[i + 1]]);
      ctx.stroke();
    }
  }
  ctx.globalAlpha = 1;
}

/** The resolution of the edge layer relative to the canvas: full for up to `full` edges, half
 * beyond (a quarter of the pixels to fill; the nodes stay sharp, drawn over it at full). */
export function edgeScale(nEdges: number, full = 5000): number {
  return nEdges <= full ? 1 : 0.5;
}

/** Draw the graph: the edge layer (`drawEdges` into a canvas the caller keeps while only hover
 * or selection change; drawn scaled to the layout), row lines and labels, the pinned node's
 * edges on top, supernode boxes, then the nodes with their rings. ctx maps layout pixels. */
export function drawGraph(ctx: Ctx2D, g: Graph, l: Layout, edges: CanvasImageSource | null, pal: Palette, st: DrawState): void {
  ctx.clearRect(0, 0, l.width, l.height);
  ctx.globalAlpha = 1;
  if (edges) ctx.drawImage(edges, 0, 0, l.width, l.height);
  ctx.globalAlpha = 0.6;
  ctx.lineWidth = 1;
  ctx.strokeStyle = pal.grid;
  for (const [y0] of l.rowY.slice(1)) {
    ctx.beginPath();
    ctx.moveTo(l.left, y0);
    ctx.lineTo(l.width, y0);
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  ctx.fillStyle = pal.muted;
  ctx.font = "11px sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  l.rowY.forEach(([y0, y1], row) => {
    const label = row === 0 ? "tokens" : row === l.rowY.length - 1 ? "logits" : `L${row - 1}`;
    ctx.fillText(label, 4, (y0 + y1) / 2);
  });
  const focus = st.pinned >= 0 ? st.pinned : -1;
  if (focus >= 0) {
    // the pinned node's input and output edges, opaque
    const strokeRow = (m: CSR, row: number, incoming: boolean) => {
      let top = 0;
      for (let i = m.indptr[row]; i < m.indptr[row + 1]; i++) top = Math.max(top, Math.abs(m.data[i]));
      for (let i = m.indptr[row]; i < m.indptr[row + 1]; i++) {
        const w = m.data[i];
        const other = m.indices[i];
        ctx.strokeStyle = `rgb(${w > 0 ? pal.pos : pal.neg})`;
        ctx.globalAlpha = 0.35 + 0.65 * Math.sqrt(Math.abs(w) / (top || 1));
        ctx.lineWidth = 0.8 + 2.7 * Math.sqrt(Math.abs(w) / (top || 1));
        ctx.beginPath();
        const [a, b] = incoming ? [other, row] : [row, other];
        ctx.moveTo(l.x[a], l.y[a]);
        ctx.lineTo(l.x[b], l.y[b]);
        ctx.stroke();
      }
    };
    strokeRow(g.edges, focus, true);
    strokeRow(g.out, focus, false);
  }
  ctx.globalAlpha = 1;
  for (const grp of st.groups) {
    if (!grp.nodes.length) continue;
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const i of grp.nodes) {
      x0 = Math.min(x0, l.x[i]);
      x1 = Math.max(x1, l.x[i]);
      y0 = Math.min(y0, l.y[i]);
      y1 = Math.max(y1, l.y[i]);
    }
    const m = l.r + 3;
    ctx.strokeStyle = pal.accent;
    ctx.lineWidth = 1;
    ctx.strokeRect(x0 - m, y0 - m, x1 - x0 + 2 * m, y1 - y0 + 2 * m);
    ctx.fillStyle = pal.accent;
    ctx.textAlign = "left";
    ctx.textBaseline = "bottom";
    ctx.fillText(grp.name, x0 - m, y0 - m - 1);
  }
  for (let i = 0; i < g.n; i++) {
    const k = g.kind[i];
    const x = l.x[i];
    const y = l.y[i];
    const r = l.r;
    ctx.fillStyle = k === KIND.feature ? pal.fg : k === KIND.error ? pal.muted : pal.accent;
    ctx.globalAlpha = k === KIND.error ? 0.6 : 1;
    ctx.beginPath();
    if (k === KIND.feature) ctx.arc(x, y, r, 0, 2 * Math.PI);
    else ctx.rect(x - r, y - r, 2 * r, 2 * r);
    ctx.fill();
    const ring = i === st.pinned ? pal.accent : st.selected.has(i) ? pal.select : i === st.hover ? pal.fg : null;
    if (ring) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = ring;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(x, y, r + 2.5, 0, 2 * Math.PI);
      ctx.stroke();
    }
    const c = st.change?.[i];
    if (c !== undefined && Number.isFinite(c) && c !== 0) {
      const rel = Math.min(1, Math.abs(c) / (Math.abs(g.value[i]) || Math.abs(c) || 1));
      ctx.globalAlpha = 0.3 + 0.7 * rel;
      ctx.strokeStyle = `rgb(${c > 0 ? pal.pos : pal.neg})`;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(x, y, r + 4.5, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
  ctx.globalAlpha = 1;
}
