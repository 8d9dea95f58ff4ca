"""Static HTML export (widgets/export.py): one self-contained file that renders from file://
in Chromium with the network blocked, keeps token text as text, and disables kernel controls.

The browser half needs /usr/bin/chromium (skipped without it, unless CI=true)."""

import base64
import gzip
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from interp_widgets.analysis.logit_lens import LogitLensResult
from interp_widgets.widgets import AttentionView, LogitLens, TokenHeatmap
from interp_widgets.widgets import export as export_mod
from interp_widgets.widgets.export import escape_inline, request_key

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
EVIL = ['<img src=x onerror="window.__pwned=1">', "</script><script>window.__pwned=1</script>",
        " <!-- x", "\n"]


# -- widgets made from plain numbers (no model needed) -----------------------------------------
def heatmap() -> TokenHeatmap:
    tokens = ["<|endoftext|>", "Hello", " world", *EVIL, " end"]
    n = len(tokens)
    loss = torch.tensor([float("nan"), 1.23456, 0.5, 2.0, 3.0, 0.1, 0.2, 0.7])
    preds = [[(" the", 0.5), ("<b>x</b>", 0.25)] for _ in range(n)]
    return TokenHeatmap(tokens, {"loss": loss, "diff": torch.linspace(-1, 1, n)},
                        predictions=preds)


def causal_patterns(L: int, H: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(L, H, n, n, generator=g) * 3
    mask = torch.ones(n, n, dtype=torch.bool).triu(1)
    return scores.masked_fill(mask, float("-inf")).softmax(-1)  # [layer, head, q, k]


def attention_inputs(n: int = 6) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    tokens = ["<bos>", " a", EVIL[0], " b", EVIL[1], " a"][:n]
    return tokens, torch.arange(n), causal_patterns(2, 3, n)


def attention() -> AttentionView:
    return AttentionView.from_patterns(*attention_inputs())


def lens() -> LogitLensResult:
    tokens = ["<bos>", " When", EVIL[1]]
    L, P, k = 3, len(tokens), 10
    probs = torch.linspace(0.9, 0.01, k).expand(L, P, k).contiguous()
    strs = [[[f" t{l}{p}{i}" if i else EVIL[0] for i in range(k)] for p in range(P)]
            for l in range(L)]
    return LogitLensResult(tokens, ["resid_pre 0", "resid_pre 1", "resid_post 1"],
                           torch.arange(k).expand(L, P, k), probs, strs, " Mary", 5,
                           torch.rand(L, P))


def read_payload(text: str) -> tuple[dict, bytes]:
    """(JSON header, data section) of an exported file."""
    b64 = re.search(r'<script type="application/x-iw-payload"[^>]*>(.*?)</script>', text, re.S)
    raw = gzip.decompress(base64.b64decode("".join(b64.group(1).split())))
    (n,) = struct.unpack("<I", raw[:4])
    return json.loads(raw[4:4 + n]), raw[4 + n:]


# -- the file ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [heatmap, attention, lambda: LogitLens.from_result(lens())])
def test_one_file_with_nothing_from_the_network(tmp_path, make):
    path = make().to_html(tmp_path / "out.html")
    assert list(tmp_path.iterdir()) == [path]
    text = path.read_text("utf-8")
    header, _ = read_payload(text)
    inlined = text + header["esm"] + header["css"] + json.dumps(header["state"])
    # an XML namespace (the bundle's SVG charts) names a vocabulary; nothing is fetched from it
    inlined = inlined.replace("http://www.w3.org/2000/svg", "")
    for needle in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert needle not in inlined.replace(EVIL[0], "").replace('src=x', ""), needle
    assert len(re.findall(r"<script\b", text)) == 2 and len(re.findall(r"</script", text)) == 2
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_payload_has_state_and_every_answer(tmp_path):
    w = attention()
    header, data = read_payload(w.to_html(tmp_path / "a.html").read_text())
    assert header["state"]["_view"] == "attention" and header["state"]["tokens"] == w.tokens
    assert "_esm" not in header["state"] and "layout" not in header["state"]
    keys = {request_key("pattern", {"layer": l, "head": h}) for l in range(2) for h in range(3)}
    assert set(header["answers"]) == keys
    assert '["pattern",{"head":2,"layer":1}]' in keys  # sorted keys, as js/src/rpc.ts builds them
    off, length = header["buffers"][header["state"]["thumbs"]["buffer"]["$buffer"]]
    assert length == 2 * 3 * 6 * 6 and off % 8 == 0 and off + length <= len(data)


def test_escaping_of_inlined_text():
    assert escape_inline("a</script>b</SCRIPT >") == "a<\\/script>b<\\/SCRIPT >"
    assert escape_inline("x<!--y</style>") == "x<\\!--y<\\/style>"
    assert "</script" not in escape_inline(EVIL[1]).lower()


def test_title_is_escaped(tmp_path):
    text = heatmap().to_html(tmp_path / "t.html", title="</title><script>x</script>").read_text()
    assert "<title>&lt;/title&gt;&lt;script&gt;x&lt;/script&gt;</title>" in text


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "w.html"
    path.write_text("old")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "render_html", broken)
    with pytest.raises(RuntimeError):
        heatmap().to_html(path)
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
    monkeypatch.undo()
    heatmap().to_html(path)
    assert path.read_text().startswith("<!DOCTYPE html>")


# -- in Chromium, from file://, network blocked --------------------------------------------------
class Opened:
    def __init__(self, browser, path: Path, scheme: str = "light"):
        self.network, self.errors = [], []
        self.page = browser.new_page(color_scheme=scheme, viewport={"width": 1000, "height": 700})
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)
        self.page.goto(path.as_uri())
        self.page.wait_for_selector(".iw-root", timeout=15_000)

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.network.append(url)
            route.abort()

    def check_clean(self):
        assert self.page.evaluate("window.__pwned") is None, "token text ran as code"
        assert self.network == [] and self.errors == []


@pytest.fixture
def opened(browser):
    pages = []

    def open_(path, scheme="light"):
        pages.append(Opened(browser, path, scheme))
        return pages[-1]

    yield open_
    for p in pages:
        p.page.close()


def test_heatmap_renders_offline_with_tokens_as_text(tmp_path, opened):
    o = opened(heatmap().to_html(tmp_path / "h.html"))
    page = o.page
    root = page.locator('div.iw-root[data-view="token_heatmap"]')
    assert root.locator(".iw-token[data-doc][data-pos]").count() == 8
    assert page.locator('.iw-token[data-pos="3"]').inner_text() == EVIL[0].replace(" ", "·")
    assert page.locator('.iw-token[data-pos="4"]').inner_text() == EVIL[1]
    assert root.locator("img, script, b").count() == 0
    assert page.locator(".iw-legend").is_visible()
    page.hover('.iw-token[data-pos="1"]')
    tip = page.locator(".iw-tooltip")
    tip.locator("table.iw-topk").wait_for()
    text = tip.inner_text()
    assert "1.235" in text and "Hello" in text and "<b>x</b>" in text and "0.5000" in text
    page.click('.iw-token[data-pos="2"]')
    assert page.locator(".iw-selected").get_attribute("data-pos") == "2"
    assert "reaches Python" in page.locator(".iw-static-select-note").inner_text()
    page.select_option("select.iw-metric-select", "diff")
    assert page.locator(".iw-legend").get_attribute("data-kind") == "diverging"
    o.check_clean()


def test_heatmap_packed_tokens_decode_in_a_real_browser(tmp_path, opened):
    """Tokens travel as one UTF-8 buffer + byte lengths: Chromium's TextDecoder must cut them
    back exactly (multi-byte, astral, combining, a leading BOM, a long token with uint16
    lengths), over several documents and thousands of tokens."""
    tricky = ["\ufeffbom", "é", "日本語", "😀", "e\u0301", "Ω" * 200, "<b>x</b>", "&amp;", "ok"]
    filler = [f"w{i}" for i in range(3000)]
    docs = [tricky, filler, ["last😀"]]
    w = TokenHeatmap(docs, [np.arange(len(d), dtype=np.float32) for d in docs])
    assert w.get_state()["tokens"]["lengths"]["dtype"] == "uint16"
    o = opened(w.to_html(tmp_path / "u.html"))
    # past its first screenfuls the strip is built just after the first paint
    o.page.wait_for_function("document.querySelectorAll('.iw-token').length === 3010")
    got = o.page.evaluate("""() => Array.from(document.querySelectorAll(".iw-token"),
        (s) => [s.dataset.doc, s.dataset.pos, s.textContent])""")
    # U+FEFF counts as whitespace (JS \s) and shows as "·": a BOM eaten by the decoder would not
    want = [[str(d), str(p), t.replace("\ufeff", "·")] for d, doc in enumerate(docs)
            for p, t in enumerate(doc)]
    assert len(got) == len(want) == 3010
    assert got == want
    assert o.page.locator(".iw-root b").count() == 0
    o.check_clean()


class PartialAttention(AttentionView):
    """Exports only head (0, 0): any other head must say it needs the kernel."""

    def static_answers(self):
        yield from list(super().static_answers())[:1]


def test_attention_static_detail_and_kernel_notes(tmp_path, opened):
    w = PartialAttention.from_patterns(*attention_inputs())
    w.can_rerun = True  # as if made from a model: the prompt box shows, disabled
    o = opened(w.to_html(tmp_path / "a.html"))
    page = o.page
    assert page.locator("canvas.iw-head-thumb[data-layer][data-head]").count() == 6
    assert page.locator(".iw-static-note").is_visible()
    assert "needs a running kernel" in page.locator(".iw-static-note").inner_text()
    for control in page.locator("[data-needs-kernel]").all():
        assert control.is_disabled()
    page.click('canvas.iw-head-thumb[data-layer="0"][data-head="0"]')
    detail = page.locator('.iw-head-detail[data-layer="0"][data-head="0"]')
    assert "L0H0" in detail.locator(".iw-detail-header").inner_text()
    detail.locator(".iw-token").first.wait_for()
    assert detail.locator(".iw-token").count() == 6
    page.hover('.iw-head-detail .iw-token[data-pos="3"]')
    assert "iw-focus" in page.locator('.iw-head-detail .iw-token[data-pos="3"]').get_attribute(
        "class")
    page.select_option("select.iw-head-sort", "induction")
    page.click('canvas.iw-head-thumb[data-layer="1"][data-head="2"]')
    page.locator(".iw-error").wait_for()
    assert "needs a running kernel" in page.locator(".iw-error").inner_text()
    o.check_clean()


def test_logit_lens_static_topk(tmp_path, opened):
    o = opened(LogitLens.from_result(lens()).to_html(tmp_path / "l.html"), scheme="dark")
    page = o.page
    assert page.locator(".iw-lens-cell[data-layer][data-pos]").count() == 9
    cell = page.locator('.iw-lens-cell[data-layer="2"][data-pos="1"]')
    assert cell.inner_text() == EVIL[0].replace(" ", "·")
    cell.click()
    table = page.locator("table.iw-topk")
    table.wait_for()
    assert table.locator("tr").count() == 10
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 24, 28)"
    o.check_clean()
