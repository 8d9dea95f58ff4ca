// Colour scales: diverging around a centre when values cross it, sequential otherwise.
// A colour is a hue class (iw-c-pos / iw-c-neg / iw-c-seq, whose RGB is a CSS variable, so each
// theme picks one that reads on its background) plus one of LEVELS opacity classes iw-a0..iw-a15.
// Classes rather than inline styles: 20,000 tokens restyle in one className write each, and
// elements with equal classes share computed style.
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
  /** How many of the values were NaN or infinite: drawn as gaps, counted in the legend. */
  gaps: number;
  /** [hue class, intensity 0..1] for a value; hue "" for NaN and +-inf (a gap, no colour). */
  paint(v: number): [string, number];
}

/** Opacity steps: class iw-a{k} sets --a = k / (LEVELS - 1) * 0.85 (style.css). */
export const LEVELS = 16;
/** From this step on, text switches to the theme's contrast colour (iw-strong). */
const STRONG = 11;

/** [min, max] of the finite values ([0, 0] when there are none) and how many are not finite. */
function finiteRange(values: ArrayLike<number>): [number, number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  let gaps = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    } else gaps++;
  }
  return lo <= hi ? [lo, hi, gaps] : [0, 0, gaps];
}

const clamp01 = (x: number) => (x < 0 ? 0 : x > 1 ? 1 : x);

export function chooseScale(values: ArrayLike<number>, opts: ScaleOptions = {}): Scale {
  const [min, max, gaps] = finiteRange(values);
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
      gaps,
      paint(v) {
        if (!Number.isFinite(v)) return ["", 0];
        return v >= c ? ["iw-c-pos", clamp01((v - c) / up)] : ["iw-c-neg", clamp01((c - v) / down)];
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
    gaps,
    paint(v) {
      if (!Number.isFinite(v)) return ["", 0];
      return ["iw-c-seq", clamp01((v - lo) / span)];
    },
  };
}

/** Classes for a hue at intensity t in 0..1, e.g. "iw-c-pos iw-a12 iw-strong"; "" for no hue. */
export function tintClass(hue: string, t: number): string {
  if (!hue) return "";
  const k = Math.round(clamp01(t) * (LEVELS - 1));
  return k >= STRONG ? `${hue} iw-a${k} iw-strong` : `${hue} iw-a${k}`;
}

/** Classes colouring value v on `scale` (append to the element's own classes). */
export function paintClass(scale: Scale, v: number): string {
  const [hue, t] = scale.paint(v);
  return tintClass(hue, t);
}

/** A tick label: 3 significant digits, and exactly "0" for a value that is zero at the scale's
 * resolution (a loss minimum of 1.19e-7 on a 0..12 scale reads "0", not "1.192e-7"). */
export function tickLabel(v: number, span: number): string {
  if (!Number.isFinite(v)) return fmt(v);
  if (v === 0 || (span > 0 && Math.abs(v) < span * 1e-4)) return "0";
  return String(Number(v.toPrecision(3)));
}

/** div.iw-legend: a gradient bar with the scale's ends (and centre) labelled, and a swatch
 * counting the gaps (NaN or infinite values, drawn uncoloured) when there are any. */
export function legend(scale: Scale, label: string): HTMLElement {
  const bar = h("div", { class: `iw-legend-bar iw-legend-${scale.kind}` });
  const span = Math.abs(scale.hi - scale.lo);
  const ends = scale.kind === "diverging" ? [scale.lo, scale.center, scale.hi] : [scale.lo, scale.hi];
  const ticks = ends.map((v) => tickLabel(v, span));
  const parts = [
    h("span", { class: "iw-legend-label", text: label }),
    h("div", { class: "iw-legend-scale" }, [
      bar,
      h("div", { class: "iw-legend-ticks" }, ticks.map((t) => h("span", { text: t }))),
    ]),
  ];
  if (scale.gaps > 0) {
    parts.push(
      h("span", { class: "iw-legend-gap", attrs: { title: "NaN or infinite values are drawn without colour" } }, [
        h("span", { class: "iw-gap-swatch" }),
        `no value (NaN/inf): ${scale.gaps}`,
      ]),
    );
  }
  return h("div", { class: "iw-legend", attrs: { "data-kind": scale.kind } }, parts);
}
