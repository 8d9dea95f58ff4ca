// SteeringView: baseline and steered generations side by side (same seed); steered tokens are
// coloured by KL(steered || baseline). Sliders for the coefficient and the layer regenerate live.
// State: prompt, vector_names, vector, n_layers, layer, coeff, coeff_max, seed, baseline and
// steered (new tokens) string[], kl float32 [steered new tokens], loss / loss_baseline (mean loss
// of the unsteered model on each text, nats/token: coherence), metric_name ("" without one),
// metric_value / metric_baseline, sweep [{coeff, text, mean_kl, loss, metric}] (strengths side
// by side). Request "steer" {vector, coeff, layer, seed} -> {baseline, steered, kl, mean_kl,
// coeff, layer, loss, loss_baseline, metric, metric_baseline, sweep}.
import { decodeArray, type EncodedArray } from "../codec";
import { valueTable } from "../components/dashboard";
import { fmt, h, select } from "../components/dom";
import { ownKeys } from "../components/keys";
import { chooseScale, legend, paintClass } from "../components/scale";
import { displayToken, tokenAt, tokenStrip } from "../components/tokens";
import { tipRow, Tooltip } from "../components/tooltip";
import { ask, type View } from "../view";

interface SweepRow {
  coeff: number;
  text: string;
  mean_kl: number;
  loss: number;
  metric: number | null;
}
interface Steered {
  baseline: string[];
  steered: string[];
  kl: Float32Array;
  mean_kl: number;
  coeff: number;
  layer: number;
  loss: number;
  loss_baseline: number;
  metric: number | null;
  metric_baseline: number | null;
  sweep: SweepRow[];
}
type SteerReply = Omit<Steered, "kl"> & { kl: EncodedArray };

export const steeringView: View = (ctx) => {
  const { model, root } = ctx;
  const tooltip = new Tooltip(root);
  const names: string[] = model.get("vector_names");
  const vectorSelect = ctx.needsKernel(select("iw-steer-vector", names.map((n, i) => [String(i), n]), String(model.get("vector"))));
  vectorSelect.setAttribute("aria-label", "steering vector");
  const cmax = Number(model.get("coeff_max"));
  const coeff = ctx.needsKernel(
    h("input", { class: "iw-steer-coeff", attrs: { type: "range", min: -cmax, max: cmax, step: cmax / 100, "aria-label": "coefficient" } }),
  );
  coeff.value = String(model.get("coeff"));
  const layer = ctx.needsKernel(
    h("input", { class: "iw-steer-layer", attrs: { type: "range", min: 0, max: Number(model.get("n_layers")) - 1, step: 1, "aria-label": "layer" } }),
  );
  layer.value = String(model.get("layer"));
  const seed = ctx.needsKernel(h("input", { class: "iw-input iw-steer-seed", attrs: { type: "number", step: 1, "aria-label": "seed" } }));
  seed.value = String(model.get("seed"));
  seed.style.width = "5em";
  const coeffText = h("span", { class: "iw-num iw-steer-coeff-value" });
  const layerText = h("span", { class: "iw-num iw-steer-layer-value" });
  const controls = ownKeys(h("div", { class: "iw-controls" }, [
    vectorSelect,
    h("label", { class: "iw-field" }, [h("span", { text: "coefficient" }), coeff, coeffText]),
    h("label", { class: "iw-field" }, [h("span", { text: "layer" }), layer, layerText]),
    h("label", { class: "iw-field" }, [h("span", { text: "seed" }), seed]),
  ]));
  const promptLine = h("div", { class: "iw-muted", text: `prompt: ${model.get("prompt")}` });
  const left = h("div", { class: "iw-steer-col iw-steer-baseline" });
  const right = h("div", { class: "iw-steer-col iw-steer-steered" });
  const cols = h("div", { class: "iw-steer-cols" }, [left, right]);
  cols.style.display = "grid";
  cols.style.gridTemplateColumns = "1fr 1fr";
  cols.style.gap = "12px";
  const status = h("div", { class: "iw-steer-status", attrs: { "aria-live": "polite" } });
  const sweepPanel = h("div", { class: "iw-steer-sweep" });
  root.append(h("div", { class: "iw-toolbar" }, [controls]), promptLine, cols, status, sweepPanel);
  const metricName: string = model.get("metric_name") ?? "";

  const draw = (r: Steered) => {
    const { baseline, steered, kl, coeff: c, layer: l } = r;
    coeffText.textContent = fmt(c);
    layerText.textContent = String(l);
    const b = tokenStrip([baseline]);
    const s = tokenStrip([steered]);
    const scale = chooseScale(kl, { cmap: "sequential", vmin: 0 });
    s.spans[0].forEach((span, i) => (span.className = `iw-token ${paintClass(scale, kl[i])}`));
    s.el.addEventListener("mouseover", (e) => {
      const hit = tokenAt(e.target);
      if (!hit) return;
      tooltip.show(hit.span, [tipRow("token", displayToken(steered[hit.pos])), tipRow("KL to baseline", fmt(kl[hit.pos]))]);
    });
    s.el.addEventListener("mouseleave", () => tooltip.hide());
    const lossLine = (v: number) => h("div", { class: "iw-muted iw-steer-loss", text: `loss of the unsteered model on this text: ${fmt(v)} nats/token` });
    left.replaceChildren(h("div", { class: "iw-patch-title", text: "baseline" }), b.el, lossLine(r.loss_baseline ?? NaN));
    right.replaceChildren(
      h("div", { class: "iw-patch-title", text: `steered (×${fmt(c)} at layer ${l})` }),
      s.el,
      lossLine(r.loss ?? NaN),
      legend(scale, "KL(steered ‖ baseline) per token"),
    );
    const stat = (cls: string, label: string, value: string) =>
      h("span", { class: `iw-steer-stat ${cls}` }, [h("span", { class: "iw-muted", text: `${label}: ` }), h("span", { class: "iw-num", text: value })]);
    status.replaceChildren(
      ...(metricName && r.metric != null
        ? [stat("iw-steer-metric", metricName, `${fmt(r.metric)} steered, ${fmt(r.metric_baseline ?? NaN)} unsteered`)]
        : []),
      stat("iw-steer-kl", "mean KL to the baseline", `${fmt(r.mean_kl)} nats`),
      stat("iw-steer-coherence", "loss of the unsteered model on the text", `${fmt(r.loss ?? NaN)} steered, ${fmt(r.loss_baseline ?? NaN)} baseline (nats/token)`),
    );
    status.style.display = "flex";
    status.style.flexWrap = "wrap";
    status.style.gap = "4px 16px";
    const rows = r.sweep ?? [];
    sweepPanel.replaceChildren(
      ...(rows.length
        ? [
            h("div", { class: "iw-patch-title", text: `strengths side by side (layer ${l}, the same seed)` }),
            valueTable(
              "iw-steer-sweep-table",
              ["coefficient", ...(metricName ? [metricName] : []), "mean KL", "loss (nats/token)", "text"],
              rows.map((w) => [fmt(w.coeff), ...(metricName ? [fmt(w.metric ?? NaN)] : []), fmt(w.mean_kl), fmt(w.loss), h("span", { class: "iw-steer-sweep-text", text: w.text })]),
              (i) => ({ class: Math.abs(rows[i].coeff - c) < 1e-9 ? "iw-steer-sweep-row iw-selected" : "iw-steer-sweep-row", "data-coeff": rows[i].coeff }),
            ),
          ]
        : []),
    );
    root.dataset.coeff = String(c);
    root.dataset.layer = String(l);
    root.dataset.meanKl = String(r.mean_kl);
    root.dispatchEvent(new CustomEvent("iw-steer-updated"));
  };
  const klInit = decodeArray(model.get("kl") as EncodedArray).data as Float32Array;
  let mean = 0;
  klInit.forEach((v) => (mean += v / Math.max(1, klInit.length)));
  draw({
    baseline: model.get("baseline"), steered: model.get("steered"), kl: klInit, mean_kl: mean,
    coeff: Number(model.get("coeff")), layer: Number(model.get("layer")),
    loss: model.get("loss") ?? NaN, loss_baseline: model.get("loss_baseline") ?? NaN,
    metric: model.get("metric_value") ?? null, metric_baseline: model.get("metric_baseline") ?? null,
    sweep: model.get("sweep") ?? [],
  });

  let inFlight = false;
  let queued = false;
  const send = async () => {
    inFlight = true;
    queued = false;
    root.classList.add("iw-busy");
    const r = await ask<SteerReply>(ctx, "steer", {
      vector: Number(vectorSelect.value),
      coeff: Number(coeff.value),
      layer: Number(layer.value),
      seed: Math.trunc(Number(seed.value) || 0),
    });
    root.classList.remove("iw-busy");
    if (r) {
      ctx.clearError();
      draw({ ...r, kl: decodeArray(r.kl).data as Float32Array });
    }
    inFlight = false;
    if (queued) void send();
  };
  const schedule = () => {
    if (!ctx.live) return;
    if (inFlight) queued = true;
    else void send();
  };
  coeff.addEventListener("input", () => {
    coeffText.textContent = fmt(Number(coeff.value));
    schedule();
  });
  layer.addEventListener("input", () => {
    layerText.textContent = layer.value;
    schedule();
  });
  vectorSelect.addEventListener("change", schedule);
  seed.addEventListener("change", schedule);
};
