"""Auto-interp widgets in a real JupyterLab 4 with Chromium: NeuronView's Explain button against a
loopback OpenAI-compatible server run by the kernel (progress, result, cancel, nothing stored on
cancel, the API key in neither the widget state nor the saved notebook), AutoInterpTable (sort,
filter, click opens the unit below) and ProbeView (lines per basis, metric switch).

`IW_E2E_MODEL=<path>` loads another model than the demo (e.g. a tiny local GPT-2).
"""

from __future__ import annotations

import json
import os

import e2e_harness as h
import pytest

pytestmark = pytest.mark.e2e

MODEL = os.environ.get("IW_E2E_MODEL", "demo")
KEY = "sk-e2e-secret-7c1d2e3f4a5b"
KEY_SRC = '"sk-e2e-" + "secret-7c1d2e3f4a5b"'  # so the cell sources never hold the key itself
NV = ".iw-root[data-view='neuron_view']"
TABLE = ".iw-root[data-view='autointerp_table']"
PROBE = ".iw-root[data-view='probe_view']"
CELLS = [
    "import json, tempfile, pathlib\nimport numpy as np\nimport interp_widgets as iw\n"
    "from interp_widgets import autointerp as ai\n"
    f"import sys; sys.path.insert(0, {str(h.REPO_ROOT / 'tests')!r})\n"
    "from openai_server import FakeOpenAIServer\n"
    "from interp_widgets.analysis import compare_bases\n"
    "from interp_widgets.widgets import AutoInterpTable, NeuronView, ProbeView\n"
    f"model = iw.load_model({MODEL!r})\n"
    f"KEY = {KEY_SRC}\nserver = FakeOpenAIServer(api_key=KEY).start()\n"
    "store = ai.AutoInterpStore(pathlib.Path(tempfile.mkdtemp()) / 'ai.sqlite')\n"
    "docs = iw.demo.corpus(24, seed=3)",
    "view = NeuronView(model, 0, 4, corpus=docs, targets=[' Mary'], progress=False)\n"
    "view.explain_with(store, model='fake-llm', base_url=server.base_url, api_key=KEY)\n"
    "view",
    "scan = view.data['scan']\n"
    "ai.explain_units({n: ai.records_from_scan(scan, n) for n in range(6)}, model_id=model.name,"
    " source=scan.meta['hook'], store=store, progress=False)\n"
    "table = AutoInterpTable(store, model=model, corpus=docs, targets=[' Mary'], progress=False)\n"
    "table.panel",
    "rng = np.random.default_rng(0); y = rng.random(300) < 0.3\n"
    "x = rng.normal(size=(300, 16)); x[:, 4] += 2 * y\n"
    "pv = ProbeView(compare_bases({'neurons': x, 'shuffled': x[:, ::-1].copy()}, y, k=(1, 2, 4)))\n"
    "pv",
]



@pytest.fixture(scope="module")
def lab(jupyter_server, context):
    ready = [f"{PROBE} circle.iw-probe-dot"]
    with h.run_notebook(jupyter_server, context, "autointerp.ipynb", CELLS, ready) as nbp:
        yield nbp
        nbp.run_json("server.stop(); print(1)")


def test_explain_button_runs_the_llm_and_shows_the_result(page, jupyter_server, artifacts_dir):
    nv = page.page.locator(NV).first
    panel = nv.locator(".iw-ai-explain")
    assert panel.locator(".iw-ai-status").inner_text() == "explainer: LLM"
    panel.locator(".iw-ai-explain-button").click()
    panel.locator(".iw-ai-badge").wait_for(timeout=60_000)
    state = page.run_json("print(json.dumps(view.explain_state))")
    assert state["status"] == "done" and state["explainer"] == "fake-llm"
    assert panel.locator(".iw-ai-badge").inner_text() == "LLM: fake-llm"
    assert panel.locator(".iw-ai-explanation").inner_text() == state["explanation"]
    assert state["explanation"].startswith("the token ")
    stored = page.run_json("e = store.get(model.name, view.hook, 4, 'fake-llm'); "
                           "print(json.dumps([e.explanation, e.score]))")
    assert stored[0] == state["explanation"]
    corr = panel.locator("tr[data-score='correlation'] .iw-num").inner_text()
    if stored[1] is None or stored[1] != stored[1]:  # an undefined score (NaN) reads "n/a"
        assert corr == "n/a"
    else:
        assert abs(float(corr) - stored[1]) < 1e-3
    panel.screenshot(path=str(artifacts_dir / "lab-neuron_view-explain-panel.png"))
    # the key is in neither the synced state nor the saved notebook
    assert page.run_json("print(json.dumps(KEY in json.dumps(view.get_state(), default=str)))") \
        is False
    page.command("docmanager:save")
    page.page.wait_for_timeout(1000)
    saved = jupyter_server.api("GET", "/api/contents/autointerp.ipynb?content=1")
    text = json.dumps(saved["content"])
    assert "application/vnd.jupyter.widget-view+json" in text and KEY not in text


def test_cancel_stores_nothing(page):
    nv = page.page.locator(NV).first
    page.run_json("server.latency = 0.3; view._select(0, 6); print(1)")
    panel = nv.locator(".iw-ai-explain")
    panel.locator(".iw-ai-explain-button").click()
    cancel = panel.locator(".iw-ai-cancel")
    cancel.wait_for(state="visible", timeout=30_000)
    assert panel.locator(".iw-ai-progress").is_visible()
    cancel.click()
    panel.locator("text=cancelled: nothing was stored").wait_for(timeout=60_000)
    assert page.run_json("server.latency = 0; "
                         "print(json.dumps(store.get(model.name, view.hook, 6, 'fake-llm')))") \
        is None


def test_a_hostile_answer_ends_in_a_visible_error(page, artifacts_dir):
    """Answers of "[" * 5000 (a simulation answer like that once killed the panel's thread): the
    panel leaves "running", shows the reason, and stores nothing."""
    nv = page.page.locator(NV).first
    # JSON simulation (no logprobs), so that the answer goes through first_json
    page.run_json("view._select(0, 7); view._explain_client.logprobs = False; "
                  "server.hostile('content-deep', 500); print(1)")
    panel = nv.locator(".iw-ai-explain")
    panel.locator(".iw-ai-explain-button").click()
    error = panel.locator(".iw-ai-error")
    error.wait_for(timeout=60_000)
    state = page.run_json("server._hostile.clear(); view._explain_client.logprobs = None; "
                          "print(json.dumps(view.explain_state))")
    assert state["status"] == "error" and "/v1/chat/completions" in state["error"]
    assert error.inner_text() == state["error"]
    assert not panel.locator(".iw-ai-progress").is_visible()
    panel.screenshot(path=str(artifacts_dir / "lab-neuron_view-explain-error.png"))
    assert page.run_json("print(json.dumps([view._explain_thread.is_alive(), "
                         "store.get(model.name, view.hook, 7, 'fake-llm')]))") == [False, None]


def test_table_sorts_filters_and_opens_a_unit(page):
    table = page.page.locator(TABLE)
    rows = table.locator("tr.iw-ai-row")
    n = page.run_json("table.refresh(); print(table.n_rows)")
    assert n >= 7  # 6 offline units + the one the LLM explained
    for _ in range(20):
        if rows.count() == n:
            break
        page.page.wait_for_timeout(200)
    assert rows.count() == n
    assert table.locator(".iw-ai-statistical").count() >= 6
    # a dead unit's correlation is NaN (undefined); the table lists those last
    corr = page.run_json("print(json.dumps(sorted([e.score for e in store.entries() "
                         "if e.score == e.score], reverse=True)))")
    first = rows.first.locator("td").nth(3).inner_text()  # "0.80 [0.62, 0.91]": score [interval]
    assert abs(float(first.split()[0]) - corr[0]) < 1e-2 and "[" in first
    table.locator("th[data-sort='unit']").click()
    units = [int(rows.nth(i).locator("td").first.inner_text()) for i in range(n)]
    assert units == sorted(units)
    table.locator(".iw-ai-filter").fill("fake-llm")
    page.page.wait_for_timeout(400)
    assert rows.count() == 1
    before = page.page.locator(NV).count()
    rows.first.click()
    page.page.locator(NV).nth(before).wait_for(timeout=60_000)
    sel = page.run_json("print(json.dumps([table.selected, table.data.iloc[table.selected]"
                        "['explainer']]))")
    assert sel[1] == "fake-llm"
    assert "Layer 0, neuron 4" in page.page.locator(NV).nth(before).locator(
        ".iw-nv-title").inner_text()


def test_probe_view_draws_each_basis_and_switches_metric(page, artifacts_dir):
    pv = page.page.locator(PROBE)
    pv.screenshot(path=str(artifacts_dir / "lab-probe_view.png"))
    assert pv.locator("polyline.iw-probe-line").count() == 2
    assert pv.locator("line.iw-probe-dense").count() == 2
    assert pv.locator("circle.iw-probe-dot").count() == 6
    pv.locator("select.iw-probe-metric").select_option("f1")
    for _ in range(20):
        if page.run_json("print(json.dumps(pv.metric))") == "f1":
            break
        page.page.wait_for_timeout(200)
    else:
        raise AssertionError("the metric never reached the kernel")
    title = pv.locator("circle.iw-probe-dot title").first.text_content()
    f1 = page.run_json("print(json.dumps(pv.data['neurons'].f1[0]))")
    shown = float(title.split(": f1 ")[1].split()[0])
    assert abs(shown - f1) < 1e-3, title
