// table.iw-topk: one row per token (rank, token, probability); the title goes in the caption.
import { fmt, h } from "./dom";
import { fillToken } from "./tokens";

export interface TopkRow {
  token: string;
  prob: number;
}

export function topkTable(rows: TopkRow[], caption: string, highlight?: string | null): HTMLTableElement {
  const body = h(
    "tbody",
    {},
    rows.map((r, i) =>
      h("tr", { class: highlight != null && r.token === highlight ? "iw-hit" : "" }, [
        h("td", { class: "iw-rank", text: String(i + 1) }),
        h("td", { class: "iw-topk-token" }, [fillToken(h("span", { class: "iw-tok-text" }), r.token)]),
        h("td", { class: "iw-num", text: fmt(r.prob) }),
        h("td", { class: "iw-bar-cell" }, [barFor(r.prob)]),
      ]),
    ),
  );
  return h("table", { class: "iw-topk" }, [h("caption", { text: caption }), body]);
}

function barFor(p: number): HTMLElement {
  const bar = h("span", { class: "iw-bar" });
  bar.style.width = `${Math.round(Math.max(0, Math.min(1, p)) * 100)}%`;
  return bar;
}
