// Tiny DOM helpers. Data only ever reaches the page through textContent / attributes, never HTML.

type Props = {
  class?: string;
  text?: string;
  title?: string;
  attrs?: Record<string, string | number | boolean | null | undefined>;
};

/** Create an element; `text` becomes textContent, `attrs` become attributes (null/false: left out). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  children: (Node | string | null | undefined | false)[] = [],
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.text !== undefined) el.textContent = props.text;
  if (props.title !== undefined) el.title = props.title;
  for (const [k, v] of Object.entries(props.attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

/** A <select> whose options are [value, label] pairs. */
export function select(cls: string, options: [string, string][], value?: string): HTMLSelectElement {
  const el = h("select", { class: `iw-select ${cls}` });
  for (const [v, label] of options) el.append(h("option", { text: label, attrs: { value: v } }));
  if (value !== undefined) el.value = value;
  return el;
}

/** Numbers as people read them: 4 significant digits, "n/a" for NaN. */
export function fmt(v: number): string {
  if (v === null || v === undefined || Number.isNaN(v)) return "n/a";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  return v.toPrecision(4);
}

/** A number with its interval, as Python's `Estimate` prints it: "0.90 [0.87, 0.92]" (2
 * decimals from 0.1 up, 3 from 0.001, else 2 significant digits); `fmt(v)` when a bound is
 * missing (NaN, null or undefined). */
export function fmtEstimate(v: number, lo?: number | null, hi?: number | null): string {
  const ok = (x: number | null | undefined): x is number => typeof x === "number" && Number.isFinite(x);
  if (!ok(v) || !ok(lo) || !ok(hi)) return fmt(v);
  const big = Math.max(...[v, lo, hi].filter(ok).map(Math.abs));
  const one = (x: number) => (big === 0 || big >= 0.1 ? x.toFixed(2) : big >= 1e-3 ? x.toFixed(3) : x.toPrecision(2));
  return `${one(v)} [${one(lo)}, ${one(hi)}]`;
}
