"""PatchingView, SteeringView, AttributionView and PerturbationFlowView in a real JupyterLab 4,
driven by Chromium: click cells, move the sliders, and check that the page shows the numbers the
kernel computes for the same cells and alpha."""

from __future__ import annotations

import e2e_harness as h
import pytest

pytestmark = pytest.mark.e2e

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
PATCH = ".iw-root[data-view='patching']"
STEER = ".iw-root[data-view='steering']"

CELLS = [
    "import json\nimport torch\nimport interp_widgets as iw\n"
    "from interp_widgets.analysis import Cell, generate, steering_vector\n"
    "from interp_widgets.widgets import (AttributionView, PatchingView, PerturbationFlowView,\n"
    "                                    SteeringView)\n"
    "torch.set_num_threads(1)\nmodel = iw.load_model('demo')",
    f"view = PatchingView(model, {CLEAN!r}, {CORRUPT!r}, ' Mary', ' John')\nview",
    "sv = steering_vector(model, ' love', ' hate', 1)\n"
    "steer = SteeringView(model, 'When Mary', {'love - hate': sv}, coeff=2.0, "
    "max_new_tokens=6, seed=0)\nsteer",
    f"AttributionView(model, {CLEAN!r}, ' Mary', ' John', steps=16)",
    "PerturbationFlowView(model, 'Mary went to the store. John went home. Then Mary gave a "
    "drink to', 'John went home. ')",
]



@pytest.fixture(scope="module")
def lab(jupyter_server, context):
    ready = [f"{PATCH} .iw-heatgrid", ".iw-root[data-view='perturbation_flow'] .iw-heatgrid"]
    with h.run_notebook(jupyter_server, context, "patching.ipynb", CELLS, ready) as nbp:
        yield nbp


def _cell(root, component: str, row: int, col: int):
    return root.locator(f".iw-heatgrid[data-kind='exact'][data-component='{component}'] "
                        f".iw-lens-cell[data-row='{row}'][data-col='{col}']")


def _wait_result(nbp: h.NotebookPage, alpha: str, cells: int) -> dict:
    nbp.page.wait_for_function(
        "([sel, a, n]) => { const r = document.querySelector(sel + ' .iw-patch-result');"
        " return r && r.dataset.alpha === a && r.dataset.cells === n; }",
        arg=[PATCH, alpha, str(cells)], timeout=30_000)
    return nbp.page.locator(f"{PATCH} .iw-patch-result").evaluate("e => ({...e.dataset})")


def test_all_four_views_render(page, artifacts_dir):
    views = page.page.locator(".jp-OutputArea-output .iw-root").evaluate_all(
        "els => els.map(e => e.dataset.view)")
    assert {"patching", "steering", "attribution", "perturbation_flow"} <= set(views)
    assert page.page.locator(".jp-OutputArea-output .iw-error:visible").count() == 0
    assert page.page.locator(f"{PATCH} .iw-heatgrid[data-kind='estimate']").count() == 4
    for view in ("patching", "steering", "attribution", "perturbation_flow"):
        page.page.locator(f".iw-root[data-view='{view}']").screenshot(
            path=str(artifacts_dir / f"lab-{view}.png"))


def test_hover_shows_the_cell_value(page):
    root = page.page.locator(PATCH)
    values = page.run_json("print(json.dumps(view.data['attn_out'][0].values.tolist()))")
    _cell(root, "attn_out", 1, 3).hover()
    row = root.locator(".iw-tooltip .iw-tip-row", has_text="patched")
    row.wait_for(state="visible")
    shown = float(row.inner_text().replace("patched", "").strip())
    assert shown == pytest.approx(values[1][3], rel=1e-3, abs=1e-6)


def test_click_cells_and_move_the_slider(page):
    root = page.page.locator(PATCH)
    n_pos = len(page.run_json("print(json.dumps(view.clean_tokens))"))
    diff = page.run_json("print(json.dumps([i for i, (a, b) in enumerate(zip("
                         "view.clean_tokens, view.corrupt_tokens)) if a != b]))")[0]
    _cell(root, "resid_pre", 0, diff).click()
    _cell(root, "attn_out", 1, n_pos - 1).click()
    assert root.get_attribute("data-selected") == "2"
    assert "iw-selected" in (_cell(root, "resid_pre", 0, diff).get_attribute("class") or "")
    slider = root.locator("input.iw-patch-alpha")
    slider.focus()
    for _ in range(60):  # 1.00 -> 0.40 in steps of 0.01, as a person would with the keys
        page.page.keyboard.press("ArrowLeft")
    assert slider.input_value() == "0.4"
    shown = _wait_result(page, "0.4", 2)
    want = page.run_json(f"p = view.patcher\nprint(json.dumps(p.value(p.logits(["
                         f"Cell('resid_pre', 0, {diff}), Cell('attn_out', 1, {n_pos - 1})], "
                         "0.4))))")
    assert float(shown["value"]) == pytest.approx(want, abs=1e-5)
    text = root.locator(".iw-patch-value").inner_text()
    assert float(text) == pytest.approx(want, rel=1e-3, abs=1e-3)
    last = page.run_json("print(json.dumps([view.last.alpha, len(view.last.cells)]))")
    assert last == [0.4, 2]
    # patched top-5 table shows the kernel's top token
    top = page.run_json(f"print(json.dumps(view.patcher.run([Cell('resid_pre', 0, {diff}), "
                        f"Cell('attn_out', 1, {n_pos - 1})], 0.4).top[0][0]))")
    first = root.locator(".iw-patch-top tbody tr").first.inner_text()
    assert top.strip() in first.replace("·", " ")


def test_alpha_outside_the_range_is_clipped_and_said(page):
    root = page.page.locator(PATCH)
    box = root.locator("input.iw-patch-alpha-number")
    box.fill("1.5")
    box.press("Enter")
    box.dispatch_event("change")
    shown = _wait_result(page, "1", int(root.get_attribute("data-selected")))
    note = root.locator(".iw-patch-note").inner_text()
    assert "outside [0, 1]" in note and "clipped to 1" in note
    assert root.locator("input.iw-patch-alpha").input_value() == "1"
    cells = int(shown["cells"])
    want = page.run_json("print(json.dumps(view.patch(view.last.cells, 1.0)['value']))")
    assert float(shown["value"]) == pytest.approx(want, abs=1e-5) and cells == 2


def test_curve_over_alpha_and_controls_beside_the_grids(page, artifacts_dir):
    """The curve shows the kernel's metric over alpha for the selected cells, and the controls
    stay on screen (sticky) when the notebook is scrolled down past the top of the grids."""
    root = page.page.locator(PATCH)
    root.locator(".iw-patch-clear").click()
    diff = page.run_json("print(json.dumps([i for i, (a, b) in enumerate(zip("
                         "view.clean_tokens, view.corrupt_tokens)) if a != b]))")[0]
    _cell(root, "resid_pre", 0, diff).click()
    root.locator("svg.iw-patch-curve").wait_for(timeout=30_000)
    page.page.wait_for_function(
        "sel => document.querySelector(sel + ' .iw-patch-curve-slot').dataset.cells === '1'",
        arg=PATCH, timeout=30_000)
    dots = root.locator("circle.iw-curve-dot").evaluate_all(
        "els => els.map(e => [Number(e.dataset.alpha), Number(e.dataset.value)])")
    want = page.run_json(f"p = view.patcher\nv = p.alpha_curve([Cell('resid_pre', 0, {diff})], "
                         "[i / 10 for i in range(11)])\n"
                         "print(json.dumps([float(x) for x in p.normalize(v)]))")
    assert [a for a, _ in dots] == pytest.approx([i / 10 for i in range(11)], abs=1e-6)
    assert [v for _, v in dots] == pytest.approx(want, abs=1e-3)
    grids, live = root.locator(".iw-patch-grids"), root.locator(".iw-patch-live")
    grids.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.page.wait_for_timeout(300)
    g, c = grids.bounding_box(), live.bounding_box()
    assert c["x"] >= g["x"] + g["width"] - 1, (g, c)  # beside, not below
    assert c["y"] < g["y"] + 200  # starts at the top of the grids, not 1,200 px down
    # scroll the notebook so the grids' top is far above the window: the controls stay in view
    grids.evaluate("el => el.scrollIntoView({block: 'end'})")
    page.page.wait_for_timeout(300)
    g, c = grids.bounding_box(), live.bounding_box()
    height = page.page.viewport_size["height"]
    assert g["y"] < 0 and 0 <= c["y"] < height and c["y"] + 40 < height, (g, c)
    assert g["y"] + g["height"] >= c["y"] + c["height"] - 1  # and never past the grids' end
    assert live.locator("input.iw-patch-alpha").is_visible()
    page.page.screenshot(path=str(artifacts_dir / "lab-patching-sticky.png"))
    # JupyterLab hides cells far out of view: bring the next tests' views back
    page.page.locator(STEER).scroll_into_view_if_needed()


def test_slider_round_trip_sequence(page, artifacts_dir):
    """The README's slider sequence: with one cell selected, alpha 0 -> 0.5 -> 1; each frame is
    the controls column after the kernel's reply, whose value equals the kernel's own patch."""
    root = page.page.locator(PATCH)
    root.locator(".iw-patch-clear").click()
    diff = page.run_json("print(json.dumps([i for i, (a, b) in enumerate(zip("
                         "view.clean_tokens, view.corrupt_tokens)) if a != b]))")[0]
    _cell(root, "resid_pre", 0, diff).click()
    root.locator("svg.iw-patch-curve").wait_for(timeout=30_000)
    live = root.locator(".iw-patch-live")
    for i, alpha in enumerate(("0", "0.5", "1")):
        root.locator("input.iw-patch-alpha").evaluate(
            f"(el) => {{ el.value = '{alpha}'; el.dispatchEvent(new Event('input', "
            "{bubbles: true})); }")
        shown = _wait_result(page, alpha, 1)
        want = page.run_json(f"print(json.dumps(view.patch([Cell('resid_pre', 0, {diff})], "
                             f"{alpha})['value']))")
        assert float(shown["value"]) == pytest.approx(want, abs=1e-5)
        marker = live.locator("line.iw-curve-marker").get_attribute("data-alpha")
        assert float(marker) == float(alpha)
        live.screenshot(path=str(artifacts_dir / f"slider-{i}.png"))
    page.page.locator(STEER).scroll_into_view_if_needed()


def test_steering_slider_regenerates(page):
    root = page.page.locator(STEER)
    before = root.get_attribute("data-coeff")
    coeff = root.locator("input.iw-steer-coeff")
    coeff.evaluate("(el) => { el.value = '8'; el.dispatchEvent(new Event('input', "
                   "{bubbles: true})); }")
    page.page.wait_for_function(f"() => document.querySelector(\"{STEER}\").dataset.coeff"
                                " === '8'", timeout=60_000)
    assert before != "8"
    steered = root.locator(".iw-steer-steered .iw-token").evaluate_all(
        "els => els.map(e => e.textContent)")
    want = page.run_json("g = generate(model, 'When Mary', steer=[(sv, 1, 8.0)], "
                         "max_new_tokens=6, seed=0)\nprint(json.dumps(g.new_tokens))")
    assert len(steered) == len(want)
    assert [s.replace("·", " ") for s in steered] == [w.replace("\n", "⏎") for w in want]
    kl = page.run_json("print(json.dumps(steer.data['mean_kl']))")
    assert float(root.get_attribute("data-mean-kl")) == pytest.approx(kl, rel=1e-4)
    # the layer slider: the same vector added at layer 2 instead
    layer = root.locator("input.iw-steer-layer")
    layer.evaluate("(el) => { el.value = '2'; el.dispatchEvent(new Event('input', "
                   "{bubbles: true})); }")
    page.page.wait_for_function(f"() => document.querySelector(\"{STEER}\").dataset.layer"
                                " === '2'", timeout=60_000)
    # text_content: JupyterLab stops rendering cells far out of view (inner_text is then "")
    assert "at layer 2" in root.locator(".iw-steer-steered").text_content()
    steered = root.locator(".iw-steer-steered .iw-token").evaluate_all(
        "els => els.map(e => e.textContent)")
    want = page.run_json("g = generate(model, 'When Mary', steer=[(sv, 2, 8.0)], "
                         "max_new_tokens=6, seed=0)\nprint(json.dumps(g.new_tokens))")
    assert [s.replace("·", " ") for s in steered] == [w.replace("\n", "⏎") for w in want]
