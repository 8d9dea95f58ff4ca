// TokenHeatmap: tokens coloured by a per-token metric; hover for values, click to select.
// State: tokens string[][] (documents), metrics [{name, values: float32 [n_tokens_total]}],
// metric, cmap, center, vmin, vmax, has_predictions, selected [doc, pos] | null.
import { decodeArray, type EncodedArray } from "../codec";
import { fmt, h, select } from "../components/dom";
import { chooseScale, legend, paintClass, type Scale } from "../components/scale";
import { topkTable } from "../components/table";
import { fillToken, tokenAt, tokenStrip } from "../components/tokens";
import { tipRow, Tooltip } from "../components/tooltip";
import type { View } from "../view";

interface Prediction {
  tokens: string[];
  probs: EncodedArray;
}

export const tokenHeatmap: View = (ctx) => {
  const { model, root } = ctx;
  const docs: string[][] = model.get("tokens");
  const metrics = (model.get("metrics") as { name: string; values: EncodedArray }[]).map((m) => ({
    name: m.name,
    values: decodeArray(m.values).data as Float32Array,
  }));
  const offsets = [0];
  for (const d of docs) offsets.push(offsets[offsets.length - 1] + d.length);
  const valueAt = (m: number, doc: number, pos: number) => metrics[m]?.values[offsets[doc] + pos] ?? NaN;

  const metricSelect = select(
    "iw-metric-select",
    metrics.map((m) => [m.name, m.name]),
    model.get("metric"),
  );
  metricSelect.setAttribute("aria-label", "metric");
  const legendSlot = h("div", { class: "iw-legend-slot" });
  const strip = tokenStrip(docs);
  root.append(h("div", { class: "iw-toolbar" }, [metricSelect, legendSlot]), strip.el);
  const tooltip = new Tooltip(root);

  let current = 0;
  let scale: Scale;
  let selectedSpan: HTMLElement | null = null;
  const recolour = () => {
    current = Math.max(0, metrics.findIndex((m) => m.name === model.get("metric")));
    metricSelect.value = metrics[current]?.name ?? "";
    const values = metrics[current]?.values ?? new Float32Array(0);
    scale = chooseScale(values, {
      cmap: model.get("cmap"),
      center: model.get("center"),
      vmin: model.get("vmin"),
      vmax: model.get("vmax"),
    });
    strip.spans.forEach((row, d) =>
      row.forEach((span, p) => (span.className = `iw-token ${paintClass(scale, values[offsets[d] + p])}`)),
    );
    legendSlot.replaceChildren(legend(scale, metrics[current]?.name ?? ""));
    selectedSpan?.classList.add("iw-selected");
  };

  const showSelected = () => {
    selectedSpan?.classList.remove("iw-selected");
    const sel = model.get("selected") as [number, number] | null;
    selectedSpan = sel ? strip.spans[sel[0]]?.[sel[1]] ?? null : null;
    selectedSpan?.classList.add("iw-selected");
  };

  const predictions = new Map<string, Promise<Prediction | null>>();
  let hovered: HTMLElement | null = null;

  const showTip = (span: HTMLElement, doc: number, pos: number) => {
    const rows: Node[] = [
      tipRow(docs.length > 1 ? `doc ${doc} · pos` : "pos", String(pos)),
      h("div", { class: "iw-tip-token" }, [fillToken(h("span"), docs[doc][pos])]),
      ...metrics.map((m, i) => tipRow(m.name, fmt(valueAt(i, doc, pos)), i === current ? "iw-current" : "")),
    ];
    tooltip.show(span, rows);
    if (!model.get("has_predictions")) return;
    const key = `${doc}:${pos}`;
    if (!predictions.has(key)) {
      predictions.set(
        key,
        ctx.rpc.request<Prediction>("predictions", { doc, pos }).catch((e) => {
          predictions.delete(key);
          ctx.showError(e.message);
          return null;
        }),
      );
    }
    const slot = h("div", { class: "iw-tip-preds", text: "predictions…" });
    tooltip.el.append(slot);
    predictions.get(key)!.then((pred) => {
      if (hovered !== span) return;
      if (!pred) return slot.replaceChildren(h("span", { class: "iw-muted", text: "predictions unavailable" }));
      const probs = decodeArray(pred.probs).data;
      slot.replaceChildren(topkTable(pred.tokens.map((t, i) => ({ token: t, prob: probs[i] })), "next-token predictions"));
      tooltip.place(span);
    });
  };

  const onOver = (e: Event) => {
    const hit = tokenAt(e.target);
    if (!hit || hit.span === hovered) return;
    hovered = hit.span;
    showTip(hit.span, hit.doc, hit.pos);
  };
  const onLeave = () => {
    hovered = null;
    tooltip.hide();
  };
  const onClick = (e: Event) => {
    const hit = tokenAt(e.target);
    if (!hit) return;
    model.set("selected", [hit.doc, hit.pos]); // fires change:selected -> showSelected
    model.save_changes();
  };
  const onMetric = () => {
    model.set("metric", metricSelect.value); // fires change:metric -> recolour
    model.save_changes();
  };

  strip.el.addEventListener("mouseover", onOver);
  strip.el.addEventListener("mouseleave", onLeave);
  strip.el.addEventListener("click", onClick);
  metricSelect.addEventListener("change", onMetric);
  const restyle = () => recolour();
  for (const k of ["metric", "cmap", "center", "vmin", "vmax"]) model.on(`change:${k}`, restyle);
  model.on("change:selected", showSelected);

  recolour();
  showSelected();
  return () => {
    for (const k of ["metric", "cmap", "center", "vmin", "vmax"]) model.off(`change:${k}`, restyle);
    model.off("change:selected", showSelected);
  };
};
