"""FeatureBrowser and PromptFeatures in a real JupyterLab 4, driven by Chromium, on the demo model
and the demo SAE: clicking a nearest feature, a list row or a search result navigates in Python;
clicking a prompt token lists the features the kernel finds there; the clamp slider shows the
kernel's next-token distribution."""

from __future__ import annotations

import e2e_harness as h
import pytest

pytestmark = pytest.mark.e2e

FB = ".iw-root[data-view='feature_browser']"
PF = ".iw-root[data-view='prompt_features']"
PROMPT = "Everyone wanted the apple. In the end, Mary got"
CELLS = [
    "import json\nimport interp_widgets as iw\nfrom interp_widgets.widgets import FeatureBrowser, "
    "PromptFeatures\nmodel = iw.load_model('demo')\nsae = iw.demo.load_sae()",
    "fb = FeatureBrowser(model, sae, iw.demo.corpus(30, seed=2), progress=False)\nfb",
    f"pf = PromptFeatures(model, sae, {PROMPT!r}, k=5)\npf",
]


@pytest.fixture(scope="module")
def lab(jupyter_server, context):
    ready = [f"{FB} .iw-fb-row", f"{FB} .iw-fb-near-row", f"{PF} .iw-pf-row"]
    with h.run_notebook(jupyter_server, context, "sae_views.ipynb", CELLS, ready) as nbp:
        yield nbp


def _kernel_value(nbp: h.NotebookPage, expr: str, want) -> None:
    for _ in range(20):
        if nbp.run_json(f"print(json.dumps({expr}))") == want:
            return
        nbp.page.wait_for_timeout(250)
    raise AssertionError(f"{expr} never became {want!r} in the kernel")


def test_nearest_feature_click_navigates(page):
    root = page.page.locator(FB)
    near = root.locator(".iw-fb-near-row").first
    target = int(near.get_attribute("data-feature"))
    want = page.run_json("print(json.dumps(fb.nearest[0][0]))")
    assert target == want  # the first row is the kernel's nearest feature
    near.click()
    _kernel_value(page, "fb.feature", target)
    # the new feature's nearest list is the kernel's, for that feature
    new_near = page.run_json("print(json.dumps([f for f, _ in fb.nearest]))")
    page.page.wait_for_function(
        "([sel, first]) => document.querySelector(sel)?.dataset.feature === String(first)",
        arg=[f"{FB} .iw-fb-near-row", new_near[0]], timeout=30_000)


def test_search_then_click_a_row(page):
    root = page.page.locator(FB)
    box = root.locator("input.iw-fb-search")
    box.fill("17")
    box.press("Enter")
    row = root.locator(".iw-fb-row[data-feature='17']")
    row.wait_for(timeout=30_000)
    row.click()
    _kernel_value(page, "fb.feature", 17)


def test_prompt_token_click_lists_the_kernels_features(page):
    root = page.page.locator(PF)
    token = root.locator(".iw-pf-strip .iw-token[data-pos='4']")
    token.click()
    _kernel_value(page, "pf.pos", 4)
    want = page.run_json("print(json.dumps([int(f) for f, _, _ in pf.active]))")
    page.page.wait_for_function(
        "([sel, want]) => JSON.stringify([...document.querySelectorAll(sel)]"
        ".map(r => Number(r.dataset.feature))) === JSON.stringify(want)",
        arg=[f"{PF} .iw-pf-row", want], timeout=30_000)


def test_clamp_slider_shows_the_kernels_distribution(page):
    root = page.page.locator(PF)
    feature = int(root.locator(".iw-pf-row").first.get_attribute("data-feature"))
    root.locator(".iw-pf-row").first.click()
    slider = root.locator("input.iw-pf-slider")
    slider.evaluate("(el) => { el.value = '0'; el.dispatchEvent(new Event('input', "
                    "{bubbles: true})); }")
    root.locator(".iw-pf-result", has_text="ablated").wait_for(timeout=30_000)
    top = page.run_json(f"r = pf.answer('intervene', {{'feature': {feature}, 'stop': 0}})\n"
                        "print(json.dumps(r['result']['after']['tokens'][0]))")
    assert top.strip() in root.locator(".iw-pf-result").inner_text().replace("·", " ")
