// Builds the widget bundle into ../interp_widgets/static/ (committed; `pip install` needs no npm).
// Output is deterministic: fixed target, no sourcemaps, no legal comments, no absolute paths.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { statSync } from "node:fs";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = join(here, "..", "interp_widgets", "static");
const LIMIT = 300 * 1024;

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  target: "es2020",
  legalComments: "none",
  sourcemap: false,
  charset: "utf8",
  logLevel: "warning",
};

// The widget module (anywidget loads its default export) and its stylesheet.
await build({ ...common, entryPoints: ["src/index.ts"], format: "esm", outfile: join(outdir, "index.js") });
await build({ ...common, entryPoints: ["src/style.css"], outfile: join(outdir, "index.css") });
// The tiny loader that static HTML exports inline: unpacks the payload and imports index.js.
await build({ ...common, entryPoints: ["src/boot.ts"], format: "iife", outfile: join(outdir, "boot.js") });

let total = 0;
for (const name of ["index.js", "index.css", "boot.js"]) {
  const size = statSync(join(outdir, name)).size;
  total += size;
  console.log(`${name.padEnd(10)} ${(size / 1024).toFixed(1)} KB`);
}
console.log(`total      ${(total / 1024).toFixed(1)} KB (limit ${LIMIT / 1024} KB)`);
if (total > LIMIT) {
  console.error("bundle is over the size limit");
  process.exit(1);
}
