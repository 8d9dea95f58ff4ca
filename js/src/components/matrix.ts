// Canvas heatmap of a [rows, cols] matrix of values in 0..1 (opacity of one theme hue), with
// block-max downsampling so a 1,024 x 1,024 attention pattern draws as fast as a small one.

/** Block-max downsample [rows, cols] -> [outRows, outCols] (keeps sharp one-token stripes visible). */
export function downsampleMax(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  outRows: number,
  outCols: number,
): Float32Array {
  const out = new Float32Array(outRows * outCols);
  for (let r = 0; r < rows; r++) {
    const orow = Math.floor((r * outRows) / rows) * outCols;
    const base = r * cols;
    for (let c = 0; c < cols; c++) {
      const v = values[base + c];
      const o = orow + Math.floor((c * outCols) / cols);
      if (v > out[o]) out[o] = v;
    }
  }
  return out;
}

/** "r, g, b" from a CSS custom property on `el`, or the fallback. */
export function cssRgb(el: Element, name: string, fallback: [number, number, number]): [number, number, number] {
  const raw = typeof getComputedStyle === "function" ? getComputedStyle(el).getPropertyValue(name) : "";
  const parts = raw.split(",").map((s) => Number(s.trim()));
  return parts.length === 3 && parts.every((x) => Number.isFinite(x)) ? (parts as [number, number, number]) : fallback;
}

export interface DrawOptions {
  /** multiply values by this first (e.g. 1/255 for uint8) */
  scale?: number;
  rgb: [number, number, number];
  /** largest canvas side in pixels; bigger matrices are block-max downsampled */
  maxPx?: number;
}

/** Draw the matrix; returns the canvas resolution [height, width]. */
export function drawMatrix(
  canvas: HTMLCanvasElement,
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  opts: DrawOptions,
): [number, number] {
  const maxPx = opts.maxPx ?? 512;
  const outRows = Math.min(rows, maxPx);
  const outCols = Math.min(cols, maxPx);
  const grid = outRows === rows && outCols === cols ? values : downsampleMax(values, rows, cols, outRows, outCols);
  canvas.width = outCols;
  canvas.height = outRows;
  const ctx = canvas.getContext("2d");
  if (!ctx) return [outRows, outCols];
  const img = ctx.createImageData(outCols, outRows);
  const px = img.data;
  const [r, g, b] = opts.rgb;
  const s = (opts.scale ?? 1) * 255;
  for (let i = 0; i < outRows * outCols; i++) {
    const a = grid[i] * s;
    px[4 * i] = r;
    px[4 * i + 1] = g;
    px[4 * i + 2] = b;
    px[4 * i + 3] = a > 255 ? 255 : a > 0 ? a : 0;
  }
  ctx.putImageData(img, 0, 0);
  return [outRows, outCols];
}
