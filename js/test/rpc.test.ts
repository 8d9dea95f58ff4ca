import { describe, expect, it, vi } from "vitest";
import { decodeArray, encodeArray } from "../src/codec";
import { extractBuffers, requestKey, restoreBuffers, Rpc, type WidgetModel } from "../src/rpc";

/** A model whose send() hands the message to `reply`, which answers like the Python side. */
function fakeModel(reply: (msg: any) => [any, ArrayBuffer[]] | null) {
  const handlers = new Set<(...a: any[]) => void>();
  const sent: any[] = [];
  const model: WidgetModel = {
    get: () => undefined,
    set: () => {},
    save_changes: () => {},
    on: (_e, cb) => handlers.add(cb),
    off: (_e, cb) => cb && handlers.delete(cb),
    send(msg) {
      sent.push(msg);
      const r = reply(msg);
      if (r) queueMicrotask(() => handlers.forEach((h) => h(r[0], r[1])));
    },
  };
  return { model, sent, handlers };
}

describe("buffer placeholders", () => {
  it("restoreBuffers puts DataViews back at every depth", () => {
    const a = new Uint8Array([1, 2, 3]).buffer;
    const b = new Float32Array([0.5]).buffer;
    const out = restoreBuffers({ x: { $buffer: 1 }, list: [{ $buffer: 0 }, 3], keep: { $buffer: 0, other: 1 } }, [a, b]);
    expect(out.x).toBeInstanceOf(DataView);
    expect(out.x.getFloat32(0, true)).toBe(0.5);
    expect(new Uint8Array(out.list[0].buffer)).toEqual(new Uint8Array([1, 2, 3]));
    expect(out.list[1]).toBe(3);
    expect(out.keep).toEqual({ $buffer: 0, other: 1 }); // not a placeholder: two keys
  });

  it("extractBuffers is its inverse", () => {
    const value = { arr: encodeArray([1, 2], [2], "int32"), n: 4, s: ["a"] };
    const [stripped, buffers] = extractBuffers(value);
    expect(stripped.arr.buffer).toEqual({ $buffer: 0 });
    expect(JSON.parse(JSON.stringify(stripped))).toEqual(stripped);
    const back = restoreBuffers(stripped, buffers);
    expect(Array.from(decodeArray(back.arr).data)).toEqual([1, 2]);
  });

  it("a missing buffer is an error, not undefined data", () => {
    expect(() => restoreBuffers({ $buffer: 2 }, [])).toThrow(/missing buffer 2/);
  });

  it("requestKey sorts keys so JS and Python agree", () => {
    expect(requestKey("pattern", { layer: 1, head: 2 })).toBe('["pattern",{"head":2,"layer":1}]');
  });
});

describe("Rpc", () => {
  it("resolves with buffers re-assembled into the result", async () => {
    const { model, sent } = fakeModel((msg) => {
      const f = new Float32Array([msg.args.layer, 0.25]);
      return [{ kind: "response", id: msg.id, ok: true, result: { pattern: { dtype: "float32", shape: [2], buffer: { $buffer: 0 } } } }, [f.buffer]];
    });
    const rpc = new Rpc(model);
    const out = await rpc.request("pattern", { layer: 3, head: 0 });
    expect(sent[0]).toMatchObject({ kind: "request", method: "pattern", args: { layer: 3, head: 0 } });
    expect(Array.from(decodeArray(out.pattern).data)).toEqual([3, 0.25]);
  });

  it("rejects with the kernel's message for a person", async () => {
    const { model } = fakeModel((msg) => [{ kind: "response", id: msg.id, ok: false, error: "layer 9 is out of range (0..3)" }, []]);
    await expect(new Rpc(model).request("pattern", { layer: 9 })).rejects.toThrow("layer 9 is out of range (0..3)");
  });

  it("ignores other messages and answers to other requests", async () => {
    const { model, handlers } = fakeModel(() => null);
    const rpc = new Rpc(model);
    const p = rpc.request("x");
    handlers.forEach((h) => h({ kind: "response", id: "someone-else", ok: true, result: 1 }, []));
    handlers.forEach((h) => h({ kind: "other" }, []));
    let settled = false;
    p.then(() => (settled = true)).catch(() => (settled = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(settled).toBe(false);
    rpc.dispose();
    expect(handlers.size).toBe(0);
  });

  it("times out with a message when the kernel never answers", async () => {
    vi.useFakeTimers();
    const { model } = fakeModel(() => null);
    const p = new Rpc(model, 1000).request("slow");
    vi.advanceTimersByTime(1001);
    await expect(p).rejects.toThrow(/"slow" got no answer from the kernel within 1 s/);
    vi.useRealTimers();
  });
});
