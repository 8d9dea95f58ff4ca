"""Static HTML export: one self-contained file per widget, no kernel and no network needed.

The file holds a tiny loader (static/boot.js) and one payload: base64(gzip(u32 header length |
JSON header | binary buffers)), where the header carries the widget module and stylesheet, the
synced state, and the answers to every request the view can make (so hovering and clicking work).
Buffers appear in the JSON as {"$buffer": i} placeholders, as in live messages. The loader
decompresses with the browser's DecompressionStream, imports the module from a blob: URL and
calls its `renderStatic`; requests with no stored answer, and controls that need the kernel,
say so. Compressed payload as in treescope's html_encapsulation.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
import pathlib
import re
import shutil
import struct
import tempfile
from typing import TYPE_CHECKING, Any

import ipywidgets

from ._base import STATIC
from ._codec import extract_buffers

if TYPE_CHECKING:
    from ._base import BaseWidget

FORMAT_VERSION = 1
#: traits every anywidget has; the view needs none of them
_FRAMEWORK_TRAITS = set(ipywidgets.DOMWidget.class_trait_names(sync=True)) | {
    "_esm", "_css", "_anywidget_id"}

PAGE_CSS = """
body { margin: 16px; background: #ffffff; color: #1f2328;
       font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
@media (prefers-color-scheme: dark) { body { background: #15181c; color: #e6edf3; } }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="generator" content="interp_widgets">
<title>{title}</title>
<style>{page_css}</style>
</head>
<body>
<div id="iw-target">Loading the widget&hellip;
<noscript>(this page needs JavaScript)</noscript></div>
<script type="application/x-iw-payload" data-target="iw-target">
{payload}
</script>
{lazy}<script>{boot}</script>
</body>
</html>
"""


def escape_inline(text: str) -> str:
    """Make text safe inside <script>/<style>: no `</script` (or `</style`) and no `<!--` can
    end the element or switch the parser's state. In JS, `<\\/` and `<\\!` mean the same."""
    text = re.sub(r"</(script|style)", lambda m: "<\\/" + m.group(1), text, flags=re.IGNORECASE)
    return text.replace("<!--", "<\\!--")


def request_key(method: str, args: dict[str, Any]) -> str:
    """Key of a request in the answer table; must equal js/src/rpc.ts `requestKey`."""
    return json.dumps([method, args], sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def widget_state(widget: BaseWidget) -> dict[str, Any]:
    """The widget's own synced traits (arrays still as memoryviews)."""
    return {k: v for k, v in widget.get_state().items() if k not in _FRAMEWORK_TRAITS}


def pack(header: dict[str, Any], buffers: list[memoryview]) -> bytes:
    """u32 header length | JSON header (padded to 8 bytes) | buffers, each 8-byte aligned."""
    chunks, spans, offset = [], [], 0
    for b in buffers:
        raw = b.cast("B") if b.ndim != 1 or b.format != "B" else b
        spans.append([offset, raw.nbytes])
        pad = -raw.nbytes % 8
        chunks += [raw.tobytes(), b"\0" * pad]
        offset += raw.nbytes + pad
    head = json.dumps({**header, "buffers": spans}, separators=(",", ":"), allow_nan=False)
    head_bytes = head.encode()
    head_bytes += b" " * (-(4 + len(head_bytes)) % 8)
    return struct.pack("<I", len(head_bytes)) + head_bytes + b"".join(chunks)


def build_payload(widget: BaseWidget, lazy: dict[str, int] | None = None) -> bytes:
    """The uncompressed payload of `widget` (see the module docstring); `lazy` maps the keys of
    answers written to their own blocks (`lazy_blocks`) to the blocks' numbers."""
    state, buffers = extract_buffers(widget_state(widget))
    answers = {}
    for method, args, result in widget.static_answers():
        stored, buffers = extract_buffers(result, buffers)
        answers[request_key(method, args)] = {"ok": True, "result": stored}
    header = {
        "version": FORMAT_VERSION,
        "esm": (STATIC / "index.js").read_text("utf-8"),
        "css": (STATIC / "index.css").read_text("utf-8"),
        "state": state,
        "answers": answers,
        **({"lazy": lazy} if lazy else {}),
    }
    return pack(header, buffers)


def _encode(raw: bytes) -> str:
    payload = base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0))
    return "\n".join(payload[i:i + 120].decode() for i in range(0, len(payload), 120))


def lazy_blocks(widget: BaseWidget) -> tuple[dict[str, int], str]:
    """({request key: block number}, the blocks' HTML) for a widget with `lazy_answers`: each
    answer packed and compressed on its own, so the browser decodes it only when asked."""
    keys, blocks = {}, []
    for i, (method, args, result) in enumerate(getattr(widget, "lazy_answers", lambda: ())()):
        stored, buffers = extract_buffers(result)
        keys[request_key(method, args)] = i
        body = _encode(pack({"answer": {"ok": True, "result": stored}}, buffers))
        blocks.append(f'<script type="application/x-iw-lazy" id="iw-lazy-{i}">\n{body}\n'
                      '</script>\n')
    return keys, "".join(blocks)


def render_html(widget: BaseWidget, title: str | None = None) -> str:
    keys, blocks = lazy_blocks(widget)
    return TEMPLATE.format(
        title=html.escape(title or f"interp_widgets: {type(widget).__name__}"),
        page_css=escape_inline(PAGE_CSS),
        payload=_encode(build_payload(widget, keys)),
        lazy=blocks,
        boot=escape_inline((STATIC / "boot.js").read_text("utf-8")),
    )


def write_html(widget: BaseWidget, path: str | os.PathLike, *, title: str | None = None
               ) -> pathlib.Path:
    """Write `widget` to `path` atomically (temporary file, then rename); returns the path."""
    path = pathlib.Path(path).expanduser()
    text = render_html(widget, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_image(widget: BaseWidget, path: str | os.PathLike, *, width: int = 1400,
                scale: float = 1.0, timeout_s: float = 60.0) -> pathlib.Path:
    """Render `widget`'s static export in headless Chromium and save the view as a PNG (written
    atomically). Needs the `playwright` package and a Chromium binary ($IW_CHROMIUM, default
    /usr/bin/chromium); no network is used (every request other than the file is refused).

    Chosen over an SVG serialisation of the DOM: canvases (attention patterns) and CSS
    colours come out exactly as a browser draws them, in the kernel or in a headless test, and
    the same code path serves every view."""
    path = pathlib.Path(path).expanduser()
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_image writes PNG files: give a path ending in .png, not "
                         f"{path.name!r}")
    if not (200 <= int(width) <= 8000) or not 0.25 <= float(scale) <= 4:
        raise ValueError(f"width must be 200..8000 px and scale 0.25..4; got {width}, {scale}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ImportError("save_image needs playwright: pip install playwright (a Chromium binary "
                          "is also needed: set IW_CHROMIUM, default /usr/bin/chromium)") from None
    chromium = os.environ.get("IW_CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        raise FileNotFoundError(f"save_image needs a Chromium binary; none at {chromium!r} "
                                "(set IW_CHROMIUM to its path)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        page_path = write_html(widget, pathlib.Path(tmpdir) / "view.html")
        shot = pathlib.Path(tmpdir) / "view.png"

        def render() -> None:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking"])
                try:
                    page = browser.new_page(viewport={"width": int(width), "height": 900},
                                            device_scale_factor=float(scale))
                    url = page_path.as_uri()
                    page.route("**/*", lambda r: r.continue_() if r.request.url == url
                               else r.abort())
                    page.goto(url)
                    root = page.locator(".iw-root[data-view]").first
                    root.wait_for(timeout=timeout_s * 1000)
                    page.wait_for_timeout(200)  # let the first paint (and canvases) land
                    root.screenshot(path=str(shot))
                finally:
                    browser.close()

        # playwright's sync API refuses to run inside a running asyncio loop (a Jupyter kernel)
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(render).result()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(shot, tmp)
            os.replace(tmp, path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
    return path
