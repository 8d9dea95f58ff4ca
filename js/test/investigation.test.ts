// InvestigationView in happy-dom: steps drawn as they arrive, claims panel, stop button.
import { describe, expect, it } from "vitest";
import { encodeArray } from "../src/codec";
import { claimLabel, withInterval } from "../src/widgets/investigation";
import { cleanUpAfterEach, click, mount, tick } from "./mount";

const EVIL = '<img src=x onerror="window.__pwned=1">';

cleanUpAfterEach();

const grid = encodeArray([0.1, 0.9, -0.2, 0, 0.05, 0.4], [3, 2], "float32");
const steps = [
  { id: 0, tool: "check_behaviour", args: "{}", by: "plan", seconds: 0.3, error: null, summary: "metric 15.96 on 16 prompts" },
  { id: 1, tool: "patch_heads", args: '{"k": 8}', by: "plan", seconds: 1.2, error: null, summary: EVIL, grid, grid_label: "restored" },
  {
    id: 2, tool: "ablate", args: '{"kind": "head", "layer": 2, "index": 2}', by: "llm", seconds: 0.4, error: null,
    summary: "knocking out L2H2", interval: { effect: 12.67, low: 9.69, high: 14.78, clean_mean: 15.96 },
  },
  { id: 3, tool: "run_python", args: "{}", by: "llm", seconds: 0, error: "Unknown tool 'run_python'", summary: "" },
];
const claims = [
  { kind: "head", layer: 2, index: 2, position: null, effect: 12.67, spread: 1.3, low: 9.69, high: 14.78, verified: true,
    statement: EVIL, evidence: [1, 2], what: "carries", component: null },
  { kind: "component", layer: 0, index: null, position: -1, effect: 0.1, spread: 0.2, low: -0.3, high: 0.5, verified: false,
    statement: "refuted", evidence: [4], what: "carries", component: "mlp_out" },
];

describe("investigation view", () => {
  it("labels units and intervals the way the reports do", () => {
    expect(claimLabel(claims[0])).toBe("L2H2");
    expect(claimLabel(claims[1])).toBe("L0 mlp_out@-1");
    expect(withInterval(0.9, 0.87, 0.92)).toBe("0.900 [0.870, 0.920]");
    expect(withInterval(0.9, null, null)).toBe("0.9000");
  });

  it("draws every step with its figure and every claim with its check, text never as HTML", () => {
    const { el } = mount({ _view: "investigation", title: "Investigation: induction", steps, claims, running: false, status: "done" });
    const items = el.querySelectorAll("details.iw-inv-step");
    expect(items.length).toBe(4);
    expect(items[1].querySelector(".iw-heatgrid")).not.toBeNull();
    expect(items[1].querySelectorAll(".iw-heatgrid [data-col]").length).toBeGreaterThan(0);
    expect(items[1].querySelector(".iw-inv-summary")!.textContent).toBe(EVIL);
    expect(items[2].textContent).toContain("12.670 [9.690, 14.780] of 15.96");
    expect(items[3].querySelector(".iw-inv-error")!.textContent).toBe("error: Unknown tool 'run_python'");
    const rows = el.querySelectorAll("table.iw-inv-claims tbody tr");
    expect(Array.from(rows, (r) => r.querySelector(".iw-inv-check")!.textContent)).toEqual(["verified", "refuted"]);
    expect(rows[0].classList.contains("iw-inv-verified")).toBe(true);
    expect(rows[0].children[4].textContent).toBe(EVIL);
  });

  it("appends steps and claims as they come and stops on request", async () => {
    const { el, model } = mount(
      { _view: "investigation", title: "", steps: steps.slice(0, 1), claims: [], running: true, status: "running" },
      [["stop", {}, { stopped: true }]],
    );
    expect(el.querySelectorAll("details.iw-inv-step").length).toBe(1);
    expect(el.querySelector(".iw-inv-empty")!.textContent).toBe("No claims yet.");
    const first = el.querySelector("details.iw-inv-step");
    model.set("steps", steps.slice(0, 3));
    model.set("claims", claims.slice(0, 1));
    expect(el.querySelectorAll("details.iw-inv-step").length).toBe(3);
    expect(el.querySelector("details.iw-inv-step")).toBe(first); // earlier steps are kept, not redrawn
    expect(el.querySelectorAll("table.iw-inv-claims tbody tr").length).toBe(1);
    const stop = el.querySelector<HTMLButtonElement>("button.iw-inv-stop")!;
    expect(stop.disabled).toBe(false);
    click(stop);
    await tick();
    expect(stop.disabled).toBe(true);
    expect(el.querySelector(".iw-inv-status")!.textContent).toContain("stopping");
    model.set("running", false);
    model.set("status", "stopped by the user");
    expect(el.querySelector(".iw-inv-status")!.textContent).toBe("stopped by the user");
  });

  it("disables stop in a static export", () => {
    const { el } = mount({ _view: "investigation", title: "", steps, claims, running: true, status: "running" }, [], false);
    expect(el.querySelector<HTMLButtonElement>("button.iw-inv-stop")!.disabled).toBe(true);
  });
});

describe("census view", () => {
  const state = () => ({
    _view: "census",
    title: "Census of 4 neurons",
    units: encodeArray([3, 8, 20, 41], [4], "int32"),
    scores: encodeArray([0.6, 0.4, 0.75, NaN, NaN, NaN, 0.2, -0.1, 0.5, 0.9, 0.8, 0.95], [4, 3], "float32"),
    classes: ["monosemantic", "dead", "polysemantic", "monosemantic"],
    explanations: [EVIL, "", "mixed", "tokens"],
    notes: ["", "", "fires on ' for' x5", ""],
  });

  it("lists units by score with their intervals and filters by class", () => {
    const { el } = mount(state());
    const units = () => Array.from(el.querySelectorAll("tbody tr"), (r) => r.getAttribute("data-unit"));
    expect(units()).toEqual(["41", "3", "20", "8"]); // unscored (dead) last
    const first = el.querySelector("tbody tr")!;
    expect(first.children[2].textContent).toBe("0.90 [0.80, 0.95]");
    expect(el.querySelector("tbody tr[data-unit='3']")!.children[3].textContent).toBe(EVIL);
    expect(el.querySelector(".iw-census-counts")!.textContent).toBe("monosemantic 2 · dead 1 · polysemantic 1");
    const cls = el.querySelector<HTMLSelectElement>("select.iw-census-class")!;
    cls.value = "polysemantic";
    cls.dispatchEvent(new Event("change"));
    expect(units()).toEqual(["20"]);
    expect(el.querySelector("tbody tr")!.children[4].textContent).toBe("fires on ' for' x5");
    const sort = el.querySelector<HTMLSelectElement>("select.iw-census-sort")!;
    cls.value = "all";
    sort.value = "unit";
    sort.dispatchEvent(new Event("change"));
    expect(units()).toEqual(["3", "8", "20", "41"]);
  });
});
