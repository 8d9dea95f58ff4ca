// One floating tooltip per widget, positioned inside the widget root (which is position: relative).
import { h } from "./dom";

export class Tooltip {
  readonly el = h("div", { class: "iw-tooltip", attrs: { role: "tooltip", hidden: true } });

  constructor(private root: HTMLElement) {
    root.append(this.el);
  }

  /** Show `content` under `anchor` (or above it when there is no room below). */
  show(anchor: Element, content: Node[]): void {
    this.el.replaceChildren(...content);
    this.el.hidden = false;
    this.place(anchor);
  }

  /** Re-place after the content grew (e.g. predictions arrived). */
  place(anchor: Element): void {
    const r = anchor.getBoundingClientRect();
    const base = this.root.getBoundingClientRect();
    const tip = this.el.getBoundingClientRect();
    let left = r.left - base.left;
    const maxLeft = Math.max(0, this.root.clientWidth - tip.width - 4);
    if (left > maxLeft) left = maxLeft;
    let top = r.bottom - base.top + 4;
    if (r.bottom + tip.height + 8 > window.innerHeight && r.top - base.top - tip.height - 4 > 0) {
      top = r.top - base.top - tip.height - 4;
    }
    this.el.style.left = `${Math.max(0, left)}px`;
    this.el.style.top = `${top}px`;
  }

  hide(): void {
    this.el.hidden = true;
  }
}

/** A row "label value" for tooltips. */
export function tipRow(label: string, value: string | Node, cls = ""): HTMLElement {
  return h("div", { class: `iw-tip-row ${cls}` }, [h("span", { class: "iw-tip-key", text: label }), value]);
}
