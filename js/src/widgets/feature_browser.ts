// FeatureBrowser: the features of an SAE, a searchable list on the left and one feature's
// dashboard on the right (panels shared with NeuronView).
// State: feature, n_features, hook, stats {density, max, top_token, n_tokens, n_docs, partial} | {},
// histogram {counts, edges} | null, logit_effect {top, bottom: [token, effect][]}, nearest
// [feature, cosine][], explanation {text, score} | null, sorts string[], page_size, _rev.
// Requests: "list" {query, sort, offset, limit} -> {total, offset, ids int32, density, max float32
// | null, labels string[]}; "select" {feature} (kernel only); "examples" {} -> {top, buckets}.
import { decodeArray, type EncodedArray } from "../codec";
import {
  type Bucket,
  type Example,
  examplesLoading,
  f32,
  fillExamples,
  fillHistogram,
  fillLogitEffect,
  panel,
  tokenCell,
  valueTable,
} from "../components/dashboard";
import { fmt, h, select } from "../components/dom";
import { chooseScale } from "../components/scale";
import { ask, type View } from "../view";

interface Page {
  total: number;
  offset: number;
  ids: EncodedArray;
  density: EncodedArray | null;
  max: EncodedArray | null;
  labels: string[];
}

const DEBOUNCE_MS = 250;

export const featureBrowser: View = (ctx) => {
  const { model, root } = ctx;

  // -- the list: search box, sort, one page of rows, paging -------------------------------------
  const search = h("input", {
    class: "iw-input iw-fb-search",
    attrs: { type: "search", placeholder: "id, top token or explanation", "aria-label": "search features" },
  }) as HTMLInputElement;
  const sorts: string[] = model.get("sorts");
  const sortSel = select("iw-fb-sort", sorts.map((s) => [s, `by ${s}`]), sorts[0]);
  sortSel.setAttribute("aria-label", "sort");
  const prevPage = h("button", { class: "iw-button iw-fb-prev", text: "◀", attrs: { type: "button", "aria-label": "previous page" } });
  const nextPage = h("button", { class: "iw-button iw-fb-next", text: "▶", attrs: { type: "button", "aria-label": "next page" } });
  const count = h("span", { class: "iw-muted iw-fb-count" });
  const rows = h("div", { class: "iw-fb-rows", attrs: { role: "listbox" } });
  const list = h("section", { class: "iw-fb-list" }, [
    h("div", { class: "iw-toolbar", attrs: { "data-lm-suppress-shortcuts": "true" } }, [search, sortSel]),
    rows,
    h("div", { class: "iw-toolbar" }, [prevPage, count, nextPage]),
  ]);

  // -- the feature's panels ------------------------------------------------------------------------
  const title = h("span", { class: "iw-nv-title iw-fb-title" });
  const statsLine = h("span", { class: "iw-nv-stats iw-muted" });
  const explain = h("div", { class: "iw-fb-explanation" });
  const histPanel = panel("Activation histogram", "iw-nv-histogram");
  const logitPanel = panel("Logit effect (direction @ W_U)", "iw-nv-logits");
  const nearPanel = panel("Nearest features by decoder cosine (click to open)", "iw-fb-nearest");
  const topPanel = panel("Top activations in the corpus", "iw-nv-top", true);
  const bucketPanel = panel("Samples by activation bucket (quantile groups)", "iw-nv-buckets", true);
  const detail = h("section", { class: "iw-fb-detail" }, [
    h("div", { class: "iw-toolbar" }, [title, statsLine]),
    explain,
    h("div", { class: "iw-nv-grid" }, [histPanel, logitPanel, nearPanel, topPanel, bucketPanel]),
  ]);
  root.append(h("div", { class: "iw-fb" }, [list, detail]));

  let offset = 0;
  let listSeq = 0;
  let shownKey = "";

  const go = async (feature: number) => {
    if (!ctx.live || feature === model.get("feature")) return;
    ctx.clearError();
    await ask(ctx, "select", { feature });
  };

  const loadPage = async () => {
    const mine = ++listSeq;
    const size: number = model.get("page_size");
    const page = await ask<Page>(ctx, "list", { query: search.value, sort: sortSel.value, offset, limit: size });
    if (!page || mine !== listSeq) return;
    const ids = decodeArray(page.ids).data as Int32Array;
    const dens = page.density ? f32(page.density) : null;
    const max = page.max ? f32(page.max) : null;
    const current: number = model.get("feature");
    rows.replaceChildren(
      ...Array.from(ids, (id, i) =>
        h(
          "div",
          {
            class: `iw-fb-row${id === current ? " iw-hit" : ""}`,
            attrs: { role: "option", "data-feature": id, "aria-selected": id === current },
          },
          [
            h("span", { class: "iw-fb-id", text: `#${id}` }),
            tokenCell(page.labels[i] ?? ""),
            h("span", { class: "iw-num iw-muted", text: dens ? `d ${fmt(dens[i])}` : "" }),
            h("span", { class: "iw-num iw-muted", text: max ? `max ${fmt(max[i])}` : "" }),
          ],
        ),
      ),
    );
    if (!ids.length) rows.append(h("div", { class: "iw-muted", text: "no feature matches" }));
    count.textContent = page.total ? `${page.offset + 1}-${page.offset + ids.length} of ${page.total}` : "0 of 0";
    prevPage.disabled = page.offset === 0;
    nextPage.disabled = page.offset + ids.length >= page.total;
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      offset = 0;
      loadPage();
    }, DEBOUNCE_MS);
  });
  search.addEventListener("keydown", (e) => e.stopPropagation());
  sortSel.addEventListener("change", () => {
    offset = 0;
    loadPage();
  });
  prevPage.addEventListener("click", () => {
    offset = Math.max(0, offset - model.get("page_size"));
    loadPage();
  });
  nextPage.addEventListener("click", () => {
    offset += model.get("page_size");
    loadPage();
  });
  rows.addEventListener("click", (e) => {
    const row = (e.target as Element | null)?.closest?.(".iw-fb-row") as HTMLElement | null;
    if (row) go(Number(row.dataset.feature));
  });
  nearPanel.addEventListener("click", (e) => {
    const row = (e.target as Element | null)?.closest?.(".iw-fb-near-row") as HTMLElement | null;
    if (row) go(Number(row.dataset.feature));
  });

  const showExamples = async (max: number) => {
    const key = String(model.get("feature"));
    if (key === shownKey) return;
    shownKey = key;
    examplesLoading(topPanel, bucketPanel);
    const r = await ask<{ top: Example[]; buckets: Bucket[] }>(ctx, "examples", {});
    if (!r || key !== shownKey) return;
    const scale = chooseScale([0, max || 1], { cmap: "sequential" });
    fillExamples(topPanel, bucketPanel, r, scale, "no corpus: pass corpus= or scan= to FeatureBrowser");
  };

  const redraw = () => {
    const feature: number = model.get("feature");
    const stats = model.get("stats") as Record<string, number | string | boolean>;
    const max = typeof stats.max === "number" ? stats.max : 0;
    title.textContent = `Feature ${feature} of ${model.get("n_features")} (${model.get("hook")})`;
    statsLine.textContent =
      typeof stats.density === "number"
        ? `density ${fmt(stats.density)} · max ${fmt(max)} · top token "${stats.top_token}" over ${stats.n_tokens} tokens${stats.partial ? " (partial scan)" : ""}`
        : "no corpus scan";
    const ex = model.get("explanation") as { text: string; score: number | null } | null;
    explain.replaceChildren(
      ...(ex ? [h("span", { class: "iw-fb-expl-text", text: ex.text }), h("span", { class: "iw-muted", text: ex.score == null ? "" : ` (score ${fmt(ex.score)})` })] : []),
    );
    fillHistogram(histPanel, model.get("histogram"));
    fillLogitEffect(logitPanel, model.get("logit_effect"));
    const near = model.get("nearest") as [number, number][];
    nearPanel.replaceChildren(
      nearPanel.firstChild!,
      valueTable("iw-fb-near", ["feature", "cosine"], near.map(([f, c]) => [h("span", { text: `#${f}` }), fmt(c)]), (i) => ({
        class: "iw-fb-near-row",
        "data-feature": near[i][0],
      })),
    );
    rows.querySelectorAll(".iw-fb-row").forEach((r) => {
      const on = Number((r as HTMLElement).dataset.feature) === feature;
      r.classList.toggle("iw-hit", on);
      r.setAttribute("aria-selected", String(on));
    });
    showExamples(max);
  };

  redraw();
  loadPage();
  model.on("change:_rev", redraw);
  return () => {
    clearTimeout(timer);
    model.off("change:_rev", redraw);
  };
};
