// Token text as text: whitespace made visible (space ·, newline ⏎, tab →), and control and
// bidirectional-formatting characters (U+202E reverses all text after it on screen) shown as
// escapes (\u202e) that act on nothing; rendered by textContent.
import { h } from "./dom";

const WS_SYMBOL: Record<string, string> = { " ": "·", "\n": "⏎", "\t": "→", "\r": "␍", "\u00a0": "⍽" };
/** Control and bidi-formatting characters, as a RegExp character-class body. */
export const HIDDEN = "\\u0000-\\u0008\\u000e-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069";
const WS_RE = new RegExp(`[\\s\\u00a0]+|[${HIDDEN}]`, "g");
const HIDDEN_RE = new RegExp(`^[${HIDDEN}]$`);

/** A control or bidi character as a visible escape, e.g. "\\u202e". */
function escapeHidden(c: string): string {
  return "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
}

export interface Segment {
  text: string;
  ws: boolean;
}

/** Split a token into runs of visible text and runs of whitespace shown as symbols (control and
 * bidi characters as escapes, one per segment). */
export function segments(token: string): Segment[] {
  if (token === "") return [{ text: "∅", ws: true }];
  const out: Segment[] = [];
  let last = 0;
  for (const m of token.matchAll(WS_RE)) {
    if (m.index! > last) out.push({ text: token.slice(last, m.index), ws: false });
    const shown = HIDDEN_RE.test(m[0]) ? escapeHidden(m[0]) : Array.from(m[0], (c) => WS_SYMBOL[c] ?? "·").join("");
    out.push({ text: shown, ws: true });
    last = m.index! + m[0].length;
  }
  if (last < token.length) out.push({ text: token.slice(last), ws: false });
  return out;
}

/** The token as one display string (for tables, tooltips and cells). */
export function displayToken(token: string): string {
  return segments(token)
    .map((s) => s.text)
    .join("");
}

const HAS_WS = new RegExp(`[\\s\\u00a0${HIDDEN}]`);

/** Fill `el` with the token's segments; whitespace runs go in a faint span.iw-ws. */
export function fillToken(el: HTMLElement, token: string): HTMLElement {
  if (token !== "" && !HAS_WS.test(token)) {
    el.append(token); // the common case, without building segments
    return el;
  }
  for (const s of segments(token)) {
    el.append(s.ws ? h("span", { class: "iw-ws", text: s.text }) : s.text);
  }
  return el;
}

/** span.iw-token[data-doc][data-pos] showing `token`. */
export function tokenSpan(token: string, doc: number, pos: number): HTMLSpanElement {
  const span = document.createElement("span");
  span.className = "iw-token";
  span.setAttribute("data-doc", String(doc));
  span.setAttribute("data-pos", String(pos));
  return fillToken(span, token) as HTMLSpanElement;
}

export function newlineCount(token: string): number {
  let n = 0;
  for (const c of token) if (c === "\n") n++;
  return n;
}

export interface Strip {
  el: HTMLElement;
  /** spans[doc][pos] */
  spans: HTMLSpanElement[][];
}

/**
 * One block per document; each block is cut into chunks of about `chunk` tokens (at a newline
 * where one is near) styled `content-visibility: auto`, so only chunks on screen are laid out.
 * Newlines in tokens also break the line after the token.
 */
export function tokenStrip(docs: string[][], chunk = 400): Strip {
  const el = h("div", { class: "iw-strip" });
  const frag = document.createDocumentFragment();
  const spans: HTMLSpanElement[][] = [];
  docs.forEach((tokens, d) => {
    const docEl = h("div", { class: "iw-doc", attrs: { "data-doc": d } });
    const row: HTMLSpanElement[] = [];
    let part = h("div", { class: "iw-chunk" });
    let inPart = 0;
    tokens.forEach((tok, p) => {
      const span = tokenSpan(tok, d, p);
      row.push(span);
      part.append(span);
      inPart++;
      const nl = newlineCount(tok);
      for (let i = 0; i < Math.min(nl, 2); i++) part.append(document.createElement("br"));
      if ((nl > 0 && inPart >= chunk) || inPart >= 2 * chunk) {
        docEl.append(part);
        part = h("div", { class: "iw-chunk" });
        inPart = 0;
      }
    });
    if (inPart > 0 || tokens.length === 0) docEl.append(part);
    spans.push(row);
    frag.append(docEl);
  });
  el.append(frag);
  return { el, spans };
}

/** The span under an event target, with its document and position. */
export function tokenAt(target: EventTarget | null): { span: HTMLElement; doc: number; pos: number } | null {
  const span = (target as Element | null)?.closest?.(".iw-token") as HTMLElement | null;
  if (!span) return null;
  return { span, doc: Number(span.dataset.doc), pos: Number(span.dataset.pos) };
}
