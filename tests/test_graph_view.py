"""GraphView on the demo model and transcoders: what is synced (binary, and equal to the graph),
re-pruning and interventions through the browser's requests (equal to direct calls), node
dashboards checked against plain torch, supernodes saved with the graph, the grouping
suggestion on planted features, and the static export's precomputed dashboards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from test_export import read_payload

import interp_widgets as iw
from interp_widgets.circuits.grouping import cluster_features, similarity
from interp_widgets.widgets._codec import decode_array, decode_csr, decode_strings
from interp_widgets.widgets.graph_view import KINDS, graph_payload

PROMPT = "At the pantry, Alex and Eva found the plate. Eva sent it to"


@pytest.fixture(scope="module")
def setup(model):
    tcs = iw.demo.load_transcoders("per_layer")
    g = iw.attribution_graph(model, tcs, PROMPT)
    return model, tcs, g


@pytest.fixture(scope="module")
def corpus():
    return iw.demo.corpus(30, seed=1)


@pytest.fixture
def view(setup, corpus):
    return iw.GraphView(setup[2], corpus=corpus)


def test_payload_is_binary_and_equals_the_graph(view, setup):
    g = setup[2]
    p = view.graph
    shown = view.shown
    assert shown.node_threshold == 0.8 and shown.parent is g  # unpruned -> shown pruned
    keep = shown.nodes.kind != "bias"
    n = shown.nodes[keep]
    assert p["n"] == len(n) and p["prune"]["n_full"] == int((g.nodes.kind != "bias").sum())
    for key in ("layer", "pos", "feature"):
        assert p[key]["dtype"] == "int32" and isinstance(p[key]["buffer"], memoryview)
        assert decode_array(p[key]).tolist() == n[key].tolist()
    assert decode_array(p["kind"]).tolist() == n.kind.map(KINDS).tolist()
    assert np.allclose(decode_array(p["value"]), n.value.to_numpy(np.float32))
    assert decode_strings(p["ids"]) == n.node_id.tolist()
    assert decode_strings(p["prompt_tokens"]) == g.str_tokens
    rows = np.flatnonzero(keep.to_numpy())
    want = shown.adjacency[np.ix_(rows, rows)]
    assert p["edges"]["format"] == "csr"
    assert np.array_equal(decode_csr(p["edges"]), want)
    assert p["edges"]["data"]["dtype"] == "float32"
    # nothing big travels as a JSON list
    assert not any(isinstance(v, list) and len(v) > 10 for v in p.values())


def test_prune_request_re_prunes_in_the_kernel(view, setup):
    g = setup[2]
    before = view.graph["n"]
    r = view.answer("prune", {"node_threshold": 0.5, "edge_threshold": 0.9})
    assert r["ok"], r
    want = g.prune(0.5, 0.9)
    assert view.graph["n"] == int((want.nodes.kind != "bias").sum()) < before
    assert view.graph["rev"] == 1 and r["result"]["rev"] == 1
    rows = np.flatnonzero((want.nodes.kind != "bias").to_numpy())
    assert np.array_equal(decode_csr(view.graph["edges"]), want.adjacency[np.ix_(rows, rows)])
    assert view.graph["prune"]["kept_node_influence"] == pytest.approx(want.kept_node_influence)
    bad = view.answer("prune", {"node_threshold": 1.5, "edge_threshold": 0.9})
    assert not bad["ok"] and "between 0 and 1" in bad["error"]


def test_intervention_request_equals_a_direct_intervene(view, setup):
    model, tcs, g = setup
    feats = view.shown.nodes[view.shown.nodes.kind == "feature"]
    ids = feats.sort_values("influence").node_id.iloc[-2:].tolist()
    r = view.answer("intervene", {"node_ids": ids, "factor": 0.0})
    assert r["ok"], r
    got = r["result"]
    direct = iw.intervene(model, tcs, view.shown, {i: 0.0 for i in ids})
    assert got["top"] == [list(x) for x in direct.top_logits]
    assert got["top"] != got["top_before"]
    with torch.no_grad():  # "before" is the real model's own next-token distribution
        p = model.bridge(torch.tensor(g.tokens)[None])[0, -1].softmax(-1).topk(5)
    assert [t for t, _ in got["top_before"]] == [model.tokenizer.decode([i]) for i in
                                                 p.indices.tolist()]
    assert np.allclose([q for _, q in got["top_before"]], p.values.numpy(), atol=1e-6)
    shown_ids = decode_strings(view.graph["ids"])
    d = direct.nodes.set_index("node_id").reindex(shown_ids)
    for key, col in (("change", "change"), ("new_value", "new_value"),
                     ("estimate", "linear_estimate")):
        arr = decode_array(got[key])
        assert arr.shape == (len(shown_ids),)
        assert np.allclose(arr, d[col].to_numpy(np.float32), equal_nan=True)
    # the ablated features are at 0 in the re-run
    at = [shown_ids.index(i) for i in ids]
    assert np.allclose(decode_array(got["new_value"])[at], 0.0)
    # a node the pruning dropped: allowed, with a note
    gone = g.nodes[(g.nodes.kind == "feature") & ~g.nodes.node_id.isin(view.shown.nodes.node_id)]
    r2 = view.answer("intervene", {"node_ids": [gone.node_id.iloc[0]], "factor": 2.0})
    assert r2["ok"], r2
    assert "pruned away" in r2["result"]["notes"][0]
    assert not view.answer("intervene", {"node_ids": [], "factor": 0})["ok"]


def test_dashboard_examples_and_logit_effects_match_torch(view, setup, corpus):
    model, tcs, _ = setup
    feat = view.shown.nodes[view.shown.nodes.kind == "feature"].iloc[0]
    d = view.answer("node", {"node_id": feat.node_id})["result"]
    lyr, f = int(feat.layer), int(feat.feature)
    # logit effect: the decoder row through the (LayerNorm-folded) unembedding, mean removed
    with torch.no_grad():
        w = tcs.decoder(lyr, lyr)[f].float()
        eff = (w - w.mean()) @ model.bridge.W_U.float()
    top = eff.topk(len(d["logit_effect"]["top"]))
    assert [t for t, _ in d["logit_effect"]["top"]] == [model.tokenizer.decode([i]) for i in
                                                      top.indices.tolist()]
    assert np.allclose([v for _, v in d["logit_effect"]["top"]], top.values.numpy(), atol=1e-4)
    # top example: re-run its document and encode the MLP input there
    ex = d["examples"][0]
    doc = corpus[ex["doc"]]
    run = model.run(doc, names=[tcs.input_hook_name(lyr)])
    with torch.no_grad():
        acts = tcs.encode(lyr, run.cache[tcs.input_hook_name(lyr)][0])[:, f]
    assert float(acts[ex["pos"]]) == pytest.approx(ex["value"], rel=1e-4)
    assert float(acts[1:].max()) == pytest.approx(ex["value"], rel=1e-4)  # the corpus's top
    assert d["stats"]["n_docs"] == len(corpus)
    err = view.answer("node", {"node_id": "nope"})
    assert not err["ok"] and "nope" in err["error"]


def test_supernodes_are_saved_with_the_graph(setup, corpus, tmp_path):
    g = setup[2]
    v = iw.GraphView(g, corpus=corpus)
    ids = v.shown.nodes.node_id[v.shown.nodes.kind == "feature"].tolist()[:3]
    assert v.answer("group", {"name": "names", "node_ids": ids})["ok"]
    assert v.supernodes == [["names", ids]]
    assert g.supernodes == {"names": ids}  # the caller's graph holds it
    v.prune(0.9, 0.99)
    assert v.shown.supernodes == {"names": ids}
    data = v.shown.to_json(tmp_path / "g.json")
    assert data["qParams"]["supernodes"] == [["names", *ids]]
    assert iw.load_graph(tmp_path / "g.json").supernodes == {"names": ids}
    assert not v.answer("group", {"name": "x", "node_ids": ["nope"]})["ok"]
    assert v.answer("ungroup", {"name": "names"})["ok"] and g.supernodes == {}


def test_cluster_features_finds_planted_groups():
    rng = np.random.default_rng(0)
    d, n_tok = 64, 3000
    bases = rng.normal(size=(3, d))
    labels = np.repeat([0, 1, 2], 4)
    dirs = bases[labels] + 0.4 * rng.normal(size=(12, d))
    # each group fires on its own tokens; members co-fire with noise
    which = rng.integers(0, 3, n_tok)
    acts = np.where(which[:, None] == labels[None], rng.uniform(0.5, 2, (n_tok, 12)), 0.0)
    acts *= rng.uniform(size=acts.shape) > 0.1
    got = cluster_features(dirs, acts)
    assert adjusted_rand_score(labels, got) == 1.0
    # decoder directions alone do not separate groups 0 and 1 once they share a direction
    dirs2 = dirs.copy()
    dirs2[labels == 1] = bases[0] + 0.4 * rng.normal(size=(4, d))
    assert adjusted_rand_score(labels, cluster_features(dirs2, None)) < 1.0
    assert adjusted_rand_score(labels, cluster_features(dirs2, acts, weight=0.3)) == 1.0
    sim = similarity(dirs, acts)
    assert np.allclose(sim, sim.T) and np.allclose(np.diag(sim), 1.0)


def test_suggest_supernodes_finds_planted_features(model, corpus):
    """Transcoders whose features 0-3 and 4-7 share an encoder and a decoder direction (with
    noise; the same directions in every layer) and 8-15 are random: the suggestion has 0-3 and
    4-7 as two groups and puts no random feature with another feature."""
    gen = torch.Generator().manual_seed(0)
    L, d, n = model.cfg.n_layers, model.cfg.d_model, 16
    tcs = iw.Transcoders(L, d, d, n, activation="relu", seed=0)
    labels = np.array([0] * 4 + [1] * 4 + list(range(2, 10)))
    with torch.no_grad():
        enc_dirs = torch.randn(10, d, generator=gen)
        dec_dirs = torch.randn(10, d, generator=gen)
        for lyr in range(L):
            lab = torch.tensor(labels)
            tcs.W_enc[lyr] = (enc_dirs[lab] + 0.2 * torch.randn(n, d, generator=gen)).T / d ** .5
            tcs.b_enc[lyr] = -0.5
            tcs.W_dec[lyr][:, 0] = dec_dirs[lab] + 0.2 * torch.randn(n, d, generator=gen)
            tcs.b_dec[lyr] = 0
    g = iw.attribution_graph(model, tcs, PROMPT)
    sugg = iw.suggest_supernodes(g, model, tcs, corpus, min_features=2)
    present = sorted({(int(r.layer), int(r.feature)) for r in
                      g.nodes[g.nodes.kind == "feature"].itertuples()})
    for grp in (0, 1):  # each planted group is one suggestion, exactly
        members = {p for p in present if labels[p[1]] == grp}
        assert len(members) >= 3
        assert any(set(s.features) == members for s in sugg), (grp, sugg)
    for s in sugg:  # and no suggestion mixes planted groups or random features
        assert len({labels[f] for _, f in s.features}) == 1, s
    assert all(s.name and s.top_tokens for s in sugg)


def test_static_export_holds_every_shown_nodes_dashboard(view, tmp_path):
    path = view.to_html(tmp_path / "g.html")
    header, _ = read_payload(path.read_text("utf-8"))
    keys = [k for k in header["answers"] if k.startswith('["node"')]
    assert len(keys) == view.graph["n"]
    assert '["suggest",{}]' in header["answers"]
    assert header["state"]["_view"] == "graph_view"


def test_a_loaded_graph_shows_without_a_model(setup, tmp_path):
    p = setup[2].prune(0.8, 0.98)
    p.to_json(tmp_path / "g.json")
    v = iw.GraphView(iw.load_graph(tmp_path / "g.json"))
    assert not v.can_intervene and v.graph["n"] == int((p.nodes.kind != "bias").sum())
    d = v.answer("node", {"node_id": p.nodes.node_id.iloc[0]})
    assert d["ok"] and d["result"]["examples"] is None
    r = v.answer("intervene", {"node_ids": [p.nodes.node_id.iloc[0]], "factor": 0})
    assert not r["ok"] and "model=" in r["error"]
    assert graph_payload(v.shown)["n"] == v.graph["n"]


def test_cross_layer_feature_logit_effect_sums_its_decoders(model):
    """A CLT feature writes to every later MLP output; its direct logit effect is the sum of
    those decoder rows (mean removed: LayerNorm) through W_U."""
    tcs = iw.demo.load_transcoders("clt")
    layer = iw.TranscoderLayer(tcs, 0)
    with torch.no_grad():
        w = sum(tcs.W_dec[0][7, t] for t in range(tcs.n_layers)).float()
        want = (w - w.mean()) @ model.bridge.W_U.float()
    eff = iw.transcoder_logit_effect(model, tcs, 0, 7, k=5)
    assert torch.allclose(eff.effect, want, atol=1e-4)
    assert eff.top.token.tolist() == [model.tokenizer.decode([i]) for i in
                                      want.topk(5).indices.tolist()]
    assert layer.hook_name == "blocks.0.ln2.hook_normalized" and layer.d_sae == 512
    with pytest.raises(IndexError, match="layers 0 .. 2"):
        iw.TranscoderLayer(tcs, 3)
