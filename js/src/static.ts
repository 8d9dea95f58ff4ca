// Static HTML export: a stand-in for the anywidget model, fed from the embedded payload.
// Requests are answered from the table of answers precomputed in Python; the rest say that
// they need a running kernel.
import { gunzip, unpack } from "./gzip";
import { requestKey, restoreBuffers, type WidgetModel } from "./rpc";
import { renderView, type View } from "./view";

export interface StoredAnswer {
  ok: boolean;
  result?: unknown;
  error?: string;
}

/** What export.py writes (JSON header of the payload; binary buffers follow it). */
export interface PayloadHeader {
  version: number;
  state: Record<string, unknown>;
  answers: Record<string, StoredAnswer>;
  /** answers kept out of the payload, each in its own compressed block
   * (<script type="application/x-iw-lazy" id="iw-lazy-i">), decoded when first asked for */
  lazy?: Record<string, number>;
  /** [offset, length] of each buffer in the data section */
  buffers: [number, number][];
}

export const NEEDS_KERNEL = "needs a running kernel (this is a static export)";

/** A lazy answer's block: {answer, buffers} header, then its own buffers. */
async function lazyAnswer(index: number): Promise<[StoredAnswer, DataView[]]> {
  const block = document.getElementById(`iw-lazy-${index}`);
  if (!block) return [{ ok: false, error: `this export lacks its data block ${index}` }, []];
  const raw = await gunzip((block.textContent ?? "").trim());
  const [head, start] = unpack<{ answer: StoredAnswer; buffers: [number, number][] }>(raw);
  return [head.answer, head.buffers.map(([off, len]) => new DataView(raw, start + off, len))];
}

export function staticModel(state: Record<string, unknown>, answers: Record<string, StoredAnswer>, buffers: DataView[], lazy: Record<string, number> = {}): WidgetModel {
  const listeners = new Map<string, Set<(...a: any[]) => void>>();
  const emit = (event: string, ...args: unknown[]) => listeners.get(event)?.forEach((cb) => cb(...args));
  return {
    get: (name) => state[name],
    set(name, value) {
      state[name] = value;
      emit(`change:${name}`, this, value);
    },
    save_changes() {},
    on(event, cb) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)!.add(cb);
    },
    off(event, cb) {
      if (!event) listeners.clear();
      else if (!cb) listeners.delete(event);
      else listeners.get(event)?.delete(cb);
    },
    send(content) {
      const msg = content as { kind?: string; id?: string; method?: string; args?: unknown };
      if (msg?.kind !== "request") return;
      const key = requestKey(String(msg.method), msg.args ?? {});
      const stored = answers[key];
      if (!stored && key in lazy) {
        lazyAnswer(lazy[key]).then(
          ([reply, own]) => emit("msg:custom", { kind: "response", id: msg.id, ...reply }, own),
          (e) => emit("msg:custom", { kind: "response", id: msg.id, ok: false, error: String(e) }, []),
        );
        return;
      }
      const reply = stored ?? { ok: false, error: `"${msg.method}" ${NEEDS_KERNEL}` };
      setTimeout(() => emit("msg:custom", { kind: "response", id: msg.id, ...reply }, buffers), 0);
    },
  };
}

/** Render one exported widget into `el`; `data` is the decompressed payload's data section. */
export function mountStatic(el: HTMLElement, header: PayloadHeader, data: ArrayBuffer, dataOffset: number, views: Record<string, View>): () => void {
  const buffers = header.buffers.map(([off, len]) => new DataView(data, dataOffset + off, len));
  // State values use the same {"$buffer": i} placeholders as responses.
  const state = restoreBuffers(header.state, buffers) as Record<string, unknown>;
  return renderView(staticModel(state, header.answers, buffers, header.lazy ?? {}), el, views, false);
}
