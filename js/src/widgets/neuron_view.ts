// NeuronView: one MLP neuron's dashboard.
// State: layer, neuron, n_layers, n_neurons, hook, text, text_tokens string[], text_acts float32
// [pos], stats {mean, std, density, max, n_tokens, n_docs, partial} | {}, histogram {counts,
// edges} | null, logit_effect {top, bottom: [token, effect][]}, correlated [neuron, corr][],
// targets string[], modes string[], scales number[], can_rerun, _rev.
// Requests: "select" {layer, neuron}, "set_text" {text}, "set_targets" {targets} (kernel only);
// "examples" {} -> {top: Ex[], buckets: {lo, hi, q_lo, q_hi, count, examples: Ex[]}[]};
// "attribution" {pos} -> {pos, labels, pre, contributions float32, grad_x_input float32 [pos]};
// "ablate" {mode} -> {targets, clean, ablated float32 [t], d_loss};
// "modulate" {scale} -> {targets, probs, baseline float32 [t], top {tokens, probs}}.
import type { EncodedArray } from "../codec";
import {
  type Bucket,
  type Example,
  examplesLoading,
  f32,
  fillExamples,
  fillHistogram,
  fillLogitEffect,
  heatTokens,
  panel,
  signedBar,
  tokenCell,
  valueTable,
} from "../components/dashboard";
import { fmt, h, select } from "../components/dom";
import { sendAsTyped } from "../components/prompt";
import { chooseScale, legend, type Scale } from "../components/scale";
import { topkTable } from "../components/table";
import { fillToken, tokenAt } from "../components/tokens";
import { tipRow, Tooltip } from "../components/tooltip";
import { ask, type View, type ViewContext } from "../view";

interface Attribution {
  pos: number;
  labels: string[];
  pre: number;
  kind?: string; // which pre-activation, e.g. "gate pre-activation (x @ W_gate)"
  contributions: EncodedArray;
  grad_x_input: EncodedArray;
}
interface Ablation {
  targets: string[];
  clean: EncodedArray;
  ablated: EncodedArray;
  d_loss: number;
}
interface Modulation {
  targets: string[];
  probs: EncodedArray;
  baseline: EncodedArray;
  top: { tokens: string[]; probs: EncodedArray };
}

const DEBOUNCE_MS = 300;

/** A number input for an index in 0..max (kernel only). */
function indexInput(ctx: ViewContext, name: string, max: number): HTMLInputElement {
  return ctx.needsKernel(
    h("input", {
      class: `iw-input iw-nv-num iw-nv-${name}`,
      attrs: { type: "number", min: 0, max, step: 1, "aria-label": name, name },
    }),
  );
}

export const neuronView: View = (ctx) => {
  const { model, root } = ctx;
  const tooltip = new Tooltip(root);

  // -- navigation and text box: built once, so typing keeps its focus across redraws --------------
  const layerIn = indexInput(ctx, "layer", model.get("n_layers") - 1);
  const neuronIn = indexInput(ctx, "neuron", model.get("n_neurons") - 1);
  const prev = ctx.needsKernel(h("button", { class: "iw-button iw-nv-prev", text: "◀ prev", attrs: { type: "button" } }));
  const next = ctx.needsKernel(h("button", { class: "iw-button iw-nv-next", text: "next ▶", attrs: { type: "button" } }));
  const title = h("span", { class: "iw-nv-title" });
  const statsLine = h("span", { class: "iw-nv-stats iw-muted" });
  const nav = h("div", { class: "iw-toolbar iw-nv-nav", attrs: { "data-lm-suppress-shortcuts": "true" } }, [
    title,
    h("label", { class: "iw-field" }, [h("span", { text: "layer" }), layerIn]),
    h("label", { class: "iw-field" }, [h("span", { text: "neuron" }), neuronIn]),
    prev,
    next,
    statsLine,
  ]);
  const textIn = ctx.needsKernel(
    h("textarea", { class: "iw-input iw-nv-text", attrs: { rows: 2, "aria-label": "text", "data-lm-suppress-shortcuts": "true" } }),
  );
  const legendSlot = h("div", { class: "iw-legend-slot" });
  const strip = h("div", { class: "iw-strip iw-nv-strip" });
  const textPanel = panel("Activation on this text (click a token for its inputs)", "iw-nv-textpanel", true);
  textPanel.append(textIn, h("div", { class: "iw-toolbar" }, [legendSlot]), strip);

  const attrPanel = panel("Input attribution", "iw-nv-attribution");
  const topPanel = panel("Top activations in the corpus", "iw-nv-top", true);
  const bucketPanel = panel("Samples by activation bucket", "iw-nv-buckets", true);
  const histPanel = panel("Activation histogram", "iw-nv-histogram");
  const logitPanel = panel("Direct logit effect (W_out[n] @ W_U)", "iw-nv-logits");
  const corrPanel = panel("Correlated neurons (click to open)", "iw-nv-correlated");

  // ablation / modulation: answers are precomputed in static exports, so these work there too
  const modeSel = select("iw-nv-mode", [], "zero");
  modeSel.setAttribute("aria-label", "ablation mode");
  const scaleIn = h("input", { class: "iw-nv-scale", attrs: { type: "range", "aria-label": "scale" } }) as HTMLInputElement;
  const scaleText = h("span", { class: "iw-nv-scale-value" });
  const targetsIn = ctx.needsKernel(
    h("input", { class: "iw-input iw-nv-targets", attrs: { type: "text", "aria-label": "target tokens", title: "comma-separated tokens; spaces count (' an, a')" } }),
  );
  const interResult = h("div", { class: "iw-nv-inter-result" });
  const interPanel = panel("Ablate or scale the neuron: next-token probabilities", "iw-nv-intervene");
  interPanel.append(
    h("div", { class: "iw-controls", attrs: { "data-lm-suppress-shortcuts": "true" } }, [
      h("label", { class: "iw-field" }, [h("span", { text: "ablation" }), modeSel]),
      h("label", { class: "iw-field" }, [h("span", { text: "scale" }), scaleIn, scaleText]),
      h("label", { class: "iw-field" }, [h("span", { text: "targets" }), targetsIn]),
    ]),
    interResult,
  );

  const grid = h("div", { class: "iw-nv-grid" }, [textPanel, attrPanel, interPanel, histPanel, logitPanel, corrPanel, topPanel, bucketPanel]);
  root.append(nav, grid);

  let scale: Scale = chooseScale([0, 1]);
  let tokens: string[] = [];
  let acts: Float32Array = new Float32Array(0);
  let shownKey = "";
  let attrPos = -1;
  let seq = 0; // drops answers that arrive after a newer redraw

  const go = async (layer: number, neuron: number) => {
    if (!ctx.live) return;
    ctx.clearError();
    await ask(ctx, "select", { layer, neuron });
  };
  const navNumbers = () => [Number(layerIn.value), Number(neuronIn.value)];
  layerIn.addEventListener("change", () => go(...(navNumbers() as [number, number])));
  neuronIn.addEventListener("change", () => go(...(navNumbers() as [number, number])));
  prev.addEventListener("click", () => go(model.get("layer"), Math.max(0, model.get("neuron") - 1)));
  next.addEventListener("click", () => go(model.get("layer"), Math.min(model.get("n_neurons") - 1, model.get("neuron") + 1)));

  const cancelTyping = sendAsTyped(ctx, textIn, "set_text", "text", DEBOUNCE_MS);

  strip.addEventListener("click", (e) => {
    const hit = tokenAt(e.target);
    if (hit) showAttribution(hit.pos);
  });
  strip.addEventListener("mouseover", (e) => {
    const hit = tokenAt(e.target);
    if (!hit) return;
    tooltip.show(hit.span, [
      tipRow("pos", String(hit.pos)),
      h("div", { class: "iw-tip-token" }, [fillToken(h("span"), tokens[hit.pos])]),
      tipRow("activation", fmt(acts[hit.pos])),
    ]);
  });
  strip.addEventListener("mouseleave", () => tooltip.hide());

  corrPanel.addEventListener("click", (e) => {
    const row = (e.target as Element | null)?.closest?.(".iw-nv-corr-row") as HTMLElement | null;
    if (row) go(model.get("layer"), Number(row.dataset.neuron));
  });

  const showAttribution = async (pos: number) => {
    attrPos = pos;
    strip.querySelectorAll(".iw-nv-center").forEach((s) => s.classList.remove("iw-nv-center"));
    strip.querySelector(`.iw-token[data-pos="${pos}"]`)?.classList.add("iw-nv-center");
    const mine = seq;
    const r = await ask<Attribution>(ctx, "attribution", { pos });
    if (!r || mine !== seq || pos !== attrPos) return;
    const parts = f32(r.contributions);
    const order = Array.from(parts.keys()).sort((a, b) => Math.abs(parts[b]) - Math.abs(parts[a])).slice(0, 12);
    const top = Math.abs(parts[order[0]] ?? 1);
    const gxi = f32(r.grad_x_input);
    const gScale = chooseScale(gxi, { cmap: "diverging", center: 0 });
    attrPanel.replaceChildren(
      attrPanel.firstChild!,
      h("div", { class: "iw-muted", text: `${r.kind || "pre-activation"} at pos ${pos} (${tokens[pos] ?? ""}) = ${fmt(r.pre)}; largest parts:` }),
      valueTable(
        "iw-nv-attr-table",
        ["component", "contribution", ""],
        order.map((i) => [h("span", { text: r.labels[i] }), fmt(parts[i]), signedBar(parts[i], top)]),
      ),
      h("div", { class: "iw-muted", text: "gradient x input per token:" }),
      h("div", { class: "iw-nv-gxi" }, [heatTokens(tokens, gxi, gScale, pos)]),
    );
  };

  const intervene = async () => {
    const mine = seq;
    const targets: string[] = model.get("targets");
    const [ab, mod] = await Promise.all([
      ask<Ablation>(ctx, "ablate", { mode: modeSel.value }),
      ask<Modulation>(ctx, "modulate", { scale: Number(scaleIn.value) }),
    ]);
    if (mine !== seq || !ab || !mod) return;
    const clean = f32(ab.clean);
    const ablated = f32(ab.ablated);
    const scaled = f32(mod.probs);
    const topProbs = f32(mod.top.probs);
    interResult.replaceChildren(
      valueTable(
        "iw-nv-inter-table",
        ["token", "clean", `${modeSel.value}-ablated`, `scaled x${scaleIn.value}`],
        targets.map((t, i) => [tokenCell(t), fmt(clean[i]), fmt(ablated[i]), fmt(scaled[i])]),
        (i) => ({ "data-target": targets[i] }),
      ),
      h("div", { class: "iw-muted", text: `mean loss change over the text when ablated: ${fmt(ab.d_loss)}` }),
      topkTable(mod.top.tokens.map((t, i) => ({ token: t, prob: topProbs[i] })), `top next tokens, activation x${scaleIn.value}`),
    );
  };
  modeSel.addEventListener("change", intervene);
  scaleIn.addEventListener("input", () => {
    scaleText.textContent = `x${scaleIn.value}`;
    clearTimeout(scaleTimer);
    scaleTimer = setTimeout(intervene, 60);
  });
  let scaleTimer: ReturnType<typeof setTimeout> | undefined;
  targetsIn.addEventListener("change", async () => {
    if (!ctx.live) return;
    if (await ask(ctx, "set_targets", { targets: targetsIn.value })) intervene();
  });
  targetsIn.addEventListener("keydown", (e) => e.stopPropagation());

  const showExamples = async () => {
    const key = `${model.get("layer")}:${model.get("neuron")}`;
    if (key === shownKey) return;
    shownKey = key;
    examplesLoading(topPanel, bucketPanel);
    const r = await ask<{ top: Example[]; buckets: Bucket[] }>(ctx, "examples", {});
    if (!r || key !== shownKey) return;
    fillExamples(topPanel, bucketPanel, r, scale, "no corpus: pass corpus= or scan= to NeuronView");
  };

  const redraw = () => {
    seq++;
    const layer: number = model.get("layer");
    const neuron: number = model.get("neuron");
    const stats = model.get("stats") as Record<string, number | boolean>;
    tokens = model.get("text_tokens");
    acts = f32(model.get("text_acts"));
    const max = typeof stats.max === "number" ? stats.max : 0;
    scale = chooseScale([...acts, max], { cmap: "auto", center: 0 });
    title.textContent = `Layer ${layer}, neuron ${neuron}`;
    layerIn.value = String(layer);
    neuronIn.value = String(neuron);
    statsLine.textContent =
      typeof stats.mean === "number"
        ? `mean ${fmt(stats.mean)} · std ${fmt(stats.std as number)} · density ${fmt(stats.density as number)} · max ${fmt(max)} over ${stats.n_tokens} tokens${stats.partial ? " (partial scan)" : ""}`
        : "no corpus scan";
    if (document.activeElement !== textIn) textIn.value = model.get("text");
    strip.replaceChildren(heatTokens(tokens, acts, scale));
    legendSlot.replaceChildren(legend(scale, "activation"));

    fillHistogram(histPanel, model.get("histogram"));
    fillLogitEffect(logitPanel, model.get("logit_effect"));
    const corr = model.get("correlated") as [number, number][];
    corrPanel.replaceChildren(
      corrPanel.firstChild!,
      corr.length
        ? valueTable("iw-nv-corr", ["neuron", "Pearson r"], corr.map(([n, r]) => [h("span", { text: `N${n}` }), fmt(r)]), (i) => ({
            class: "iw-nv-corr-row",
            "data-neuron": corr[i][0],
          }))
        : h("div", { class: "iw-muted", text: "no correlation statistics (needs a corpus scan)" }),
    );

    const modes: string[] = model.get("modes");
    const mode = modes.includes(modeSel.value) ? modeSel.value : modes[modes.length > 1 ? 1 : 0];
    modeSel.replaceChildren(...modes.map((m) => h("option", { text: m, attrs: { value: m } })));
    modeSel.value = mode;
    const scales: number[] = model.get("scales");
    scaleIn.min = String(scales[0]);
    scaleIn.max = String(scales[scales.length - 1]);
    scaleIn.step = String(scales.length > 1 ? scales[1] - scales[0] : 1);
    if (!scaleIn.dataset.touched) scaleIn.value = "1";
    scaleText.textContent = `x${scaleIn.value}`;
    if (document.activeElement !== targetsIn) targetsIn.value = (model.get("targets") as string[]).join(",");

    showExamples();
    showAttribution(Math.max(0, tokens.length - 1));
    intervene();
  };
  scaleIn.addEventListener("change", () => (scaleIn.dataset.touched = "1"));

  redraw();
  model.on("change:_rev", redraw);
  model.on("change:targets", intervene);
  return () => {
    cancelTyping();
    clearTimeout(scaleTimer);
    model.off("change:_rev", redraw);
    model.off("change:targets", intervene);
  };
};
