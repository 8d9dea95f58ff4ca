// A strip of many coloured tokens (TokenHeatmap), built for a fast first paint of tens of
// thousands of tokens:
// - each span is created once with its final classes (colour included): no second pass, no
//   per-token inline style, no layout read while building;
// - the commonest tokens take a fast path ("word", " word"): one text node, or a cloned faint "·"
//   plus one text node; only the rest go through `segments`;
// - spans go into chunks of about `chunk` tokens styled `content-visibility: auto` (style.css
//   .iw-chunk), so only the chunks on screen get style, layout and paint; each chunk carries an
//   estimate of its height (`contain-intrinsic-size: auto <px>`) so that the scrollbar is about
//   right before the chunks below have been drawn (`auto`: once drawn, the real height is kept).
// Token text only ever reaches the page through text nodes, never as HTML.
import { h } from "./dom";
import { segments } from "./tokens";

export interface HeatStrip {
  el: HTMLElement;
  /** every token's span in order, document after document */
  spans: HTMLSpanElement[];
  /** offsets[d]: index in `spans` of document d's first token; offsets[n_docs] = total */
  offsets: number[];
}

export interface HeatStripOptions {
  /** tokens per chunk (a chunk ends at a newline once it has this many, and at twice this anyway) */
  chunk?: number;
  /** assumed text width in px, for the chunks' height estimate */
  width?: number;
}

/** Estimated px per character and per line (style.css .iw-strip: 14px text, line-height 1.75). */
const CHAR_PX = 7.6;
const LINE_PX = 24.5;

const NO_WS = /^[^\s\u00a0]+$/;
const SPACE_THEN_WORD = /^ [^\s\u00a0]+$/;

/**
 * Spans `span.iw-token[data-doc][data-pos]` for `docs` ([doc][pos] token strings), span i (in
 * document order) with class `classOf(i)` (which should start with "iw-token").
 */
export function heatStrip(docs: string[][], classOf: (i: number) => string, opts: HeatStripOptions = {}): HeatStrip {
  const chunk = Math.max(1, opts.chunk ?? 150);
  const width = Math.max(200, opts.width ?? 900);
  const el = h("div", { class: "iw-strip" });
  const frag = document.createDocumentFragment();
  const dot = h("span", { class: "iw-ws", text: "·" });
  const spans: HTMLSpanElement[] = [];
  const offsets: number[] = [0];
  let i = 0;
  for (let d = 0; d < docs.length; d++) {
    const tokens = docs[d];
    const docEl = document.createElement("div");
    docEl.className = "iw-doc";
    docEl.setAttribute("data-doc", String(d));
    let part = document.createElement("div");
    let inPart = 0;
    let px = 0; // estimated width of the text since the last line break
    let lines = 0; // estimated lines before that break
    const close = () => {
      part.className = "iw-chunk";
      const height = (lines + Math.ceil(px / width)) * LINE_PX;
      part.style.setProperty("contain-intrinsic-size", `auto ${Math.max(LINE_PX, Math.ceil(height))}px`);
      docEl.appendChild(part);
    };
    // Prototypes carry what every span of this document shares; cloning one costs less than
    // building it (fewer DOM calls per token).
    const plain = document.createElement("span");
    plain.setAttribute("data-doc", String(d));
    const lead = plain.cloneNode() as HTMLSpanElement;
    lead.append(dot.cloneNode(true), document.createTextNode(""));
    for (let p = 0; p < tokens.length; p++, i++) {
      const tok = tokens[p];
      let span: HTMLSpanElement;
      let nl = 0;
      if (NO_WS.test(tok)) {
        span = plain.cloneNode() as HTMLSpanElement;
        span.textContent = tok;
      } else if (SPACE_THEN_WORD.test(tok)) {
        span = lead.cloneNode(true) as HTMLSpanElement;
        (span.lastChild as Text).data = tok.slice(1);
      } else {
        span = plain.cloneNode() as HTMLSpanElement;
        for (const s of segments(tok)) {
          if (!s.ws) span.appendChild(document.createTextNode(s.text));
          else {
            const ws = document.createElement("span");
            ws.className = "iw-ws";
            ws.textContent = s.text;
            span.appendChild(ws);
          }
        }
        for (let k = tok.indexOf("\n"); k >= 0; k = tok.indexOf("\n", k + 1)) nl++;
      }
      span.className = classOf(i);
      span.setAttribute("data-pos", String(p));
      part.appendChild(span);
      spans.push(span);
      inPart++;
      px += tok.length * CHAR_PX + 1;
      for (let k = 0; k < Math.min(nl, 2); k++) part.appendChild(document.createElement("br"));
      if (nl > 0) {
        lines += Math.max(1, Math.ceil(px / width)) + (nl > 1 ? 1 : 0);
        px = 0;
      }
      if ((nl > 0 && inPart >= chunk) || inPart >= 2 * chunk) {
        close();
        part = document.createElement("div");
        inPart = 0;
        px = 0;
        lines = 0;
      }
    }
    if (inPart > 0 || tokens.length === 0) close();
    frag.appendChild(docEl);
    offsets.push(i);
  }
  el.appendChild(frag);
  return { el, spans, offsets };
}
