"""Attribution graphs on the demo model with the demo transcoders: completeness, exact
replacement logits, pruning, the graph JSON, bad input, interventions."""

from __future__ import annotations

import numpy as np
import pytest

import interp_widgets as iw

PROMPT = "At the pantry, Alex and Eva found the plate. Eva sent it to"


@pytest.fixture(scope="module", params=["per_layer", "clt"])
def graph(request, model):
    tcs = iw.demo.load_transcoders(request.param)
    return model, tcs, iw.attribution_graph(model, tcs, PROMPT)


def test_completeness_and_exact_logits(graph):
    model, tcs, g = graph
    # the backward passes fill only the graph's leaves, never the weights' .grad
    assert all(p.grad is None for p in [*model.bridge.parameters(), *tcs.parameters()])
    assert g.completeness_error() < 1e-4
    assert np.abs(g.real_logits - g.replacement_logits).max() < 1e-4
    assert set(g.nodes.kind) == {"feature", "error", "embedding", "bias", "logit"}
    assert g.nodes[g.nodes.kind == "logit"].token.iloc[0] == " Alex"


def test_prune_and_json_round_trip(graph, tmp_path):
    _, _, g = graph
    p = g.prune(0.8, 0.98)
    assert len(p.nodes) < len(g.nodes) and 0.75 < p.kept_node_influence <= 1.0
    p.add_supernode("names", list(p.nodes.node_id[p.nodes.kind == "embedding"][:2]))
    p.to_json(tmp_path / "g.json")
    q = iw.load_graph(tmp_path / "g.json")
    assert list(q.nodes.node_id) == list(p.nodes.node_id)
    assert np.allclose(q.adjacency, p.adjacency)
    assert q.supernodes == p.supernodes
    data = p.to_json()
    data["metadata"]["schema_version"] = 99
    with pytest.raises(iw.GraphFormatError, match="schema_version 99"):
        iw.load_graph(data)


def test_bad_input(model):
    tcs = iw.Transcoders(2, 128, 128, 16, k=2)
    with pytest.raises(ValueError, match="cover 2 layers"):
        iw.attribution_graph(model, tcs, PROMPT)
    with pytest.raises(iw.GraphTooLargeError, match="longest prompt that fits is about"):
        iw.attribution_graph(model, iw.demo.load_transcoders(), PROMPT, max_memory=2**20)


def test_intervention_identity_and_ablation(graph):
    model, tcs, g = graph
    feat = g.nodes[g.nodes.kind == "feature"].sort_values("influence").node_id.iloc[-1]
    same = iw.intervene(model, tcs, g, {feat: 1.0})
    assert np.allclose(same.nodes.change, 0, atol=1e-4)
    res = iw.intervene(model, tcs, g, {feat: 0.0})
    assert res.nodes.change.abs().max() > 1e-3
