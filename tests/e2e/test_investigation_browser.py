"""InvestigationView in a real JupyterLab 4 with Chromium: steps and claims appear while the
offline plan runs in the kernel, and the stop button ends it keeping what is done."""

from __future__ import annotations

import e2e_harness as h
import pytest

pytestmark = pytest.mark.e2e

VIEW = ".iw-root[data-view='investigation']"
CELLS = [
    "import json\nimport torch\nimport interp_widgets as iw\ntorch.set_num_threads(1)\n"
    "model = iw.load_model('demo')\nbehaviour = iw.Behaviour.induction(model, n=32)",
    "view = iw.InvestigationView.start(model, behaviour)\nview",
]


@pytest.fixture(scope="module")
def lab(jupyter_server, context):
    with h.run_notebook(jupyter_server, context, "investigation.ipynb", CELLS,
                        [f"{VIEW} .iw-inv-toolbar, {VIEW} .iw-toolbar"]) as nbp:
        yield nbp


def test_steps_stream_in_and_stop_keeps_what_is_done(page, artifacts_dir):
    p = page.page
    p.wait_for_function(f"() => document.querySelectorAll(\"{VIEW} details.iw-inv-step\").length"
                        " >= 3", timeout=120_000)
    stop = p.locator(f"{VIEW} button.iw-inv-stop")
    assert stop.is_enabled()
    stop.click()
    p.wait_for_function(f"() => !document.querySelector(\"{VIEW} .iw-inv-status\")"
                        ".classList.contains('iw-inv-running')", timeout=120_000)
    got = page.run_json(
        "inv = view.wait(60)\nprint(json.dumps({'stopped': inv.stopped, 'steps': len(inv.steps),"
        " 'claims': len(inv.claims_list), 'verified': int(inv.claims.verified.sum()),"
        " 'running': view.running}))")
    assert got["stopped"] == "stopped by the user" and not got["running"]
    assert 3 <= got["steps"] < 13  # the full plan on this behaviour has 13 steps
    shown = p.locator(f"{VIEW} details.iw-inv-step").count()
    assert shown == got["steps"]
    assert p.locator(f"{VIEW} table.iw-inv-claims tbody tr").count() == got["claims"]
    assert "stopped by the user" in p.locator(f"{VIEW} .iw-inv-status").inner_text()
    assert p.locator(f"{VIEW} .iw-inv-verified").count() == got["verified"]
    p.locator(VIEW).screenshot(path=str(artifacts_dir / "lab-investigation.png"))


def test_a_patching_step_draws_its_grid_with_the_kernels_numbers(page):
    p = page.page
    first = page.run_json(
        "s = next((s for s in view.investigation.steps if s.tool == 'patch_heads'), None)\n"
        "print(json.dumps(None if s is None else s.result['grid']))")
    assert first is not None  # the first test waited for step 2, the head-patching step
    cell = p.locator(f"{VIEW} details.iw-inv-step[data-step] .iw-heatgrid "
                     ".iw-lens-cell[data-row='2'][data-col='2']").first
    assert float(cell.inner_text()) == pytest.approx(first[2][2], abs=0.006)


def test_census_view_filters_by_class_like_the_table(page):
    p = page.page
    root = p.locator(".iw-root[data-view='census']")
    # the model is not shared with a running investigation: wait for it to end first
    page.run_code("view.wait(300)\ntable = iw.census(model, 1, iw.demo.corpus(200, seed=5), n=6)\n"
                  "iw.CensusView(table)", timeout=300_000)
    root.locator("tbody tr").first.wait_for(timeout=60_000)
    rows = page.run_json("print(json.dumps([[int(r.unit), r['class'], None if r.score != r.score "
                         "else float(r.score)] for _, r in table.iterrows()]))")
    assert root.locator("tbody tr").count() == len(rows)
    classes = [c for _, c, _ in rows]
    cls = max(set(classes), key=classes.count)
    root.locator("select.iw-census-class").select_option(cls)
    picked = [(u, s) for u, c, s in rows if c == cls]
    assert root.locator("tbody tr").count() == len(picked)
    shown = root.locator("tbody tr").evaluate_all("rs => rs.map(r => +r.dataset.unit)")
    want = [u for u, s in sorted(picked, key=lambda r: (-(r[1] if r[1] is not None else -1e9),
                                                        r[0]))]
    assert shown == want
