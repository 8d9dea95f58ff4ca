// AutoInterpTable, ProbeView and the Explain panel in happy-dom (static model, no kernel).
import { describe, expect, it } from "vitest";
import { encodeArray } from "../src/codec";
import { fmt } from "../src/components/dom";
import { withExplain } from "../src/components/explain";
import { cleanUpAfterEach, mount } from "./mount";

const EVIL = '<img src=x onerror="window.__pwned=1">';

cleanUpAfterEach();

const f32 = (v: number[]) => encodeArray(v, [v.length], "float32");
const i32 = (v: number[]) => encodeArray(v, [v.length], "int32");
const SCORES = ["correlation", "top_and_random", "top", "random", "detection_balanced_accuracy", "detection_auc", "fuzzing_balanced_accuracy", "fuzzing_auc"];

describe("autointerp table", () => {
  const state = () => {
    const columns: Record<string, unknown> = {
      model: ["demo", "demo", "demo"],
      source: ["blocks.0.mlp.hook_post", "blocks.0.mlp.hook_post", "sae"],
      explainer: ["offline-statistical", "gpt-x", "gpt-x"],
      kind: ["statistical", "llm", "llm"],
      explanation: ['[statistical, not LLM-written] tokens: " apple" (5.0)', "fruit words", EVIL],
      unit: i32([7, 3, 12]),
    };
    for (const k of SCORES) columns[k] = f32(k === "correlation" ? [0.2, 0.9, NaN] : [0.5, 0.5, 0.5]);
    return { _view: "autointerp_table", columns, score_names: SCORES, n_rows: 3, sort: "correlation", descending: true, filter: "", selected: null, can_open: true };
  };
  const units = (el: Element) => Array.from(el.querySelectorAll("tr.iw-ai-row")).map((r) => r.firstElementChild!.textContent);

  it("sorts by score (missing last), by a clicked header, and filters", () => {
    const { el } = mount(state(), [], false);
    expect(units(el)).toEqual(["3", "7", "12"]);
    expect(el.querySelectorAll(".iw-ai-statistical").length).toBe(1);
    expect(el.querySelector(".iw-ai-statistical")!.textContent).toBe("statistical, not LLM-written");
    expect(el.textContent).toContain(EVIL);
    (el.querySelector('th[data-sort="unit"]') as HTMLElement).click();
    expect(units(el)).toEqual(["3", "7", "12"]);
    (el.querySelector('th[data-sort="unit"]') as HTMLElement).click();
    expect(units(el)).toEqual(["12", "7", "3"]);
    const input = el.querySelector(".iw-ai-filter") as HTMLInputElement;
    input.value = "FRUIT";
    input.dispatchEvent(new Event("input"));
    return new Promise<void>((done) =>
      setTimeout(() => {
        expect(units(el)).toEqual(["3"]);
        expect(el.querySelector(".iw-ai-count")!.textContent).toBe("1 of 3 units");
        done();
      }, 200),
    );
  });
});

describe("autointerp table: columns, badge and the open note", () => {
  const state = (corr: number[], topRand: number[], canOpen: boolean) => {
    const columns: Record<string, unknown> = {
      model: ["demo", "demo"], source: ["blocks.0.mlp.hook_post", "blocks.0.mlp.hook_post"],
      explainer: ["offline-statistical", "gpt-x"], kind: ["statistical", "llm"],
      explanation: ['[statistical, not LLM-written] tokens: " apple" (5.0)', "fruit words"], unit: i32([7, 3]),
    };
    for (const k of SCORES) columns[k] = f32(k === "correlation" ? corr : k === "top_and_random" ? topRand : k === "top" ? [0.8, 0.7] : [0.1, 0.2]);
    return { _view: "autointerp_table", columns, score_names: SCORES, n_rows: 2, sort: "correlation", descending: true, filter: "", selected: null, can_open: canOpen };
  };
  const headers = (el: Element) => Array.from(el.querySelectorAll("th")).map((th) => th.dataset.sort);

  it("drops top+rand where it equals corr in every row (only top and random records) and shows top and random", () => {
    const { el } = mount(state([0.4, 0.6], [0.4, 0.6], false), [], false);
    expect(headers(el)).toEqual(["unit", "source", "explanation", "correlation", "top", "random", "detection_auc", "fuzzing_auc"]);
    expect(el.querySelector('th[data-sort="top"]')!.getAttribute("title")).toContain("top-activating records alone");
    const row = el.querySelector('tr[data-row="0"]')!;
    expect(Array.from(row.querySelectorAll("td.iw-num")).map((td) => td.textContent).slice(0, 4)).toEqual(["7", fmt(0.4), fmt(0.8), fmt(0.1)]);
  });

  it("keeps top+rand where it differs from corr (records of other kinds were scored)", () => {
    const { el } = mount(state([0.4, 0.6], [0.5, 0.6], false), [], false);
    expect(headers(el)).toContain("top_and_random");
  });

  it("says 'statistical, not LLM-written' once: the badge, not the text beside it", () => {
    const { el } = mount(state([0.4, 0.6], [0.4, 0.6], false), [], false);
    const cell = el.querySelector('tr[data-row="0"] .iw-ai-explanation')!;
    expect(cell.textContent!.split("statistical, not LLM-written").length - 1).toBe(1);
    expect(cell.lastElementChild!.textContent).toBe('tokens: " apple" (5.0)');
  });

  it("says rows open only when they do (can_open), and follows can_open", () => {
    const { el, model } = mount(state([0.4, 0.6], [0.4, 0.6], false), [], true);
    expect(el.querySelector(".iw-ai-note")!.textContent).toBe("");
    expect(el.querySelector(".iw-ai-table")!.classList.contains("iw-ai-opens")).toBe(false);
    model.set("can_open", true);
    expect(el.querySelector(".iw-ai-note")!.textContent).toBe("click a row to open the unit");
    expect(el.querySelector(".iw-ai-table")!.classList.contains("iw-ai-opens")).toBe(true);
  });
});

describe("probe view", () => {
  const basis = (name: string, acc: number[], dense: number | null) => ({
    name, selection: "mean_diff", n_units: 64, n_train: 70, n_test: 30,
    k: i32([1, 2, 4]), accuracy: f32(acc), f1: f32(acc.map((a) => a - 0.1)),
    dense_accuracy: dense, dense_f1: dense === null ? null : dense - 0.1, units: [i32([3]), i32([3, 9]), i32([3, 9, 1, 0])],
  });
  it("draws a line per basis, the dense ceilings and switches metric", () => {
    const { el, model } = mount({ _view: "probe_view", bases: [basis("neurons", [0.6, 0.7, 0.8], 0.9), basis(EVIL, [0.5, 0.55, 0.6], null)], metric: "accuracy", title: "" }, [], false);
    expect(el.querySelectorAll("polyline.iw-probe-line").length).toBe(2);
    expect(el.querySelectorAll("line.iw-probe-dense").length).toBe(1);
    expect(el.querySelectorAll("circle.iw-probe-dot").length).toBe(6);
    expect(el.querySelector("circle.iw-probe-dot title")!.textContent).toContain("units: 3");
    const y0 = el.querySelector("circle.iw-probe-dot")!.getAttribute("cy");
    model.set("metric", "f1");
    expect(el.querySelector("circle.iw-probe-dot")!.getAttribute("cy")).not.toBe(y0);
    expect(el.querySelector(".iw-probe-legend")!.textContent).toContain(EVIL);
  });
});

describe("explain panel", () => {
  const views = { unit: withExplain((ctx) => void ctx.root.append(document.createElement("div"))) };
  it("shows a stored explanation with its badge and scores; needs a kernel to run", () => {
    const { el } = mount({
      _view: "unit", explain_llm: false,
      explain_state: { status: "done", explanation: EVIL, kind: "statistical", explainer: "offline-statistical", scores: { correlation: 0.5, detection_auc: null } },
    }, [], false, views);
    expect(el.querySelector(".iw-ai-explanation")!.textContent).toBe(EVIL);
    expect(el.querySelector(".iw-ai-badge")!.textContent).toBe("statistical, not LLM-written");
    expect(el.querySelector('tr[data-score="correlation"] .iw-num')!.textContent).toBe("0.5000");
    expect(el.querySelector('tr[data-score="detection_auc"] .iw-num')!.textContent).toBe("n/a");
    expect((el.querySelector(".iw-ai-explain-button") as HTMLButtonElement).disabled).toBe(true);
  });
  it("shows progress and cancel while running, errors after", () => {
    const { el, model } = mount({ _view: "unit", explain_llm: true, explain_state: { status: "running", step: "simulate", done: 1, total: 4, calls: 3 } }, [], true, views);
    expect((el.querySelector(".iw-ai-cancel") as HTMLElement).hidden).toBe(false);
    expect((el.querySelector(".iw-ai-progress") as HTMLProgressElement).value).toBe(1);
    expect(el.querySelector(".iw-ai-status")!.textContent).toBe("simulate… (3 API calls)");
    model.set("explain_state", { status: "error", error: "Authentication failed (HTTP 401)" });
    expect(el.querySelector(".iw-ai-error")!.textContent).toContain("Authentication");
    expect((el.querySelector(".iw-ai-cancel") as HTMLElement).hidden).toBe(true);
  });
  it("leaves views without explain_state alone", () => {
    const { el } = mount({ _view: "unit" }, [], true, views);
    expect(el.querySelector(".iw-ai-explain")).toBeNull();
  });
});

describe("intervals beside the numbers", () => {
  it("formats an estimate as Python's Estimate prints it", async () => {
    const { fmtEstimate } = await import("../src/components/dom");
    expect(fmtEstimate(0.9012, 0.8712, 0.9234)).toBe("0.90 [0.87, 0.92]");
    expect(fmtEstimate(0.0123, 0.0051, 0.0301)).toBe("0.012 [0.005, 0.030]");
    expect(fmtEstimate(0.9, NaN, NaN)).toBe(fmt(0.9));
    expect(fmtEstimate(0.9, null, undefined)).toBe(fmt(0.9));
    expect(fmtEstimate(NaN, 0.1, 0.2)).toBe("n/a");
  });

  it("the table shows a score's interval when it has one", () => {
    const columns: Record<string, unknown> = {
      model: ["demo", "demo"], source: ["s", "s"], explainer: ["x", "x"], kind: ["llm", "llm"],
      explanation: ["fruit", "tools"], unit: i32([1, 2]),
    };
    for (const k of SCORES) columns[k] = f32([0.9012, 0.5]);
    columns.correlation_low = f32([0.8712, NaN]);
    columns.correlation_high = f32([0.9234, NaN]);
    const { el } = mount({ _view: "autointerp_table", columns, score_names: SCORES, n_rows: 2, sort: "correlation", descending: true, filter: "", selected: null, can_open: false }, [], false);
    const cells = Array.from(el.querySelectorAll("tr.iw-ai-row")).map((r) => r.children[3].textContent);
    expect(cells).toEqual(["0.90 [0.87, 0.92]", fmt(0.5)]);
  });

  it("the probe view's F1 points and dense line carry their intervals", () => {
    const b = {
      name: "neurons", selection: "mean_diff", n_units: 64, n_train: 70, n_test: 30, k: i32([1, 2]),
      accuracy: f32([0.6, 0.7]), f1: f32([0.42, 0.5]), f1_low: f32([0.31, NaN]), f1_high: f32([0.52, NaN]),
      dense_accuracy: 0.8, dense_f1: 0.6, dense_f1_ci: [0.5, 0.7], split: "split by document: 20 train / 9 held out, none on both sides",
      units: [i32([3]), i32([3, 9])],
    };
    const { el } = mount({ _view: "probe_view", bases: [b], metric: "f1", title: "" }, [], false);
    const titles = Array.from(el.querySelectorAll("circle.iw-probe-dot title")).map((t) => t.textContent);
    expect(titles[0]).toContain("f1 0.42 [0.31, 0.52]");
    expect(titles[1]).toContain(`f1 ${fmt(0.5)}\n`);
    expect(el.querySelector(".iw-probe-legend")!.textContent).toContain("dense 0.60 [0.50, 0.70]");
    expect(el.querySelector(".iw-probe-split")!.textContent).toContain("split by document");
  });
});
