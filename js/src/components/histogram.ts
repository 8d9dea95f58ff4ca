// A bar histogram of counts over given bin edges (bins drawn equally wide, so a log-spaced grid
// reads as a log axis); bar heights on a log scale so rare tails stay visible.
import { fmt, h } from "./dom";

export interface HistogramOptions {
  /** label under the bars */
  label?: string;
  /** mark this value (e.g. the current token's activation) with a line */
  marker?: number | null;
}

/** div.iw-hist: one span.iw-hist-bar per bin (title = range and count), end labels below. */
export function histogram(counts: ArrayLike<number>, edges: ArrayLike<number>, opts: HistogramOptions = {}): HTMLElement {
  const n = counts.length;
  let peak = 0;
  for (let i = 0; i < n; i++) peak = Math.max(peak, counts[i]);
  const top = Math.log1p(peak) || 1;
  const bars = h("div", { class: "iw-hist-bars", attrs: { role: "img", "aria-label": opts.label ?? "histogram" } });
  for (let i = 0; i < n; i++) {
    const bar = h("span", {
      class: "iw-hist-bar",
      title: `${fmt(edges[i])} .. ${fmt(edges[i + 1])}: ${counts[i]}`,
      attrs: { "data-bin": i, "data-count": counts[i] },
    });
    bar.style.height = `${(100 * Math.log1p(counts[i])) / top}%`;
    bars.append(bar);
  }
  if (opts.marker != null && Number.isFinite(opts.marker) && n > 0) {
    let i = 0;
    while (i < n - 1 && edges[i + 1] <= opts.marker) i++;
    const mark = h("span", { class: "iw-hist-marker", title: `current: ${fmt(opts.marker)}` });
    mark.style.left = `${(100 * (i + 0.5)) / n}%`;
    bars.append(mark);
  }
  const axis = h("div", { class: "iw-hist-axis iw-muted" }, [
    h("span", { text: n ? fmt(edges[0]) : "" }),
    h("span", { text: opts.label ?? "" }),
    h("span", { text: n ? fmt(edges[n]) : "" }),
  ]);
  return h("div", { class: "iw-hist" }, [bars, axis]);
}
