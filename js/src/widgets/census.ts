// CensusView: one row per unit drawn by iw.census: class, score with its 95% interval,
// explanation, and (polysemantic units) the context groups, correlated units and SAE features.
// A class filter and a score sort work without the kernel.
// State: title, units int32 [n], scores float32 [n, 3] (score, low, high; NaN: not scored),
// classes, explanations, notes: string[n].
import { decodeArray, type EncodedArray } from "../codec";
import { h, select } from "../components/dom";
import type { View } from "../view";

export interface CensusRow {
  unit: number;
  cls: string;
  score: number;
  low: number;
  high: number;
  explanation: string;
  note: string;
}

export function censusRows(state: { units: EncodedArray; scores: EncodedArray; classes: string[]; explanations: string[]; notes: string[] }): CensusRow[] {
  const units = decodeArray(state.units).data;
  const s = decodeArray(state.scores).data;
  return Array.from(units, (u, i) => ({
    unit: Number(u),
    cls: state.classes[i],
    score: s[3 * i],
    low: s[3 * i + 1],
    high: s[3 * i + 2],
    explanation: state.explanations[i] ?? "",
    note: state.notes[i] ?? "",
  }));
}

/** Rows of class `cls` ("all": every row), sorted by score (unscored last) or by unit. */
export function filterSort(rows: CensusRow[], cls: string, by: "score" | "unit"): CensusRow[] {
  const kept = rows.filter((r) => cls === "all" || r.cls === cls);
  if (by === "unit") return kept.sort((a, b) => a.unit - b.unit);
  const key = (r: CensusRow) => (Number.isFinite(r.score) ? r.score : -Infinity);
  return kept.sort((a, b) => key(b) - key(a) || a.unit - b.unit);
}

const interval = (r: CensusRow) =>
  Number.isFinite(r.score) ? `${r.score.toFixed(2)} [${Number.isFinite(r.low) ? r.low.toFixed(2) : "?"}, ${Number.isFinite(r.high) ? r.high.toFixed(2) : "?"}]` : "";

export const censusView: View = (ctx) => {
  const { model, root } = ctx;
  const title = h("span", { class: "iw-inv-title" });
  const clsSel = select("iw-census-class", [["all", "all classes"], ["monosemantic", "monosemantic"], ["polysemantic", "polysemantic"], ["dense", "dense"], ["dead", "dead"]], "all");
  clsSel.setAttribute("aria-label", "class");
  const sortSel = select("iw-census-sort", [["score", "by score"], ["unit", "by unit"]], "score");
  sortSel.setAttribute("aria-label", "sort");
  const counts = h("span", { class: "iw-census-counts" });
  const body = h("tbody");
  root.append(
    h("div", { class: "iw-toolbar" }, [title, clsSel, sortSel, counts]),
    h("table", { class: "iw-table iw-census" }, [
      h("thead", {}, [h("tr", {}, ["unit", "class", "score [95% CI]", "explanation", "what it mixes"].map((t) => h("th", { text: t })))]),
      body,
    ]),
  );
  let rows: CensusRow[] = [];
  const drawRows = () => {
    const shown = filterSort([...rows], clsSel.value, sortSel.value === "unit" ? "unit" : "score");
    body.replaceChildren(
      ...shown.map((r) =>
        h("tr", { class: `iw-census-${r.cls}`, attrs: { "data-unit": r.unit } }, [
          h("td", { text: String(r.unit) }),
          h("td", { class: "iw-census-cls", text: r.cls }),
          h("td", { text: interval(r) }),
          h("td", { text: r.explanation }),
          h("td", { text: r.note }),
        ]),
      ),
    );
    const by: Record<string, number> = {};
    for (const r of rows) by[r.cls] = (by[r.cls] ?? 0) + 1;
    counts.textContent = Object.entries(by).map(([k, n]) => `${k} ${n}`).join(" · ");
  };
  const load = () => {
    title.textContent = model.get("title") || "Census";
    rows = censusRows({ units: model.get("units"), scores: model.get("scores"), classes: model.get("classes") ?? [], explanations: model.get("explanations") ?? [], notes: model.get("notes") ?? [] });
    drawRows();
  };
  clsSel.addEventListener("change", drawRows);
  sortSel.addEventListener("change", drawRows);
  load();
  model.on("change:_rev", load);
  model.on("change:units", load);
};
