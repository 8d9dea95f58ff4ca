// TokenHeatmap: tokens coloured by a per-token metric; hover for values, click to select.
// State: tokens (documents of token strings, packed: codec.ts EncodedStrings with rows; a plain
// string[][] is read too), metrics [{name, values: float32 [n_tokens_total]}], metric, cmap,
// center, vmin, vmax, has_predictions, selected [doc, pos] | null.
// Drawing is built for 20,000+ tokens (components/heat_strip.ts): every span is made once with its
// colour class, the first screenfuls before the first paint and the rest just after it; a metric
// switch rewrites only the classes that change.
import { decodeArray, decodeStringRows, type EncodedArray, type EncodedStrings } from "../codec";
import { fmt, h, select } from "../components/dom";
import { heatStrip } from "../components/heat_strip";
import { chooseScale, LEVELS, legend, tintClass, type Scale } from "../components/scale";
import { topkTable } from "../components/table";
import { fillToken, tokenAt } from "../components/tokens";
import { tipRow, Tooltip } from "../components/tooltip";
import type { View } from "../view";

interface Prediction {
  tokens: string[];
  probs: EncodedArray;
}

/** The documents' token strings from the synced value (packed, or a plain string[][]). */
export function readTokens(value: EncodedStrings | string[][]): string[][] {
  return Array.isArray(value) ? value : decodeStringRows(value);
}

/** "iw-token <colour classes>" for each value on `scale`; one string per (hue, level), shared. */
export function tokenClasser(scale: Scale): (v: number) => string {
  const table = new Map<string, string[]>();
  return (v) => {
    const x = typeof v === "number" ? v : NaN;
    const [hue, t] = scale.paint(x);
    if (!hue) return Number.isFinite(x) ? "iw-token" : "iw-token iw-gap";
    let row = table.get(hue);
    if (!row) table.set(hue, (row = []));
    const k = Math.round((t < 0 ? 0 : t > 1 ? 1 : t) * (LEVELS - 1));
    return (row[k] ??= `iw-token ${tintClass(hue, k / (LEVELS - 1))}`);
  };
}

export const tokenHeatmap: View = (ctx) => {
  const { model, root } = ctx;
  const docs = readTokens(model.get("tokens"));
  const metrics = (model.get("metrics") as { name: string; values: EncodedArray }[]).map((m) => ({
    name: m.name,
    values: decodeArray(m.values).data as Float32Array,
  }));
  const valueAt = (m: number, doc: number, pos: number) => metrics[m]?.values[offsets[doc] + pos] ?? NaN;

  const metricSelect = select(
    "iw-metric-select",
    metrics.map((m) => [m.name, m.name]),
    model.get("metric"),
  );
  metricSelect.setAttribute("aria-label", "metric");
  const legendSlot = h("div", { class: "iw-legend-slot" });

  let current = 0;
  let values: ArrayLike<number> = new Float32Array(0);
  const classes: string[] = [];
  const colouring = () => {
    current = Math.max(0, metrics.findIndex((m) => m.name === model.get("metric")));
    metricSelect.value = metrics[current]?.name ?? "";
    values = metrics[current]?.values ?? new Float32Array(0);
    const scale = chooseScale(values, {
      cmap: model.get("cmap"),
      center: model.get("center"),
      vmin: model.get("vmin"),
      vmax: model.get("vmax"),
    });
    legendSlot.replaceChildren(legend(scale, metrics[current]?.name ?? ""));
    return tokenClasser(scale);
  };

  // Each span gets its colour as it is made (by the colouring current then); past the first
  // screenfuls the strip is built after the first paint, and marks iw-strip-built when complete.
  let classOf = colouring();
  const strip = heatStrip(docs, (i) => (classes[i] = classOf(values[i])), { later: ctx.afterPaint });
  const { spans, offsets } = strip;
  root.append(h("div", { class: "iw-toolbar" }, [metricSelect, legendSlot]), strip.el);
  if (!ctx.live) {
    // a click still marks the token here, but no kernel hears it
    root.append(h("div", { class: "iw-muted iw-static-select-note", text: "Static export: clicking a token marks it here; in a running notebook the selection also reaches Python (selected, on_select)." }));
  }
  const tooltip = new Tooltip(root);
  const spanAt = (doc: number, pos: number) =>
    doc >= 0 && doc < docs.length && pos >= 0 && pos < docs[doc].length ? spans[offsets[doc] + pos] : undefined;

  let selectedSpan: HTMLElement | null = null;
  const recolour = () => {
    classOf = colouring();
    for (let i = 0; i < spans.length; i++) {
      const c = classOf(values[i]);
      if (c !== classes[i]) {
        classes[i] = c;
        spans[i].className = c;
      }
    }
    selectedSpan?.classList.add("iw-selected"); // className writes drop it
  };

  const showSelected = () => {
    selectedSpan?.classList.remove("iw-selected");
    const sel = model.get("selected") as [number, number] | null;
    selectedSpan = sel ? spanAt(sel[0], sel[1]) ?? null : null;
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

  showSelected();
  strip.done.then(() => {
    showSelected(); // a selection beyond the first screenfuls has its span now
    ctx.mark("iw-strip-built");
  });
  return () => {
    strip.stop();
    for (const k of ["metric", "cmap", "center", "vmin", "vmax"]) model.off(`change:${k}`, restyle);
    model.off("change:selected", showSelected);
  };
};
