"""PatchingView, AttributionView, SteeringView and PerturbationFlowView on the demo model: synced
data equals the analysis functions, requests answer, alpha is clipped, static export writes."""

import pytest
import torch

from interp_widgets.analysis import (
    Cell,
    continuation_loss,
    generate,
    kl_to_baseline,
    logit_diff,
    steering_effect,
    steering_vector,
)
from interp_widgets.widgets import (
    AttributionView,
    PatchingView,
    PerturbationFlowView,
    SteeringView,
)
from interp_widgets.widgets._codec import decode_array

torch.set_num_threads(1)

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


@pytest.fixture(scope="module")
def patching(model):
    return PatchingView(model, CLEAN, CORRUPT, " Mary", " John")


def test_patching_view_grids(patching):
    comps = [g["component"] for g in patching.grids]
    assert comps == ["resid_pre", "attn_out", "mlp_out", "head_out"]
    for g in patching.grids:
        exact, est = patching.data[g["component"]]
        values = decode_array(g["values"])
        assert values.shape == (len(g["rows"]), len(g["cols"]))
        assert torch.allclose(torch.tensor(values).reshape(exact.values.shape), exact.values)
        assert g["correlation"] == pytest.approx(est.correlation(exact))
    assert len(patching.clean_tokens) == len(patching.corrupt_tokens)
    assert len(patching.top_clean) == 5


def test_patching_view_slider_request(patching):
    cells = [["resid_pre", 0, 10, None], ["head_out", 1, None, 0]]
    reply = patching.answer("patch", {"cells": cells, "alpha": 0.3})
    assert reply["ok"], reply
    r = reply["result"]
    p = patching.patcher
    want = p.value(p.logits([Cell("resid_pre", 0, 10), Cell("head_out", 1, None, 0)], 0.3))
    assert r["value"] == pytest.approx(want, abs=1e-6) and not r["clipped"]
    assert patching.last.value == pytest.approx(want, abs=1e-6)


def test_patching_view_curve_request(patching):
    cells = [["resid_pre", 0, 10, None]]
    r = patching.answer("curve", {"cells": cells, "n": 5})
    assert r["ok"], r
    alphas = decode_array(r["result"]["alphas"])
    values, norm = decode_array(r["result"]["values"]), decode_array(r["result"]["normalized"])
    assert alphas.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    want = [patching.patch(cells, float(a))["value"] for a in alphas]
    assert values.tolist() == pytest.approx(want, abs=1e-4)
    assert norm[0] == pytest.approx(0.0, abs=1e-5)
    bad = patching.answer("curve", {"cells": cells, "n": 1})
    assert "n must be an integer in 2 .. 101" in bad["error"]


@pytest.mark.parametrize("alpha,clipped_to", [(1.7, 1.0), (-0.5, 0.0)])
def test_alpha_outside_unit_interval_is_clipped(patching, alpha, clipped_to):
    r = patching.answer("patch", {"cells": [["attn_out", 0, 3, None]], "alpha": alpha})["result"]
    assert r["clipped"] and r["alpha"] == clipped_to and r["requested_alpha"] == alpha
    same = patching.patch([["attn_out", 0, 3, None]], clipped_to)
    assert r["value"] == pytest.approx(same["value"])


def test_patching_view_bad_requests(patching, model):
    L = model.cfg.n_layers
    bad = patching.answer("patch", {"cells": [["resid_pre", L, 0, None]], "alpha": 1})
    assert not bad["ok"] and f"0 .. {L - 1}" in bad["error"]
    bad = patching.answer("patch", {"cells": [["resid", 0, 0, None]], "alpha": 1})
    assert not bad["ok"] and "unknown component" in bad["error"]
    bad = patching.answer("patch", {"cells": [], "alpha": "x"})
    assert not bad["ok"] and "alpha" in bad["error"]
    with pytest.raises(ValueError, match="answer and wrong"):
        PatchingView(model, CLEAN, CORRUPT)


def test_attribution_view(model):
    view = AttributionView(model, CLEAN, " Mary", " John", steps=16)
    dla, inputs = view.data
    assert view.logit_diff == pytest.approx(dla.logit_diff)
    assert sum(v for _, v in view.components) == pytest.approx(dla.logit_diff, abs=1e-4)
    assert decode_array(view.heads).shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert [x["method"] for x in view.inputs] == list(inputs)
    assert view.answer("set_prompt", {"prompt": CORRUPT, "answer": " John",
                                      "wrong": " Mary"})["ok"]
    assert view.prompt == CORRUPT and view.data[0].answer == " John"


def test_steering_view(model):
    sv = steering_vector(model, " love", " hate", 1)
    view = SteeringView(model, "When Mary", {"love": sv}, coeff=3.0, max_new_tokens=6, seed=2)
    r = view.answer("steer", {"vector": 0, "coeff": 5.0, "layer": 0, "seed": 2})
    assert r["ok"], r
    steer = [(sv, 0, 5.0)]
    want = generate(model, "When Mary", steer=steer, max_new_tokens=6, seed=2)
    assert view.steered == want.new_tokens
    assert view.baseline == generate(model, "When Mary", max_new_tokens=6, seed=2).new_tokens
    kl = kl_to_baseline(model, want.tokens, steer)[want.n_prompt - 1:-1]
    assert torch.allclose(torch.tensor(decode_array(view.kl)), kl, atol=1e-6)
    bad = view.answer("steer", {"vector": 0, "coeff": 1.0, "layer": 99, "seed": 0})
    assert not bad["ok"] and f"0 .. {model.cfg.n_layers - 1}" in bad["error"]
    # coherence: the unsteered model's loss on each text; no metric given, none shown
    assert view.loss == pytest.approx(float(continuation_loss(model, want).mean()), abs=1e-5)
    assert view.metric_name == "" and view.metric_value is None
    assert [row["coeff"] for row in view.sweep] == [0.0, 1.5, 3.0, 6.0]


def test_steering_view_shows_the_steered_metric_and_strengths(model):
    sv = steering_vector(model, " an", " a", 1)
    metric = logit_diff(" an", " a")
    view = SteeringView(model, "Everyone wanted the apple. In the end, Mary got", sv, coeff=4.0,
                        max_new_tokens=4, metric=metric, strengths=(0, 4, 8))
    steer = [(sv, 1, 4.0)]
    prompt = view.prompt
    assert view.metric_name == metric.name
    steered = float(steering_effect(model, prompt, metric, steer)[0])
    assert view.metric_value == pytest.approx(steered, abs=1e-5)
    assert view.metric_baseline == pytest.approx(float(steering_effect(model, prompt, metric)[0]),
                                                 abs=1e-5)
    r = view.answer("steer", {"vector": 0, "coeff": 8.0, "layer": 1, "seed": 0})["result"]
    assert r["metric"] == pytest.approx(view.sweep[2]["metric"], abs=1e-5)
    assert [row["coeff"] for row in r["sweep"]] == [0.0, 4.0, 8.0]


def test_perturbation_view_and_exports(model, patching, tmp_path):
    flow = PerturbationFlowView(model, "Mary went to the store. John went home. Then Mary gave "
                                "a drink to", "John went home. ")
    assert any(flow.removed) and len(flow.removed) == len(flow.tokens)
    assert flow.answer("set_text", {"text": "A cat sat. The dog ran.",
                                    "remove": "The dog"})["ok"]
    for w in (flow, patching):
        path = w.to_html(tmp_path / f"{w._view}.html")
        text = path.read_text()
        assert path.stat().st_size < 2_000_000 and "iw-payload" in text
