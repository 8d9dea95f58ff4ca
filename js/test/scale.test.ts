import { describe, expect, it } from "vitest";
import { chooseScale, legend, paintClass, tickLabel, tintClass } from "../src/components/scale";

describe("chooseScale", () => {
  it("is sequential when values stay on one side of zero", () => {
    const s = chooseScale([0.5, 2, NaN, 4]);
    expect(s.kind).toBe("sequential");
    expect([s.lo, s.hi]).toEqual([0.5, 4]);
    expect(s.paint(0.5)).toEqual(["iw-c-seq", 0]);
    expect(s.paint(4)[1]).toBe(1);
    expect(s.paint(NaN)).toEqual(["", 0]);
  });

  it("is diverging and symmetric around zero when values cross zero", () => {
    const s = chooseScale([-1, 0.5, 3]);
    expect(s.kind).toBe("diverging");
    expect([s.lo, s.center, s.hi]).toEqual([-3, 0, 3]);
    expect(s.paint(-3)).toEqual(["iw-c-neg", 1]);
    expect(s.paint(1.5)[0]).toBe("iw-c-pos");
    expect(s.paint(1.5)[1]).toBeCloseTo(0.5);
  });

  it("diverges around an explicit center even without a sign change", () => {
    const s = chooseScale([0.5, 1, 3], { center: 1 });
    expect(s.kind).toBe("diverging");
    expect([s.lo, s.center, s.hi]).toEqual([-1, 1, 3]);
    expect(s.paint(0.5)[0]).toBe("iw-c-neg");
  });

  it("honours cmap, vmin and vmax", () => {
    expect(chooseScale([-1, 1], { cmap: "sequential" }).kind).toBe("sequential");
    expect(chooseScale([1, 2], { cmap: "diverging" }).kind).toBe("diverging");
    const s = chooseScale([0, 10], { vmin: 2, vmax: 4 });
    expect([s.lo, s.hi]).toEqual([2, 4]);
    expect(s.paint(100)[1]).toBe(1); // clamped
  });

  it("survives constant and empty input", () => {
    expect(chooseScale([2, 2]).paint(2)).toEqual(["iw-c-seq", 0]);
    expect(chooseScale([]).kind).toBe("sequential");
  });
});

describe("paint and legend", () => {
  it("gives hue and opacity classes, strong text for strong colours, none for NaN", () => {
    const s = chooseScale([-1, 1]);
    expect(paintClass(s, 1)).toBe("iw-c-pos iw-a15 iw-strong");
    expect(paintClass(s, -0.5)).toBe("iw-c-neg iw-a8");
    expect(paintClass(s, 0)).toBe("iw-c-pos iw-a0");
    expect(paintClass(s, NaN)).toBe("");
    expect(tintClass("iw-c-to", 2)).toBe("iw-c-to iw-a15 iw-strong");
  });

  it("labels the ends (and centre) with 3 significant digits", () => {
    const el = legend(chooseScale([-0.123456, 2.34567]), "logit diff");
    expect(el.classList.contains("iw-legend")).toBe(true);
    expect(el.textContent).toContain("logit diff");
    expect(Array.from(el.querySelectorAll(".iw-legend-ticks span"), (s) => s.textContent)).toEqual(["-2.35", "0", "2.35"]);
    expect(el.querySelector(".iw-legend-gap")).toBeNull();
  });

  it("reads a float32 epsilon at the low end of a loss scale as 0", () => {
    const el = legend(chooseScale([1.192e-7, 3.5, 11.87]), "loss");
    expect(Array.from(el.querySelectorAll(".iw-legend-ticks span"), (s) => s.textContent)).toEqual(["0", "11.9"]);
    expect(tickLabel(1.192e-7, 0)).toBe("1.19e-7");
  });

  it("draws NaN and infinities as gaps, not as the colour of zero or of an end, and counts them", () => {
    for (const values of [[-1, 2, NaN, Infinity, -Infinity], [0, 2, NaN, Infinity, -Infinity]]) {
      const s = chooseScale(values);
      expect(s.gaps).toBe(3);
      for (const v of [NaN, Infinity, -Infinity]) expect(s.paint(v)).toEqual(["", 0]);
      expect([s.lo, s.hi].every(Number.isFinite)).toBe(true);
      expect(legend(s, "m").querySelector(".iw-legend-gap")?.textContent).toBe("no value (NaN/inf): 3");
    }
  });
});
