// AttentionView: layer x head grid of pattern thumbnails; click one for the full pattern.
// State: tokens string[], n_layers, n_heads, thumbs uint8 [L, H, s, s] (0..255 = 0..1),
// scores [{name, values: float32 [L, H]}], prompt, can_rerun, _rev.
// Request "pattern" {layer, head} -> {pattern: [q, k] (float16, or uint8 x scale), scale}.
// Sort, threshold and the enlarged head are view state: kept when the prompt is re-run (or the
// theme changes), so a re-run shows the same head for the new text.
import { decodeArray, type EncodedArray } from "../codec";
import { fmt, h, select } from "../components/dom";
import { cssRgb, drawMatrix } from "../components/matrix";
import { tintClass } from "../components/scale";
import { promptBar } from "../components/prompt";
import { displayToken, tokenAt, tokenStrip } from "../components/tokens";
import { ask, type View, type ViewContext } from "../view";

interface Score {
  name: string;
  values: Float32Array;
}
interface Pattern {
  n: number;
  values: Float32Array;
}

const ATTN_RGB: [number, number, number] = [31, 119, 180];
const label = (name: string) => name.replace(/_/g, "-");
/** The smallest axis-label pitch (px) worth labelling every token at; below it, every k-th. */
const LABEL_PX = 9;
const PATTERN_PX = 360;

/** What the reader chose, kept across redraws. */
interface AttnState {
  sort: string;
  threshold: string;
  head: [number, number] | null;
}

export const attentionView: View = (ctx) => {
  const { model, root } = ctx;
  const toolbar = h("div", { class: "iw-toolbar" });
  const body = h("div", { class: "iw-attn-body" });
  root.append(toolbar, body);
  let dispose = () => {};
  const state: AttnState = { sort: "layer", threshold: "0", head: null };
  const build = () => {
    dispose();
    dispose = renderBody(ctx, toolbar, body, state);
  };
  build();
  model.on("change:_rev", build);
  // Canvases take their hue from CSS, which resolves only once the view is in the page and
  // changes with JupyterLab's theme: redraw when it differs from the one drawn with.
  const hue = () => String(cssRgb(root, "--iw-attn-rgb", ATTN_RGB));
  let drawnWith = hue();
  const redrawIfHueChanged = () => {
    if (hue() === drawnWith) return;
    drawnWith = hue();
    build();
  };
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(redrawIfHueChanged);
  const observer = typeof MutationObserver === "function" ? new MutationObserver(redrawIfHueChanged) : null;
  observer?.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "class"] });
  return () => {
    dispose();
    observer?.disconnect();
    model.off("change:_rev", build);
  };
};

function renderBody(ctx: ViewContext, toolbar: HTMLElement, body: HTMLElement, state: AttnState): () => void {
  const { model, root } = ctx;
  const tokens: string[] = model.get("tokens");
  const L: number = model.get("n_layers");
  const H: number = model.get("n_heads");
  const thumbs = decodeArray(model.get("thumbs") as EncodedArray);
  const s = thumbs.shape[2];
  const scores: Score[] = (model.get("scores") as { name: string; values: EncodedArray }[]).map((x) => ({
    name: x.name,
    values: decodeArray(x.values).data as Float32Array,
  }));
  const rgb = () => cssRgb(root, "--iw-attn-rgb", ATTN_RGB);

  // Controls: prompt (kernel), sort by score, threshold filter.
  const sort = select("iw-head-sort", [["layer", "sort: layer, head"], ...scores.map((x): [string, string] => [x.name, `sort: ${label(x.name)}`])]);
  sort.setAttribute("aria-label", "sort heads");
  const threshold = h("input", {
    class: "iw-head-threshold",
    attrs: { type: "range", min: 0, max: 1, step: 0.01, value: 0, "aria-label": "score threshold" },
  });
  if (Array.from(sort.options).some((o) => o.value === state.sort)) sort.value = state.sort;
  (threshold as HTMLInputElement).value = state.threshold;
  const thresholdText = h("span", { class: "iw-muted iw-threshold-text" });
  const count = h("span", { class: "iw-muted" });
  toolbar.replaceChildren(
    ...(model.get("can_rerun") ? [promptBar(ctx, "set_prompt", [{ name: "prompt", label: "prompt", value: model.get("prompt"), multiline: true }])] : []),
    h("div", { class: "iw-controls" }, [sort, h("label", { class: "iw-field" }, [h("span", { text: "min score" }), threshold, thresholdText]), count]),
  );

  const grid = h("div", { class: "iw-head-grid" });
  const detail = h("div", { class: "iw-head-detail-slot" });
  body.replaceChildren(grid, detail);

  const cell = (l: number, hd: number, score: Score | null) => {
    const canvas = h("canvas", { class: "iw-head-thumb", attrs: { "data-layer": l, "data-head": hd } });
    drawMatrix(canvas, thumbs.data.subarray((l * H + hd) * s * s, (l * H + hd + 1) * s * s), s, s, { scale: 1 / 255, rgb: rgb() });
    return h("button", { class: "iw-head-cell", attrs: { type: "button", "data-layer": l, "data-head": hd, title: `L${l}H${hd}` } }, [
      canvas,
      h("span", { class: "iw-head-label", text: `L${l}H${hd}` }),
      score ? h("span", { class: "iw-head-score", text: fmt(score.values[l * H + hd]) }) : null,
    ]);
  };

  const drawGrid = () => {
    const score = scores.find((x) => x.name === sort.value) ?? null;
    threshold.disabled = !score;
    thresholdText.textContent = score ? `≥ ${Number(threshold.value).toFixed(2)}` : "";
    if (!score) {
      grid.className = "iw-head-grid iw-by-layer";
      grid.style.setProperty("--n-heads", String(H));
      const frag = document.createDocumentFragment();
      for (let l = 0; l < L; l++) {
        frag.append(h("span", { class: "iw-row-label", text: `L${l}` }));
        for (let hd = 0; hd < H; hd++) frag.append(cell(l, hd, null));
      }
      grid.replaceChildren(frag);
      count.textContent = `${L * H} heads`;
      return;
    }
    const min = Number(threshold.value);
    const order = Array.from({ length: L * H }, (_, i) => i)
      .filter((i) => !(score.values[i] < min))
      .sort((a, b) => score.values[b] - score.values[a] || a - b);
    grid.className = "iw-head-grid iw-sorted";
    grid.replaceChildren(...order.map((i) => cell(Math.floor(i / H), i % H, score)));
    count.textContent = `${order.length} of ${L * H} heads`;
  };

  const patterns = new Map<string, Promise<Pattern | null>>();
  const fetchPattern = (l: number, hd: number) => {
    const key = `${l}:${hd}`;
    if (!patterns.has(key)) {
      patterns.set(
        key,
        ask<{ pattern: EncodedArray; scale: number }>(ctx, "pattern", { layer: l, head: hd }).then((r) => {
          if (!r) {
            patterns.delete(key);
            return null;
          }
          const arr = decodeArray(r.pattern);
          const values = arr.data instanceof Float32Array ? arr.data : Float32Array.from(arr.data);
          const k = r.scale ?? 1;
          if (k !== 1) for (let i = 0; i < values.length; i++) values[i] *= k;
          return { n: arr.shape[0], values };
        }),
      );
    }
    return patterns.get(key)!;
  };

  let closeDetail = () => {};
  const open = async (l: number, hd: number) => {
    closeDetail();
    grid.querySelectorAll(".iw-head-cell.iw-active").forEach((c) => c.classList.remove("iw-active"));
    grid.querySelector(`.iw-head-cell[data-layer="${l}"][data-head="${hd}"]`)?.classList.add("iw-active");
    const panel = h("div", { class: "iw-head-detail", attrs: { "data-layer": l, "data-head": hd } });
    const summary = scores.map((x) => `${label(x.name)} ${fmt(x.values[l * H + hd])}`).join(" · ");
    const close = h("button", { class: "iw-button iw-close", text: "×", attrs: { type: "button", "aria-label": "close" } });
    panel.append(
      h("div", { class: "iw-detail-header" }, [h("strong", { text: `L${l}H${hd}` }), h("span", { class: "iw-muted", text: summary }), close]),
      h("div", { class: "iw-muted", text: "loading pattern…" }),
    );
    detail.replaceChildren(panel);
    let alive = true;
    closeDetail = () => {
      alive = false;
      panel.remove();
    };
    state.head = [l, hd];
    close.addEventListener("click", () => {
      state.head = null;
      closeDetail();
    });
    const p = await fetchPattern(l, hd);
    if (!alive) return;
    if (!p) {
      panel.lastChild?.remove();
      return;
    }
    panel.lastChild?.remove();
    panel.append(...patternPanel(p, tokens, rgb()));
  };

  const onGridClick = (e: Event) => {
    const c = (e.target as Element).closest?.(".iw-head-cell") as HTMLElement | null;
    if (c) void open(Number(c.dataset.layer), Number(c.dataset.head));
  };
  grid.addEventListener("click", onGridClick);
  sort.addEventListener("change", () => {
    state.sort = sort.value;
    drawGrid();
  });
  threshold.addEventListener("input", () => {
    state.threshold = (threshold as HTMLInputElement).value;
    drawGrid();
  });
  drawGrid();
  if (state.head && state.head[0] < L && state.head[1] < H) void open(state.head[0], state.head[1]);
  return () => closeDetail();
}

/** The enlarged pattern: canvas (query rows x key columns) with crosshair, info line, token strip. */
function patternPanel(p: Pattern, tokens: string[], rgb: [number, number, number]): HTMLElement[] {
  const n = p.n;
  const canvas = h("canvas", { class: "iw-pattern" });
  const overlay = h("canvas", { class: "iw-pattern-overlay" });
  const [res] = drawMatrix(canvas, p.values, n, n, { rgb, maxPx: 512 });
  overlay.width = overlay.height = res;
  const info = h("div", { class: "iw-attn-info iw-muted", text: "hover the pattern or a token" });
  const strip = tokenStrip([tokens]);
  const spans = strip.spans[0];
  const at = (q: number, k: number) => p.values[q * n + k];
  const quote = (i: number) => JSON.stringify(tokens[i] ?? "");

  const crosshair = (q: number | null, k: number | null) => {
    const g = overlay.getContext("2d");
    if (!g) return;
    g.clearRect(0, 0, res, res);
    g.fillStyle = "rgba(127,127,127,0.35)";
    const px = (i: number) => Math.floor((i * res) / n);
    const w = Math.max(1, Math.floor(res / n));
    if (q !== null) g.fillRect(0, px(q), res, w);
    if (k !== null) g.fillRect(px(k), 0, w, res);
  };
  const tint = (span: HTMLElement, cls: string, a: number) => (span.className = `iw-token ${tintClass(cls, a)}`);
  const focus = (i: number | null) => {
    spans.forEach((span, j) => {
      if (i === null) return tint(span, "", 0);
      if (j === i) return (span.className = "iw-token iw-focus");
      return j < i ? tint(span, "iw-c-to", at(i, j)) : tint(span, "iw-c-from", at(j, i));
    });
    crosshair(i, i);
    if (i === null) return;
    let best = 0;
    for (let j = 1; j <= i; j++) if (at(i, j) > at(i, best)) best = j;
    info.textContent = `pos ${i} ${quote(i)} attends most to pos ${best} ${quote(best)} (${fmt(at(i, best))}); blue: it attends to, orange: attends to it`;
  };

  strip.el.addEventListener("mouseover", (e) => {
    const hit = tokenAt(e.target);
    if (hit) focus(hit.pos);
  });
  strip.el.addEventListener("mouseleave", () => focus(null));
  overlay.addEventListener("mousemove", (e) => {
    const r = overlay.getBoundingClientRect();
    const q = Math.min(n - 1, Math.floor(((e.clientY - r.top) / r.height) * n));
    const k = Math.min(n - 1, Math.floor(((e.clientX - r.left) / r.width) * n));
    crosshair(q, k);
    info.textContent = `query ${q} ${quote(q)} → key ${k} ${quote(k)}: ${fmt(at(q, k))}`;
  });
  overlay.addEventListener("mouseleave", () => crosshair(null, null));
  const wrap = h("div", { class: "iw-pattern-wrap" }, [canvas, overlay]);
  return [h("div", { class: "iw-pattern-row" }, [patternAxes(wrap, tokens, n), h("div", { class: "iw-attn-side" }, [attentionLegend(rgb), info])]), strip.el];
}

/** The pattern with its query tokens down the left (rows) and key tokens along the bottom
 * (columns), every token where there is room for it, every k-th otherwise. */
function patternAxes(wrap: HTMLElement, tokens: string[], n: number): HTMLElement {
  const pitch = PATTERN_PX / Math.max(1, n);
  const every = pitch >= LABEL_PX ? 1 : Math.ceil(LABEL_PX / pitch);
  const font = `${Math.max(7, Math.min(11, Math.floor(pitch * 0.9)))}px`;
  const text = (i: number) => (i % every === 0 || i === n - 1 ? displayToken(tokens[i] ?? "") : "");
  const labels = (cls: string) => {
    const box = h("div", { class: `iw-pattern-labels ${cls}` });
    box.style.fontSize = font;
    for (let i = 0; i < n; i++) {
      const t = text(i);
      box.append(h("span", { class: cls.replace(/s$/, ""), text: t, attrs: { "data-pos": i, title: `${i} ${JSON.stringify(tokens[i] ?? "")}` } }));
    }
    return box;
  };
  const q = labels("iw-pattern-qlabels");
  q.style.gridTemplateRows = `repeat(${n}, 1fr)`;
  const k = labels("iw-pattern-klabels");
  k.style.gridTemplateColumns = `repeat(${n}, 1fr)`;
  return h("div", { class: "iw-pattern-axes" }, [
    h("div", { class: "iw-axis-title iw-axis-q iw-muted", text: "query (row) ↓" }),
    q,
    wrap,
    h("div", {}),
    k,
    h("div", {}),
    h("div", { class: "iw-axis-title iw-axis-k iw-muted", text: "key (column) →" }),
  ]);
}

/** The colour key: attention weight 0 .. 1 as the opacity of the theme's attention hue. */
function attentionLegend(rgb: [number, number, number]): HTMLElement {
  const bar = h("span", { class: "iw-attn-legend-bar" });
  bar.style.background = `linear-gradient(to right, rgba(${rgb.join(",")}, 0), rgba(${rgb.join(",")}, 1))`;
  return h("div", { class: "iw-attn-legend", attrs: { role: "img", "aria-label": "attention weight from 0 to 1" } }, [
    h("span", { class: "iw-muted", text: "attention weight" }),
    h("span", { class: "iw-attn-legend-scale" }, [bar, h("span", { class: "iw-attn-legend-ticks" }, [h("span", { text: "0" }), h("span", { text: "0.5" }), h("span", { text: "1" })])]),
  ]);
}
