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
