// Binary array codec, the JS half of interp_widgets/widgets/_codec.py.
// An encoded array is {dtype, shape, buffer}: buffer holds the little-endian bytes in C order.
// anywidget delivers a memoryview inside a synced dict (or a message) as a DataView, which may be
// a window into a larger ArrayBuffer: always honour byteOffset/byteLength.
// A list of strings travels packed: {format: "strings", utf8, lengths[, rows]} (see decodeStrings).

export type DType = "float32" | "float16" | "int32" | "uint8" | "uint16" | "uint32";
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
  data: Float32Array | Int32Array | Uint8Array | Uint16Array | Uint32Array;
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
  data: NDArray["data"];
}

/** Strings packed as one UTF-8 buffer and each string's length in bytes (uint8/16/32, the
 * smallest that holds the longest); `rows`, when present, splits them into lists (documents). */
export interface EncodedStrings {
  format: "strings";
  utf8: Bytes;
  lengths: EncodedArray;
  rows?: EncodedArray;
}

const ITEMSIZE: Record<DType, number> = { float32: 4, float16: 2, int32: 4, uint8: 1, uint16: 2, uint32: 4 };

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
  else if (dtype === "uint16") data = new Uint16Array(buffer, offset, n);
  else if (dtype === "uint32") data = new Uint32Array(buffer, offset, n);
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
  else if (dtype === "uint16") typed = Uint16Array.from(values);
  else if (dtype === "uint32") typed = Uint32Array.from(values);
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

function bytesOf(buf: Bytes): Uint8Array {
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  return new Uint8Array(buf.buffer as ArrayBuffer, buf.byteOffset, buf.byteLength);
}

/**
 * The strings of an EncodedStrings, in order (`rows` ignored: see decodeStringRows).
 * The buffer is decoded once; each string is then cut out by counting the UTF-16 units of its
 * bytes (one per byte that starts a character, two for a 4-byte character), so 20,000 strings cost
 * one TextDecoder call, not 20,000. Bytes that are not valid UTF-8 (Python never sends them) fall
 * back to decoding each string alone, with U+FFFD for the bad bytes.
 */
export function decodeStrings(enc: EncodedStrings): string[] {
  if (enc?.format !== "strings") throw new Error(`expected packed strings, got format ${JSON.stringify(enc?.format)}`);
  const bytes = bytesOf(enc.utf8);
  const lengths = decodeArray(enc.lengths).data;
  const n = lengths.length;
  let total = 0;
  for (let i = 0; i < n; i++) total += lengths[i];
  if (total !== bytes.length) throw new Error(`string lengths add up to ${total} bytes, the buffer holds ${bytes.length}`);
  const out = new Array<string>(n);
  let text: string | null = null;
  try {
    // ignoreBOM: a leading U+FEFF is part of the first string, not a byte-order mark
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    text = null;
  }
  if (text === null) {
    const lax = new TextDecoder("utf-8", { ignoreBOM: true });
    for (let i = 0, b = 0; i < n; b += lengths[i], i++) out[i] = lax.decode(bytes.subarray(b, b + lengths[i]));
    return out;
  }
  if (text.length === bytes.length) {
    // all ASCII: bytes and UTF-16 units coincide
    for (let i = 0, b = 0; i < n; b += lengths[i], i++) out[i] = text.slice(b, b + lengths[i]);
    return out;
  }
  for (let i = 0, b = 0, u = 0; i < n; i++) {
    const end = b + lengths[i];
    let units = 0;
    for (; b < end; b++) {
      const x = bytes[b];
      if ((x & 0xc0) !== 0x80) units += x >= 0xf0 ? 2 : 1;
    }
    out[i] = text.slice(u, u + units);
    u += units;
  }
  return out;
}

/** The strings split into lists by `rows` (the count in each); one list when there is no `rows`. */
export function decodeStringRows(enc: EncodedStrings): string[][] {
  const all = decodeStrings(enc);
  if (!enc.rows) return [all];
  const rows = decodeArray(enc.rows).data;
  const out: string[][] = [];
  let start = 0;
  for (let r = 0; r < rows.length; r++) {
    out.push(all.slice(start, start + rows[r]));
    start += rows[r];
  }
  if (start !== all.length) throw new Error(`rows hold ${start} strings, there are ${all.length}`);
  return out;
}

/** Pack strings as Python's encode_strings does (for tests; Python encodes what widgets show). */
export function encodeStrings(strings: string[] | string[][]): EncodedStrings {
  const nested = strings.length > 0 && Array.isArray(strings[0]);
  const flat = nested ? (strings as string[][]).flat() : (strings as string[]);
  const te = new TextEncoder();
  const parts = flat.map((s) => te.encode(s));
  const lengths = parts.map((p) => p.length);
  const top = lengths.reduce((a, b) => Math.max(a, b), 0);
  const dtype: DType = top < 256 ? "uint8" : top < 65536 ? "uint16" : "uint32";
  const utf8 = new Uint8Array(lengths.reduce((a, b) => a + b, 0));
  let o = 0;
  for (const p of parts) {
    utf8.set(p, o);
    o += p.length;
  }
  const enc: EncodedStrings = { format: "strings", utf8: new DataView(utf8.buffer), lengths: encodeArray(lengths, [lengths.length], dtype) };
  if (nested) {
    const rows = (strings as string[][]).map((r) => r.length);
    enc.rows = encodeArray(rows, [rows.length], "uint32");
  }
  return enc;
}
