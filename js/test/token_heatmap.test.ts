// TokenHeatmap at scale: packed token strings (codec), the fast strip builder, and the view's
// colouring, switching and selection on top of them.
import { describe, expect, it } from "vitest";
import { decodeStringRows, decodeStrings, encodeArray, encodeStrings, type DType } from "../src/codec";
import { heatStrip } from "../src/components/heat_strip";
import { chooseScale, paintClass } from "../src/components/scale";
import { tokenClasser } from "../src/widgets/token_heatmap";
import { displayToken, tokenStrip } from "../src/components/tokens";
import { cleanUpAfterEach, click, mount, over, tick } from "./mount";
import fixture from "./fixtures/codec_cases.json";

const bytes = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
/** bytes at an odd offset of a bigger buffer, as anywidget's DataView windows can be */
const window3 = (raw: Uint8Array) => {
  const backing = new Uint8Array(raw.length + 3);
  backing.set(raw, 3);
  return new DataView(backing.buffer, 3, raw.length);
};

const TRICKY = ["", " the", "\n", "é", "日本語", "😀", "e\u0301", "\ufeffbom", "\u0000nul", "a\r\nb", "<b>x</b>", "&amp;"];

describe("packed strings", () => {
  it("round-trip: ASCII, multi-byte, astral, combining, a leading BOM, NUL, empty", () => {
    const enc = encodeStrings(TRICKY);
    expect(enc.lengths.dtype).toBe("uint8");
    expect(decodeStrings(enc)).toEqual(TRICKY);
  });

  it("a BOM that starts the first string is kept (not eaten as a byte-order mark)", () => {
    expect(decodeStrings(encodeStrings(["\ufeffa", "b"]))).toEqual(["\ufeffa", "b"]);
    expect(decodeStrings(encodeStrings(["\ufeff"]))).toEqual(["\ufeff"]);
  });

  it("pure ASCII takes the same path and keeps every string", () => {
    const s = Array.from({ length: 1000 }, (_, i) => (i % 7 === 0 ? "" : ` t${i}`));
    expect(decodeStrings(encodeStrings(s))).toEqual(s);
  });

  it("long strings get uint16 lengths; rows split lists", () => {
    const long = ["a", "é".repeat(200), "z"];
    const enc = encodeStrings(long);
    expect(enc.lengths.dtype).toBe("uint16");
    expect(decodeStrings(enc)).toEqual(long);
    const docs = [["a", " b"], [], ["😀"]];
    expect(decodeStringRows(encodeStrings(docs))).toEqual(docs);
    expect(decodeStringRows(encodeStrings(["x", "y"]))).toEqual([["x", "y"]]);
  });

  it("bytes that are not UTF-8 still give one string each (U+FFFD for the bad bytes)", () => {
    const utf8 = new Uint8Array([0x61, 0xff, 0x62, 0xc3, 0xa9]); // "a", <bad>, "b", "é"
    const out = decodeStrings({ format: "strings", utf8, lengths: encodeArray([1, 2, 2], [3], "uint8") });
    expect(out).toEqual(["a", "\ufffdb", "é"]);
  });

  it("says what is wrong", () => {
    const enc = encodeStrings(["ab", "c"]);
    enc.lengths = encodeArray([2, 2], [2], "uint8");
    expect(() => decodeStrings(enc)).toThrow(/add up to 4 bytes, the buffer holds 3/);
    expect(() => decodeStrings({ format: "csr" } as never)).toThrow(/expected packed strings/);
  });

  for (const c of fixture.strings) {
    it(`decodes what Python packed: ${c.name}`, () => {
      const lengths = { dtype: c.lengths.dtype as DType, shape: c.lengths.shape, buffer: window3(bytes(c.lengths.b64)) };
      const rows = "rows" in c && c.rows ? { dtype: "uint32" as DType, shape: [bytes(c.rows).length / 4], buffer: bytes(c.rows) } : undefined;
      const enc = { format: "strings" as const, utf8: window3(bytes(c.utf8)), lengths, rows };
      if (rows) expect(decodeStringRows(enc)).toEqual(c.strings);
      else expect(decodeStrings(enc)).toEqual(c.strings);
      // and JS packs them to the same bytes
      const again = encodeStrings(c.strings as string[] | string[][]);
      expect(Array.from(new Uint8Array((again.utf8 as DataView).buffer))).toEqual(Array.from(bytes(c.utf8)));
      expect(again.lengths.dtype).toBe(c.lengths.dtype);
    });
  }
});

describe("heatStrip", () => {
  const evil = ['<img src=x onerror="window.__pwned=1">', "</script><script>window.__pwned=1</script>", "&amp;"];

  it("makes one span per token, in order, with data-doc/data-pos and its class", () => {
    const docs = [[" a", "b", "\n", ...TRICKY], ["x", " y"]];
    const { el, spans, offsets } = heatStrip(docs, (i) => `iw-token k${i}`);
    expect(offsets).toEqual([0, docs[0].length, docs[0].length + 2]);
    expect(spans.length).toBe(docs[0].length + 2);
    expect(Array.from(el.querySelectorAll(".iw-token"))).toEqual(spans);
    spans.forEach((s, i) => expect(s.className).toBe(`iw-token k${i}`));
    const flat = docs.flatMap((d, di) => d.map((t, p) => [t, di, p] as const));
    flat.forEach(([t, d, p], i) => {
      expect(spans[i].dataset.doc).toBe(String(d));
      expect(spans[i].dataset.pos).toBe(String(p));
      expect(spans[i].textContent).toBe(displayToken(t)); // whitespace as symbols, as elsewhere
    });
  });

  it("renders tokens exactly as tokenStrip does (whitespace in faint spans)", () => {
    const docs = [[" the", "\t x ", "", "a\u00a0b", "\n\n", "word", "  two"]];
    const fast = heatStrip(docs, () => "iw-token");
    const ref = tokenStrip(docs);
    fast.spans.forEach((s, i) => expect(s.innerHTML).toBe(ref.spans[0][i].innerHTML));
  });

  it("keeps hostile tokens as text", () => {
    const { el, spans } = heatStrip([evil], () => "iw-token");
    document.body.append(el);
    expect(el.querySelector("img, script")).toBeNull();
    expect(spans.map((s) => s.textContent)).toEqual(evil.map(displayToken));
    expect((window as any).__pwned).toBeUndefined();
    el.remove();
  });

  it("cuts chunks with content-visibility and a height estimate; newlines break lines", () => {
    const doc = Array.from({ length: 2000 }, (_, i) => (i % 100 === 99 ? "\n" : ` t${i}`));
    const { el } = heatStrip([doc], () => "iw-token", { chunk: 150, width: 600, eagerPx: Infinity });
    const chunks = Array.from(el.querySelectorAll<HTMLElement>(".iw-chunk"));
    // a chunk ends at the first newline after 150 tokens: every 200 tokens here
    expect(chunks.length).toBe(10);
    expect(chunks.every((c) => c.querySelectorAll(".iw-token").length === 200)).toBe(true);
    expect(el.querySelectorAll("br").length).toBe(20);
    for (const c of chunks) {
      const m = /^auto (\d+)px$/.exec(c.style.getPropertyValue("contain-intrinsic-size"));
      expect(m).not.toBeNull();
      // 200 tokens of ~5 characters on 600 px lines: several lines, not one, not hundreds
      expect(Number(m![1])).toBeGreaterThan(5 * 24);
      expect(Number(m![1])).toBeLessThan(30 * 24);
    }
  });

  it("builds the first chunks at once and the rest later, in slices, to the same spans", async () => {
    const docs = [Array.from({ length: 1000 }, (_, i) => (i % 50 === 49 ? "\n" : ` t${i}`)), ["x", " y"]];
    const runs: (() => void)[] = [];
    // width: wider than the window, so that the eager estimate is the chunks' own
    const opts = { chunk: 100, width: 5000, slice: 300, later: (f: () => void) => runs.push(f) };
    const strip = heatStrip(docs, (i) => `iw-token k${i % 3}`, { ...opts, eagerPx: 1 });
    expect(strip.spans.length).toBe(100); // one chunk at least
    const chunks = Array.from(strip.el.querySelectorAll<HTMLElement>(".iw-chunk"));
    const estimate = (c: HTMLElement) => Number(/auto (\d+)px/.exec(c.style.getPropertyValue("contain-intrinsic-size"))![1]);
    // whole chunks until their estimated height reaches eagerPx
    const eagerPx = estimate(chunks[0]) + estimate(chunks[1]) + 1;
    expect(heatStrip(docs, () => "iw-token", { ...opts, eagerPx, later: () => {} }).spans.length).toBe(300);
    expect(strip.offsets).toEqual([0, 1000, 1002]);
    expect(chunks.length).toBe(11);
    // built chunks lose their placeholder height; the others keep their estimate until built
    expect(chunks[0].style.height).toBe("");
    for (const c of chunks.slice(1)) expect(c.style.height).toBe(`${estimate(c)}px`);
    expect(runs.length).toBe(1); // nothing more until `later` runs it
    runs[0]();
    expect(strip.spans.length).toBe(400); // one slice
    await strip.done;
    expect(strip.spans.length).toBe(1002);
    expect(Array.from(strip.el.querySelectorAll(".iw-token"))).toEqual(strip.spans);
    expect(chunks.every((c) => c.style.height === "")).toBe(true);
    const all = heatStrip(docs, (i) => `iw-token k${i % 3}`, { ...opts, eagerPx: Infinity });
    expect(strip.el.innerHTML).toBe(all.el.innerHTML);
  });

  it("stop() halts a build in progress", async () => {
    const doc = Array.from({ length: 900 }, (_, i) => ` t${i}`);
    const strip = heatStrip([doc], () => "iw-token", { chunk: 100, eagerPx: 1, slice: 100, later: (f) => setTimeout(f, 0) });
    strip.stop();
    await tick(30);
    expect(strip.spans.length).toBe(200);
  });

  it("an empty document still gets its block", () => {
    const { el, spans, offsets } = heatStrip([[], ["a"]], () => "iw-token");
    expect(el.querySelectorAll(".iw-doc").length).toBe(2);
    expect(spans.length).toBe(1);
    expect(offsets).toEqual([0, 0, 1]);
  });
});

describe("tokenClasser", () => {
  it("gives the classes paintClass gives, from a shared table", () => {
    for (const scale of [chooseScale([-2, 3]), chooseScale([0, 5]), chooseScale([0, 1], { cmap: "diverging", center: 0.25 })]) {
      const classOf = tokenClasser(scale);
      for (let v = -3; v <= 6; v += 0.037) expect(classOf(v)).toBe(`iw-token ${paintClass(scale, v)}`.trim());
      expect(classOf(NaN)).toBe("iw-token iw-gap");
      expect(classOf(Infinity)).toBe("iw-token iw-gap");
      expect(classOf(undefined as unknown as number)).toBe("iw-token iw-gap");
      expect(classOf(1.5)).toBe(classOf(1.5));
    }
  });
});

describe("token heatmap view on packed tokens", () => {
  const docs = [["<|endoftext|>", " The", "\n", "😀"], [" b", "é"]];
  const state = () => ({
    _rev: 0,
    _view: "token_heatmap",
    tokens: encodeStrings(docs),
    metrics: [
      { name: "loss", values: encodeArray([NaN, 2, 0.5, 1, 3, 0], [6], "float32") },
      { name: "diff", values: encodeArray([0, -1, 1, 0.5, -0.25, 1], [6], "float32") },
    ],
    metric: "loss",
    cmap: "auto",
    center: null,
    vmin: null,
    vmax: null,
    has_predictions: false,
    selected: null,
  });
  cleanUpAfterEach();
  const mountHeatmap = () => {
    const { model, el } = mount(state());
    return { model, el, spans: Array.from(el.querySelectorAll<HTMLElement>(".iw-token")) };
  };

  it("draws every token of every document with its colour from the first paint", () => {
    const { el, spans } = mountHeatmap();
    expect(el.querySelector(".iw-error")).toBeNull();
    expect(spans.map((s) => [s.dataset.doc, s.dataset.pos, s.textContent])).toEqual([
      ["0", "0", "<|endoftext|>"],
      ["0", "1", "·The"],
      ["0", "2", "⏎"],
      ["0", "3", "😀"],
      ["1", "0", "·b"],
      ["1", "1", "é"],
    ]);
    // sequential scale on loss: NaN a gap (uncoloured, counted in the legend), 3 (the max)
    // strongest, 0 (the min) level 0
    expect(spans[0].className).toBe("iw-token iw-gap");
    expect(el.querySelector(".iw-legend-gap")?.textContent).toBe("no value (NaN/inf): 1");
    expect(spans[4].className).toBe("iw-token iw-c-seq iw-a15 iw-strong");
    expect(spans[5].className).toBe("iw-token iw-c-seq iw-a0");
  });

  it("switching the metric rewrites the classes; the selection survives", () => {
    const { el, model, spans } = mountHeatmap();
    click(spans[5]);
    expect(model.get("selected")).toEqual([1, 1]);
    expect(spans[5].classList.contains("iw-selected")).toBe(true);
    const select = el.querySelector("select.iw-metric-select") as HTMLSelectElement;
    select.value = "diff";
    select.dispatchEvent(new Event("change"));
    expect(spans[1].className).toBe("iw-token iw-c-neg iw-a15 iw-strong"); // -1
    expect(spans[2].className).toBe("iw-token iw-c-pos iw-a15 iw-strong"); // 1
    expect(spans[0].className).toBe("iw-token iw-c-pos iw-a0"); // 0
    expect(spans[5].classList.contains("iw-selected")).toBe(true);
    expect(spans[5].classList.contains("iw-c-pos")).toBe(true);
    // the same spans, recoloured in place
    expect(Array.from(el.querySelectorAll(".iw-token"))).toEqual(spans);
  });

  it("hover in the second document shows its values", () => {
    const { el, spans } = mountHeatmap();
    over(spans[4]);
    const tip = el.querySelector(".iw-tooltip") as HTMLElement;
    expect(tip.hidden).toBe(false);
    expect(tip.textContent).toContain("doc 1");
    expect(tip.textContent).toContain("3.000"); // loss of token 4
    expect(tip.textContent).toContain("-0.2500"); // diff of token 4
  });

  it("past the first screenfuls: a metric switch and a selection made while the rest is built reach it", async () => {
    const n = 5000;
    const tokens = Array.from({ length: n }, (_, i) => ` w${i}`);
    const ramp = Array.from({ length: n }, (_, i) => i / (n - 1)); // 0 .. 1
    const { model, el } = mount({
      ...state(),
      tokens: encodeStrings([tokens]),
      metrics: [
        { name: "up", values: encodeArray(ramp, [n], "float32") },
        { name: "down", values: encodeArray(ramp.map((v) => 1 - v), [n], "float32") },
      ],
      metric: "up",
    });
    const built = () => el.querySelectorAll(".iw-token").length;
    expect(built()).toBeGreaterThan(0);
    expect(built()).toBeLessThan(n);
    model.set("metric", "down");
    model.set("selected", [0, n - 1]);
    for (let t = 0; t < 200 && built() < n; t++) await tick(10);
    expect(built()).toBe(n);
    const spans = el.querySelectorAll<HTMLElement>(".iw-token");
    expect(spans[n - 1].className).toBe("iw-token iw-c-seq iw-a0 iw-selected"); // "down" is 0 there
    expect(spans[0].className).toBe("iw-token iw-c-seq iw-a15 iw-strong");
    expect(el.querySelectorAll(".iw-selected").length).toBe(1);
    expect(performance.getEntriesByName("iw-strip-built").some((m) => (m as PerformanceMark).detail === el.firstElementChild!.id)).toBe(true);
  });

  it("a selection set from Python marks the right span; out of range marks none", () => {
    const { model, el, spans } = mountHeatmap();
    model.set("selected", [0, 3]);
    expect(el.querySelector(".iw-selected")).toBe(spans[3]);
    model.set("selected", [1, 9]);
    expect(el.querySelector(".iw-selected")).toBeNull();
  });
});
