// LogitLens: layer x position grid; each cell shows the top-1 token, coloured by its probability
// (or by the target's). Click a cell for the top 10 there.
// State: tokens string[], layer_labels string[], top_strs string[][] [layer][pos],
// top_probs float32 [layer, pos], target string | null, target_probs float32 [layer, pos] | null,
// colour_by "top1" | "target", prompt, can_rerun, _rev.
// Request "topk" {layer, pos} -> {tokens: string[], probs: float32 [k]}.
import { decodeArray, type EncodedArray } from "../codec";
import { fmt, h, select } from "../components/dom";
import { chooseScale, legend, paintClass } from "../components/scale";
import { promptBar } from "../components/prompt";
import { rerunFrame } from "../components/rerun_frame";
import { topkTable } from "../components/table";
import { displayToken, fillToken, tokenSpan } from "../components/tokens";
import { tipRow, Tooltip } from "../components/tooltip";
import { ask, type View, type ViewContext } from "../view";

export const logitLens: View = (ctx) => rerunFrame(ctx, "iw-lens-body", renderBody);

function renderBody(ctx: ViewContext, toolbar: HTMLElement, body: HTMLElement, tooltip: Tooltip): void {
  const { model } = ctx;
  const tokens: string[] = model.get("tokens");
  const layers: string[] = model.get("layer_labels");
  const topStrs: string[][] = model.get("top_strs");
  const topProbs = decodeArray(model.get("top_probs") as EncodedArray).data;
  const target: string | null = model.get("target") ?? null;
  const targetEnc = model.get("target_probs") as EncodedArray | null;
  const targetProbs = targetEnc ? decodeArray(targetEnc).data : null;
  const P = tokens.length;

  const colourBy = select(
    "iw-lens-color",
    [
      ["top1", "colour: top-1 probability"],
      ["target", target === null ? "colour: P(target) (no target)" : `colour: P(${JSON.stringify(target)})`],
    ],
    targetProbs && model.get("colour_by") === "target" ? "target" : "top1",
  );
  (colourBy.options[1] as HTMLOptionElement).disabled = !targetProbs;
  colourBy.setAttribute("aria-label", "colour by");
  const legendSlot = h("div", { class: "iw-legend-slot" });
  const fields = [
    { name: "prompt", label: "prompt", value: model.get("prompt") ?? "", multiline: true },
    { name: "target", label: "target", value: target ?? "", placeholder: "target token (optional)" },
  ];
  toolbar.replaceChildren(
    ...(model.get("can_rerun") ? [promptBar(ctx, "set_prompt", fields)] : []),
    h("div", { class: "iw-controls" }, [colourBy, legendSlot]),
  );

  const grid = h("div", { class: "iw-lens-grid", attrs: { role: "grid" } });
  grid.style.setProperty("--n-pos", String(P));
  const frag = document.createDocumentFragment();
  frag.append(h("span", { class: "iw-lens-corner", text: "layer \\ input" }));
  tokens.forEach((t, p) => frag.append(tokenSpan(t, 0, p)));
  const cells: HTMLElement[] = [];
  layers.forEach((name, l) => {
    frag.append(h("span", { class: "iw-row-label", text: name }));
    for (let p = 0; p < P; p++) {
      const c = h("span", { class: "iw-lens-cell", attrs: { "data-layer": l, "data-pos": p } });
      fillToken(c, topStrs[l][p]);
      cells.push(c);
      frag.append(c);
    }
  });
  grid.append(frag);
  const detail = h("div", { class: "iw-lens-detail" });
  const scroller = h("div", { class: "iw-lens-scroll" }, [grid]);
  body.replaceChildren(scroller, detail);
  // When the prompt is too long to fit, show the last column (the next-token prediction) first.
  requestAnimationFrame(() => (scroller.scrollLeft = scroller.scrollWidth));

  const recolour = () => {
    const useTarget = colourBy.value === "target" && !!targetProbs;
    const values = useTarget ? targetProbs! : topProbs;
    const scale = chooseScale(values, { cmap: "sequential", vmin: 0, vmax: 1 });
    cells.forEach((c, i) => (c.className = `iw-lens-cell ${paintClass(scale, values[i])}`));
    active?.classList.add("iw-active");
    legendSlot.replaceChildren(legend(scale, useTarget ? `P(${JSON.stringify(target)})` : "top-1 probability"));
  };

  let active: HTMLElement | null = null;
  const cellAt = (t: EventTarget | null) => (t as Element | null)?.closest?.(".iw-lens-cell") as HTMLElement | null;
  grid.addEventListener("mouseover", (e) => {
    const c = cellAt(e.target);
    if (!c) return;
    const l = Number(c.dataset.layer);
    const p = Number(c.dataset.pos);
    const i = l * P + p;
    tooltip.show(c, [
      tipRow("layer", layers[l]),
      tipRow("pos", `${p}`),
      tipRow("input", h("span", {}, [fillToken(h("span"), tokens[p])])),
      tipRow("top-1", h("span", {}, [fillToken(h("span"), topStrs[l][p]), ` ${fmt(topProbs[i])}`])),
      ...(targetProbs ? [tipRow(`P(${displayToken(target ?? "")})`, fmt(targetProbs[i]))] : []),
    ]);
  });
  grid.addEventListener("mouseleave", () => tooltip.hide());

  let wanted = "";
  grid.addEventListener("click", async (e) => {
    const c = cellAt(e.target);
    if (!c) return;
    active?.classList.remove("iw-active");
    (active = c).classList.add("iw-active");
    const l = Number(c.dataset.layer);
    const p = Number(c.dataset.pos);
    const key = (wanted = `${l}:${p}`);
    detail.replaceChildren(h("div", { class: "iw-muted", text: "loading top 10…" }));
    const r = await ask<{ tokens: string[]; probs: EncodedArray }>(ctx, "topk", { layer: l, pos: p });
    if (wanted !== key) return;
    if (!r) return detail.replaceChildren();
    const probs = decodeArray(r.probs).data;
    const caption = `${layers[l]} · pos ${p} (${displayToken(tokens[p])})`;
    detail.replaceChildren(topkTable(r.tokens.map((t, i) => ({ token: t, prob: probs[i] })), caption, target));
  });
  colourBy.addEventListener("change", () => {
    model.set("colour_by", colourBy.value);
    model.save_changes();
    recolour();
  });
  recolour();
}
