"""GraphView in a real JupyterLab 4, driven by Chromium, on the demo model and transcoders:
hovering a node shows the kernel's dashboard for it, clicking pins it and lists its edges, the
threshold slider re-prunes in the kernel, and shift-click + ablate re-runs the real model: every
step is checked against what Python holds or computes directly."""

from __future__ import annotations

import e2e_harness as h
import pytest

pytestmark = pytest.mark.e2e

GV = ".iw-root[data-view='graph_view']"
PROMPT = "At the pantry, Alex and Eva found the plate. Eva sent it to"
CELLS = [
    "import json\nimport numpy as np\nimport interp_widgets as iw\n"
    "model = iw.load_model('demo')\ntcs = iw.demo.load_transcoders()\n"
    f"g = iw.attribution_graph(model, tcs, {PROMPT!r})",
    "view = iw.GraphView(g, corpus=iw.demo.corpus(30, seed=1))\nview",
]


@pytest.fixture(scope="module")
def lab(jupyter_server, context):
    with h.run_notebook(jupyter_server, context, "graph_view.ipynb", CELLS,
                        [f"{GV} canvas.iw-gv-canvas"]) as nbp:
        yield nbp


def _node_point(nbp: h.NotebookPage, node_id: str) -> tuple[float, float]:
    """Page coordinates of a node's centre on the canvas."""
    canvas = nbp.page.locator(f"{GV} canvas.iw-gv-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    xy = nbp.page.evaluate("([sel, id]) => document.querySelector(sel).iwNodePosition(id)",
                           [GV, node_id])
    assert xy is not None, node_id
    return box["x"] + xy[0], box["y"] + xy[1]


def _top_feature(nbp: h.NotebookPage) -> str:
    return nbp.run_json("n = view.shown.nodes\nprint(json.dumps(n[n.kind == 'feature']"
                        ".sort_values('influence').node_id.iloc[-1]))")


def _dataset(nbp: h.NotebookPage, sel: str) -> dict:
    return nbp.page.locator(sel).evaluate("e => ({...e.dataset})")


def test_renders_what_the_kernel_holds(page, artifacts_dir):
    root = page.page.locator(GV)
    py = page.run_json("print(json.dumps([view.graph['n'], int((view.shown.adjacency[np.ix_("
                       "*(2 * [np.flatnonzero((view.shown.nodes.kind != 'bias').to_numpy())]))]"
                       " != 0).sum()), g.str_tokens]))")
    ds = _dataset(page, GV)
    assert int(ds["nodes"]) == py[0] and int(ds["edges"]) == py[1]
    labels = root.locator(".iw-gv-token").evaluate_all("els => els.map(e => e.textContent)")
    assert [t.replace("·", " ") for t in labels] == py[2]
    painted = page.page.evaluate(
        "(sel) => { const c = document.querySelector(sel + ' canvas');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }", GV)
    assert painted > 1000
    assert page.page.locator(".jp-OutputArea-output .iw-error:visible").count() == 0
    root.screenshot(path=str(artifacts_dir / "lab-graph_view.png"))


def test_hover_shows_the_nodes_dashboard(page):
    nid = _top_feature(page)
    x, y = _node_point(page, nid)
    page.page.mouse.move(x + 1, y)
    page.page.wait_for_function("([sel, id]) => document.querySelector(sel).dataset.dashboard"
                                " === id", arg=[GV, nid], timeout=120_000)
    tip = page.page.locator(f"{GV} .iw-tooltip")
    assert tip.is_visible()
    want = page.run_json(f"d = view.dashboard({nid!r})\nprint(json.dumps(["
                         "d['logit_effect']['top'][0][0], d['examples'][0]['value'],"
                         " d['value']]))")
    text = tip.inner_text()
    assert want[0].replace(" ", "·") in text.replace(" ", "")
    assert f"{want[1]:.4g}"[:4] in text
    assert f"{want[2]:.4g}"[:4] in text


def test_click_pins_and_lists_the_edges(page):
    nid = _top_feature(page)
    x, y = _node_point(page, nid)
    page.page.mouse.click(x, y)
    page.page.wait_for_function("([sel, id]) => document.querySelector(sel).dataset.pinned"
                                " === id", arg=[GV, nid], timeout=30_000)
    rows = page.page.locator(f"{GV} .iw-gv-in tbody tr").evaluate_all(
        "els => els.map(e => [e.dataset.node, Number(e.dataset.weight)])")
    want = page.run_json(
        f"s = view.shown\ni = s.index_of({nid!r})[0]\nrow = s.adjacency[i]\n"
        "keep = (s.nodes.kind != 'bias').to_numpy()\n"
        "o = [j for j in np.argsort(-np.abs(row)) if row[j] != 0 and keep[j]][:15]\n"
        "print(json.dumps([[s.nodes.node_id[j], float(row[j])] for j in o]))")
    assert [r[0] for r in rows] == [w[0] for w in want]
    assert [r[1] for r in rows] == pytest.approx([w[1] for w in want], rel=1e-5)
    outs = page.page.locator(f"{GV} .iw-gv-out tbody tr").count()
    assert outs >= 1


def test_threshold_slider_re_prunes_in_the_kernel(page):
    slider = page.page.locator(f"{GV} input.iw-gv-node-threshold")
    slider.evaluate("(el) => { el.value = '0.5'; el.dispatchEvent(new Event('change',"
                    " {bubbles: true})); }")
    page.page.wait_for_function(f"() => document.querySelector(\"{GV}\").dataset.rev === '1'",
                                timeout=60_000)
    py = page.run_json("print(json.dumps([view.shown.node_threshold, view.graph['n'],"
                       " int((g.prune(0.5, 0.98).nodes.kind != 'bias').sum()),"
                       " view.graph['prune']['n_full']]))")
    assert py[0] == 0.5 and py[1] == py[2]
    ds = _dataset(page, GV)
    assert int(ds["nodes"]) == py[1] and ds["nodeThreshold"] == "0.5"
    assert f"{py[1]} of {py[3]} nodes" in page.page.locator(f"{GV} .iw-gv-counts").inner_text()


def test_select_and_ablate_re_runs_the_model(page):
    nid = _top_feature(page)
    x, y = _node_point(page, nid)
    page.page.keyboard.down("Shift")
    page.page.mouse.click(x, y)
    page.page.keyboard.up("Shift")
    assert _dataset(page, GV)["selected"] == "1"
    page.page.locator(f"{GV} button.iw-gv-zero").click()
    out = f"{GV} .iw-gv-intervention"
    page.page.wait_for_function(f"() => document.querySelector(\"{out}\").dataset.nodes"
                                f" === {nid!r}", timeout=60_000)
    shown = _dataset(page, out)
    want = page.run_json(
        f"r = iw.intervene(model, tcs, view.shown, {{{nid!r}: 0.0}})\n"
        "print(json.dumps([view.last.top_logits[0][0], r.top_logits[0][0], r.top_logits[0][1],"
        " r.nodes.set_index('node_id').change.to_dict()]))")
    assert shown["factor"] == "0" and shown["top"] == want[0] == want[1]
    assert float(shown["topProb"]) == pytest.approx(want[2], rel=1e-5)
    rows = page.page.locator(f"{out} .iw-gv-changes tbody tr").evaluate_all(
        "els => els.map(e => [e.dataset.node, Number(e.dataset.change)])")
    assert rows
    for node, change in rows:
        assert change == pytest.approx(want[3][node], rel=1e-4, abs=1e-5)
    assert page.page.locator(f"{out} .iw-topk").count() == 2
