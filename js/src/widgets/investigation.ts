// InvestigationView: an investigation's steps as they come (each a collapsible <details> with its
// numbers drawn inline: a [layer, head] grid, per-layer bars, or an effect with its interval),
// the claims panel (verified / refuted), and a stop button while it runs.
// State: title, steps [{id, tool, args, by, seconds, error, summary, grid?, grid_label?, bars?,
// interval?}], claims [{kind, layer, index, position, effect, spread, low, high, verified,
// statement, evidence, what, component}], running, status.
import { decodeArray, type EncodedArray } from "../codec";
import { fmt, h } from "../components/dom";
import { heatGrid } from "../components/heatgrid";
import { chooseScale, legend } from "../components/scale";
import type { View } from "../view";

export interface StepItem {
  id: number;
  tool: string;
  args: string;
  by: string;
  seconds: number;
  error: string | null;
  summary: string;
  grid?: EncodedArray;
  grid_label?: string;
  bars?: Record<string, EncodedArray>;
  interval?: { effect: number | null; low: number | null; high: number | null; clean_mean: number | null };
}

export interface ClaimItem {
  kind: string;
  layer: number;
  index: number | null;
  position: number | null;
  effect: number | null;
  spread: number | null;
  low: number | null;
  high: number | null;
  verified: boolean;
  statement: string;
  evidence: number[];
  what: string;
  component: string | null;
}

/** The unit a claim names, as the reports write it (L2H3, L1N322, L0 mlp_out). */
export function claimLabel(c: ClaimItem): string {
  const where = c.position === null ? "" : `@${c.position}`;
  if (c.kind === "head") return `L${c.layer}H${c.index}${where}`;
  if (c.kind === "neuron") return `L${c.layer}N${c.index}${where}`;
  if (c.kind === "feature") return `L${c.layer}F${c.index}${where}`;
  return `L${c.layer} ${c.component ?? ""}${where}`;
}

/** An effect as "0.90 [0.87, 0.92]" (interval left out when it is unknown). */
export function withInterval(v: number | null, lo: number | null, hi: number | null): string {
  if (v === null) return "n/a";
  if (lo === null || hi === null) return fmt(v);
  return `${v.toFixed(3)} [${lo.toFixed(3)}, ${hi.toFixed(3)}]`;
}

function gridOf(step: StepItem): HTMLElement {
  const arr = decodeArray(step.grid as EncodedArray);
  const [L, H] = arr.shape;
  const grid = heatGrid({
    rows: Array.from({ length: L }, (_, l) => `L${l}`),
    cols: Array.from({ length: H }, (_, k) => `H${k}`),
    corner: "layer \\ head",
  });
  const scale = chooseScale(arr.data);
  grid.paint(arr.data, scale);
  return h("div", { class: "iw-inv-figure" }, [grid.el, legend(scale, step.grid_label ?? "")]);
}

function barsOf(step: StepItem): HTMLElement {
  const rows: HTMLElement[] = [];
  for (const [name, enc] of Object.entries(step.bars ?? {})) {
    const v = Array.from(decodeArray(enc).data);
    rows.push(
      h("div", { class: "iw-inv-bars" }, [
        h("span", { class: "iw-inv-bars-name", text: name }),
        ...v.map((x, l) => {
          const bar = h("span", { class: `iw-inv-bar ${x < 0 ? "iw-neg" : ""}`, title: `layer ${l}: ${fmt(x)}` });
          bar.style.width = `${Math.min(100, Math.abs(x) * 100).toFixed(1)}px`;
          return h("span", { class: "iw-inv-bar-cell" }, [h("span", { text: `L${l} ${x.toFixed(2)}` }), bar]);
        }),
      ]),
    );
  }
  return h("div", { class: "iw-inv-figure" }, rows);
}

function intervalOf(step: StepItem): HTMLElement {
  const iv = step.interval!;
  const base = Math.max(Math.abs(iv.clean_mean ?? 1), 1e-9);
  const pos = (x: number | null) => `${(50 + (50 * (x ?? 0)) / base).toFixed(1)}%`;
  const track = h("div", { class: "iw-inv-track", title: "0 at the centre; the ends are ± the clean metric" }, [
    h("span", { class: "iw-inv-zero" }),
  ]);
  const range = h("span", { class: "iw-inv-range" });
  range.style.left = pos(iv.low);
  range.style.width = `${((50 * Math.abs((iv.high ?? 0) - (iv.low ?? 0))) / base).toFixed(1)}%`;
  const dot = h("span", { class: "iw-inv-dot" });
  dot.style.left = pos(iv.effect);
  track.append(range, dot);
  return h("div", { class: "iw-inv-figure" }, [
    h("div", { text: `drop of the metric: ${withInterval(iv.effect, iv.low, iv.high)} of ${fmt(iv.clean_mean ?? NaN)}` }),
    track,
  ]);
}

export function stepElement(step: StepItem): HTMLElement {
  const head = h("summary", { class: "iw-inv-step-head" }, [
    h("span", { class: "iw-inv-id", text: `#${step.id}` }),
    h("span", { class: "iw-inv-tool", text: step.tool }),
    h("code", { class: "iw-inv-args", text: step.args === "{}" ? "" : step.args }),
    h("span", { class: step.error ? "iw-inv-error" : "iw-inv-summary", text: step.error ? `error: ${step.error}` : step.summary }),
    h("span", { class: "iw-inv-time", text: `${step.seconds.toFixed(2)} s · ${step.by}` }),
  ]);
  const body: HTMLElement[] = [];
  if (step.grid) body.push(gridOf(step));
  if (step.bars) body.push(barsOf(step));
  if (step.interval) body.push(intervalOf(step));
  return h("details", { class: "iw-inv-step", attrs: { "data-step": step.id, open: body.length > 0 && step.tool !== "check_behaviour" } }, [
    head,
    ...body,
  ]);
}

export function claimsTable(claims: ClaimItem[]): HTMLElement {
  if (!claims.length) return h("p", { class: "iw-inv-empty", text: "No claims yet." });
  const rows = claims.map((c, i) =>
    h("tr", { class: c.verified ? "iw-inv-verified" : "iw-inv-refuted", attrs: { "data-claim": i } }, [
      h("td", { text: claimLabel(c) }),
      h("td", { text: c.what }),
      h("td", { text: withInterval(c.effect, c.low, c.high) }),
      h("td", { class: "iw-inv-check", text: c.verified ? "verified" : "refuted" }),
      h("td", { text: c.statement }),
      h("td", { text: c.evidence.map((e) => `#${e}`).join(" ") }),
    ]),
  );
  const heads = ["unit", "claim", "effect [95% CI]", "check", "statement", "steps"];
  return h("table", { class: "iw-table iw-inv-claims" }, [
    h("thead", {}, [h("tr", {}, heads.map((t) => h("th", { text: t })))]),
    h("tbody", {}, rows),
  ]);
}

export const investigationView: View = (ctx) => {
  const { model, root } = ctx;
  const title = h("span", { class: "iw-inv-title" });
  const status = h("span", { class: "iw-inv-status", attrs: { role: "status" } });
  const stop = ctx.needsKernel(h("button", { class: "iw-button iw-inv-stop", text: "stop", attrs: { type: "button" } }));
  const stepsEl = h("div", { class: "iw-inv-steps" });
  const claimsEl = h("div", { class: "iw-inv-claims-panel" });
  root.append(
    h("div", { class: "iw-toolbar" }, [title, status, stop]),
    h("div", { class: "iw-inv-layout" }, [
      h("section", {}, [h("h4", { text: "Steps" }), stepsEl]),
      h("section", {}, [h("h4", { text: "Claims" }), claimsEl]),
    ]),
  );
  let shown = 0;
  const drawSteps = () => {
    const steps = (model.get("steps") ?? []) as StepItem[];
    if (steps.length < shown) {
      stepsEl.replaceChildren();
      shown = 0;
    }
    for (; shown < steps.length; shown++) stepsEl.append(stepElement(steps[shown]));
  };
  const drawClaims = () => claimsEl.replaceChildren(claimsTable((model.get("claims") ?? []) as ClaimItem[]));
  const drawStatus = () => {
    title.textContent = model.get("title") || "Investigation";
    const running = Boolean(model.get("running"));
    status.textContent = model.get("status") || "";
    status.classList.toggle("iw-inv-running", running);
    stop.disabled = !running || !ctx.live;
  };
  stop.addEventListener("click", () => {
    stop.disabled = true;
    status.textContent = "stopping after the current step…";
    ctx.rpc.request("stop").catch((e) => ctx.showError(String(e)));
  });
  drawSteps();
  drawClaims();
  drawStatus();
  model.on("change:steps", drawSteps);
  model.on("change:claims", drawClaims);
  for (const k of ["running", "status", "title"]) model.on(`change:${k}`, drawStatus);
  return () => {
    model.off("change:steps", drawSteps);
    model.off("change:claims", drawClaims);
  };
};
