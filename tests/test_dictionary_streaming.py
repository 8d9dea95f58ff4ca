"""fit_dictionary streams every kind (PCA, ICA, overcomplete ICA) from the model or from cached
activations, and equals the in-memory fit on the same tokens."""

import numpy as np
import pytest
import torch
from test_sae import model_for_tests

from interp_widgets.analysis.dictionaries import fit_dictionary, fit_pca
from interp_widgets.analysis.fastica import amari_distance, fit_fastica
from interp_widgets.demo import corpus
from interp_widgets.sae.activations import collect_activations

torch.set_num_threads(1)
HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def lm(request, tmp_path_factory):
    return model_for_tests(request, tmp_path_factory)


@pytest.fixture(scope="module")
def docs():
    return corpus(40, seed=7)


def test_streamed_pca_and_ica_equal_in_memory(lm, docs):
    acts = collect_activations(lm, docs, HOOK, max_tokens=3000)
    assert len(acts) == 3000
    pca = fit_dictionary(lm, docs, HOOK, "pca", 16, max_tokens=3000)
    ref = fit_pca(acts, 16)
    cos = (pca.W_dec * ref.W_dec).sum(-1).abs()
    assert cos.min() > 0.999 and pca.hook_name == HOOK and pca.name == f"pca 16 @ {HOOK}"
    ica = fit_dictionary(lm, docs, HOOK, "ica", 16, max_tokens=3000)  # spilled to disk
    mem = fit_fastica(acts, 16)
    assert ica.n_iter_ == mem.n_iter_
    assert amari_distance(ica.components_, mem.mixing_) < 1e-4
    assert ica.directions.shape == (16, lm.cfg.d_model)
    assert ica.encode(acts[:5]).shape == (5, 16)


def test_cached_activations_are_a_source(lm, docs, tmp_path):
    import interp_widgets as iw

    cache = iw.cache_activations(lm, docs, HOOK, tmp_path / "cache", context_size=32,
                                 progress=False)
    rows = torch.cat(list(cache.chunks(HOOK, skip_bos=True)))[:2000]
    ica = fit_dictionary(lm, cache, HOOK, "ica", 8, max_tokens=2000)
    mem = fit_fastica(rows, 8)
    assert amari_distance(ica.components_, mem.mixing_) < 1e-4
    pca = fit_dictionary(lm, str(tmp_path / "cache"), HOOK, "pca", 8, max_tokens=2000)
    np.testing.assert_allclose(pca.b_dec.numpy(), rows.mean(0).numpy(), atol=1e-4)


def test_overcomplete_ica_from_the_model(lm, docs):
    d_model = lm.cfg.d_model
    rica = fit_dictionary(lm, docs, HOOK, "overcomplete_ica", 2 * d_model, max_tokens=3000,
                          train_batch_size=500)
    assert rica.W_dec.shape == (2 * d_model, d_model) and rica.kind == "overcomplete_ica"
    acts = collect_activations(lm, docs, HOOK, max_tokens=3000)
    err = (rica(acts) - acts).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum()
    assert float(err) < 0.1


def test_fit_dictionary_bad_input(lm, docs):
    with pytest.raises(ValueError, match="kind must be one of"):
        fit_dictionary(lm, docs, HOOK, "nmf", 4)
    with pytest.raises(ValueError, match="overcomplete ICA"):
        fit_dictionary(lm, docs, HOOK, "ica", lm.cfg.d_model + 1, max_tokens=2000)
    with pytest.raises(TypeError, match="not one string"):
        fit_dictionary(lm, "a document", HOOK, "pca", 4)
    with pytest.raises(ValueError, match="corpus is empty"):
        fit_dictionary(lm, [], HOOK, "pca", 4)


def test_ica_and_overcomplete_ica_are_bases_of_the_unit_engine(lm, docs):
    """iw.scan runs on an ICA dictionary as on an SAE: its top values are the largest codes
    that encoding each document's activations by hand gives."""
    import interp_widgets as iw

    acts = collect_activations(lm, docs, HOOK, max_tokens=3000)
    ica = fit_dictionary(lm, acts, HOOK, "ica", 16)
    rica = fit_dictionary(lm, acts, HOOK, "overcomplete_ica", 2 * lm.cfg.d_model,
                          train_batch_size=500)
    few = docs[:6]
    for d in (ica, rica):
        basis = iw.as_basis(d, lm)
        assert basis.n_units == d.d_sae and basis.signed and basis.hook == HOOK
        s = iw.scan(lm, d, few, k=3, batch_size=3, n_random=20, progress=False)
        with torch.no_grad():
            codes = torch.cat([d.encode(lm.run(doc, names=[HOOK]).cache[HOOK][0, 1:])
                               for doc in few])  # [tokens, n_units], BOS left out
        assert s.n_tokens == len(codes) and s.n_units == d.d_sae
        for u in (0, d.d_sae - 1):
            torch.testing.assert_close(s.top_values(u), codes[:, u].topk(3).values,
                                       atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(basis.output_directions(), d.directions)
