// Payload blocks of static HTML exports: base64(gzip(u32 header length | JSON header | buffers)).
// Needs DecompressionStream (Chromium 80, Firefox 113, Safari 16.4).

export async function gunzip(b64: string): Promise<ArrayBuffer> {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Response(stream).arrayBuffer();
}

/** The JSON header and the data section's offset of an unpacked block. */
export function unpack<T>(raw: ArrayBuffer): [T, number] {
  const n = new DataView(raw).getUint32(0, true);
  return [JSON.parse(new TextDecoder().decode(new Uint8Array(raw, 4, n))) as T, 4 + n];
}
