import { describe, expect, it } from "vitest";
import { fmt } from "../src/components/dom";
import { displayToken, fillToken, segments, tokenSpan, tokenStrip } from "../src/components/tokens";

describe("whitespace display", () => {
  it("shows spaces, newlines and tabs as symbols in faint runs", () => {
    expect(displayToken(" the")).toBe("·the");
    expect(displayToken("\n\n")).toBe("⏎⏎");
    expect(displayToken("a\tb ")).toBe("a→b·");
    expect(displayToken("")).toBe("∅");
    expect(segments(" hi")).toEqual([
      { text: "·", ws: true },
      { text: "hi", ws: false },
    ]);
  });

  it("puts whitespace runs in span.iw-ws and keeps data attributes", () => {
    const span = tokenSpan(" x\n", 2, 7);
    expect(span.className).toBe("iw-token");
    expect(span.dataset.doc).toBe("2");
    expect(span.dataset.pos).toBe("7");
    expect(Array.from(span.querySelectorAll(".iw-ws"), (s) => s.textContent)).toEqual(["·", "⏎"]);
    expect(span.textContent).toBe("·x⏎");
  });
});

describe("token text is text", () => {
  const evil = ['<img src=x onerror="window.__pwned=1">', "</script><script>window.__pwned=1</script>", "<b>bold</b>", "&amp;"];

  it("lands literally, creating no elements", () => {
    const { el, spans } = tokenStrip([evil]);
    document.body.append(el);
    expect(el.querySelector("img, script, b")).toBeNull();
    expect(spans[0].map((s) => s.textContent)).toEqual(evil.map(displayToken));
    expect(spans[0][3].textContent).toBe("&amp;");
    expect((window as any).__pwned).toBeUndefined();
    el.remove();
  });
});

describe("tokenStrip", () => {
  it("renders every token once, in chunks, one block per document", () => {
    const doc = Array.from({ length: 2500 }, (_, i) => (i % 50 === 49 ? "\n" : ` t${i}`));
    const { el, spans } = tokenStrip([doc, ["a", "b"]], 400);
    expect(el.querySelectorAll(".iw-token").length).toBe(2502);
    expect(spans[0].length).toBe(2500);
    expect(el.querySelectorAll(".iw-doc").length).toBe(2);
    const chunks = el.querySelectorAll(".iw-doc")[0].querySelectorAll(".iw-chunk");
    expect(chunks.length).toBeGreaterThanOrEqual(5);
    expect(chunks.length).toBeLessThanOrEqual(7);
  });
});

describe("fmt", () => {
  it("gives 4 significant digits", () => {
    expect(fmt(0.123456)).toBe("0.1235");
    expect(fmt(2)).toBe("2.000");
    expect(fmt(12345.6)).toBe("1.235e+4");
    expect(fmt(NaN)).toBe("n/a");
  });
});

// a U+202E in a token once reversed the rest of the line on screen
describe("control and bidi characters", () => {
  it("shows bidi overrides, isolates and controls as escapes", () => {
    expect(displayToken("abc\u202edef")).toBe("abc\\u202edef");
    expect(displayToken("\u2066x\u2069")).toBe("\\u2066x\\u2069");
    expect(displayToken("a\u0007b\u001b[31m")).toBe("a\\u0007b\\u001b[31m");
    expect(segments("a\u202e\u202eb")).toEqual([
      { text: "a", ws: false },
      { text: "\\u202e", ws: true },
      { text: "\\u202e", ws: true },
      { text: "b", ws: false },
    ]);
  });

  it("keeps whitespace symbols and plain tokens as they were", () => {
    expect(displayToken(" the\n")).toBe("·the⏎");
    expect(displayToken("plain")).toBe("plain");
    const el = fillToken(document.createElement("span"), "x\u202ey");
    expect(el.textContent).toBe("x\\u202ey");
    expect(el.textContent).not.toContain("\u202e");
    expect(el.querySelector(".iw-ws")!.textContent).toBe("\\u202e");
  });
});
