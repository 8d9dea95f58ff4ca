// A labelled heatmap grid [rows, cols] of values: sticky row and column labels, one cell per value
// coloured on a scale (classes from scale.ts), optional short text in each cell. Reuses the logit
// lens's grid styles (iw-lens-grid / iw-lens-cell). Hover and click are left to the caller
// through the cells' data-row / data-col attributes.
import { h } from "./dom";
import { paintClass, type Scale } from "./scale";
import { fillToken } from "./tokens";

export interface HeatGridOptions {
  rows: string[];
  /** column headers: text (tokens are shown with visible whitespace) or ready-made nodes */
  cols: (string | Node)[];
  corner?: string;
  /** extra attributes of every cell, e.g. {"data-component": "resid_pre"} */
  attrs?: Record<string, string>;
  /** cell text from the value; default: 2 decimals */
  text?: (v: number) => string;
}

export interface HeatGrid {
  el: HTMLElement;
  cells: HTMLElement[];
  /** Recolour (and relabel) every cell from `values` [rows * cols]. */
  paint(values: ArrayLike<number>, scale: Scale): void;
}

export const cellText = (v: number): string => (Number.isFinite(v) ? (Math.abs(v) >= 100 ? v.toPrecision(2) : v.toFixed(2)) : "");

export function heatGrid(opts: HeatGridOptions): HeatGrid {
  const R = opts.rows.length;
  const C = opts.cols.length;
  const grid = h("div", { class: "iw-lens-grid iw-heatgrid", attrs: { role: "grid", ...(opts.attrs ?? {}) } });
  grid.style.setProperty("--n-pos", String(C));
  grid.style.gridTemplateColumns = `max-content repeat(${C}, minmax(40px, max-content))`;
  const frag = document.createDocumentFragment();
  frag.append(h("span", { class: "iw-lens-corner", text: opts.corner ?? "" }));
  opts.cols.forEach((c, j) => {
    const head = h("span", { class: "iw-token iw-col-label", attrs: { "data-col": j } });
    if (typeof c === "string") fillToken(head, c);
    else head.append(c);
    frag.append(head);
  });
  const cells: HTMLElement[] = [];
  opts.rows.forEach((name, r) => {
    frag.append(h("span", { class: "iw-row-label", text: name }));
    for (let j = 0; j < C; j++) {
      const cell = h("span", { class: "iw-lens-cell", attrs: { "data-row": r, "data-col": j, ...(opts.attrs ?? {}) } });
      cells.push(cell);
      frag.append(cell);
    }
  });
  grid.append(frag);
  const text = opts.text ?? cellText;
  return {
    el: grid,
    cells,
    paint(values, scale) {
      for (let i = 0; i < R * C; i++) {
        const keep = cells[i].classList.contains("iw-selected") ? " iw-selected" : "";
        cells[i].className = `iw-lens-cell ${paintClass(scale, values[i])}${keep}`;
        cells[i].textContent = text(values[i]);
      }
    },
  };
}

/** The grid cell under an event target, with its row and column. */
export function gridCellAt(target: EventTarget | null): { cell: HTMLElement; row: number; col: number } | null {
  const cell = (target as Element | null)?.closest?.(".iw-heatgrid .iw-lens-cell") as HTMLElement | null;
  if (!cell) return null;
  return { cell, row: Number(cell.dataset.row), col: Number(cell.dataset.col) };
}

/** A column header showing a clean token and, when it differs, the corrupt one below it. */
export function pairHeader(clean: string, corrupt: string): HTMLElement {
  const el = h("span", { class: "iw-pair" });
  fillToken(el, clean);
  if (corrupt !== clean) {
    const alt = h("span", { class: "iw-muted iw-pair-alt" });
    alt.style.display = "block";
    el.append(fillToken(alt, corrupt));
  }
  return el;
}
