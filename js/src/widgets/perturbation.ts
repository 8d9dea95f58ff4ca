// PerturbationFlowView: |resid(text) - resid(edited text)| per layer x shared token, absolute or
// relative; a KL row for the next-token predictions; top-5 next tokens before and after.
// State: text, remove, tokens, removed bool[], layer_labels, diff / relative float32 [layer, pos]
// (NaN at removed tokens), kl float32 [pos], top_before / top_after [[token, prob]], can_rerun, _rev.
// Request "set_text" {text, remove} (kernel only).
import { decodeArray, type EncodedArray } from "../codec";
import { fmt, h, select } from "../components/dom";
import { gridCellAt, heatGrid } from "../components/heatgrid";
import { promptBar } from "../components/prompt";
import { rerunFrame } from "../components/rerun_frame";
import { chooseScale, legend, paintClass } from "../components/scale";
import { topkTable } from "../components/table";
import { displayToken, fillToken } from "../components/tokens";
import { tipRow, Tooltip } from "../components/tooltip";
import type { View, ViewContext } from "../view";

export const perturbationFlowView: View = (ctx) => rerunFrame(ctx, "iw-flow-body", renderBody);

function renderBody(ctx: ViewContext, toolbar: HTMLElement, body: HTMLElement, tooltip: Tooltip): void {
  const { model } = ctx;
  const tokens: string[] = model.get("tokens");
  const removed: boolean[] = model.get("removed");
  const layers: string[] = model.get("layer_labels");
  const diff = decodeArray(model.get("diff") as EncodedArray).data;
  const rel = decodeArray(model.get("relative") as EncodedArray).data;
  const kl = decodeArray(model.get("kl") as EncodedArray).data;
  const P = tokens.length;

  const mode = select("iw-flow-mode", [["relative", "|Δ resid| / |resid|"], ["absolute", "|Δ resid|"]], "relative");
  mode.setAttribute("aria-label", "measure");
  const legendSlot = h("div", { class: "iw-legend-slot" });
  toolbar.replaceChildren(
    ...(model.get("can_rerun")
      ? [
          promptBar(ctx, "set_text", [
            { name: "text", label: "text", value: model.get("text") ?? "" },
            { name: "remove", label: "remove", value: model.get("remove") ?? "" },
          ]),
        ]
      : []),
    h("div", { class: "iw-controls" }, [mode, legendSlot]),
  );

  const cols = tokens.map((t, p) => {
    const el = fillToken(h("span", { class: removed[p] ? "iw-flow-removed" : "" }), t);
    if (removed[p]) el.style.textDecoration = "line-through";
    return el;
  });
  const grid = heatGrid({ rows: [...layers, "next-token KL"], cols, corner: "layer \\ token", attrs: { "data-kind": "flow" } });
  const klScale = chooseScale(kl, { cmap: "sequential", vmin: 0 });
  const paint = () => {
    const values = mode.value === "absolute" ? diff : rel;
    const scale = chooseScale(values, { cmap: "sequential", vmin: 0 });
    const all = new Float32Array((layers.length + 1) * P);
    all.set(values);
    grid.paint(all, scale); // the last row (KL) is repainted on its own scale:
    grid.cells.slice(layers.length * P).forEach((c, p) => {
      c.className = `iw-lens-cell ${paintClass(klScale, kl[p])}`;
      c.textContent = Number.isFinite(kl[p]) ? kl[p].toFixed(2) : "";
    });
    legendSlot.replaceChildren(legend(scale, mode.value === "absolute" ? "|Δ resid|" : "|Δ resid| / |resid|"));
  };
  mode.addEventListener("change", paint);
  grid.el.addEventListener("mouseover", (e) => {
    const hit = gridCellAt(e.target);
    if (!hit) return;
    const p = hit.col;
    const rows = [tipRow("token", `${p} ${displayToken(tokens[p])}`)];
    if (removed[p]) rows.push(tipRow("removed", "no counterpart in the edited text"));
    else if (hit.row < layers.length) {
      const i = hit.row * P + p;
      rows.push(tipRow("layer", layers[hit.row]), tipRow("|Δ resid|", fmt(diff[i])), tipRow("relative", fmt(rel[i])));
    } else rows.push(tipRow("next-token KL", fmt(kl[p])));
    tooltip.show(hit.cell, rows);
  });
  grid.el.addEventListener("mouseleave", () => tooltip.hide());
  paint();

  const tops = h("div", { class: "iw-flow-tops" }, [
    topkTable((model.get("top_before") as [string, number][]).map(([token, prob]) => ({ token, prob })), "next token, full text"),
    topkTable((model.get("top_after") as [string, number][]).map(([token, prob]) => ({ token, prob })), `next token, without ${JSON.stringify(model.get("remove"))}`),
  ]);
  tops.style.display = "flex";
  tops.style.gap = "16px";
  tops.style.marginTop = "8px";
  body.replaceChildren(h("div", { class: "iw-lens-scroll" }, [grid.el]), tops);
}
