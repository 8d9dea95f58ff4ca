// Binary array codec, the JS half of interp_widgets/widgets/_codec.py.
// An encoded array is {dtype, shape, buffer}: buffer holds the little-endian bytes in C order.
// anywidget delivers a memoryview inside a synced dict (or a message) as a DataView, which may be
// a window into a larger ArrayBuffer: always honour byteOffset/byteLength.

export type DType = "float32" | "float16" | "int32" | "uint8";
export type Bytes = DataView | ArrayBuffer | Uint8Array;

export interface EncodedArray {
  dtype: DType;
  shape: number[];
  buffer: Bytes;
}

/** A decoded array: float16 comes back widened to float32. */
export interface NDArray {
  dtype: DType;
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
}

export interface EncodedCSR {
  format: "csr";
  shape: [number, number];
  indptr: EncodedArray;
  indices: EncodedArray;
  data: EncodedArray;
}

export interface CSR {
  shape: [number, number];
  indptr: Int32Array;
  indices: Int32Array;
  data: Float32Array | Int32Array | Uint8Array;
}

const ITEMSIZE: Record<DType, number> = { float32: 4, float16: 2, int32: 4, uint8: 1 };

/** The bytes of a DataView / ArrayBuffer / Uint8Array as an ArrayBuffer slice aligned for `itemsize`. */
function alignedBytes(buf: Bytes, itemsize: number): { buffer: ArrayBuffer; offset: number; length: number } {
  const src =
    buf instanceof ArrayBuffer
      ? { buffer: buf, offset: 0, length: buf.byteLength }
      : { buffer: buf.buffer as ArrayBuffer, offset: buf.byteOffset, length: buf.byteLength };
  if (src.offset % itemsize === 0) return src;
  // Typed arrays need aligned offsets: copy the window out.
  return { buffer: src.buffer.slice(src.offset, src.offset + src.length), offset: 0, length: src.length };
}

function product(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

let HALF_TABLE: Float32Array | null = null;

/** float16 bit pattern -> float32 value, for every one of the 65,536 patterns. */
function halfTable(): Float32Array {
  if (HALF_TABLE) return HALF_TABLE;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? NaN : sign * Infinity;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return (HALF_TABLE = t);
}

/** Widen float16 bit patterns to float32 (by hand: Float16Array is not everywhere yet). */
export function halfToFloat(bits: Uint16Array): Float32Array {
  const t = halfTable();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i]];
  return out;
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** float32 -> float16 bit pattern, rounding to nearest even (as numpy does). */
export function floatToHalf(value: number): number {
  F32[0] = value;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half; // a carry into the exponent is still the right answer (up to inf)
}

export function decodeArray(enc: EncodedArray): NDArray {
  const { dtype, shape } = enc;
  const itemsize = ITEMSIZE[dtype];
  if (!itemsize) throw new Error(`unsupported dtype ${JSON.stringify(dtype)}`);
  const n = product(shape);
  const { buffer, offset, length } = alignedBytes(enc.buffer, itemsize);
  if (length !== n * itemsize) {
    throw new Error(`array of shape [${shape}] (${dtype}) needs ${n * itemsize} bytes, got ${length}`);
  }
  let data: NDArray["data"];
  if (dtype === "float32") data = new Float32Array(buffer, offset, n);
  else if (dtype === "int32") data = new Int32Array(buffer, offset, n);
  else if (dtype === "uint8") data = new Uint8Array(buffer, offset, n);
  else data = halfToFloat(new Uint16Array(buffer, offset, n));
  return { dtype, shape: [...shape], data };
}

/** Encode numbers as `dtype` (for tests; Python encodes the data widgets show). */
export function encodeArray(values: ArrayLike<number>, shape: number[], dtype: DType): EncodedArray {
  const n = product(shape);
  if (values.length !== n) throw new Error(`${values.length} values do not fill shape [${shape}]`);
  let typed: ArrayBufferView;
  if (dtype === "float32") typed = Float32Array.from(values);
  else if (dtype === "int32") typed = Int32Array.from(values);
  else if (dtype === "uint8") typed = Uint8Array.from(values);
  else if (dtype === "float16") typed = Uint16Array.from(Array.from(values, floatToHalf));
  else throw new Error(`unsupported dtype ${JSON.stringify(dtype)}`);
  return { dtype, shape: [...shape], buffer: new DataView(typed.buffer) };
}

export function decodeCSR(enc: EncodedCSR): CSR {
  if (enc.format !== "csr") throw new Error(`expected a CSR matrix, got format ${JSON.stringify(enc.format)}`);
  const indptr = decodeArray(enc.indptr).data as Int32Array;
  const indices = decodeArray(enc.indices).data as Int32Array;
  const data = decodeArray(enc.data).data;
  const [rows] = enc.shape;
  if (indptr.length !== rows + 1 || indices.length !== data.length) {
    throw new Error(`malformed CSR matrix of shape [${enc.shape}]`);
  }
  return { shape: [enc.shape[0], enc.shape[1]], indptr, indices, data };
}

export function csrToDense(m: CSR): Float32Array {
  const [rows, cols] = m.shape;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let i = m.indptr[r]; i < m.indptr[r + 1]; i++) out[r * cols + m.indices[i]] = m.data[i];
  }
  return out;
}
