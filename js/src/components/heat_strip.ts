// A strip of many coloured tokens (TokenHeatmap), built for a fast first paint of tens of
// thousands of tokens:
// - the tokens are cut into chunks of about `chunk` tokens styled `content-visibility: auto`
//   (style.css .iw-chunk), so only the chunks on screen get style, layout and paint; each chunk
//   carries an estimate of its height (`contain-intrinsic-size: auto <px>`) so that the scrollbar
//   is about right before the chunks below have been drawn (`auto`: once drawn, the real height is
//   kept);
// - the first chunks, `eagerPx` of estimated height (more than twice the strip's 420 px, even were
//   the strip as wide as the window), are built at once; the chunks after them are built in slices
//   of `slice` tokens, one task each, starting after the first paint (`later`).
//   Until it is built, a chunk holds its estimated height, so the strip has its full length from
//   the first paint. `done` resolves once every span is in the page;
// - each span is created once with its final classes (colour included), by cloning a prototype
//   that already carries them: no second pass, no per-token inline style, no layout read;
// - the commonest tokens take a fast path ("word", " word"): one text node, or a cloned faint "·"
//   plus one text node; only the rest go through `segments`.
// Token text only ever reaches the page through text nodes, never as HTML.
import { h } from "./dom";
import { HIDDEN, segments } from "./tokens";

export interface HeatStrip {
  el: HTMLElement;
  /** the spans built so far, in order, document after document (all of them once `done`) */
  spans: HTMLSpanElement[];
  /** offsets[d]: index in `spans` of document d's first token; offsets[n_docs] = total */
  offsets: number[];
  /** resolves once every token's span is in the strip (at once when all were built eagerly) */
  done: Promise<void>;
  /** stop building (the view went away); `done` then never resolves */
  stop(): void;
}

export interface HeatStripOptions {
  /** tokens per chunk (a chunk ends at a newline once it has this many, and at twice this anyway) */
  chunk?: number;
  /** assumed text width in px, for the chunks' height estimate */
  width?: number;
  /** estimated height in px of the chunks built before heatStrip returns (Infinity: all),
   * estimated at the window's width (the widest the strip can be: the fewest lines) */
  eagerPx?: number;
  /** tokens built per later task */
  slice?: number;
  /** runs the first later slice; by default after the next frame has been drawn */
  later?: (run: () => void) => void;
}

/** Estimated px per character and per line (style.css .iw-strip: 14px text, line-height 1.75). */
const CHAR_PX = 7.6;
const LINE_PX = 24.5;

// tokens without whitespace, control or bidi characters (those go through `segments`)
const NO_WS = new RegExp(`^[^\\s\\u00a0${HIDDEN}]+$`);
const SPACE_THEN_WORD = new RegExp(`^ [^\\s\\u00a0${HIDDEN}]+$`);

function afterNextFrame(run: () => void): void {
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(() => setTimeout(run, 0));
  else setTimeout(run, 0);
}

function newlines(tok: string): number {
  let n = 0;
  for (let k = tok.indexOf("\n"); k >= 0; k = tok.indexOf("\n", k + 1)) n++;
  return n;
}

/** One chunk: tokens [from, to) of document `doc`, to be built into `el`. */
interface Chunk {
  doc: number;
  from: number;
  to: number;
  el: HTMLDivElement;
  /** estimated height, px */
  height: number;
}

/**
 * Spans `span.iw-token[data-doc][data-pos]` for `docs` ([doc][pos] token strings), span i (in
 * document order) with class `classOf(i)` (which should start with "iw-token"). `classOf` is
 * called when span i is built, so a later change of colouring reaches the spans built after it.
 */
export function heatStrip(docs: string[][], classOf: (i: number) => string, opts: HeatStripOptions = {}): HeatStrip {
  const chunkSize = Math.max(1, opts.chunk ?? 150);
  const width = Math.max(200, opts.width ?? 900);
  const eagerPx = opts.eagerPx ?? 1000;
  const widest = Math.max(width, typeof window === "undefined" ? 0 : window.innerWidth || 0);
  const slice = Math.max(1, opts.slice ?? 4000);
  const el = h("div", { class: "iw-strip" });
  const frag = document.createDocumentFragment();
  const spans: HTMLSpanElement[] = [];
  const offsets: number[] = [0];

  // Plan: cut every document into chunks and estimate each chunk's height (strings only, no DOM).
  const chunks: Chunk[] = [];
  let total = 0;
  for (let d = 0; d < docs.length; d++) {
    const tokens = docs[d];
    const docEl = document.createElement("div");
    docEl.className = "iw-doc";
    docEl.setAttribute("data-doc", String(d));
    let from = 0;
    let px = 0; // estimated width of the text since the last line break
    let lines = 0; // estimated lines before that break
    const close = (to: number) => {
      const part = document.createElement("div");
      part.className = "iw-chunk";
      const height = Math.max(LINE_PX, Math.ceil((lines + Math.ceil(px / width)) * LINE_PX));
      part.style.setProperty("contain-intrinsic-size", `auto ${height}px`);
      part.style.height = `${height}px`; // until it is built (cleared then)
      docEl.appendChild(part);
      chunks.push({ doc: d, from, to, el: part, height });
      from = to;
      px = 0;
      lines = 0;
    };
    for (let p = 0; p < tokens.length; p++) {
      const tok = tokens[p];
      const nl = NO_WS.test(tok) ? 0 : newlines(tok);
      px += tok.length * CHAR_PX + 1;
      if (nl > 0) {
        lines += Math.max(1, Math.ceil(px / width)) + (nl > 1 ? 1 : 0);
        px = 0;
      }
      const inPart = p + 1 - from;
      if ((nl > 0 && inPart >= chunkSize) || inPart >= 2 * chunkSize) close(p + 1);
    }
    if (from < tokens.length || tokens.length === 0) close(tokens.length);
    frag.appendChild(docEl);
    total += tokens.length;
    offsets.push(total);
  }
  el.appendChild(frag);

  // Build: prototypes carry what spans share (document, class); cloning one costs less than
  // building it.
  const dot = h("span", { class: "iw-ws", text: "·" });
  let protoDoc = -1;
  let plain = new Map<string, HTMLSpanElement>();
  let lead = new Map<string, HTMLSpanElement>();
  const prototypes = (doc: number, cls: string): [HTMLSpanElement, HTMLSpanElement] => {
    if (doc !== protoDoc) {
      protoDoc = doc;
      plain = new Map();
      lead = new Map();
    }
    let p = plain.get(cls);
    if (!p) {
      p = document.createElement("span");
      p.className = cls;
      p.setAttribute("data-doc", String(doc));
      plain.set(cls, p);
      const l = p.cloneNode() as HTMLSpanElement;
      l.append(dot.cloneNode(true), document.createTextNode(""));
      lead.set(cls, l);
    }
    return [p, lead.get(cls)!];
  };
  const build = (c: Chunk) => {
    const tokens = docs[c.doc];
    const part = c.el;
    let i = offsets[c.doc] + c.from;
    for (let p = c.from; p < c.to; p++, i++) {
      const tok = tokens[p];
      const [plainProto, leadProto] = prototypes(c.doc, classOf(i));
      let span: HTMLSpanElement;
      let nl = 0;
      if (NO_WS.test(tok)) {
        span = plainProto.cloneNode() as HTMLSpanElement;
        span.textContent = tok;
      } else if (SPACE_THEN_WORD.test(tok)) {
        span = leadProto.cloneNode(true) as HTMLSpanElement;
        (span.lastChild as Text).data = tok.slice(1);
      } else {
        span = plainProto.cloneNode() as HTMLSpanElement;
        for (const s of segments(tok)) {
          if (!s.ws) span.appendChild(document.createTextNode(s.text));
          else {
            const ws = document.createElement("span");
            ws.className = "iw-ws";
            ws.textContent = s.text;
            span.appendChild(ws);
          }
        }
        nl = newlines(tok);
      }
      span.setAttribute("data-pos", String(p));
      part.appendChild(span);
      spans.push(span);
      for (let k = 0; k < Math.min(nl, 2); k++) part.appendChild(document.createElement("br"));
    }
    part.style.removeProperty("height");
  };

  let next = 0;
  for (let px = 0; next < chunks.length && px < eagerPx; next++) {
    build(chunks[next]);
    px += (chunks[next].height * width) / widest;
  }
  let stopped = false;
  const done =
    next >= chunks.length
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const step = () => {
            if (stopped) return;
            const until = spans.length + slice;
            while (next < chunks.length && spans.length < until) build(chunks[next++]);
            if (next < chunks.length) setTimeout(step, 0);
            else resolve();
          };
          (opts.later ?? afterNextFrame)(step);
        });
  return {
    el,
    spans,
    offsets,
    done,
    stop: () => {
      stopped = true;
    },
  };
}
