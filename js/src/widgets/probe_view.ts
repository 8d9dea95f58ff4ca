// ProbeView: held-out accuracy (or F1) of k-sparse probes against k (log2 axis), one line per
// basis, its dense probe as a dashed line.
// State: bases [{name, selection, n_units, n_train, n_test, k int32, accuracy float32, f1
// float32, f1_low / f1_high float32 (95% interval, NaN if none), dense_accuracy, dense_f1:
// number|null, dense_f1_ci: [low, high]|null, split: how the rows were split, units int32[][]}],
// metric, title.
import { decodeArray, type EncodedArray } from "../codec";
import { fmtEstimate, h, select } from "../components/dom";
import type { View } from "../view";

interface Basis {
  name: string;
  selection: string;
  n_units: number;
  n_train: number;
  n_test: number;
  k: EncodedArray;
  accuracy: EncodedArray;
  f1: EncodedArray;
  dense_accuracy: number | null;
  dense_f1: number | null;
  f1_low?: EncodedArray;
  f1_high?: EncodedArray;
  dense_f1_ci?: [number, number] | null;
  split?: string;
  units: EncodedArray[];
}

const NS = "http://www.w3.org/2000/svg";
const W = 560;
const H = 320;
const M = { left: 48, right: 16, top: 16, bottom: 40 };

function svg(tag: string, attrs: Record<string, string | number>, children: Element[] = []): SVGElement {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

function titled(el: SVGElement, text: string): SVGElement {
  const t = document.createElementNS(NS, "title");
  t.textContent = text;
  el.append(t);
  return el;
}

export const probeView: View = (ctx) => {
  const { model, root } = ctx;
  const metricSel = select(
    "iw-probe-metric",
    [
      ["accuracy", "accuracy"],
      ["f1", "F1"],
    ],
    model.get("metric"),
  );
  metricSel.setAttribute("aria-label", "metric");
  const title = h("span", { class: "iw-probe-title" });
  const chart = h("div", { class: "iw-probe-chart" });
  const legendEl = h("div", { class: "iw-probe-legend" });
  root.append(h("div", { class: "iw-toolbar" }, [title, h("label", { class: "iw-field" }, [h("span", { text: "metric" }), metricSel])]), chart, legendEl);

  const draw = () => {
    const metric = model.get("metric") === "f1" ? "f1" : "accuracy";
    metricSel.value = metric;
    title.textContent = model.get("title") || "Sparse probes: held-out score against k";
    const bases = (model.get("bases") ?? []) as Basis[];
    const series = bases.map((b, i) => ({
      b,
      i,
      k: Array.from(decodeArray(b.k).data),
      y: Array.from(decodeArray(b[metric]).data),
      dense: metric === "f1" ? b.dense_f1 : b.dense_accuracy,
      lo: metric === "f1" && b.f1_low ? Array.from(decodeArray(b.f1_low).data) : [],
      hi: metric === "f1" && b.f1_high ? Array.from(decodeArray(b.f1_high).data) : [],
      denseCi: metric === "f1" ? (b.dense_f1_ci ?? null) : null,
    }));
    const shown = (s: { y: number[]; lo: number[]; hi: number[] }, j: number) => fmtEstimate(s.y[j], s.lo[j], s.hi[j]);
    const denseShown = (s: { dense: number | null; denseCi: [number, number] | null }) => fmtEstimate(s.dense ?? NaN, s.denseCi?.[0], s.denseCi?.[1]);
    const ks = series.flatMap((s) => s.k);
    const ys = series.flatMap((s) => [...s.y, ...(s.dense === null ? [] : [s.dense])]).filter(Number.isFinite);
    const kmin = Math.log2(Math.max(1, Math.min(...ks, 1)));
    const kmax = Math.log2(Math.max(...ks, 2));
    const ylo = Math.min(0.5, Math.floor(Math.min(...ys, 1) * 10) / 10);
    const x = (k: number) => M.left + ((Math.log2(k) - kmin) / (kmax - kmin || 1)) * (W - M.left - M.right);
    const y = (v: number) => M.top + (1 - (v - ylo) / (1 - ylo || 1)) * (H - M.top - M.bottom);

    const axes: Element[] = [
      svg("line", { class: "iw-probe-axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }),
      svg("line", { class: "iw-probe-axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }),
    ];
    for (const k of [...new Set(ks)].sort((a, b) => a - b)) {
      const t = svg("text", { class: "iw-probe-tick", x: x(k), y: H - M.bottom + 14, "text-anchor": "middle" });
      t.textContent = String(k);
      axes.push(t);
    }
    for (let v = Math.ceil(ylo * 10) / 10; v <= 1.0001; v += 0.1) {
      const t = svg("text", { class: "iw-probe-tick", x: M.left - 6, y: y(v) + 4, "text-anchor": "end" });
      t.textContent = v.toFixed(1);
      axes.push(t, svg("line", { class: "iw-probe-grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
    }
    const xl = svg("text", { class: "iw-probe-label", x: (M.left + W - M.right) / 2, y: H - 6, "text-anchor": "middle" });
    xl.textContent = "k (units in the probe)";
    axes.push(xl);

    const marks: Element[] = [];
    for (const s of series) {
      const cls = `iw-probe-c${s.i % 6}`;
      const pts = s.k.map((k, j) => [x(k), y(s.y[j])] as const).filter(([, py]) => Number.isFinite(py));
      marks.push(svg("polyline", { class: `iw-probe-line ${cls}`, points: pts.map((p) => p.join(",")).join(" "), "data-basis": s.b.name }));
      s.k.forEach((k, j) => {
        const units = s.b.units[j] ? Array.from(decodeArray(s.b.units[j]).data) : [];
        const dot = svg("circle", { class: `iw-probe-dot ${cls}`, cx: x(k), cy: y(s.y[j]), r: 4, "data-basis": s.b.name, "data-k": k });
        marks.push(titled(dot, `${s.b.name}, k=${k}: ${metric} ${shown(s, j)}\nunits: ${units.join(", ")}`));
      });
      if (s.dense !== null && Number.isFinite(s.dense)) {
        const line = svg("line", { class: `iw-probe-dense ${cls}`, x1: M.left, x2: W - M.right, y1: y(s.dense), y2: y(s.dense), "data-basis": s.b.name });
        marks.push(titled(line, `${s.b.name}: dense probe on all ${s.b.n_units} units, ${metric} ${denseShown(s)}`));
      }
    }
    chart.replaceChildren(svg("svg", { class: "iw-probe-svg", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": `${metric} against k` }, [...axes, ...marks]));
    legendEl.replaceChildren(
      ...series.map((s) =>
        h("span", { class: "iw-probe-key", attrs: { "data-basis": s.b.name } }, [
          h("span", { class: `iw-probe-swatch iw-probe-c${s.i % 6}` }),
          h("span", {
            text: `${s.b.name} (${s.b.n_units} units, ${s.b.selection}${s.dense === null ? "" : `; dense ${denseShown(s)}`})`,
          }),
        ]),
      ),
      h("span", { class: "iw-muted iw-probe-split", text: `held out: ${bases[0]?.n_test ?? 0} examples; dashed: dense probe${bases[0]?.split ? `; ${bases[0].split}` : ""}` }),
    );
  };
  metricSel.addEventListener("change", () => {
    model.set("metric", metricSel.value);
    model.save_changes();
  });
  draw();
  for (const k of ["metric", "bases", "title"]) model.on(`change:${k}`, draw);
  return () => {
    for (const k of ["metric", "bases", "title"]) model.off(`change:${k}`, draw);
  };
};
