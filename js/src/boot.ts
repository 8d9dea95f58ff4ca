// Loader inlined in static HTML exports. Each <script type="application/x-iw-payload"> holds
// base64(gzip(u32 header length | JSON header | binary buffers)); the header carries the widget
// module (esm) and stylesheet (css) too. Needs DecompressionStream (Chromium 80, Firefox 113, Safari 16.4).

import { gunzip, unpack } from "./gzip";

interface Header {
  esm: string;
  css: string;
  [key: string]: unknown;
}

async function mount(script: HTMLScriptElement): Promise<void> {
  const target = document.getElementById(script.dataset.target ?? "");
  if (!target) return;
  try {
    if (typeof DecompressionStream === "undefined") throw new Error("this browser has no DecompressionStream");
    const raw = await gunzip((script.textContent ?? "").trim());
    const [header, start] = unpack<Header>(raw);
    const style = document.createElement("style");
    style.textContent = header.css;
    document.head.append(style);
    const url = URL.createObjectURL(new Blob([header.esm], { type: "text/javascript" }));
    const mod = await import(url);
    URL.revokeObjectURL(url);
    target.textContent = "";
    mod.renderStatic(target, header, raw, start);
  } catch (e) {
    target.textContent = `This export could not be opened: ${e instanceof Error ? e.message : String(e)}`;
  }
}

for (const s of Array.from(document.querySelectorAll<HTMLScriptElement>('script[type="application/x-iw-payload"]'))) {
  if (s.dataset.mounted) continue;
  s.dataset.mounted = "1";
  void mount(s);
}
