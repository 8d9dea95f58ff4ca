"""NeuronView in a real JupyterLab 4, driven by Chromium: it renders, typing re-runs the heatmap,
navigation and correlated-neuron clicks reach Python, the scale slider and a token click show the
numbers the kernel computes.

`IW_E2E_MODEL=<path>` loads another model than the demo (e.g. a tiny local GPT-2).
"""

from __future__ import annotations

import os
import re

import e2e_harness as h
import pytest

pytestmark = pytest.mark.e2e

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
LAYER, NEURON = 1, 7
ROOT = ".iw-root[data-view='neuron_view']"

MODEL = os.environ.get("IW_E2E_MODEL", "demo")
CELLS = [
    "import json\nimport interp_widgets as iw\nfrom interp_widgets.analysis import neurons as nr\n"
    f"from interp_widgets.widgets import NeuronView\nmodel = iw.load_model({MODEL!r})",
    f"view = NeuronView(model, {LAYER}, {NEURON}, corpus=iw.demo.corpus(24, seed=3), "
    "text='Everyone wanted the apple. In the end, Mary got', progress=False)\nview",
]



def _close(text: str, expected: float, rel: float = 2e-3) -> bool:
    return any(
        abs(float(x) - expected) <= rel * max(abs(expected), 1e-6) for x in NUMBER.findall(text)
    )


@pytest.fixture(scope="module")
def lab(jupyter_server, context):
    ready = [f"{ROOT} .iw-nv-top .iw-nv-example"]
    with h.run_notebook(jupyter_server, context, "neuron_view.ipynb", CELLS, ready) as nbp:
        yield nbp


def _wait_kernel_neuron(nbp: h.NotebookPage, neuron: int) -> None:
    for _ in range(20):
        if nbp.run_json("print(json.dumps(view.neuron))") == neuron:
            return
        nbp.page.wait_for_timeout(250)
    raise AssertionError(f"the kernel never moved to neuron {neuron}")


def test_renders_with_top_examples_from_the_scan(page, artifacts_dir):
    root = page.page.locator(ROOT)
    assert root.locator(".iw-errors .iw-error").count() == 0
    top = page.run_json("print(json.dumps(view.data['scan'].top_values(view.neuron).tolist()))")
    first = root.locator(".iw-nv-top .iw-nv-example .iw-nv-value").first.inner_text()
    assert _close(first, top[0]), (first, top[0])
    assert root.locator(".iw-nv-buckets .iw-nv-example").count() >= 2
    assert root.locator(".iw-hist-bar").count() > 3
    assert root.locator(".iw-nv-logit-top tbody tr").count() == 10
    root.screenshot(path=str(artifacts_dir / "lab-neuron_view.png"))


def test_typing_reruns_the_heatmap(page):
    root = page.page.locator(ROOT)
    box = root.locator("textarea.iw-nv-text")
    box.fill("The chef looked at the onion for a long time")
    page.page.wait_for_function(
        "() => [...document.querySelectorAll(\".iw-root[data-view='neuron_view'] .iw-nv-strip "
        ".iw-token\")].map(s => s.textContent).join('').includes('onion')",
        timeout=30_000,
    )
    got = page.run_json("print(json.dumps([view.text, len(view.text_tokens)]))")
    assert got[0] == "The chef looked at the onion for a long time"
    assert root.locator(".iw-nv-strip .iw-token").count() == got[1]


def test_token_click_shows_the_kernels_attribution(page):
    root = page.page.locator(ROOT)
    token = root.locator(".iw-nv-strip .iw-token[data-pos='3']")
    token.click()
    pre = page.run_json("print(json.dumps(nr.neuron_input_attribution(model, view.text, "
                        "view.layer, view.neuron, pos=3).pre_activation))")
    page.page.wait_for_function(
        "() => document.querySelector(\".iw-root[data-view='neuron_view'] .iw-nv-attribution\")"
        ".innerText.includes('pos 3')",
        timeout=30_000,
    )
    assert _close(root.locator(".iw-nv-attribution").inner_text(), pre)


def test_scale_slider_updates_target_probabilities(page):
    root = page.page.locator(ROOT)
    slider = root.locator("input.iw-nv-scale")
    slider.evaluate("(el) => { el.value = '3'; el.dispatchEvent(new Event('input')); }")
    page.page.wait_for_function(
        "() => document.querySelector(\".iw-root[data-view='neuron_view'] .iw-nv-inter-table\")"
        "?.innerText.includes('x3')",
        timeout=30_000,
    )
    expected = page.run_json("r = nr.modulate_neuron(model, view.text, view.layer, view.neuron, "
                             "3.0)\nprint(json.dumps(r.target_probs(view.targets).iloc[0]"
                             ".tolist()))")
    rows = root.locator(".iw-nv-inter-table tbody tr")
    for i, p in enumerate(expected):
        cells = rows.nth(i).locator("td")
        assert _close(cells.nth(3).inner_text(), p), (cells.nth(3).inner_text(), p)


def test_next_and_correlated_neuron_navigate_in_python(page):
    root = page.page.locator(ROOT)
    start = page.run_json("print(json.dumps(view.neuron))")
    root.locator("button.iw-nv-next").click()
    _wait_kernel_neuron(page, start + 1)
    page.page.wait_for_function(
        f'() => document.querySelector("{ROOT} .iw-nv-title").textContent'
        f".endsWith('neuron {start + 1}')",
        timeout=30_000,
    )
    row = root.locator(".iw-nv-corr-row").first
    target = int(row.get_attribute("data-neuron"))
    row.click()
    _wait_kernel_neuron(page, target)
    page.page.wait_for_function(
        f'() => document.querySelector("{ROOT} .iw-nv-title").textContent'
        f".endsWith('neuron {target}')",
        timeout=30_000,
    )
    assert root.locator("input.iw-nv-neuron").input_value() == str(target)
