// PromptFeatures: the SAE features on one prompt. Click a token to rank the features active
// there; pick a feature to colour the prompt by it; a slider ablates / clamps it.
// State: prompt, can_rerun, tokens string[], token_max float32 [pos], pos, by, target,
// active [feature, activation, contribution][], stops number[], hook, _rev.
// Requests: "set_prompt" {prompt}, "select" {pos, by, target} (kernel only);
// "feature_acts" {feature} -> {feature, acts float32 [pos]};
// "intervene" {feature, stop, pos} -> {pos, value, kl, before, after: {tokens, probs float32}}:
// the next-token distribution after the selected token pos.
import type { EncodedArray } from "../codec";
import { f32, heatTokens, panel, signedBar, valueTable } from "../components/dashboard";
import { fmt, h, select } from "../components/dom";
import { sendAsTyped } from "../components/prompt";
import { chooseScale, legend } from "../components/scale";
import { topkTable } from "../components/table";
import { ask, type View } from "../view";

interface Preds {
  tokens: string[];
  probs: EncodedArray;
}
interface Intervention {
  pos?: number;
  value: number;
  kl: number;
  before: Preds;
  after: Preds;
}

const DEBOUNCE_MS = 400;

export const promptFeatures: View = (ctx) => {
  const { model, root } = ctx;

  const promptIn = ctx.needsKernel(
    h("textarea", { class: "iw-input iw-nv-text iw-pf-prompt", attrs: { rows: 2, "aria-label": "prompt", "data-lm-suppress-shortcuts": "true" } }),
  );
  const bySel = ctx.needsKernel(select("iw-pf-by", [["activation", "rank by activation"], ["logit", "rank by logit contribution"]]));
  bySel.setAttribute("aria-label", "rank by");
  const targetIn = ctx.needsKernel(
    h("input", { class: "iw-input iw-pf-target", attrs: { type: "text", placeholder: "top prediction", "aria-label": "target token" } }),
  );
  const caption = h("div", { class: "iw-muted iw-pf-caption" });
  const legendSlot = h("div", { class: "iw-legend-slot" });
  const strip = h("div", { class: "iw-strip iw-nv-strip iw-pf-strip" });
  const textPanel = panel("Prompt (click a token)", "iw-pf-text", true);
  textPanel.append(
    promptIn,
    h("div", { class: "iw-toolbar", attrs: { "data-lm-suppress-shortcuts": "true" } }, [
      bySel,
      h("label", { class: "iw-field" }, [h("span", { text: "target" }), targetIn]),
      legendSlot,
    ]),
    caption,
    strip,
  );
  const activePanel = panel("Active features at the token (click one)", "iw-pf-active");
  const slider = h("input", { class: "iw-pf-slider", attrs: { type: "range", min: 0, step: 1, "aria-label": "clamp" } }) as HTMLInputElement;
  const sliderText = h("span", { class: "iw-pf-slider-value" });
  const result = h("div", { class: "iw-pf-result" });
  const interPanel = panel("Clamp the feature (0 = ablate): next token after the selected token", "iw-pf-intervene");
  interPanel.append(h("div", { class: "iw-controls" }, [h("label", { class: "iw-field" }, [h("span", { text: "clamp" }), slider, sliderText])]), result);
  root.append(textPanel, h("div", { class: "iw-nv-grid" }, [activePanel, interPanel]));

  let feature = -1;
  let seq = 0;

  const paint = (values: Float32Array, label: string) => {
    const tokens: string[] = model.get("tokens");
    const scale = chooseScale([0, ...values], { cmap: "sequential" });
    strip.replaceChildren(heatTokens(tokens, values, scale, model.get("pos")));
    legendSlot.replaceChildren(legend(scale, label));
  };

  const intervene = async () => {
    if (feature < 0) return;
    const mine = seq;
    const stop = Number(slider.value);
    const pos: number = model.get("pos");
    const r = await ask<Intervention>(ctx, "intervene", { feature, stop, pos });
    if (!r || mine !== seq || stop !== Number(slider.value)) return;
    const tokens: string[] = model.get("tokens");
    const stops: number[] = model.get("stops");
    sliderText.textContent = stop === 0 ? "ablated" : `${fmt(r.value)} (x${stops[stop]} of its max)`;
    const rows = (p: Preds) => {
      const probs = f32(p.probs);
      return p.tokens.map((t, i) => ({ token: t, prob: probs[i] }));
    };
    result.replaceChildren(
      h("div", { class: "iw-muted iw-pf-at", text: `after token ${r.pos ?? pos}: ${JSON.stringify(tokens[r.pos ?? pos] ?? "")}` }),
      topkTable(rows(r.before), "clean"),
      topkTable(rows(r.after), `feature #${feature} ${stop === 0 ? "ablated" : `clamped to ${fmt(r.value)}`}`),
      h("div", { class: "iw-muted", text: `KL(edited ‖ clean) = ${fmt(r.kl)} nats` }),
    );
  };

  const pick = async (f: number) => {
    feature = f;
    const mine = ++seq;
    activePanel.querySelectorAll(".iw-pf-row").forEach((r) => r.classList.toggle("iw-hit", Number((r as HTMLElement).dataset.feature) === f));
    const r = await ask<{ feature: number; acts: EncodedArray }>(ctx, "feature_acts", { feature: f });
    if (!r || mine !== seq) return;
    paint(f32(r.acts), `feature #${f}`);
    caption.textContent = `coloured by feature #${f}; the outlined token is the one the list ranks`;
    intervene();
  };

  const redraw = () => {
    seq++;
    feature = -1;
    if (document.activeElement !== promptIn) promptIn.value = model.get("prompt");
    bySel.value = model.get("by");
    if (document.activeElement !== targetIn) targetIn.value = model.get("target");
    paint(f32(model.get("token_max")), "largest feature activation");
    caption.textContent = "coloured by the largest feature activation at each token";
    const active = model.get("active") as [number, number, number][];
    const big = Math.max(...active.map((r) => Math.abs(r[2])), 1e-9);
    const tokens: string[] = model.get("tokens");
    const pos: number = model.get("pos");
    activePanel.replaceChildren(
      activePanel.firstChild!,
      h("div", { class: "iw-muted", text: `token ${pos}: "${tokens[pos] ?? ""}" (${model.get("hook")})` }),
      active.length
        ? valueTable(
            "iw-pf-table",
            ["feature", "activation", "logit contribution", ""],
            active.map(([f, a, c]) => [h("span", { text: `#${f}` }), fmt(a), fmt(c), signedBar(c, big)]),
            (i) => ({ class: "iw-pf-row", "data-feature": active[i][0] }),
          )
        : h("div", { class: "iw-muted", text: "no feature is active at this token" }),
    );
    const stops: number[] = model.get("stops");
    slider.max = String(stops.length - 1);
    if (!slider.dataset.touched) slider.value = String(stops.indexOf(1) >= 0 ? stops.indexOf(1) : 0);
    result.replaceChildren(h("div", { class: "iw-muted", text: "pick a feature to clamp it" }));
    if (active.length) pick(active[0][0]);
  };

  strip.addEventListener("click", async (e) => {
    const span = (e.target as Element | null)?.closest?.(".iw-token") as HTMLElement | null;
    if (!span || !ctx.live) return;
    ctx.clearError();
    await ask(ctx, "select", { pos: Number(span.dataset.pos), by: bySel.value, target: targetIn.value });
  });
  activePanel.addEventListener("click", (e) => {
    const row = (e.target as Element | null)?.closest?.(".iw-pf-row") as HTMLElement | null;
    if (row) pick(Number(row.dataset.feature));
  });
  const reselect = () => {
    if (!ctx.live) return;
    ctx.clearError();
    ask(ctx, "select", { pos: model.get("pos"), by: bySel.value, target: targetIn.value });
  };
  bySel.addEventListener("change", reselect);
  targetIn.addEventListener("change", reselect);
  targetIn.addEventListener("keydown", (e) => e.stopPropagation());
  const cancelTyping = sendAsTyped(ctx, promptIn, "set_prompt", "prompt", DEBOUNCE_MS);
  let sliderTimer: ReturnType<typeof setTimeout> | undefined;
  slider.addEventListener("input", () => {
    slider.dataset.touched = "1";
    clearTimeout(sliderTimer);
    sliderTimer = setTimeout(intervene, 60);
  });

  redraw();
  model.on("change:_rev", redraw);
  return () => {
    cancelTyping();
    clearTimeout(sliderTimer);
    model.off("change:_rev", redraw);
  };
};
