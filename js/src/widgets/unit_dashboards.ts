// UnitDashboards: many units of one scan on one page (iw.dashboards): a searchable list, and the
// chosen unit's dashboard (panels shared with NeuronView / FeatureBrowser), fetched when opened.
// State: title, hook, n_tokens, units {ids int32, density, max float32}, labels string[].
// Requests: "unit" {unit} -> {unit, label, stats {density, max, mean, std}, histogram
// {counts, edges} | null, logit_effect {top, bottom} | null, top, bottom: Example[], buckets:
// Bucket[], random: Example[]}. In a static export each answer is its own compressed block.
import { decodeArray, type EncodedArray } from "../codec";
import { type Bucket, type Example, exampleRow, f32, fillExamples, fillHistogram, fillLogitEffect, panel, tokenCell } from "../components/dashboard";
import { fmt, h } from "../components/dom";
import { chooseScale } from "../components/scale";
import { ask, type View } from "../view";

interface UnitAnswer {
  unit: number;
  label: string;
  stats: { density: number; max: number; mean: number; std: number };
  histogram: { counts: EncodedArray; edges: EncodedArray } | null;
  logit_effect: { top: [string, number][]; bottom: [string, number][] } | null;
  top: Example[];
  bottom: Example[];
  buckets: Bucket[];
  random: Example[];
}

const SHOWN = 200;

export const unitDashboards: View = (ctx) => {
  const { model, root } = ctx;
  const units = model.get("units") as { ids: EncodedArray; density: EncodedArray; max: EncodedArray };
  const ids = decodeArray(units.ids).data as Int32Array;
  const dens = f32(units.density);
  const max = f32(units.max);
  const labels: string[] = model.get("labels");
  const lower = labels.map((l) => l.toLowerCase());

  const search = h("input", {
    class: "iw-input iw-ud-search",
    attrs: { type: "search", placeholder: "unit id or label", "aria-label": "search units" },
  }) as HTMLInputElement;
  const count = h("span", { class: "iw-muted iw-ud-count" });
  const rows = h("div", { class: "iw-fb-rows iw-ud-rows", attrs: { role: "listbox" } });
  const list = h("section", { class: "iw-fb-list" }, [h("div", { class: "iw-toolbar" }, [search, count]), rows]);

  const title = h("span", { class: "iw-nv-title iw-ud-title", text: "open a unit from the list" });
  const statsLine = h("span", { class: "iw-nv-stats iw-muted" });
  const histPanel = panel("Activation histogram", "iw-nv-histogram");
  const logitPanel = panel("Logit effect (direction @ W_U)", "iw-nv-logits");
  const topPanel = panel("Top activations in the corpus", "iw-nv-top", true);
  const bottomPanel = panel("Most negative activations", "iw-ud-bottom", true);
  const bucketPanel = panel("Samples by activation bucket (quantile groups)", "iw-nv-buckets", true);
  const randomPanel = panel("Random corpus positions (uniform sample)", "iw-ud-random", true);
  const detail = h("section", { class: "iw-fb-detail" }, [
    h("div", { class: "iw-toolbar" }, [title, statsLine]),
    h("div", { class: "iw-nv-grid" }, [histPanel, logitPanel, topPanel, bottomPanel, bucketPanel, randomPanel]),
  ]);
  root.append(h("div", { class: "iw-fb iw-ud", attrs: { "data-title": model.get("title") } }, [list, detail]));

  const fill = () => {
    const q = search.value.trim().toLowerCase();
    const hits: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      if (!q || String(ids[i]) === q || lower[i].includes(q)) hits.push(i);
    }
    if (/^\d+$/.test(q)) hits.sort((a, b) => Number(String(ids[b]) === q) - Number(String(ids[a]) === q));
    rows.replaceChildren(
      ...hits.slice(0, SHOWN).map((i) =>
        h("div", { class: "iw-fb-row iw-ud-row", attrs: { role: "option", "data-unit": ids[i] } }, [
          h("span", { class: "iw-fb-id", text: `#${ids[i]}` }),
          tokenCell(labels[i]),
          h("span", { class: "iw-num iw-muted", text: `d ${fmt(dens[i])}` }),
          h("span", { class: "iw-num iw-muted", text: `max ${fmt(max[i])}` }),
        ]),
      ),
    );
    if (!hits.length) rows.append(h("div", { class: "iw-muted", text: "no unit matches" }));
    count.textContent = `${Math.min(hits.length, SHOWN)} of ${hits.length} shown (${ids.length} units)`;
  };

  let seq = 0;
  const open = async (unit: number) => {
    const mine = ++seq;
    ctx.clearError();
    ctx.mark("iw-unit-open-start");
    const r = await ask<UnitAnswer>(ctx, "unit", { unit });
    if (!r || mine !== seq) return;
    for (const row of Array.from(rows.children)) row.classList.toggle("iw-hit", (row as HTMLElement).dataset.unit === String(unit));
    title.textContent = `unit ${r.unit}${r.label ? `: ${r.label}` : ""}`;
    const s = r.stats;
    statsLine.textContent = `density ${fmt(s.density)} · max ${fmt(s.max)} · mean ${fmt(s.mean)} · std ${fmt(s.std)} · ${model.get("n_tokens")} tokens`;
    fillHistogram(histPanel, r.histogram);
    if (r.logit_effect) fillLogitEffect(logitPanel, r.logit_effect);
    else logitPanel.replaceChildren(logitPanel.firstChild!, h("div", { class: "iw-muted", text: "no output direction given" }));
    const all = [...r.top, ...r.bottom].flatMap((e) => Array.from(f32(e.acts)));
    const scale = chooseScale(all.length ? all : [0, 1]);
    fillExamples(topPanel, bucketPanel, { top: r.top, buckets: r.buckets }, scale, "none in the corpus");
    bottomPanel.replaceChildren(bottomPanel.firstChild!, ...(r.bottom.length ? r.bottom.map((e) => exampleRow(e, scale)) : [h("div", { class: "iw-muted", text: "never negative" })]));
    randomPanel.replaceChildren(randomPanel.firstChild!, ...r.random.map((e) => exampleRow(e, scale)));
    root.dataset.unit = String(r.unit);
    ctx.mark("iw-unit-open-end");
  };

  search.addEventListener("input", fill);
  search.addEventListener("keydown", (e) => e.stopPropagation());
  rows.addEventListener("click", (e) => {
    const row = (e.target as Element | null)?.closest?.(".iw-ud-row") as HTMLElement | null;
    if (row) void open(Number(row.dataset.unit));
  });
  fill();
};
