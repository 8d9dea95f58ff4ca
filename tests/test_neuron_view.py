"""NeuronView: synced state and request answers agree with the analysis functions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis import neurons as nr
from interp_widgets.analysis.corpus import scan_neurons
from interp_widgets.widgets import NeuronView
from interp_widgets.widgets._codec import decode_array

torch.set_num_threads(1)
L, N = 1, 7


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return iw.demo.corpus(8, seed=21)


@pytest.fixture(scope="module")
def view(model, docs) -> NeuronView:
    return NeuronView(model, L, N, corpus=docs, text="The chef looked at the apple and bought",
                      progress=False)


def ok(view, method, **args):
    reply = view.answer(method, args)
    assert reply["ok"], reply
    return reply["result"]


def test_synced_state_matches_the_analysis(model, docs, view):
    scan = scan_neurons(model, docs, L, k=20, progress=False)
    assert (view.layer, view.neuron, view.hook) == (L, N, f"blocks.{L}.mlp.hook_post")
    assert view.stats["n_tokens"] == scan.n_tokens
    assert view.stats["mean"] == pytest.approx(float(scan.mean[N]))
    assert decode_array(view.histogram["counts"]).sum() == scan.n_tokens
    effect = nr.direct_logit_effect(model, L, N)
    assert [t for t, _ in view.logit_effect["top"]] == effect.top["token"].tolist()
    assert [n for n, _ in view.correlated] == nr.correlated_neurons(scan, N, 10)["neuron"].tolist()
    toks, acts = nr.neuron_activations(model, view.text, L, N)
    assert view.text_tokens == toks
    torch.testing.assert_close(torch.from_numpy(decode_array(view.text_acts).copy()), acts)
    assert view.modes == ["zero", "mean", "resample"]


def test_requests(model, view):
    ex = ok(view, "examples")
    values = [e["value"] for e in ex["top"]]
    assert values == sorted(values, reverse=True) and len(values) == 10
    assert sum(b["count"] for b in ex["buckets"]) == view.stats["n_tokens"]
    attr = ok(view, "attribution", pos=3)
    assert decode_array(attr["contributions"]).sum() == pytest.approx(attr["pre"], abs=1e-4)
    ab = ok(view, "ablate", mode="zero")
    ref = nr.ablate_neuron(model, view.text, L, N, "zero", targets=view.targets)
    assert decode_array(ab["ablated"]).tolist() == pytest.approx(
        ref.prob_ablated[0, -1].tolist(), rel=1e-5)
    mod = ok(view, "modulate", scale=2)
    ref = nr.modulate_neuron(model, view.text, L, N, 2.0)
    assert mod["top"]["tokens"] == [s for s, _ in ref.top(0, 5)]


def test_navigation_text_and_bad_input(model, docs):
    v = NeuronView(model, L, N, corpus=docs, progress=False)
    assert v.text  # defaults to the top example's context
    rev = v._rev
    ok(v, "select", layer=L, neuron=N + 1)
    assert v.neuron == N + 1 and v._rev > rev
    ok(v, "set_text", text="Everyone wanted the kite.")
    assert v.text_tokens[-1] == "."
    ok(v, "set_targets", targets=" a, the")
    assert v.targets == [" a", " the"]
    for method, args, message in [
        ("select", {"layer": model.cfg.n_layers, "neuron": 0}, "out of range 0.."),
        ("select", {"layer": 0, "neuron": model.cfg.d_mlp}, "out of range 0.."),
        ("set_text", {"text": "   "}, "empty"),
        ("set_targets", {"targets": " zzqqxx"}, "not one"),
        ("ablate", {"mode": "negate"}, "not available"),
        ("attribution", {"pos": 999}, "out of range"),
    ]:
        reply = v.answer(method, args)
        assert not reply["ok"] and message in reply["error"], reply
    with pytest.raises(ValueError, match="layer .* out of range"):
        NeuronView(model, model.cfg.n_layers, 0)


def test_without_a_corpus_and_static_export(model, tmp_path):
    v = NeuronView(model, 0, 3, text="Mary went to the market.", progress=False)
    assert v.modes == ["zero"] and v.stats == {} and v.histogram is None
    assert ok(v, "examples") == {"top": [], "buckets": []}
    keys = {(m, json.dumps(a, sort_keys=True)) for m, a, _ in v.static_answers()}
    assert ("modulate", '{"scale": 1}') in keys and ("modulate", '{"scale": 1.5}') in keys
    path = v.to_html(tmp_path / "neuron.html")
    assert path.stat().st_size > 10_000


def test_data_is_what_was_shown_without_rerunning_the_model(view, monkeypatch):
    import interp_widgets.analysis.neurons as nr
    from interp_widgets.widgets._codec import decode_array

    def refuse(*a, **k):
        raise AssertionError("NeuronView.data re-ran the model")

    monkeypatch.setattr(nr, "neuron_activations", refuse)
    monkeypatch.setattr(nr, "direct_logit_effect", refuse)
    d = view.data
    assert np.allclose(d["text_acts"].numpy(), decode_array(view.text_acts))
    assert [r.token for r in d["logit_effect"].top.itertuples()] == \
        [t for t, _ in view.logit_effect["top"]]
