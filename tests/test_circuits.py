"""Attribution graphs on the demo model with the demo transcoders: completeness, exact
replacement logits, pruning, the graph JSON, bad input, interventions."""

from __future__ import annotations

import re

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


def test_transcoders_that_do_not_fit_say_the_shapes_and_the_hook(model):
    with pytest.raises(ValueError, match="cover 2 layers but the model has 3"):
        iw.attribution_graph(model, iw.Transcoders(3 - 1, 128, 128, 16, k=2), PROMPT)
    narrow = iw.Transcoders(3, 64, 128, 16, k=2)  # MLP input width 64, the model's is 128
    with pytest.raises(ValueError, match=r"hook 'blocks.0.ln2.hook_normalized'.*width 64.*"
                                         r"shape \[1, 1, 128\]"):
        iw.attribution_graph(model, narrow, PROMPT)
    wide_out = iw.Transcoders(3, 128, 256, 16, k=2)
    with pytest.raises(ValueError, match=r"hook 'blocks.0.hook_mlp_out'.*width 256"):
        iw.attribution_graph(model, wide_out, PROMPT)
    typo = iw.Transcoders(3, 128, 128, 16, k=2, input_hook="ln2.hook_normalised")
    with pytest.raises(iw.UnknownHookError, match="blocks.0.ln2.hook_normalized"):
        iw.attribution_graph(model, typo, PROMPT)


def test_a_prompt_too_long_is_refused_naming_the_longest_that_fits(model):
    tcs = iw.demo.load_transcoders()
    with pytest.raises(iw.GraphTooLargeError, match="Not even a 1-token prompt fits"):
        iw.attribution_graph(model, tcs, PROMPT, max_memory=2**20)
    budget = 100 * 2**20
    with pytest.raises(iw.GraphTooLargeError) as err:
        iw.attribution_graph(model, tcs, PROMPT, max_memory=budget)
    msg = str(err.value)
    need = float(re.search(r"needs about ([\d.]+) GiB", msg).group(1))
    longest = int(re.search(r"longest prompt that fits is about (\d+) tokens", msg).group(1))
    assert need * 2**30 > budget and "16 tokens" in msg
    g = iw.attribution_graph(model, tcs, PROMPT)
    # the length it names does fit, at this prompt's density of nodes per token
    per_tok = len(g.nodes) / len(g.tokens)
    fits = iw.estimate_memory(int(per_tok * longest), longest, 128, 3, model.cfg.d_vocab, 256)
    assert 0 < longest < 16 and fits <= budget
    assert iw.estimate_memory(int(per_tok * (longest + 2)), longest + 2, 128, 3,
                              model.cfg.d_vocab, 256) > budget


def test_unknown_graph_json_says_what_it_reads(graph):
    _, _, g = graph
    data = g.prune().to_json()
    data["iw"]["schema_version"] = 7
    with pytest.raises(iw.GraphFormatError, match="schema_version 7 is unknown.*reads 1"):
        iw.load_graph(data)
    with pytest.raises(iw.GraphFormatError, match="not a graph JSON"):
        iw.load_graph({"metadata": {}})


def test_intervention_on_a_pruned_away_node_runs_with_a_note(graph):
    model, tcs, g = graph
    p = g.prune(0.8, 0.98)
    kept = set(p.nodes.node_id)
    gone = g.nodes[(g.nodes.kind == "feature") & ~g.nodes.node_id.isin(kept)]
    nid = gone.sort_values("influence").node_id.iloc[-1]
    via_pruned = iw.intervene(model, tcs, p, {nid: 0.0})
    assert any(nid in n and "pruned away" in n for n in via_pruned.notes)
    via_full = iw.intervene(model, tcs, g, {nid: 0.0})
    assert via_full.notes == []
    assert np.allclose(via_pruned.nodes.new_value, via_full.nodes.new_value)
    assert via_pruned.nodes.change.abs().max() > 0


def test_intervention_identity_and_ablation(graph):
    model, tcs, g = graph
    feat = g.nodes[g.nodes.kind == "feature"].sort_values("influence").node_id.iloc[-1]
    same = iw.intervene(model, tcs, g, {feat: 1.0})
    assert np.allclose(same.nodes.change, 0, atol=1e-4)
    res = iw.intervene(model, tcs, g, {feat: 0.0})
    assert res.nodes.change.abs().max() > 1e-3
