import { describe, expect, it } from "vitest";
import { csrToDense, decodeArray, decodeCSR, encodeArray, floatToHalf, halfToFloat, type DType } from "../src/codec";
import fixture from "./fixtures/codec_cases.json";

describe("decodeArray / encodeArray", () => {
  const cases: [DType, number[]][] = [
    ["float32", [0, -1.5, 3.25, 1e-7, -2e30, NaN]],
    ["float16", [0, -1.5, 3.25, 2 ** -14, 65504, NaN]],
    ["int32", [0, -1, 2147483647, -2147483648, 42, 7]],
    ["uint8", [0, 1, 127, 128, 254, 255]],
  ];
  for (const [dtype, values] of cases) {
    it(`round-trips ${dtype} with its shape`, () => {
      const out = decodeArray(encodeArray(values, [2, 3], dtype));
      expect(out.dtype).toBe(dtype);
      expect(out.shape).toEqual([2, 3]);
      expect(Array.from(out.data)).toEqual(values.map((v) => (dtype === "float32" ? Math.fround(v) : v)));
    });
  }

  it("honours byteOffset/byteLength of a DataView window, even unaligned", () => {
    const backing = new ArrayBuffer(64);
    const f = new Float32Array([1.5, -2, 8]);
    new Uint8Array(backing).set(new Uint8Array(f.buffer), 9); // offset 9: not a multiple of 4
    const out = decodeArray({ dtype: "float32", shape: [3], buffer: new DataView(backing, 9, 12) });
    expect(Array.from(out.data)).toEqual([1.5, -2, 8]);
  });

  it("says what is wrong when the bytes do not fit the shape", () => {
    expect(() => decodeArray({ dtype: "int32", shape: [4], buffer: new ArrayBuffer(8) })).toThrow(/needs 16 bytes, got 8/);
    expect(() => decodeArray({ dtype: "float64" as DType, shape: [1], buffer: new ArrayBuffer(8) })).toThrow(/unsupported dtype/);
  });
});

describe("float16", () => {
  it("decodes special values and subnormals", () => {
    const bits = new Uint16Array([0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x7e00]);
    const v = halfToFloat(bits);
    expect(Array.from(v.slice(0, 9))).toEqual([0, -0, 1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, Infinity, -Infinity]);
    expect(Number.isNaN(v[9])).toBe(true);
  });

  it("encodes with round-to-nearest-even like numpy", () => {
    expect(floatToHalf(1)).toBe(0x3c00);
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(floatToHalf(65520)).toBe(0x7c00); // overflows to inf
    expect(floatToHalf(2 ** -25)).toBe(0x0000); // tie at the smallest subnormal -> even (0)
    expect(floatToHalf(3 * 2 ** -25)).toBe(0x0002);
    expect(floatToHalf(0.1)).toBe(0x2e66);
  });

  it("agrees with Float16Array where the runtime has one", () => {
    const F16 = (globalThis as any).Float16Array;
    if (!F16) return;
    const xs = [0.1, 0.2, 0.3, 1 / 3, 1e-5, 12345, -0.7];
    const native = new Uint16Array(new F16(xs).buffer);
    expect(xs.map(floatToHalf)).toEqual(Array.from(native));
  });
});

describe("CSR", () => {
  it("decodes to the dense matrix", () => {
    // [[0, 2, 0], [0, 0, 0], [1, 0, 3]]
    const m = decodeCSR({
      format: "csr",
      shape: [3, 3],
      indptr: encodeArray([0, 1, 1, 3], [4], "int32"),
      indices: encodeArray([1, 0, 2], [3], "int32"),
      data: encodeArray([2, 1, 3], [3], "float16"),
    });
    expect(Array.from(csrToDense(m))).toEqual([0, 2, 0, 0, 0, 0, 1, 0, 3]);
  });

  it("rejects a malformed matrix", () => {
    expect(() =>
      decodeCSR({
        format: "csr",
        shape: [3, 3],
        indptr: encodeArray([0, 1], [2], "int32"),
        indices: encodeArray([1], [1], "int32"),
        data: encodeArray([2], [1], "float32"),
      }),
    ).toThrow(/malformed CSR/);
  });
});

const bytes = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const expected = (v: number | string) => (typeof v === "number" ? v : v === "nan" ? NaN : v === "inf" ? Infinity : -Infinity);

describe("arrays encoded by Python (tests/test_codec.py writes the fixture)", () => {
  for (const c of fixture.arrays) {
    it(`decodes ${c.name}`, () => {
      // put the bytes at an odd offset of a bigger buffer, as a DataView window
      const raw = bytes(c.b64);
      const backing = new Uint8Array(raw.length + 3);
      backing.set(raw, 3);
      const out = decodeArray({ dtype: c.dtype as DType, shape: c.shape, buffer: new DataView(backing.buffer, 3, raw.length) });
      expect(out.shape).toEqual(c.shape);
      expect(Array.from(out.data)).toEqual(c.values.map(expected));
    });
  }

  it("decodes the CSR matrix", () => {
    const { csr } = fixture;
    const m = decodeCSR({
      format: "csr",
      shape: csr.shape as [number, number],
      indptr: { dtype: "int32", shape: [csr.shape[0] + 1], buffer: bytes(csr.indptr) },
      indices: { dtype: "int32", shape: [bytes(csr.indices).length / 4], buffer: bytes(csr.indices) },
      data: { dtype: "float16", shape: [bytes(csr.data).length / 2], buffer: bytes(csr.data) },
    });
    expect(Array.from(csrToDense(m))).toEqual(csr.dense);
  });
});
