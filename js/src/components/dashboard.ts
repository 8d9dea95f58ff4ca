// Panels of a unit's dashboard (NeuronView, FeatureBrowser; PromptFeatures uses some): titled
// panels, top-activation examples and bucket samples, the histogram, the logit-effect tables.
import { decodeArray, type EncodedArray } from "../codec";
import { fmt, h } from "./dom";
import { histogram } from "./histogram";
import { paintClass, type Scale } from "./scale";
import { fillToken, tokenSpan } from "./tokens";

export interface Example {
  doc: number;
  pos: number;
  value: number;
  tokens: string[];
  acts: EncodedArray;
  center: number;
}
export interface Bucket {
  lo: number;
  hi: number;
  q_lo: number;
  q_hi: number;
  count: number;
  examples: Example[];
}

export const f32 = (e: EncodedArray) => decodeArray(e).data as Float32Array;
export const panel = (title: string, cls: string, wide = false) =>
  h("section", { class: `iw-nv-panel ${cls}${wide ? " iw-nv-wide" : ""}` }, [h("h4", { text: title })]);

/** A row of heat-coloured token spans; the `center` token is outlined. */
export function heatTokens(tokens: string[], values: ArrayLike<number>, scale: Scale, center = -1): HTMLElement {
  const el = h("span", { class: "iw-nv-context" });
  tokens.forEach((t, i) => {
    const span = tokenSpan(t, 0, i);
    span.className = `iw-token ${paintClass(scale, values[i])}${i === center ? " iw-nv-center" : ""}`;
    span.title = fmt(values[i]);
    el.append(span);
  });
  return el;
}

export function exampleRow(ex: Example, scale: Scale): HTMLElement {
  return h("div", { class: "iw-nv-example", attrs: { "data-doc": ex.doc, "data-pos": ex.pos } }, [
    h("span", { class: "iw-nv-value", text: fmt(ex.value), title: `document ${ex.doc}, position ${ex.pos}` }),
    heatTokens(ex.tokens, f32(ex.acts), scale, ex.center),
  ]);
}

/** A signed bar, `v` against the largest magnitude `top`. */
export function signedBar(v: number, top: number): HTMLElement {
  const bar = h("span", { class: `iw-nv-signed ${v >= 0 ? "iw-pos" : "iw-neg"}` });
  bar.style.width = `${Math.round((60 * Math.abs(v)) / (top || 1))}px`;
  return bar;
}

export function valueTable(cls: string, head: string[], rows: (string | Node)[][], attrs?: (i: number) => Record<string, string | number>): HTMLTableElement {
  return h("table", { class: `iw-nv-table ${cls}` }, [
    h("thead", {}, [h("tr", {}, head.map((x) => h("th", { text: x })))]),
    h(
      "tbody",
      {},
      rows.map((r, i) =>
        h("tr", { attrs: attrs?.(i) ?? {} }, r.map((c) => (typeof c === "string" ? h("td", { class: "iw-num", text: c }) : h("td", {}, [c])))),
      ),
    ),
  ]);
}

export const tokenCell = (t: string) => fillToken(h("span", { class: "iw-tok-text" }), t);

/** Say "loading…" in the examples panels (their first child, the title, stays). */
export function examplesLoading(topPanel: HTMLElement, bucketPanel: HTMLElement): void {
  for (const p of [topPanel, bucketPanel]) p.replaceChildren(p.firstChild!, h("div", { class: "iw-muted", text: "loading…" }));
}

/** Fill the top-activations and bucket-samples panels from an "examples" answer; `noneText` is
 * said in each where the corpus gave nothing. */
export function fillExamples(
  topPanel: HTMLElement,
  bucketPanel: HTMLElement,
  r: { top: Example[]; buckets: Bucket[] },
  scale: Scale,
  noneText: string,
): void {
  const none = h("div", { class: "iw-muted", text: noneText });
  topPanel.replaceChildren(topPanel.firstChild!, ...(r.top.length ? r.top.map((e) => exampleRow(e, scale)) : [none]));
  bucketPanel.replaceChildren(
    bucketPanel.firstChild!,
    ...(r.buckets.length ? [] : [none.cloneNode(true)]),
    ...r.buckets.flatMap((b) => [
      h("div", {
        class: "iw-nv-bucket iw-muted",
        text: `${fmt(b.lo)} .. ${fmt(b.hi)}: ${b.count} positions (quantiles ${fmt(b.q_lo)} .. ${fmt(b.q_hi)})`,
      }),
      ...b.examples.map((e) => exampleRow(e, scale)),
    ]),
  );
}

/** The activation histogram of a corpus scan, or "no corpus scan". */
export function fillHistogram(histPanel: HTMLElement, hist: { counts: EncodedArray; edges: EncodedArray } | null): void {
  histPanel.replaceChildren(
    histPanel.firstChild!,
    hist ? histogram(f32(hist.counts), f32(hist.edges), { label: "activation (log count)" }) : h("div", { class: "iw-muted", text: "no corpus scan" }),
  );
}

/** The tokens a unit's direction raises and lowers most, with signed bars on one scale. */
export function fillLogitEffect(logitPanel: HTMLElement, eff: { top: [string, number][]; bottom: [string, number][] }): void {
  const big = Math.max(...eff.top.map((r) => Math.abs(r[1])), ...eff.bottom.map((r) => Math.abs(r[1])), 1e-9);
  const effTable = (rows: [string, number][], cls: string, head: string) =>
    valueTable(cls, [head, "logit / unit", ""], rows.map(([t, v]) => [tokenCell(t), fmt(v), signedBar(v, big)]));
  logitPanel.replaceChildren(logitPanel.firstChild!, effTable(eff.top, "iw-nv-logit-top", "raises"), effTable(eff.bottom, "iw-nv-logit-bottom", "lowers"));
}
