// NeuronView rendered in happy-dom against the static-export shim (requests answered from a table).
import { describe, expect, it } from "vitest";
import { encodeArray } from "../src/codec";
import { type Answer, cleanUpAfterEach, mount, tick } from "./mount";

const EVIL = '<img src=x onerror="window.__pwned=1">';
const f32 = (v: number[]) => encodeArray(v, [v.length], "float32");

function mountNeuronView(live: boolean) {
  const tokens = ["<|endoftext|>", "The", " chef", EVIL];
  const example = (value: number) => ({ doc: 3, pos: 7, value, tokens: [" a", EVIL, " an"], acts: f32([0, value, 0.1]), center: 1 });
  const answers: Answer[] = [
    ["examples", {}, { top: [example(2.5), example(2)], buckets: [{ lo: 1, hi: 3, q_lo: 0.9, q_hi: 1, count: 12, examples: [example(1.5)] }] }],
    ["attribution", { pos: 3 }, { pos: 3, labels: ["embed", "L0H1", "b_in"], pre: 0.75, kind: "gate pre-activation (x @ W_gate)", contributions: f32([0.5, 0.5, -0.25]), grad_x_input: f32([0, 0.1, 0.2, 0.3]) }],
    ["ablate", { mode: "mean" }, { mode: "mean", targets: [" an", " a"], clean: f32([0.6, 0.2]), ablated: f32([0.3, 0.4]), d_loss: 0.01 }],
    ["modulate", { scale: 1 }, { scale: 1, targets: [" an", " a"], probs: f32([0.6, 0.2]), baseline: f32([0.6, 0.2]), top: { tokens: [" an"], probs: f32([0.6]) } }],
  ];
  const state = {
    _view: "neuron_view",
    layer: 1,
    neuron: 42,
    n_layers: 3,
    n_neurons: 768,
    hook: "blocks.1.mlp.hook_post",
    text: "The chef",
    text_tokens: tokens,
    text_acts: f32([NaN, 0.1, -0.05, 2]),
    stats: { mean: 0.01, std: 0.2, density: 0.3, max: 2.5, n_tokens: 1000, n_docs: 10, partial: false },
    histogram: { counts: f32([5, 0, 100, 3]), edges: f32([-0.1, 0, 0.5, 1, 2.5]) },
    logit_effect: { top: [[" an", 0.8]], bottom: [[EVIL, -0.5]] },
    correlated: [[7, 0.9], [9, -0.2]],
    targets: [" an", " a"],
    modes: ["zero", "mean", "resample"],
    scales: [-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5],
    can_rerun: true,
  };
  return mount(state, answers, live);
}

cleanUpAfterEach();

describe("neuron view", () => {
  it("renders every panel, tokens as text, and the on-demand answers", async () => {
    const { el } = mountNeuronView(false);
    const root = el.querySelector('div.iw-root[data-view="neuron_view"]')!;
    expect(root.querySelector(".iw-nv-title")!.textContent).toBe("Layer 1, neuron 42");
    expect(root.querySelectorAll(".iw-nv-strip .iw-token").length).toBe(4);
    expect(root.querySelector("img, script")).toBeNull();
    expect(root.querySelectorAll(".iw-hist-bar").length).toBe(4);
    expect(root.querySelectorAll(".iw-nv-corr-row").length).toBe(2);
    await tick();
    expect(root.querySelectorAll(".iw-nv-top .iw-nv-example").length).toBe(2);
    expect(root.querySelector(".iw-nv-top .iw-nv-value")!.textContent).toBe("2.500");
    expect(root.querySelector(".iw-nv-top .iw-nv-center")!.textContent).toContain("<img");
    expect(root.querySelector(".iw-nv-buckets")!.textContent).toContain("12 positions");
    expect(root.querySelector(".iw-nv-attribution")!.textContent).toContain("0.7500");
    expect(root.querySelector(".iw-nv-attribution")!.textContent).toContain("gate pre-activation (x @ W_gate) at pos 3");
    const rows = root.querySelectorAll(".iw-nv-inter-table tbody tr");
    expect(rows.length).toBe(2);
    expect(rows[0].textContent).toContain("0.3000"); // mean-ablated P(" an")
  });

  it("kernel-only controls are disabled in a static export, the slider is not", () => {
    const { el } = mountNeuronView(false);
    for (const sel of ["input.iw-nv-layer", "input.iw-nv-neuron", "button.iw-nv-next", "textarea.iw-nv-text"]) {
      const c = el.querySelector(sel) as HTMLInputElement;
      expect(c.hasAttribute("data-needs-kernel")).toBe(true);
      expect(c.disabled).toBe(true);
    }
    expect((el.querySelector("input.iw-nv-scale") as HTMLInputElement).disabled).toBe(false);
    expect(el.querySelector(".iw-static-note")).not.toBeNull();
  });

  it("a request without an answer shows its message", async () => {
    const { el } = mountNeuronView(false);
    const slider = el.querySelector("input.iw-nv-scale") as HTMLInputElement;
    slider.value = "2";
    slider.dispatchEvent(new Event("input"));
    await tick(100);
    expect(el.querySelector(".iw-error")?.textContent ?? "").toContain("modulate");
  });
});
