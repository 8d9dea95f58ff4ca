// Colour scales: diverging around a centre when values cross it, sequential otherwise.
// A colour is a hue (CSS variable, so each theme picks one that reads on its background) plus an
// opacity in 0..1; elements get class iw-c-pos / iw-c-neg / iw-c-seq and the custom property --a.
import { fmt, h } from "./dom";

export type CmapName = "auto" | "diverging" | "sequential";

export interface ScaleOptions {
  cmap?: CmapName;
  center?: number | null;
  vmin?: number | null;
  vmax?: number | null;
}

export interface Scale {
  kind: "diverging" | "sequential";
  lo: number;
  hi: number;
  center: number;
  /** [class, opacity] for a value; class "" for NaN (no colour). */
  paint(v: number): [string, number];
}

export const MAX_ALPHA = 0.85;

function finiteRange(values: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : [0, 0];
}

const clamp01 = (x: number) => (x < 0 ? 0 : x > 1 ? 1 : x);

export function chooseScale(values: ArrayLike<number>, opts: ScaleOptions = {}): Scale {
  const [min, max] = finiteRange(values);
  const cmap = opts.cmap ?? "auto";
  const given = (x: number | null | undefined): x is number => typeof x === "number" && Number.isFinite(x);
  const diverging =
    cmap === "diverging" || (cmap === "auto" && (given(opts.center) || (min < 0 && max > 0)));
  if (diverging) {
    const c = given(opts.center) ? opts.center : 0;
    const extent = Math.max(Math.abs(max - c), Math.abs(c - min)) || 1;
    const lo = given(opts.vmin) ? opts.vmin : c - extent;
    const hi = given(opts.vmax) ? opts.vmax : c + extent;
    const up = hi - c || 1;
    const down = c - lo || 1;
    return {
      kind: "diverging",
      lo,
      hi,
      center: c,
      paint(v) {
        if (!Number.isFinite(v)) return Number.isNaN(v) ? ["", 0] : [v > 0 ? "iw-c-pos" : "iw-c-neg", MAX_ALPHA];
        return v >= c ? ["iw-c-pos", clamp01((v - c) / up) * MAX_ALPHA] : ["iw-c-neg", clamp01((c - v) / down) * MAX_ALPHA];
      },
    };
  }
  const lo = given(opts.vmin) ? opts.vmin : min;
  const hi = given(opts.vmax) ? opts.vmax : max;
  const span = hi - lo || 1;
  return {
    kind: "sequential",
    lo,
    hi,
    center: lo,
    paint(v) {
      if (Number.isNaN(v)) return ["", 0];
      return ["iw-c-seq", clamp01((v - lo) / span) * MAX_ALPHA];
    },
  };
}

const PAINT_CLASSES = ["iw-c-pos", "iw-c-neg", "iw-c-seq", "iw-strong"];

/** Colour an element for value v (strong colours switch the text to the theme's contrast colour). */
export function paint(el: HTMLElement, scale: Scale, v: number): void {
  const [cls, a] = scale.paint(v);
  el.classList.remove(...PAINT_CLASSES);
  if (!cls) {
    el.style.removeProperty("--a");
    return;
  }
  el.classList.add(cls);
  if (a > 0.55) el.classList.add("iw-strong");
  el.style.setProperty("--a", a.toFixed(3));
}

/** div.iw-legend: a gradient bar with the scale's ends (and centre) labelled. */
export function legend(scale: Scale, label: string): HTMLElement {
  const bar = h("div", { class: `iw-legend-bar iw-legend-${scale.kind}` });
  const ticks =
    scale.kind === "diverging"
      ? [fmt(scale.lo), fmt(scale.center), fmt(scale.hi)]
      : [fmt(scale.lo), fmt(scale.hi)];
  return h("div", { class: "iw-legend", attrs: { "data-kind": scale.kind } }, [
    h("span", { class: "iw-legend-label", text: label }),
    h("div", { class: "iw-legend-scale" }, [
      bar,
      h("div", { class: "iw-legend-ticks" }, ticks.map((t) => h("span", { text: t }))),
    ]),
  ]);
}
