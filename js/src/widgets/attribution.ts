// AttributionView: direct logit attribution (bars per component, a layer x head heatmap with bars
// for the largest heads, the top neurons) and input-token attribution as a token heatmap with a method switch.
// State: tokens, answer_token, wrong_token, logit_diff, total, components [[label, value]], heads float32
// [layer, head], top_neurons [[layer, neuron, value]], inputs [{method, target, values float32
// [pos], completeness_gap, baseline_value, target_value}], prompt, can_rerun, _rev.
// Request "set_prompt" {prompt, answer, wrong} (kernel only).
import { decodeArray, type EncodedArray } from "../codec";
import { fmt, h, select } from "../components/dom";
import { gridCellAt, heatGrid } from "../components/heatgrid";
import { promptBar } from "../components/prompt";
import { rerunFrame } from "../components/rerun_frame";
import { chooseScale, legend, paintClass } from "../components/scale";
import { displayToken, tokenAt, tokenStrip } from "../components/tokens";
import { tipRow, Tooltip } from "../components/tooltip";
import type { View, ViewContext } from "../view";

interface InputAttr {
  method: string;
  target: string;
  values: EncodedArray;
  completeness_gap: number | null;
  baseline_value: number | null;
  target_value: number;
}

/** Heads shown as bars beside the layer x head grid: the largest by |direct effect|. */
const HEAD_BARS = 16;

export const attributionView: View = (ctx) => rerunFrame(ctx, "iw-attr-body", renderBody);

/** Signed horizontal bars: label, value, and a bar growing right (positive) or left (negative). */
export function signedBars(rows: [string, number][], cls: string): HTMLElement {
  const extent = Math.max(1e-12, ...rows.map(([, v]) => Math.abs(v)));
  const el = h("div", { class: `iw-bars ${cls}` });
  el.style.display = "grid";
  el.style.gridTemplateColumns = "max-content 5em 240px";
  el.style.gap = "2px 8px";
  el.style.alignItems = "center";
  for (const [label, v] of rows) {
    const track = h("div", { class: "iw-bar-track" });
    track.style.position = "relative";
    track.style.height = "12px";
    track.style.borderLeft = "1px solid var(--iw-border)";
    track.style.marginLeft = "120px";
    const bar = h("span", { class: `${v >= 0 ? "iw-c-pos" : "iw-c-neg"} iw-a15` });
    bar.style.position = "absolute";
    bar.style.top = "0";
    bar.style.height = "100%";
    const w = (Math.abs(v) / extent) * 120;
    bar.style.width = `${w}px`;
    if (v >= 0) bar.style.left = "0";
    else bar.style.right = "100%";
    track.append(bar);
    el.append(
      h("span", { class: "iw-row-label", text: label }),
      h("span", { class: "iw-num", text: fmt(v), attrs: { "data-label": label } }),
      track,
    );
  }
  return el;
}

function renderBody(ctx: ViewContext, toolbar: HTMLElement, body: HTMLElement, tooltip: Tooltip): void {
  const { model } = ctx;
  const tokens: string[] = model.get("tokens");
  const answer: string = model.get("answer_token");
  const wrong: string = model.get("wrong_token");
  const headsArr = decodeArray(model.get("heads") as EncodedArray);
  const [L, H] = headsArr.shape;
  const heads = headsArr.data;
  const inputs = (model.get("inputs") as InputAttr[]).map((a) => ({ ...a, data: decodeArray(a.values).data }));

  toolbar.replaceChildren(
    ...(model.get("can_rerun")
      ? [
          promptBar(ctx, "set_prompt", [
            { name: "prompt", label: "prompt", value: model.get("prompt") ?? "" },
            { name: "answer", label: "answer", value: answer },
            { name: "wrong", label: "wrong", value: wrong },
          ]),
        ]
      : []),
  );

  const target = `logit(${JSON.stringify(answer)}) − logit(${JSON.stringify(wrong)})`;
  const summary = h("div", {
    class: "iw-attr-summary",
    text: `${target} = ${fmt(model.get("logit_diff"))}; the direct contributions below sum to ${fmt(model.get("total"))}`,
  });

  // components
  const comps = signedBars(model.get("components") as [string, number][], "iw-attr-components");

  // heads
  const headScale = chooseScale(heads, { cmap: "diverging", center: 0 });
  const headGrid = heatGrid({
    rows: Array.from({ length: L }, (_, l) => `L${l}`),
    cols: Array.from({ length: H }, (_, k) => `H${k}`),
    corner: "layer \\ head",
    attrs: { "data-kind": "heads" },
    text: (v) => (Number.isFinite(v) ? v.toPrecision(2) : ""),
  });
  headGrid.paint(heads, headScale);
  headGrid.el.addEventListener("mouseover", (e) => {
    const hit = gridCellAt(e.target);
    if (!hit) return;
    tooltip.show(hit.cell, [tipRow("head", `L${hit.row}H${hit.col}`), tipRow("direct effect", fmt(heads[hit.row * H + hit.col]))]);
  });
  headGrid.el.addEventListener("mouseleave", () => tooltip.hide());
  // the same numbers as bars, largest |effect| first (the top HEAD_BARS heads)
  const headBars = signedBars(
    Array.from(heads, (v, i): [string, number] => [`L${Math.floor(i / H)}H${i % H}`, v])
      .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]))
      .slice(0, HEAD_BARS),
    "iw-attr-heads",
  );

  // neurons: the top positive and the top negative contributors, listed apart (by |value| alone
  // the largest are often all of one sign)
  const neuronRows = (model.get("top_neurons") as [number, number, number][]).map(([l, n, v]): [string, number] => [`L${l} N${n}`, v]);
  const neuronList = (rows: [string, number][], cls: string, none: string) =>
    rows.length ? signedBars(rows, `iw-attr-neurons ${cls}`) : h("div", { class: `iw-muted ${cls}`, text: none });
  const neurons = h("div", { class: "iw-attr-neuron-lists" }, [
    h("div", { class: "iw-muted", text: `raise ${target}` }),
    neuronList(neuronRows.filter(([, v]) => v > 0), "iw-attr-neurons-pos", "no neuron raises it"),
    h("div", { class: "iw-muted", text: "lower it" }),
    neuronList(neuronRows.filter(([, v]) => v < 0).sort((a, b) => a[1] - b[1]), "iw-attr-neurons-neg", "no neuron lowers it"),
  ]);

  // input tokens
  const methodSelect = select(
    "iw-attr-method",
    inputs.map((a) => [a.method, a.method.replace(/_/g, " ")]),
    inputs[0]?.method,
  );
  methodSelect.setAttribute("aria-label", "input attribution method");
  const strip = tokenStrip([tokens]);
  const legendSlot = h("div", { class: "iw-legend-slot" });
  const gapNote = h("div", { class: "iw-attr-gap iw-muted" });
  const paintInputs = () => {
    const a = inputs.find((x) => x.method === methodSelect.value) ?? inputs[0];
    if (!a) return;
    const scale = chooseScale(a.data, { cmap: "diverging", center: 0 });
    strip.spans[0].forEach((span, p) => (span.className = `iw-token ${paintClass(scale, a.data[p])}`));
    legendSlot.replaceChildren(legend(scale, `${a.method.replace(/_/g, " ")} → ${a.target}`));
    gapNote.textContent =
      a.completeness_gap === null
        ? ""
        : `completeness: target ${fmt(a.target_value)} − baseline ${fmt(a.baseline_value ?? NaN)} = ` +
          `${fmt(a.target_value - (a.baseline_value ?? NaN))}; attributions sum to ` +
          `${fmt(a.target_value - (a.baseline_value ?? NaN) - a.completeness_gap)} (gap ${fmt(a.completeness_gap)})`;
    strip.el.dataset.method = a.method;
  };
  methodSelect.addEventListener("change", paintInputs);
  strip.el.addEventListener("mouseover", (e) => {
    const hit = tokenAt(e.target);
    if (!hit) return;
    tooltip.show(hit.span, [
      tipRow("token", displayToken(tokens[hit.pos])),
      ...inputs.map((a) => tipRow(a.method.replace(/_/g, " "), fmt(a.data[hit.pos]))),
    ]);
  });
  strip.el.addEventListener("mouseleave", () => tooltip.hide());
  paintInputs();

  const section = (title: string, ...children: Node[]) => {
    const s = h("div", { class: "iw-attr-section" }, [h("div", { class: "iw-patch-title", text: title }), ...children]);
    s.style.marginBottom = "10px";
    return s;
  };
  body.replaceChildren(
    summary,
    section("direct logit attribution per component", comps),
    section("per attention head", h("div", { class: "iw-lens-scroll" }, [headGrid.el]), legend(headScale, "direct effect"), headBars),
    section("top MLP neurons, both signs", neurons),
    section("input-token attribution", h("div", { class: "iw-controls" }, [methodSelect, legendSlot]), strip.el, gapNote),
  );
}
