// AutoInterpTable: units with their explanations and scores; sort by a header, filter by text,
// click a row to open the unit in the kernel (when the table has an opener: can_open).
// State: columns {model, source, explainer, kind, explanation: string[]; unit int32 [n];
// <score> float32 [n]; <score>_low, <score>_high float32 [n]: its 95% interval, NaN if none},
// score_names, n_rows, sort, descending, filter, selected, can_open, _rev.
// Requests: "open" {row} -> {unit, source, shown} (kernel only).
import { decodeArray, type EncodedArray } from "../codec";
import { fmtEstimate, h } from "../components/dom";
import { explainerBadge, explanationText, topAndRandomDiffers } from "../components/explain";
import { ask, type View } from "../view";

const MAX_SHOWN = 500;
// [score, header, what it is]. "top+rand" is left out when it equals "corr" in every row, which
// it does whenever every scored record is a top or a random one (see topAndRandomDiffers).
const SCORE_COLUMNS: [string, string, string][] = [
  ["correlation", "corr", "Pearson correlation of true and simulated activations, all held-out records pooled"],
  ["top_and_random", "top+rand", "the same correlation over the top and random records only"],
  ["top", "top", "the correlation over the top-activating records alone"],
  ["random", "random", "the correlation over the random records alone"],
  ["detection_auc", "detect AUC", "ROC AUC of telling firing records from non-firing random ones"],
  ["fuzzing_auc", "fuzz AUC", "ROC AUC of telling correctly marked tokens from randomly marked ones"],
];

export const autointerpTable: View = (ctx) => {
  const { model, root } = ctx;
  const filterIn = h("input", {
    class: "iw-input iw-ai-filter",
    attrs: { type: "search", placeholder: "filter: explanation, explainer, unit…", "aria-label": "filter", "data-lm-suppress-shortcuts": "true" },
  }) as HTMLInputElement;
  const count = h("span", { class: "iw-ai-count iw-muted" });
  const table = h("table", { class: "iw-nv-table iw-ai-table" });
  const note = h("div", { class: "iw-muted iw-ai-note" });
  root.append(h("div", { class: "iw-toolbar" }, [filterIn, count]), h("div", { class: "iw-ai-scroll" }, [table]), note);
  filterIn.addEventListener("keydown", (e) => e.stopPropagation());

  let cols: Record<string, any> = {};
  let units: Int32Array = new Int32Array(0);
  const scores: Record<string, Float32Array> = {};
  const bounds: Record<string, Float32Array> = {}; // <score>_low / <score>_high
  let shown: [string, string, string][] = SCORE_COLUMNS;
  let sortKey: string = model.get("sort");
  let desc: boolean = model.get("descending");

  const load = () => {
    cols = model.get("columns") ?? {};
    units = cols.unit ? (decodeArray(cols.unit as EncodedArray).data as Int32Array) : new Int32Array(0);
    for (const k of model.get("score_names") as string[]) {
      scores[k] = cols[k] ? (decodeArray(cols[k] as EncodedArray).data as Float32Array) : new Float32Array(units.length);
      for (const b of [`${k}_low`, `${k}_high`]) {
        if (cols[b]) bounds[b] = decodeArray(cols[b] as EncodedArray).data as Float32Array;
        else delete bounds[b];
      }
    }
    filterIn.value = model.get("filter") ?? "";
    const same = !topAndRandomDiffers(scores.correlation ?? [], scores.top_and_random ?? []);
    shown = SCORE_COLUMNS.filter(([k]) => !(same && k === "top_and_random"));
  };

  const keyOf = (i: number): number | string => {
    if (sortKey === "unit") return units[i];
    if (sortKey in scores) return scores[sortKey][i];
    return String((cols[sortKey] ?? [])[i] ?? "");
  };

  const rowsShown = (): number[] => {
    const q = filterIn.value.trim().toLowerCase();
    const n = units.length;
    const idx: number[] = [];
    for (let i = 0; i < n; i++) {
      if (!q) idx.push(i);
      else {
        const hay = `${cols.explanation?.[i] ?? ""} ${cols.explainer?.[i] ?? ""} ${cols.source?.[i] ?? ""} ${units[i]}`.toLowerCase();
        if (hay.includes(q)) idx.push(i);
      }
    }
    idx.sort((a, b) => {
      const x = keyOf(a);
      const y = keyOf(b);
      const xn = typeof x === "number" && Number.isNaN(x);
      const yn = typeof y === "number" && Number.isNaN(y);
      if (xn || yn) return xn === yn ? a - b : xn ? 1 : -1; // missing scores last
      const c = x < y ? -1 : x > y ? 1 : 0;
      return (desc ? -c : c) || a - b;
    });
    return idx;
  };

  const header = (key: string, label: string, what = "") => {
    const arrow = key === sortKey ? (desc ? " ▼" : " ▲") : "";
    return h("th", { class: "iw-ai-sort", text: label + arrow, attrs: { "data-sort": key, role: "button", title: what ? `${what}; click to sort` : "sort" } });
  };

  const draw = () => {
    const idx = rowsShown();
    const selected = model.get("selected");
    const head = h("thead", {}, [
      h("tr", {}, [header("unit", "unit"), header("source", "source"), header("explanation", "explanation"), ...shown.map(([k, l, what]) => header(k, l, what))]),
    ]);
    const body = h(
      "tbody",
      {},
      idx.slice(0, MAX_SHOWN).map((i) =>
        h("tr", { class: `iw-ai-row${i === selected ? " iw-selected" : ""}`, attrs: { "data-row": i, tabindex: 0 } }, [
          h("td", { class: "iw-num", text: String(units[i]) }),
          h("td", { class: "iw-ai-source", text: cols.source?.[i] ?? "" }),
          h("td", { class: "iw-ai-explanation" }, [explainerBadge(cols.kind?.[i] ?? "", cols.explainer?.[i] ?? ""), h("span", { text: explanationText(cols.kind?.[i] ?? "", cols.explanation?.[i] ?? "") })]),
          ...shown.map(([k]) => h("td", { class: "iw-num", text: fmtEstimate(scores[k]?.[i] ?? NaN, bounds[`${k}_low`]?.[i], bounds[`${k}_high`]?.[i]) })),
        ]),
      ),
    );
    table.replaceChildren(head, body);
    count.textContent = `${idx.length} of ${units.length} units`;
    const opens = ctx.live && model.get("can_open");
    table.classList.toggle("iw-ai-opens", Boolean(opens));
    note.textContent = idx.length > MAX_SHOWN ? `showing the first ${MAX_SHOWN}; filter to narrow` : opens ? "click a row to open the unit" : "";
  };

  table.addEventListener("click", async (e) => {
    const target = e.target as Element | null;
    const th = target?.closest?.("th[data-sort]") as HTMLElement | null;
    if (th) {
      const key = th.dataset.sort!;
      desc = key === sortKey ? !desc : key !== "unit" && key !== "source" && key !== "explanation";
      sortKey = key;
      model.set("sort", sortKey);
      model.set("descending", desc);
      model.save_changes();
      draw();
      return;
    }
    const tr = target?.closest?.("tr[data-row]") as HTMLElement | null;
    if (!tr) return;
    const row = Number(tr.dataset.row);
    table.querySelectorAll("tr.iw-selected").forEach((r) => r.classList.remove("iw-selected"));
    tr.classList.add("iw-selected");
    if (ctx.live && model.get("can_open")) {
      ctx.clearError();
      await ask(ctx, "open", { row });
    }
  });
  table.addEventListener("keydown", (e) => {
    if ((e as KeyboardEvent).key === "Enter") (e.target as HTMLElement).click();
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  filterIn.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      model.set("filter", filterIn.value);
      model.save_changes();
      draw();
    }, 150);
  });

  const redraw = () => {
    load();
    sortKey = model.get("sort");
    desc = model.get("descending");
    draw();
  };
  redraw();
  model.on("change:_rev", redraw);
  model.on("change:can_open", draw);
  return () => {
    clearTimeout(timer);
    model.off("change:_rev", redraw);
    model.off("change:can_open", draw);
  };
};
