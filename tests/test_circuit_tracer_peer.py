"""Our attribution graphs against circuit-tracer's on the same model, transcoders and prompt.

circuit-tracer 0.5 runs in its own virtualenv (.venv-circuit-tracer: it pins transformers 4.57
and TransformerLens 3's HookedTransformer) through `scripts/circuit_tracer_peer.py`, which
loads the demo model with the same weight processing as ours (LayerNorm folded, writing weights
and unembedding centred; see that script's docstring for why it builds the HookedTransformer
itself) and the demo transcoders with their TopK activation.

Conventions that differ, and how the comparison handles them:
- circuit-tracer zeroes every feature and the error node at position 0 (BOS); we keep them.
  Its features are compared with ours at positions > 0, and its (all-zero) BOS error columns
  are left out; every other edge is the same quantity.
- circuit-tracer has no bias nodes (attention biases through the frozen patterns, b_dec,
  b_enc, positional embeddings, the unembedding bias); ours are extra columns, left out.
- Node order is the same: features by (layer, pos, feature), errors layer-major, token
  embeddings, logits; adjacency[target, source] in both; both demean the logits.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import interp_widgets as iw
from interp_widgets.circuits.prune import prune

REPO = Path(__file__).parents[1]
CT_PYTHON = Path(os.environ.get("IW_CIRCUIT_TRACER_PYTHON",
                                REPO / ".venv-circuit-tracer/bin/python"))
pytestmark = pytest.mark.skipif(not CT_PYTHON.exists(), reason=(
    f"no circuit-tracer virtualenv at {CT_PYTHON}: `bash scripts/setup.sh --test` makes it, or "
    "point IW_CIRCUIT_TRACER_PYTHON at its python"))
PROMPT = "At the pantry, Alex and Eva found the plate. Eva sent it to"


def run_peer(model_dir: Path, tc_dir: Path, tokens: list[int], out: Path) -> dict:
    done = subprocess.run(
        [str(CT_PYTHON), str(REPO / "scripts/circuit_tracer_peer.py"), str(model_dir),
         str(tc_dir), ",".join(map(str, tokens)), str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return {k: v.numpy() for k, v in load_file(str(out.with_suffix(".safetensors"))).items()}


@pytest.fixture(scope="module", params=["per_layer", "clt"])
def both(request, model, tmp_path_factory):
    kind = request.param
    tcs = iw.demo.load_transcoders(kind)
    tokens = model.to_tokens(PROMPT)[0]
    torch.set_num_threads(1)
    ours = iw.attribution_graph(model, tcs, tokens)
    tc_dir = Path(iw.demo.__file__).parent / "transcoders" / kind
    ct = run_peer(Path(iw.demo.__file__).parent / "model", tc_dir, tokens.tolist(),
                  tmp_path_factory.mktemp("ct") / kind)
    return ours, ct


def mapping(g: iw.AttributionGraph, ct: dict) -> tuple[np.ndarray, dict[str, slice]]:
    """Our row index of each of circuit-tracer's nodes, in its order, and its blocks."""
    n = g.nodes
    feats = {(int(r.layer), int(r.pos), int(r.feature)): i
             for i, r in n[n.kind == "feature"].iterrows()}
    errs = {(int(r.layer), int(r.pos)): i for i, r in n[n.kind == "error"].iterrows()}
    L, P = g.n_layers, len(g.tokens)
    idx = [feats[tuple(f)] for f in ct["active_features"].tolist()]
    idx += [errs[(layer, p)] for layer in range(L) for p in range(P)]
    idx += list(n.index[n.kind == "embedding"]) + list(n.index[n.kind == "logit"])
    nf = len(ct["active_features"])
    blocks = {"feature": slice(0, nf), "error": slice(nf, nf + L * P),
              "embedding": slice(nf + L * P, nf + L * P + P),
              "logit": slice(nf + L * P + P, len(idx))}
    return np.array(idx), blocks


def test_same_model_same_nodes(both, model):
    g, ct = both
    n = g.nodes
    ours = {(int(r.layer), int(r.pos), int(r.feature)) for r in n[n.kind == "feature"]
            .itertuples()}
    theirs = {tuple(f) for f in ct["active_features"].tolist()}
    assert theirs == {f for f in ours if f[1] > 0}  # the same active features past BOS
    assert {f for f in ours if f[1] == 0}  # BOS features: ours only (circuit-tracer zeroes them)
    idx, blocks = mapping(g, ct)
    np.testing.assert_allclose(n.value.to_numpy()[idx[blocks["feature"]]],
                               ct["activation_values"], rtol=1e-5, atol=1e-5)
    assert g.logit_ids == ct["logit_ids"].tolist()
    np.testing.assert_allclose(g.logit_probs, ct["logit_probs"], atol=1e-5)
    np.testing.assert_allclose(g.real_logits - g.real_logits.mean(),
                               ct["logits"] - ct["logits"].mean(), atol=1e-4)


@pytest.mark.parametrize("source", ["feature", "embedding", "error"])
@pytest.mark.parametrize("target", ["feature", "logit"])
def test_same_edges(both, source, target):
    g, ct = both
    idx, blocks = mapping(g, ct)
    rows, cols = blocks[target], blocks[source]
    theirs = ct["adjacency"][rows, cols]
    ours = g.adjacency[np.ix_(idx[rows], idx[cols])]
    keep = np.ones(theirs.shape[1], bool)
    if source == "error":  # circuit-tracer's BOS error nodes are zero by construction
        P = len(g.tokens)
        keep[::P] = False
        assert not theirs[:, ~keep].any() and np.abs(ours[:, ~keep]).max() > 0
    scale = max(np.abs(ct["adjacency"]).max(), 1.0)
    np.testing.assert_allclose(ours[:, keep], theirs[:, keep], rtol=0, atol=1e-5 * scale)
    assert np.abs(theirs).max() > 1e-3  # the block is not trivially zero


def test_our_pruning_is_circuit_tracers(both):
    """`circuits.prune.prune` on circuit-tracer's own graph keeps what its prune_graph keeps."""
    _, ct = both
    A = ct["adjacency"]
    nf, n_logit = len(ct["selected_features"]), len(ct["logit_ids"])
    n, P = len(A), (len(A) - nf - n_logit) // 4  # n_layers + 1 = 4 blocks of n_pos
    w = np.zeros(n)
    w[-n_logit:] = ct["logit_probs"]
    kind = np.array(["feature"] * nf + ["error"] * (3 * P) + ["embedding"] * P
                    + ["logit"] * n_logit)
    res = prune(A, w, always=np.isin(kind, ["embedding", "logit"]),
                need_out=np.isin(kind, ["feature", "error"]), need_in=kind == "feature")
    assert (res.node_mask == ct["node_mask"]).all()
    assert (res.edge_mask == ct["edge_mask"]).all()
    assert 0 < res.node_mask[:nf].sum() < nf
    order = np.argsort(-res.node_influence, kind="stable")
    cum = np.empty(n)
    cum[order] = np.cumsum(res.node_influence[order]) / res.node_influence.sum()
    np.testing.assert_allclose(cum, ct["cumulative_scores"], atol=1e-5)


def test_pruned_graphs_share_most_nodes(both):
    """On our graph (with BOS features and bias nodes, which circuit-tracer lacks) pruning keeps
    nearly the same features as circuit-tracer's on its graph."""
    g, ct = both
    p = g.prune(0.8, 0.98)
    ours = set(p.nodes.node_id[p.nodes.kind == "feature"])
    idx, blocks = mapping(g, ct)
    ids = g.nodes.node_id.to_numpy()
    theirs = set(ids[idx[blocks["feature"]]][ct["node_mask"][blocks["feature"]]])
    jaccard = len(ours & theirs) / len(ours | theirs)
    assert jaccard > 0.7, (len(ours), len(theirs), jaccard)
