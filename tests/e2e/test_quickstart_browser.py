"""notebooks/quickstart.ipynb in a real JupyterLab 4 (and Notebook 7), driven by Chromium.

`IW_QUICKSTART=<path>` runs another copy of the notebook instead (e.g. one edited to load a
different model).

The notebook is run once per module (``lab_quickstart``); the tests then hover, click and ask the
kernel about what they did.  Screenshots of every widget go to ``tests/e2e/artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import e2e_harness as h
import pytest

pytestmark = pytest.mark.e2e

QUICKSTART = Path(os.environ.get("IW_QUICKSTART", h.REPO_ROOT / "notebooks" / "quickstart.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
ERROR_TEXT = "Error displaying widget"
NUMBER_INT = re.compile(r"\d+")
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _widget_cell_count(outputs: list[list[dict]]) -> int:
    """Code cells whose outputs show one of our widgets (what the kernel said it displayed; other
    widgets, such as progress bars, do not count)."""

    def ours(o: dict) -> bool:
        data = o.get("data", {})
        return WIDGET_MIME in data and "interp_widgets.widgets" in str(data.get("text/plain", ""))

    return sum(any(ours(o) for o in cell) for cell in outputs)


def _error_outputs(outputs: list[list[dict]]) -> list[str]:
    errs = []
    for cell in outputs:
        for o in cell:
            if o.get("output_type") == "error":
                errs.append(f"{o.get('ename')}: {o.get('evalue')}")
            elif o.get("name") == "stderr" and "Traceback" in "".join(o.get("text", "")):
                errs.append("".join(o["text"])[-2000:])
    return errs


def _run_quickstart(server, context, name: str, ui: str) -> h.NotebookPage:
    server.put_notebook(name, QUICKSTART)
    nbp = h.NotebookPage(context.new_page(), server, name, ui=ui).open()
    nbp.run_all(timeout=300_000)
    return nbp


def _assert_all_widgets_rendered(nbp: h.NotebookPage) -> int:
    outputs = nbp.outputs_json()
    assert not _error_outputs(outputs), _error_outputs(outputs)
    n_widgets = _widget_cell_count(outputs)
    assert n_widgets >= 3, f"quickstart displayed {n_widgets} widgets, expected at least 3"
    roots = nbp.page.locator(".jp-OutputArea-output .iw-root")
    # Each widget view mounts its root asynchronously (ESM import + first render).
    nbp.page.wait_for_function(
        "(n) => document.querySelectorAll('.jp-OutputArea-output .iw-root').length >= n",
        arg=n_widgets,
        timeout=60_000,
    )
    assert roots.count() == n_widgets
    views = sorted(roots.evaluate_all("els => els.map(e => e.dataset.view)"))
    assert {"token_heatmap", "attention", "logit_lens"} <= set(views), views
    text = nbp.page.locator(".jp-Notebook").inner_text()
    assert ERROR_TEXT not in text
    assert "Traceback" not in text
    assert nbp.page.locator(".jp-OutputArea-output .iw-error:visible").count() == 0
    return n_widgets


@pytest.fixture(scope="module")
def lab_quickstart(jupyter_server, context):
    nbp = _run_quickstart(jupyter_server, context, "quickstart.ipynb", ui="lab")
    yield nbp
    nbp.page.close()


@pytest.fixture
def lab(lab_quickstart, request):
    yield lab_quickstart
    h.save_failure_artifacts(request, lab_quickstart, "lab", h.REPO_ROOT / "tests/e2e/artifacts")


def _shot(nbp: h.NotebookPage, artifacts_dir, view: str, stem: str) -> None:
    root = nbp.page.locator(f".iw-root[data-view='{view}']").first
    root.scroll_into_view_if_needed()
    root.screenshot(path=str(artifacts_dir / f"{stem}.png"))


def test_quickstart_renders_every_widget_in_jupyterlab(lab, artifacts_dir):
    n = _assert_all_widgets_rendered(lab)
    for view in ("token_heatmap", "attention", "logit_lens"):
        _shot(lab, artifacts_dir, view, f"lab-{view}")
    lab.page.screenshot(path=str(artifacts_dir / "lab-quickstart-page.png"))
    assert n >= 3


def test_every_quickstart_widget_fits_1400px_without_horizontal_scrolling(lab):
    """At the context's 1,400 px width, no widget's root or scroll box is wider than its space
    (the logit lens of section 3, 17 tokens, used to hide its last column behind a scroll)."""
    assert lab.page.viewport_size["width"] == 1400
    overflowing = lab.page.evaluate(
        """() => [...document.querySelectorAll('.jp-OutputArea-output .iw-root')]
          .flatMap((root, i) => [root, ...root.querySelectorAll('*')]
            .filter((el) => el === root
                    || ['auto', 'scroll'].includes(getComputedStyle(el).overflowX))
            .filter((el) => el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
            .map((el) => `${i}:${root.dataset.view}:${el.className}`
                         + ` ${el.scrollWidth}>${el.clientWidth}`))"""
    )
    assert overflowing == [], overflowing


def _heatmap_probe(lab: h.NotebookPage) -> dict:
    """Ask the kernel which token to hover and what its value is (computed in Python)."""
    out = lab.run_code(
        "import json, math\n"
        "_loss = run.loss[0].tolist()\n"
        "_pos = max((i for i, v in enumerate(_loss) if not math.isnan(v)), "
        "key=lambda i: _loss[i])\n"
        "print(json.dumps({'pos': _pos, 'value': _loss[_pos], "
        "'token': run.str_tokens[_pos]}))"
    )
    return json.loads(out.strip().splitlines()[-1])


def test_hover_token_shows_python_value(lab):
    probe = _heatmap_probe(lab)
    root = lab.page.locator(".iw-root[data-view='token_heatmap']").first
    tooltip = root.locator(".iw-tooltip")
    token = root.locator(f".iw-token[data-doc='0'][data-pos='{probe['pos']}']")
    token.scroll_into_view_if_needed()
    lab.page.mouse.move(0, 0)
    token.hover()
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()
    numbers = [float(x) for x in NUMBER.findall(text)]
    expected = probe["value"]
    assert any(abs(x - expected) <= 5e-4 * max(abs(expected), 1e-12) for x in numbers), (
        f"tooltip {text!r} does not show loss {expected:.4g} at pos {probe['pos']}"
    )
    assert str(probe["pos"]) in text
    assert probe["token"].strip() in text
    # Moving to another token changes the tooltip.
    other = root.locator(f".iw-token[data-doc='0'][data-pos='{max(probe['pos'] - 1, 1)}']")
    other.hover()
    lab.page.wait_for_function(
        "([el, old]) => el.innerText !== old", arg=[tooltip.element_handle(), text]
    )


def test_click_head_enlarges_it(lab):
    root = lab.page.locator(".iw-root[data-view='attention']").first
    thumbs = root.locator("canvas.iw-head-thumb")
    assert thumbs.count() >= 2
    detail = root.locator(".iw-head-detail")
    before = None
    if detail.count():
        before = (detail.first.get_attribute("data-layer"), detail.first.get_attribute("data-head"))
    # Pick a thumbnail that is not the one already enlarged.
    for i in range(thumbs.count() - 1, -1, -1):
        t = thumbs.nth(i)
        target = (t.get_attribute("data-layer"), t.get_attribute("data-head"))
        if target != before:
            break
    t.scroll_into_view_if_needed()
    t.click()
    layer, head = target
    shown = root.locator(f".iw-head-detail[data-layer='{layer}'][data-head='{head}']")
    shown.wait_for(state="visible")
    assert f"L{layer}H{head}" in shown.inner_text()


def test_click_token_selects_in_python(lab):
    root = lab.page.locator(".iw-root[data-view='token_heatmap']").first
    n_tokens = root.locator(".iw-token").count()
    pos = min(7, n_tokens - 1)
    before = lab.run_code("print(repr(heatmap.selected))").strip()
    token = root.locator(f".iw-token[data-doc='0'][data-pos='{pos}']")
    token.scroll_into_view_if_needed()
    token.click()
    # The click's comm message precedes our execute request on the shell channel, but the view
    # may debounce; ask again until the kernel has it (bounded).
    got = None
    for _ in range(10):
        got = lab.run_code("_sel = heatmap.selected\nprint(json.dumps(None if _sel is None else "
                           "[int(x) for x in _sel]))").strip()
        if got and json.loads(got.splitlines()[-1]) == [0, pos]:
            break
    assert json.loads(got.splitlines()[-1]) == [0, pos], (before, got)


def test_quickstart_renders_in_notebook7(jupyter_server, context, artifacts_dir, request):
    nbp = _run_quickstart(jupyter_server, context, "quickstart-nb7.ipynb", ui="notebook7")
    try:
        assert nbp.page.locator("#jp-top-panel, .jp-NotebookPanel").count() > 0
        assert "/notebooks/" in nbp.page.url
        _assert_all_widgets_rendered(nbp)
        _shot(nbp, artifacts_dir, "token_heatmap", "nb7-token_heatmap")
        nbp.page.screenshot(path=str(artifacts_dir / "nb7-quickstart-page.png"))
    finally:
        h.save_failure_artifacts(request, nbp, "nb7", artifacts_dir)
        nbp.page.close()


#: token strings that would run script or make markup if they were ever parsed as HTML
EVIL = ['<img src=x onerror="window.__iw_pwned=1">', "</script><script>window.__iw_pwned=2"
        "</script>", " & <b>bold</b>"]


def test_hostile_tokens_are_text_in_jupyterlab(lab):
    """Live (not only in the static export): tokens show literally and run nothing."""
    lab.run_code(f"evil = iw.TokenHeatmap({json.dumps(EVIL)}, [1.0, 2.0, 3.0])\nevil")
    root = lab.page.locator(".iw-root[data-view='token_heatmap']").last
    root.locator(".iw-token").first.wait_for()
    shown = root.locator(".iw-token").all_inner_texts()
    assert [t.replace("\u00b7", " ") for t in shown] == EVIL
    assert root.locator("img, script, b").count() == 0
    root.locator(".iw-token").nth(0).hover()
    assert EVIL[0] in root.locator(".iw-tooltip").inner_text().replace("\u00b7", " ")
    assert lab.page.evaluate("() => window.__iw_pwned") is None


def test_heatmap_of_20000_tokens_builds_completely_and_stays_live(lab):
    """20,000 tokens: the view builds its first screenfuls before the first paint and the rest
    just after; then every span is in the page, the last token's tooltip shows Python's value
    and clicking it reaches Python."""
    lab.run_code("big = iw.TokenHeatmap([f' w{i}' for i in range(20000)], "
                 "{'rank': [i / 1000 for i in range(20000)]})\nbig")
    root = lab.page.locator(".iw-root[data-view='token_heatmap']").last
    last = root.locator(".iw-token[data-doc='0'][data-pos='19999']")
    last.wait_for(state="attached", timeout=60_000)
    assert root.locator(".iw-token").count() == 20000
    assert root.locator(".iw-chunk[style*='height']").count() == 0  # no placeholder left
    last.scroll_into_view_if_needed()
    last.hover()
    assert "20.00" in root.locator(".iw-tooltip").inner_text()  # 19.999 to 4 digits
    last.click()
    got = None
    for _ in range(10):
        got = lab.run_json("import json\nprint(json.dumps(big.selected))")
        if got == [0, 19999]:
            break
    assert got == [0, 19999]


def test_attention_view_on_1024_tokens(lab):
    """A 1,024-token view: enlarge a head, hover a late token, and the page names the key it
    attends to most, as the kernel computes it."""
    lab.run_code('long_prompt = " ".join(["the cat sat on the mat and Mary gave John a drink"] '
                 '* 200)\nlong_attn = iw.AttentionView(model, long_prompt)\nlong_attn')
    root = lab.page.locator(".iw-root[data-view='attention']").last
    thumb = root.locator("canvas.iw-head-thumb[data-layer='2'][data-head='0']")
    thumb.scroll_into_view_if_needed()
    thumb.click()
    detail = root.locator(".iw-head-detail[data-layer='2'][data-head='0']")
    token = detail.locator(".iw-token[data-doc='0'][data-pos='1000']")
    token.wait_for(timeout=60_000)
    assert detail.locator(".iw-token").count() == 1024
    token.scroll_into_view_if_needed()
    token.hover()
    info = detail.locator(".iw-attn-info")
    lab.page.wait_for_function("(el) => el.textContent.startsWith('pos 1000 ')",
                               arg=info.element_handle(), timeout=30_000)
    best = lab.run_json(
        "_r = model.run(long_prompt, names=['blocks.2.attn.hook_pattern'])\n"
        "print(json.dumps(int(_r.cache['blocks.2.attn.hook_pattern'][0, 0, 1000].argmax())))")
    assert f"attends most to pos {best} " in info.inner_text()


def test_widgets_follow_the_jupyterlab_theme(lab):
    root = lab.page.locator(".iw-root[data-view='token_heatmap']").first
    style = "(el) => [getComputedStyle(el).color, getComputedStyle(el).getPropertyValue('--iw-bg')]"
    light = root.evaluate(style)
    try:
        lab.set_theme("JupyterLab Dark")
        dark = root.evaluate(style)
    finally:
        lab.set_theme("JupyterLab Light")
    assert dark[0] != light[0] and dark[1].strip() != light[1].strip()
    rgb = [int(x) for x in NUMBER_INT.findall(dark[0])[:3]]
    assert sum(rgb) > 3 * 128  # light text on the dark theme
