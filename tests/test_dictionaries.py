"""PCA/ICA dictionaries and evaluate_sae, which scores SAEs and baselines alike."""

import numpy as np
import pytest
import torch
from test_sae import model_for_tests

from interp_widgets.analysis.dictionaries import fit_dictionary, fit_ica, fit_pca
from interp_widgets.demo import corpus
from interp_widgets.sae import SAE, evaluate_sae, evaluation_table

torch.set_num_threads(1)
DOCS = ["When Mary and John went to the store, John gave a drink to Mary.",
        "The cat sat on the mat. The cat sat on the mat again."] * 3


@pytest.fixture(scope="module")
def lm(request, tmp_path_factory):
    return model_for_tests(request, tmp_path_factory)


def test_pca_reconstructs_low_rank_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g) @ torch.randn(3, 10, generator=g) + 5.0
    d = fit_pca(x, 3)
    torch.testing.assert_close(d.W_dec @ d.W_dec.T, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(d(x), x, atol=1e-4, rtol=1e-4)
    assert d.encode(x).shape == (500, 3) and d.d_in == 10 and d.d_sae == 3
    top1 = fit_pca(x, 3, k=1).encode(x)
    assert ((top1 != 0).sum(-1) == 1).all()
    with pytest.raises(ValueError, match="n_components must be between 1 and"):
        fit_pca(x, 11)


def test_ica_finds_independent_sources():
    rng = np.random.default_rng(0)
    sources = rng.laplace(size=(4000, 3))
    mixing = rng.normal(size=(3, 6))
    d = fit_ica(sources @ mixing, 3)
    true = torch.from_numpy(mixing / np.linalg.norm(mixing, axis=1, keepdims=True)).float()
    found = d.W_dec / d.W_dec.norm(dim=-1, keepdim=True)
    assert (true @ found.T).abs().max(dim=1).values.min() > 0.95
    with pytest.raises(ValueError, match="at most d_in = 6"):
        fit_ica(sources @ mixing, 7)
    with pytest.warns(UserWarning, match="span only 3 of 6 dimensions"):
        d = fit_ica(sources @ mixing, 6)  # rank 3: whitening the null space would blow up
    x = torch.from_numpy(sources @ mixing).float()
    torch.testing.assert_close(d(x), x, atol=1e-3, rtol=1e-3)


def test_evaluate_identity_dictionary_recovers_everything(lm):
    hook = "blocks.1.hook_resid_pre"
    docs = DOCS + corpus(12, seed=3)  # more tokens than d_model, so a full-rank basis exists
    full = fit_dictionary(lm, docs, hook, "pca", lm.cfg.d_model, max_tokens=4000)
    e = evaluate_sae(lm, full, docs, progress=False)
    assert e.fve > 0.999 and abs(e.delta_loss) < 1e-3
    assert e.ce_recovered == pytest.approx(1.0, abs=1e-2)
    assert e.l0 == pytest.approx(lm.cfg.d_model, abs=1) and e.dense_fraction == 1.0
    assert e.n_tokens == sum(len(lm.to_tokens(d)[0]) - 1 for d in docs)


def test_evaluate_sae_and_table(lm):
    hook = "blocks.1.hook_resid_pre"
    sae = SAE(lm.cfg.d_model, 64, arch="topk", k=4, hook_name=hook, seed=0)
    pca = fit_dictionary(lm, DOCS, hook, "pca", 8, k=4, max_tokens=2000)
    ica = fit_dictionary(lm, DOCS, hook, "ica", 8, k=4, max_tokens=2000)
    evals = {name: evaluate_sae(lm, d, DOCS, progress=False, bins=10)
             for name, d in {"topk": sae, "pca": pca, "ica": ica}.items()}
    e = evals["topk"]
    assert e.l0 <= 4 and 0 <= e.dead_fraction <= 1 and e.density.shape == (64,)
    counts, edges = e.histogram
    assert counts.sum() == int((e.density > 0).sum()) and len(edges) == 11
    table = evaluation_table(evals)
    assert list(table.index) == ["topk", "pca", "ica"]
    assert {"l0", "fve", "ce_recovered", "delta_loss", "dead_fraction"} <= set(table.columns)
    with pytest.raises(ValueError, match="corpus is empty"):
        evaluate_sae(lm, sae, [], progress=False)


def test_variance_explained_is_pooled_over_batches():
    """FVE is 1 - (all squared errors) / (variance of all activations about their one mean),
    not a mean of per-batch figures, which differ when batches differ in scale."""
    from interp_widgets.sae.evaluate import _Accumulator

    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(200, 4, generator=g), 5 * torch.randn(300, 4, generator=g) + 3]
    recons = [x + 0.8 * torch.randn(x.shape, generator=g) for x in batches]
    acc = _Accumulator(d_sae=2)
    loss = torch.zeros(1, 3)
    for x, r in zip(batches, recons):
        acc.add(x, r, torch.ones(len(x), 2), loss, loss, loss + 1)
    fve = acc.result(dense_threshold=0.1, bins=10).fve
    x, r = torch.cat(batches).double(), torch.cat(recons).double()
    pooled = 1 - float((x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    per_batch = sum(1 - float((a - b).pow(2).sum() / (a - a.mean(0)).pow(2).sum())
                    for a, b in zip(batches, recons)) / 2
    assert fve == pytest.approx(pooled, abs=1e-9) and abs(pooled - per_batch) > 0.05
