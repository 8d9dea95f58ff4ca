// Patching, attribution, steering and perturbation-flow views in happy-dom against a local model
// (the static-export shim answers requests from a table, as the kernel would).
import { describe, expect, it, vi } from "vitest";
import { encodeArray } from "../src/codec";
import { fmt } from "../src/components/dom";
import { stickyOffset } from "../src/components/keep_in_view";
import { cleanUpAfterEach, click, mount, over, tick } from "./mount";

const EVIL = '<img src=x onerror="window.__pwned=1">';

cleanUpAfterEach();

describe("keeping the patching controls in view", () => {
  it("follows the visible top inside the container, never above it or past its bottom", () => {
    expect(stickyOffset(0, 100, 2000, 700)).toBe(0); // container top still visible
    expect(stickyOffset(0, -400, 2000, 700)).toBe(400); // scrolled 400 px past its top
    expect(stickyOffset(60, -400, 2000, 700)).toBe(460); // a scroller whose top is at 60 px
    expect(stickyOffset(0, -1800, 2000, 700)).toBe(1300); // stops at the container's bottom
  });
});

describe("patching view", () => {
  const f32 = (v: number[], shape: number[]) => encodeArray(v, shape, "float32");
  const state = () => ({
    _view: "patching",
    clean_tokens: ["<bos>", " John", EVIL],
    corrupt_tokens: ["<bos>", " Mary", EVIL],
    metric_name: "logit(' Mary') - logit(' John')",
    clean_value: 2,
    corrupt_value: -1,
    grids: [
      { component: "resid_pre", positions: "each", rows: ["L0", "L1"], cols: [0, 1, 2], col_kind: "pos",
        values: f32([0, 1, 0, 0, 0.5, 0.25], [2, 3]), estimate: f32([0, 0.9, 0, 0, 0.4, 0.3], [2, 3]), correlation: 0.97 },
      { component: "head_out", positions: "all", rows: ["L0", "L1"], cols: ["H0", "H1"], col_kind: "head",
        values: f32([0.1, 0, 0, 0.8], [2, 2]), estimate: f32([0.1, 0, 0, 0.7], [2, 2]), correlation: 0.99 },
    ],
    top_clean: [[" Mary", 0.6]],
    top_corrupt: [[" John", 0.5]],
  });
  const cells = [["resid_pre", 0, 1, null], ["head_out", 1, null, 1]];
  const reply = (alpha: number, requested = alpha) => ({
    alpha, requested_alpha: requested, clipped: alpha !== requested, value: 0.75, normalized: 0.58,
    top: [[" Mary", 0.4], [EVIL, 0.1]],
  });

  it("draws both sweeps per component with token headers as text", () => {
    const { el } = mount(state());
    const root = el.querySelector('div.iw-root[data-view="patching"]')!;
    expect(root.querySelectorAll(".iw-heatgrid").length).toBe(4);
    const header = root.querySelector(".iw-heatgrid .iw-col-label[data-col='1']")!;
    expect(header.textContent).toBe("·John·Mary");
    expect(root.querySelector("img, script")).toBeNull();
    expect(root.textContent).toContain("r = 0.97");
    const cell = root.querySelector(".iw-heatgrid[data-kind='exact'][data-component='resid_pre'] [data-row='0'][data-col='1']")!;
    expect(cell.textContent).toBe("1.00");
    over(cell);
    expect(root.querySelector(".iw-tooltip")!.textContent).toContain("estimate0.9000");
  });

  it("with a set of prompt pairs, a cell's tooltip gives its interval over the pairs", () => {
    const st = state();
    const grids: Record<string, unknown>[] = [...st.grids];
    grids[0] = { ...st.grids[0], low: f32([0, 0.87, 0, 0, 0.3, 0.1], [2, 3]), high: f32([0, 0.92, 0, 0, 0.6, 0.4], [2, 3]), n_pairs: 6 };
    const { el } = mount({ ...st, grids });
    const root = el.querySelector('div.iw-root[data-view="patching"]')!;
    over(root.querySelector(".iw-heatgrid[data-kind='exact'][data-component='resid_pre'] [data-row='0'][data-col='1']")!);
    expect(root.querySelector(".iw-tooltip")!.textContent).toContain("patched (6 pairs)1.00 [0.87, 0.92]");
  });

  it("clicking selects cells in both grids; the slider asks the kernel and shows the reply", async () => {
    const { el } = mount(state(), [["patch", { cells, alpha: 0.4 }, reply(0.4)]]);
    const root = el.querySelector(".iw-root") as HTMLElement;
    click(root.querySelector(".iw-heatgrid[data-kind='exact'][data-component='resid_pre'] [data-row='0'][data-col='1']")!);
    click(root.querySelector(".iw-heatgrid[data-kind='estimate'][data-component='head_out'] [data-row='1'][data-col='1']")!);
    expect(root.dataset.selected).toBe("2");
    expect(root.querySelectorAll(".iw-selected").length).toBe(4);
    await tick();
    const slider = root.querySelector("input.iw-patch-alpha") as HTMLInputElement;
    slider.value = "0.4";
    slider.dispatchEvent(new Event("input", { bubbles: true }));
    const out = root.querySelector(".iw-patch-result") as HTMLElement;
    await vi.waitFor(() => expect(out.dataset.alpha).toBe("0.4"), { timeout: 3000 });
    expect(out.querySelector(".iw-patch-value")!.textContent).toBe("0.7500");
    expect(root.querySelector(".iw-patch-top")!.textContent).toContain("Mary");
    expect(root.querySelector("img")).toBeNull();
  });

  it("puts the controls beside the grids and draws the metric over alpha for the selection", async () => {
    const one = [["resid_pre", 0, 1, null]];
    const curve = { alphas: f32([0, 0.5, 1], [3]), values: f32([-1, 0.5, 2], [3]), normalized: f32([0, 0.5, 1], [3]) };
    const { el } = mount(state(), [["curve", { cells: one, n: 11 }, curve], ["patch", { cells: one, alpha: 1 }, reply(1)], ["patch", { cells: one, alpha: 0.5 }, reply(0.5)]]);
    const root = el.querySelector(".iw-root") as HTMLElement;
    const layout = root.querySelector(".iw-patch-layout")!;
    expect(Array.from(layout.children).map((c) => c.className)).toEqual(["iw-patch-grids", "iw-patch-live"]);
    expect(layout.querySelector(".iw-patch-grids .iw-heatgrid")).not.toBeNull();
    expect(layout.querySelector(".iw-patch-live input.iw-patch-alpha")).not.toBeNull();
    expect(root.querySelector(".iw-patch-curve-slot")!.textContent).toContain("select cells");
    click(root.querySelector(".iw-heatgrid[data-kind='exact'][data-component='resid_pre'] [data-row='0'][data-col='1']")!);
    await vi.waitFor(() => expect(root.querySelector("svg.iw-patch-curve")).not.toBeNull(), { timeout: 3000 });
    const dots = Array.from(root.querySelectorAll("circle.iw-curve-dot"), (c) => [Number(c.getAttribute("data-alpha")), Number(c.getAttribute("data-value"))]);
    expect(dots).toEqual([[0, 0], [0.5, 0.5], [1, 1]]);
    const ys = Array.from(root.querySelectorAll("circle.iw-curve-dot"), (c) => Number(c.getAttribute("cy")));
    expect(ys[0]).toBeGreaterThan(ys[1]); // higher metric, higher on the chart
    expect(ys[1]).toBeGreaterThan(ys[2]);
    expect(root.querySelector(".iw-patch-curve-slot .iw-patch-title")!.textContent).toContain("0 = corrupt run, 1 = clean run");
    const marker = () => Number(root.querySelector("line.iw-curve-marker")!.getAttribute("data-alpha"));
    expect(marker()).toBe(1);
    const slider = root.querySelector("input.iw-patch-alpha") as HTMLInputElement;
    slider.value = "0.5";
    slider.dispatchEvent(new Event("input", { bubbles: true }));
    expect(marker()).toBe(0.5);
  });

  it("says when alpha was clipped", async () => {
    const { el } = mount(state(), [["patch", { cells: [], alpha: 1.5 }, reply(1, 1.5)]]);
    const box = el.querySelector("input.iw-patch-alpha-number") as HTMLInputElement;
    box.value = "1.5";
    box.dispatchEvent(new Event("change"));
    await vi.waitFor(() => expect(el.querySelector(".iw-patch-note")!.textContent).toBe("α = 1.500 is outside [0, 1]: clipped to 1.000"), { timeout: 3000 });
    expect((el.querySelector("input.iw-patch-alpha") as HTMLInputElement).value).toBe("1");
  });

  it("static export: the slider is disabled and marked as needing the kernel", () => {
    const { el } = mount(state(), [], false);
    const slider = el.querySelector("input.iw-patch-alpha") as HTMLInputElement;
    expect(slider.disabled).toBe(true);
    expect(slider.hasAttribute("data-needs-kernel")).toBe(true);
    expect(el.querySelector(".iw-static-note")).not.toBeNull();
  });
});

describe("attribution, steering and perturbation-flow views", () => {
  it("attribution: bars, head grid and a method switch for the token heatmap", () => {
    const vals = (v: number[]) => encodeArray(v, [v.length], "float32");
    const { el } = mount({
      _view: "attribution", tokens: ["<bos>", EVIL, " to"], answer_token: " Mary", wrong_token: " John",
      logit_diff: 1.5, total: 1.5, components: [["embed", 0.5], ["attn 0", 1.2], ["mlp 0", -0.2]],
      heads: encodeArray([0.3, -0.1], [1, 2], "float32"), top_neurons: [[0, 7, 0.2], [1, 3, 0.1], [0, 9, -0.05], [1, 2, -0.3]],
      inputs: [
        { method: "integrated_gradients", target: "ld", values: vals([0, 0.4, 1]), completeness_gap: 0.01, baseline_value: 0.1, target_value: 1.5 },
        { method: "occlusion", target: "ld", values: vals([0, -0.4, 1]), completeness_gap: null, baseline_value: null, target_value: 1.5 },
      ],
      prompt: "x", can_rerun: true,
    });
    const root = el.querySelector('.iw-root[data-view="attribution"]')!;
    expect(root.querySelectorAll(".iw-attr-components .iw-num").length).toBe(3);
    expect(root.querySelectorAll(".iw-heatgrid .iw-lens-cell").length).toBe(2);
    const headBars = Array.from(root.querySelectorAll(".iw-attr-heads .iw-num"));
    expect(headBars.map((e) => e.getAttribute("data-label"))).toEqual(["L0H0", "L0H1"]);
    expect(root.querySelector(".iw-attr-heads .iw-c-neg")).not.toBeNull();
    expect(root.querySelector(".iw-attr-gap")!.textContent).toContain("gap 0.01000");
    // neurons: the ones that raise the difference, then the ones that lower it, most negative first
    const labels = (sel: string) => Array.from(root.querySelectorAll(`${sel} .iw-num`)).map((e) => e.getAttribute("data-label"));
    expect(labels(".iw-attr-neurons-pos")).toEqual(["L0 N7", "L1 N3"]);
    expect(labels(".iw-attr-neurons-neg")).toEqual(["L1 N2", "L0 N9"]);
    expect(root.querySelectorAll(".iw-attr-neurons-neg .iw-c-neg").length).toBe(2);
    const select = root.querySelector("select.iw-attr-method") as HTMLSelectElement;
    select.value = "occlusion";
    select.dispatchEvent(new Event("change"));
    expect(root.querySelector('.iw-token[data-pos="1"]')!.className).toContain("iw-c-neg");
    expect(root.querySelector("img")).toBeNull();
  });

  it("steering: the coefficient slider regenerates from the kernel's reply", async () => {
    const kl = encodeArray([0.1, 0.5], [2], "float32");
    const args = { vector: 0, coeff: 8, layer: 1, seed: 0 };
    const { el } = mount(
      {
        _view: "steering", prompt: "When", vector_names: ["v"], vector: 0, n_layers: 2, layer: 1,
        coeff: 2, coeff_max: 20, seed: 0, baseline: [" a", " b"], steered: [" c", EVIL], kl,
      },
      [["steer", args, { baseline: [" a", " b"], steered: [" x", " y"], kl, mean_kl: 0.3, coeff: 8, layer: 1 }]],
    );
    const root = el.querySelector(".iw-root") as HTMLElement;
    expect(root.querySelector(".iw-steer-steered")!.textContent).toContain("<img");
    const coeff = root.querySelector("input.iw-steer-coeff") as HTMLInputElement;
    coeff.value = "8";
    coeff.dispatchEvent(new Event("input", { bubbles: true }));
    await vi.waitFor(() => expect(root.dataset.coeff).toBe("8"), { timeout: 3000 });
    await vi.waitFor(() => expect(root.querySelector(".iw-steer-status")!.textContent).toContain("0.3000"),
      { timeout: 3000 });
    expect(root.querySelector(".iw-steer-steered")!.textContent).toContain("·x·y");
    expect(root.querySelector(".iw-steer-status")!.textContent).toContain("0.3000");
  });

  it("steering: the steered metric beside KL, the coherence loss and the strengths side by side", async () => {
    const kl = encodeArray([0.1, 0.5], [2], "float32");
    const sweep = (m: number) => [
      { coeff: 0, text: " a b", mean_kl: 0, loss: 2.1, metric: -3 },
      { coeff: 2, text: " c d", mean_kl: 0.4, loss: 2.6, metric: m },
      { coeff: 4, text: EVIL, mean_kl: 1.9, loss: 7.5, metric: 3.4 },
    ];
    const args = { vector: 0, coeff: 4, layer: 1, seed: 0 };
    const { el } = mount(
      {
        _view: "steering", prompt: "When", vector_names: ["v"], vector: 0, n_layers: 2, layer: 1,
        coeff: 2, coeff_max: 20, seed: 0, baseline: [" a", " b"], steered: [" c", " d"], kl,
        loss: 2.6, loss_baseline: 2.1, metric_name: "logit(' an') - logit(' a')", metric_value: 0.4, metric_baseline: -3, sweep: sweep(0.4),
      },
      [["steer", args, { baseline: [" a", " b"], steered: [" x", " y"], kl, mean_kl: 1.9, coeff: 4, layer: 1, loss: 7.5, loss_baseline: 2.1, metric: 3.4, metric_baseline: -3, sweep: sweep(0.4) }]],
    );
    const root = el.querySelector(".iw-root") as HTMLElement;
    expect(root.querySelector(".iw-steer-metric")!.textContent).toBe(`logit(' an') - logit(' a'): ${fmt(0.4)} steered, ${fmt(-3)} unsteered`);
    expect(root.querySelector(".iw-steer-coherence")!.textContent).toContain(`${fmt(2.6)} steered, ${fmt(2.1)} baseline`);
    expect(root.querySelector(".iw-steer-baseline .iw-steer-loss")!.textContent).toContain(fmt(2.1));
    const table = root.querySelector(".iw-steer-sweep-table")!;
    expect(Array.from(table.querySelectorAll("th")).map((t) => t.textContent)).toEqual(["coefficient", "logit(' an') - logit(' a')", "mean KL", "loss (nats/token)", "text"]);
    expect(table.querySelectorAll("tbody tr").length).toBe(3);
    expect(table.querySelector("tr.iw-selected")!.getAttribute("data-coeff")).toBe("2");
    expect(table.textContent).toContain(EVIL); // text, not markup
    const coeff = root.querySelector("input.iw-steer-coeff") as HTMLInputElement;
    coeff.value = "4";
    coeff.dispatchEvent(new Event("input", { bubbles: true }));
    await vi.waitFor(() => expect(root.querySelector(".iw-steer-metric")!.textContent).toContain(`${fmt(3.4)} steered`), { timeout: 3000 });
    expect(root.querySelector(".iw-steer-coherence")!.textContent).toContain(`${fmt(7.5)} steered`);
    expect(root.querySelector(".iw-steer-sweep-table tr.iw-selected")!.getAttribute("data-coeff")).toBe("4");
  });

  it("perturbation flow: removed tokens stay blank; the mode switch changes the scale label", () => {
    const nan = NaN;
    const { el } = mount({
      _view: "perturbation_flow", text: "a b c", remove: "b", tokens: ["a", " b", " c"], removed: [false, true, false],
      layer_labels: ["resid_pre 0", "resid_post 0"],
      diff: encodeArray([0, nan, 0, 0, nan, 2], [2, 3], "float32"),
      relative: encodeArray([0, nan, 0, 0, nan, 0.5], [2, 3], "float32"),
      kl: encodeArray([0, nan, 0.2], [3], "float32"),
      top_before: [[" x", 0.5]], top_after: [[" y", 0.4]], can_rerun: false,
    });
    const root = el.querySelector(".iw-root")!;
    const cells = root.querySelectorAll(".iw-heatgrid .iw-lens-cell");
    expect(cells.length).toBe(9);
    expect(cells[1].textContent).toBe("");
    expect(cells[5].textContent).toBe("0.50");
    const mode = root.querySelector("select.iw-flow-mode") as HTMLSelectElement;
    mode.value = "absolute";
    mode.dispatchEvent(new Event("change"));
    expect(cells[5].textContent).toBe("2.00");
    expect(root.querySelector(".iw-legend-label")!.textContent).toBe("|Δ resid|");
  });
});
