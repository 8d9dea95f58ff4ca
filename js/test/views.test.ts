// The three views rendered in happy-dom against a local model (the static-export shim, which
// answers requests from a table just as the kernel would).
import { describe, expect, it } from "vitest";
import { encodeArray } from "../src/codec";
import { cleanUpAfterEach, click, mount, over, tick } from "./mount";

const EVIL = ['<img src=x onerror="window.__pwned=1">', "</script><script>window.__pwned=1</script>"];

cleanUpAfterEach();

describe("token heatmap", () => {
  const tokens = ["<|endoftext|>", " The", "\n", ...EVIL];
  const state = () => ({
    _view: "token_heatmap",
    tokens: [tokens],
    metrics: [
      { name: "loss", values: encodeArray([NaN, 2, 0.5, 1.23456, 3], [5], "float32") },
      { name: "diff", values: encodeArray([0, -1, 1, 0.5, -0.25], [5], "float32") },
    ],
    metric: "loss",
    cmap: "auto",
    center: null,
    vmin: null,
    vmax: null,
    has_predictions: true,
    selected: null,
  });

  it("renders the root, tokens as text, legend and metric dropdown", () => {
    const { el } = mount(state());
    const root = el.querySelector('div.iw-root[data-view="token_heatmap"]')!;
    expect(root).not.toBeNull();
    const spans = root.querySelectorAll(".iw-token[data-doc][data-pos]");
    expect(spans.length).toBe(5);
    expect(spans[3].textContent).toBe('<img·src=x·onerror="window.__pwned=1">');
    expect(root.querySelector("img, script")).toBeNull();
    expect(root.querySelector(".iw-legend")!.getAttribute("data-kind")).toBe("sequential");
    const select = root.querySelector("select.iw-metric-select") as HTMLSelectElement;
    expect(Array.from(select.options, (o) => o.value)).toEqual(["loss", "diff"]);
  });

  it("switching the metric recolours and swaps the legend", () => {
    const { el, model } = mount(state());
    const select = el.querySelector("select.iw-metric-select") as HTMLSelectElement;
    select.value = "diff";
    select.dispatchEvent(new Event("change"));
    expect(model.get("metric")).toBe("diff");
    expect(el.querySelector(".iw-legend")!.getAttribute("data-kind")).toBe("diverging");
    expect(el.querySelector('.iw-token[data-pos="1"]')!.classList.contains("iw-c-neg")).toBe(true);
  });

  it("hover shows position, text, values and fetched predictions", async () => {
    const probs = encodeArray([0.5, 0.25], [2], "float32");
    const { el } = mount(state(), [["predictions", { doc: 0, pos: 3 }, { tokens: [" a", "<b>"], probs }]]);
    over(el.querySelector('.iw-token[data-pos="3"]')!);
    const tip = el.querySelector(".iw-tooltip") as HTMLElement;
    expect(tip.hidden).toBe(false);
    expect(tip.textContent).toContain("3");
    expect(tip.textContent).toContain("1.235"); // 4 significant digits
    expect(tip.textContent).toContain("0.5000");
    await tick();
    expect(tip.querySelectorAll("table.iw-topk tr").length).toBe(2);
    expect(tip.querySelector("b")).toBeNull();
  });

  it("click sets `selected` and marks the token", () => {
    const { el, model } = mount(state());
    click(el.querySelector('.iw-token[data-pos="2"]')!);
    expect(model.get("selected")).toEqual([0, 2]);
    expect(el.querySelector(".iw-selected")!.getAttribute("data-pos")).toBe("2");
  });

  it("a failed request shows its message in .iw-error", async () => {
    const { el } = mount(state(), [], false);
    over(el.querySelector('.iw-token[data-pos="1"]')!);
    await tick();
    expect(el.querySelector(".iw-error")!.textContent).toContain("needs a running kernel");
  });
});

describe("attention view", () => {
  const L = 2;
  const H = 3;
  const tokens = ["<bos>", " a", " b", EVIL[0]];
  const n = tokens.length;
  const state = () => ({
    _view: "attention",
    tokens,
    n_layers: L,
    n_heads: H,
    thumbs: encodeArray(new Array(L * H * n * n).fill(128), [L, H, n, n], "uint8"),
    scores: [
      { name: "previous_token", values: encodeArray([0.1, 0.9, 0.2, 0.3, 0.5, 0.05], [L, H], "float32") },
      { name: "induction", values: encodeArray([0, 0, 0, 0.7, 0, 0], [L, H], "float32") },
    ],
    prompt: "a b",
    can_rerun: true,
  });
  const pattern = encodeArray([1, 0, 0, 0, 0.5, 0.5, 0, 0, 0.2, 0.3, 0.5, 0, 0.1, 0.1, 0.1, 0.7], [n, n], "float16");

  it("draws one thumbnail per head and sorts/filters by score", () => {
    const { el } = mount(state());
    expect(el.querySelectorAll("canvas.iw-head-thumb[data-layer][data-head]").length).toBe(L * H);
    const sort = el.querySelector("select.iw-head-sort") as HTMLSelectElement;
    sort.value = "previous_token";
    sort.dispatchEvent(new Event("change"));
    const order = Array.from(el.querySelectorAll("canvas.iw-head-thumb"), (c) => `${(c as HTMLElement).dataset.layer}.${(c as HTMLElement).dataset.head}`);
    expect(order.slice(0, 3)).toEqual(["0.1", "1.1", "1.0"]);
    const threshold = el.querySelector(".iw-head-threshold") as HTMLInputElement;
    threshold.value = "0.4";
    threshold.dispatchEvent(new Event("input"));
    expect(el.querySelectorAll("canvas.iw-head-thumb").length).toBe(2);
  });

  it("click fetches the pattern and hovering a token tints its row and column", async () => {
    const { el } = mount(state(), [["pattern", { layer: 1, head: 0 }, { pattern, scale: 1 }]]);
    click(el.querySelector('canvas.iw-head-thumb[data-layer="1"][data-head="0"]')!);
    const detail = el.querySelector('.iw-head-detail[data-layer="1"][data-head="0"]')!;
    expect(detail.querySelector(".iw-detail-header")!.textContent).toContain("L1H0");
    await tick();
    const spans = detail.querySelectorAll(".iw-token");
    expect(spans.length).toBe(n);
    expect(spans[3].textContent).toBe(EVIL[0].replace(/ /g, "·"));
    over(spans[2]);
    expect(spans[0].classList.contains("iw-c-to")).toBe(true);
    expect(spans[0].classList.contains("iw-a3")).toBe(true); // 0.2 of 15 steps
    expect(spans[3].classList.contains("iw-c-from")).toBe(true);
    expect(spans[2].classList.contains("iw-focus")).toBe(true);
  });

  it("the enlarged pattern has query tokens on its rows, key tokens on its columns, and a legend", async () => {
    const { el } = mount(state(), [["pattern", { layer: 1, head: 0 }, { pattern, scale: 1 }]]);
    click(el.querySelector('canvas.iw-head-thumb[data-layer="1"][data-head="0"]')!);
    await tick();
    const detail = el.querySelector(".iw-head-detail")!;
    const q = Array.from(detail.querySelectorAll(".iw-pattern-qlabels .iw-pattern-qlabel"), (e) => e.textContent);
    const k = Array.from(detail.querySelectorAll(".iw-pattern-klabels .iw-pattern-klabel"), (e) => e.textContent);
    const shown = tokens.map((t) => t.replace(/ /g, "·"));
    expect(q).toEqual(shown);
    expect(k).toEqual(shown);
    expect(detail.querySelector(".iw-axis-q")!.textContent).toContain("query");
    expect(detail.querySelector(".iw-axis-k")!.textContent).toContain("key");
    const legendEl = detail.querySelector(".iw-attn-legend")!;
    expect(legendEl.textContent).toContain("attention weight");
    expect(Array.from(legendEl.querySelectorAll(".iw-attn-legend-ticks span"), (e) => e.textContent)).toEqual(["0", "0.5", "1"]);
  });

  it("a long prompt labels every k-th token so labels stay readable", async () => {
    const m = 120;
    const many = Array.from({ length: m }, (_, i) => ` t${i}`);
    const big = encodeArray(new Array(m * m).fill(0.01), [m, m], "float16");
    const st = { ...state(), tokens: many, thumbs: encodeArray(new Array(L * H * 4).fill(1), [L, H, 2, 2], "uint8") };
    const { el } = mount(st, [["pattern", { layer: 0, head: 0 }, { pattern: big, scale: 1 }]]);
    click(el.querySelector('canvas.iw-head-thumb[data-layer="0"][data-head="0"]')!);
    await tick();
    const labels = Array.from(el.querySelectorAll(".iw-pattern-qlabel"), (e) => e.textContent);
    expect(labels.length).toBe(m);
    const named = labels.filter((t) => t !== "");
    expect(named.length).toBeLessThan(m / 2); // 360 px / 120 rows = 3 px: every 3rd
    expect(labels[0]).toBe("·t0");
    expect(labels[m - 1]).toBe(`·t${m - 1}`);
  });

  it("sort, threshold and the enlarged head survive a re-run (a new _rev)", async () => {
    const { el, model } = mount(state(), [["pattern", { layer: 1, head: 0 }, { pattern, scale: 1 }]]);
    const sort = el.querySelector("select.iw-head-sort") as HTMLSelectElement;
    sort.value = "previous_token";
    sort.dispatchEvent(new Event("change"));
    const threshold = el.querySelector(".iw-head-threshold") as HTMLInputElement;
    threshold.value = "0.25";
    threshold.dispatchEvent(new Event("input"));
    click(el.querySelector('canvas.iw-head-thumb[data-layer="1"][data-head="0"]')!);
    await tick();
    model.set("prompt", "a b again");
    model.set("_rev", 1); // what set_prompt does after recomputing
    await tick();
    expect((el.querySelector("select.iw-head-sort") as HTMLSelectElement).value).toBe("previous_token");
    expect((el.querySelector(".iw-head-threshold") as HTMLInputElement).value).toBe("0.25");
    expect(el.querySelectorAll("canvas.iw-head-thumb").length).toBe(3); // 0.9, 0.5, 0.3 >= 0.25
    expect(el.querySelector('.iw-head-detail[data-layer="1"][data-head="0"]')).not.toBeNull();
    expect(el.querySelector(".iw-head-cell.iw-active")!.getAttribute("data-layer")).toBe("1");
    (el.querySelector(".iw-head-detail .iw-close") as HTMLElement).click();
    model.set("_rev", 2);
    expect(el.querySelector(".iw-head-detail")).toBeNull(); // closed stays closed
  });

  it("in a static export the prompt is disabled, with a note", () => {
    const { el } = mount(state(), [], false);
    const controls = el.querySelectorAll("[data-needs-kernel]");
    expect(controls.length).toBeGreaterThan(0);
    controls.forEach((c) => expect((c as HTMLInputElement).disabled).toBe(true));
    expect(el.querySelector(".iw-static-note")!.textContent).toContain("needs a running kernel");
  });

  it("a new _rev redraws from the new state", () => {
    const { el, model } = mount(state());
    model.set("n_heads", 1);
    model.set("n_layers", 1);
    model.set("thumbs", encodeArray(new Array(n * n).fill(1), [1, 1, n, n], "uint8"));
    model.set("scores", []);
    model.set("_rev", 1);
    expect(el.querySelectorAll("canvas.iw-head-thumb").length).toBe(1);
  });
});

describe("logit lens", () => {
  const tokens = ["<bos>", " a", EVIL[1]];
  const layers = ["resid_pre 0", "resid_post 0"];
  const state = () => ({
    _view: "logit_lens",
    tokens,
    layer_labels: layers,
    top_strs: [
      [" x", " y", "<i>z</i>"],
      [" x", " b", " c"],
    ],
    top_probs: encodeArray([0.1, 0.2, 0.3, 0.4, 0.5, 0.9], [2, 3], "float32"),
    target: " c",
    target_probs: encodeArray([0, 0, 0.01, 0, 0.1, 0.9], [2, 3], "float32"),
    colour_by: "target",
    prompt: "a",
    can_rerun: true,
  });

  it("shows a cell per layer x position with its top-1 token", () => {
    const { el } = mount(state());
    expect(el.querySelectorAll(".iw-lens-cell[data-layer][data-pos]").length).toBe(6);
    const cell = el.querySelector('.iw-lens-cell[data-layer="0"][data-pos="2"]')!;
    expect(cell.textContent).toBe("<i>z</i>");
    expect(cell.querySelector("i")).toBeNull();
    expect(el.querySelector(".iw-legend")!.textContent).toContain('P(" c")');
  });

  it("click shows the top 10 in table.iw-topk", async () => {
    const tokensK = Array.from({ length: 10 }, (_, i) => ` t${i}`);
    const probs = encodeArray(tokensK.map((_, i) => 0.5 / (i + 1)), [10], "float32");
    const { el } = mount(state(), [["topk", { layer: 1, pos: 2 }, { tokens: tokensK, probs }]]);
    click(el.querySelector('.iw-lens-cell[data-layer="1"][data-pos="2"]')!);
    await tick();
    const table = el.querySelector("table.iw-topk")!;
    expect(table.querySelectorAll("tr").length).toBe(10);
    expect(table.querySelector("tr")!.textContent).toContain("0.5000");
  });
});
