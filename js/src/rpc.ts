// Request/response over anywidget custom messages, the JS half of BaseWidget._on_msg.
// JS sends {kind: "request", id, method, args}; Python answers
// {kind: "response", id, ok, result | error} with binary buffers pulled out of `result` and
// replaced by {"$buffer": i} placeholders, which `restoreBuffers` puts back.

export interface WidgetModel {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  on(event: string, cb: (...args: any[]) => void): void;
  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}

export interface Response {
  kind: "response";
  id: string;
  ok: boolean;
  result?: unknown;
  error?: string;
}

const PLACEHOLDER = "$buffer";

function toDataView(b: ArrayBuffer | ArrayBufferView): DataView {
  if (b instanceof DataView) return b;
  if (b instanceof ArrayBuffer) return new DataView(b);
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Replace every {"$buffer": i} in `value` by buffers[i] as a DataView. */
export function restoreBuffers(value: unknown, buffers: readonly (ArrayBuffer | ArrayBufferView)[]): any {
  if (Array.isArray(value)) return value.map((v) => restoreBuffers(v, buffers));
  if (value && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    if (keys.length === 1 && keys[0] === PLACEHOLDER && typeof obj[PLACEHOLDER] === "number") {
      const b = buffers[obj[PLACEHOLDER] as number];
      if (!b) throw new Error(`response refers to missing buffer ${obj[PLACEHOLDER]}`);
      return toDataView(b);
    }
    const out: Record<string, unknown> = {};
    for (const k of keys) out[k] = restoreBuffers(obj[k], buffers);
    return out;
  }
  return value;
}

/** The inverse of restoreBuffers (for tests; Python does this for real messages). */
export function extractBuffers(value: unknown, buffers: DataView[] = []): [any, DataView[]] {
  const walk = (v: unknown): unknown => {
    if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
      buffers.push(toDataView(v as ArrayBuffer));
      return { [PLACEHOLDER]: buffers.length - 1 };
    }
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x);
      return out;
    }
    return v;
  };
  return [walk(value), buffers];
}

/** JSON with sorted keys: the key of a request in the static export's answer table. */
export function requestKey(method: string, args: unknown): string {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon);
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) out[k] = canon((v as Record<string, unknown>)[k]);
      return out;
    }
    return v;
  };
  return JSON.stringify([method, canon(args)]);
}

export class RequestError extends Error {}

let counter = 0;

export class Rpc {
  private pending = new Map<string, { resolve: (v: any) => void; reject: (e: Error) => void; timer: any }>();
  private readonly onMsg = (msg: Response, buffers?: (ArrayBuffer | ArrayBufferView)[]) => this.receive(msg, buffers ?? []);

  constructor(private model: WidgetModel, private timeoutMs = 120_000) {
    model.on("msg:custom", this.onMsg);
  }

  request<T = any>(method: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = `r${++counter}-${Date.now().toString(36)}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError(`"${method}" got no answer from the kernel within ${this.timeoutMs / 1000} s`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.model.send({ kind: "request", id, method, args });
    });
  }

  private receive(msg: Response, buffers: (ArrayBuffer | ArrayBufferView)[]): void {
    if (!msg || msg.kind !== "response") return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.ok) {
      try {
        p.resolve(restoreBuffers(msg.result, buffers));
      } catch (e) {
        p.reject(e as Error);
      }
    } else {
      p.reject(new RequestError(msg.error || "the kernel reported an error without a message"));
    }
  }

  dispose(): void {
    this.model.off("msg:custom", this.onMsg);
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}
