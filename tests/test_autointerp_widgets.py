"""AutoInterpTable, ProbeView and NeuronView's Explain action (Python side): what they sync, what
they answer, errors, static export; the Explain action offline and against the loopback server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from openai_server import FakeOpenAIServer

from interp_widgets import autointerp as ai
from interp_widgets.analysis import compare_bases, sparse_probe
from interp_widgets.autointerp.score import Scores
from interp_widgets.widgets import AutoInterpTable, NeuronView, ProbeView
from interp_widgets.widgets._codec import decode_array

KEY = "sk-widget-test-0a1b2c3d4e"
HOOK = "blocks.0.mlp.hook_post"


def _entries(model_id: str = "demo"):
    return [ai.Entry(model_id, HOOK, 3, "offline-statistical", "statistical", "apples",
                     Scores(correlation=0.3)),
            ai.Entry(model_id, HOOK, 5, "gpt-x", "llm", "fruit", Scores(correlation=0.8)),
            ai.Entry(model_id, "sae-0", 1, "gpt-x", "llm", "dates", Scores())]


@pytest.fixture
def store(tmp_path):
    s = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    s.put(_entries())
    return s


def test_table_syncs_columns_as_buffers_and_opens_rows(store, tmp_path):
    opened = []
    table = AutoInterpTable(store, opener=lambda e: f"view of {e.unit}")
    table.on_open(opened.append)
    cols = table.columns
    assert table.n_rows == 3 and cols["explanation"] == ["apples", "fruit", "dates"]
    assert decode_array(cols["unit"]).tolist() == [3, 5, 1]
    corr = decode_array(cols["correlation"])
    assert corr.dtype == np.float32 and np.isnan(corr[2]) and corr[1] == pytest.approx(0.8)
    reply = table.answer("open", {"row": 1})
    assert reply == {"ok": True, "result": {"unit": 5, "source": HOOK, "shown": True}}
    assert table.selected == 1 and [e.unit for e in opened] == [5]
    assert table.answer("open", {"row": 9})["error"].startswith("open: row 9 is out of range")
    assert list(table.data["unit"]) == [3, 5, 1]
    filtered = AutoInterpTable(store, source=HOOK, search="FRU")
    assert filtered.n_rows == 1
    with pytest.raises(ValueError, match="sort must be"):
        AutoInterpTable(store, sort="nope")
    assert table.to_html(tmp_path / "t.html").stat().st_size > 1000


def test_table_rows_are_clickable_only_with_an_opener_or_a_callback(store):
    """can_open tells the view whether to say "click a row to open the unit"."""
    assert AutoInterpTable(store, opener=lambda e: None).can_open is True
    table = AutoInterpTable(store)  # no model, no opener: nothing opens
    assert table.can_open is False
    seen = []
    table.on_open(seen.append)
    assert table.can_open is True
    table.on_open(seen.append, remove=True)
    assert table.can_open is False


def test_table_opens_neurons_in_a_neuron_view(tmp_path, model):
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    store.put(_entries(model.name) + _entries("another-model"))
    table = AutoInterpTable(store, model=model, targets=[" Mary"])
    assert table.n_rows == 3  # this model's rows only
    reply = table.answer("open", {"row": 1})["result"]
    assert reply["shown"] and reply["unit"] == 5
    err = table.answer("open", {"row": 2})
    assert not err["ok"] and "MLP neurons" in err["error"]


def test_probe_view(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    x = rng.normal(size=(300, 12))
    x[:, 2] += 2 * y
    cmp = compare_bases({"neurons": x, "noise": rng.normal(size=(300, 12))}, y, k=(1, 2, 4))
    view = ProbeView(cmp, metric="f1")
    (b0, b1) = view.bases
    assert b0["name"] == "neurons" and decode_array(b0["k"]).tolist() == [1, 2, 4]
    np.testing.assert_allclose(decode_array(b0["accuracy"]), cmp.results["neurons"].accuracy,
                               rtol=1e-6)
    assert decode_array(b0["units"][0]).tolist() == [2]
    assert b0["dense_accuracy"] == pytest.approx(cmp.results["neurons"].dense_accuracy)
    assert view.data["noise"] is cmp.results["noise"]
    single = ProbeView(sparse_probe(x, y, k=(1,), dense=False))
    assert single.bases[0]["dense_f1"] is None
    assert ProbeView.from_bases({"n": x}, y, k=(1,)).bases[0]["name"] == "n"
    with pytest.raises(ValueError, match="ProbeComparison"):
        ProbeView({"n": x})
    assert view.to_html(tmp_path / "p.html").stat().st_size > 1000


@pytest.fixture(scope="module")
def view(model):
    """One NeuronView (its corpus scan is the slow part), shared by the tests below."""
    from interp_widgets.demo import corpus

    return NeuronView(model, 0, 2, corpus=corpus(16, seed=4), targets=[" Mary"],
                      progress=False)


def test_neuron_view_explains_offline_and_recalls_stored(model, view, tmp_path):
    view._select(0, 2)
    assert view.explain_state["status"] == "idle" and view.explain_llm is False
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    view.explain_with(store)
    assert view.answer("explain", {}) == {"ok": True, "result": {"started": True}}
    view._explain_thread.join(60)
    state = view.explain_state
    assert state["status"] == "done" and state["kind"] == "statistical"
    assert state["explanation"].startswith(ai.STATISTICAL_LABEL)
    stored = store.get(model.name, HOOK, 2)
    assert stored.explanation == state["explanation"]
    assert state["scores"]["correlation"] == pytest.approx(stored.score)
    view._select(0, 3)
    assert view.explain_state == {"status": "idle", "unit": 3, "source": HOOK}
    view._select(0, 2)
    assert view.explain_state["explanation"] == stored.explanation  # from the store


def test_neuron_view_explain_with_llm_cancel_and_key(model, view):
    view._select(0, 1)
    with FakeOpenAIServer(api_key=KEY) as server:
        view.explain_with(model="fake-llm", base_url=server.base_url, api_key=KEY)
        assert view.explain_llm
        entry = view.explain()
        assert entry.kind == "llm" and entry.explainer == "fake-llm"
        assert view.explain_state["explanation"] == entry.explanation
        assert view.explain_state["calls"] == len(server.requests) > 5
        assert KEY not in json.dumps(view.get_state(), default=str)
        # cancel mid-run: nothing stored, state says so
        server.latency = 0.2
        view._select(0, 4)
        view.answer("explain", {})
        assert view.answer("explain", {})["error"].startswith("explain: an explanation is "
                                                              "already running")
        view.answer("explain_cancel", {})
        view._explain_thread.join(30)
        assert view.explain_state["status"] == "cancelled"
        assert view._explain_lookup((model.name, HOOK, 4)) is None
        # a rejected key is an error the panel shows
        server.latency, server.api_key = 0.0, "sk-other-key-000"
        view.explain()
        assert view.explain_state["status"] == "error"
        assert "Authentication failed" in view.explain_state["error"]


@pytest.mark.parametrize("mode", ["content-deep", "content-number", "html-200",
                                  "content-surrogate", "deep-body"])
def test_explain_panel_ends_in_an_error_state_on_hostile_answers(model, view, mode):
    """Every request answered badly (e.g. "[" * 5000, a number as the message): the thread
    ends, the panel shows an error with a one-line reason, and nothing is stored."""
    view._select(0, 5)
    with FakeOpenAIServer() as server:
        view.explain_with(client=ai.Client("fake-llm", base_url=server.base_url, api_key=KEY,
                                           max_retries=1, backoff=0.01))
        server.hostile(mode, 500)
        view.explain()
    assert not view._explain_thread.is_alive()
    state = view.explain_state
    assert state["status"] == "error", state
    assert state["error"] and "\n" not in state["error"] and "/v1/" in state["error"]
    assert view._explain_lookup((model.name, HOOK, 5)) is None


def test_explain_panel_shows_unexpected_errors(model, view, monkeypatch):
    from interp_widgets.widgets import explain as panel

    def broken(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(panel, "explain_unit", broken)
    view._select(0, 6)
    view.explain_with()
    view.explain()
    assert view.explain_state["status"] == "error"
    assert view.explain_state["error"] == ("unexpected RecursionError: maximum recursion depth "
                                           "exceeded")


def test_explain_panel_shows_bidi_characters_escaped(model, view, tmp_path):
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    store.put(ai.Entry(model.name, HOOK, 7, "gpt\u202ex", "llm", "a\u202eb"))
    view._select(0, 7)
    view.explain_with(store)
    state = view.explain_state
    assert state["explanation"] == "ab"  # removed before it was stored
    assert state["explainer"] == "gpt\\u202ex"  # shown as an escape


def test_neuron_view_without_corpus_cannot_explain(model):
    view = NeuronView(model, 0, 1, targets=[" Mary"], progress=False)
    reply = view.answer("explain", {})
    assert not reply["ok"] and "corpus=" in reply["error"]


def test_feature_browser_explains_and_searches_by_explanation(model, tmp_path):
    from interp_widgets.demo import corpus
    from interp_widgets.sae import SAE
    from interp_widgets.widgets import FeatureBrowser

    sae = SAE(model.cfg.d_model, 64, arch="topk", k=4, hook_name="blocks.1.hook_resid_pre",
              seed=0)
    fb = FeatureBrowser(model, sae, corpus(12, seed=2), progress=False)
    store = ai.AutoInterpStore(tmp_path / "ai.sqlite")
    entry = fb.explain_with(store).explain()
    assert entry.source == "blocks.1.hook_resid_pre/topk64" and entry.unit == fb.feature
    assert fb.explanation["text"] == entry.explanation  # the browser's own panel shows it too
    word = entry.explanation[-12:]
    found = fb.answer("list", {"query": entry.explanation[-20:]})["result"]
    assert found["total"] >= 1 and entry.explanation in found["labels"]
    # a new browser over the same store finds the stored explanation and searches it
    again = FeatureBrowser(model, sae, corpus(12, seed=2), progress=False,
                           feature=fb.feature).explain_with(store)
    assert again.explain_state["explanation"] == entry.explanation
    assert again.answer("list", {"query": word})["result"]["total"] >= 1
