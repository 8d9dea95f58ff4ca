"""Torch FastICA against scikit-learn's FastICA, streamed against in memory, and bad inputs."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

from interp_widgets.analysis.fastica import amari_distance, fit_fastica

torch.set_num_threads(1)


def laplace_mixture(n=20000, d=12, seed=0, offset=3.0):
    rng = np.random.default_rng(seed)
    sources = rng.laplace(size=(n, d))
    mixing = rng.normal(size=(d, d))  # x = mixing @ s
    return sources @ mixing.T + offset, mixing


def test_amari_distance():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(5, 5))
    perm = np.eye(5)[[2, 0, 4, 1, 3]] * np.array([[1.5, -2.0, 0.3, 1.0, -1.0]]).T
    assert amari_distance(perm @ np.linalg.inv(A), A) == pytest.approx(0.0, abs=1e-12)
    # a non-permutation is penalised: the all-ones matrix is as far as it gets
    assert amari_distance(np.ones((5, 5)), np.eye(5)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="square"):
        amari_distance(np.ones((3, 4)), np.eye(4))


@pytest.mark.parametrize("fun", ["logcosh", "exp"])
def test_fastica_matches_sklearn(fun):
    x, mixing = laplace_mixture()
    sk = FastICA(12, fun=fun, whiten="unit-variance", random_state=0, max_iter=400).fit(x)
    ours = fit_fastica(torch.from_numpy(x).float(), 12, fun=fun, max_iter=400)
    assert ours.converged_ and ours.n_iter_ < 50
    # the same unmixing up to sign, scale and order
    assert amari_distance(ours.components_, np.linalg.pinv(sk.components_)) < 1e-3
    ours_err = amari_distance(ours.components_, mixing)
    sk_err = amari_distance(sk.components_, mixing)
    assert ours_err < 1.5 * sk_err and ours_err < 0.02
    np.testing.assert_allclose(ours.b_dec.numpy(), sk.mean_, rtol=1e-4)
    # unit-variance sources, and a complete basis reconstructs the data
    xt = torch.from_numpy(x).float()
    codes = ours.encode(xt)
    torch.testing.assert_close(codes.std(0), torch.ones(12), atol=1e-3, rtol=0)
    torch.testing.assert_close(ours(xt), xt, atol=1e-3, rtol=1e-4)


def test_streaming_equals_in_memory():
    x, _ = laplace_mixture(n=9000, d=8, seed=2)
    xt = torch.from_numpy(x).float()
    whole = fit_fastica(xt, 8)
    batches = list(xt.split(1000))
    listed = fit_fastica(batches, 8)
    called = fit_fastica(lambda: iter(batches), 8)  # e.g. a generator function over files
    for d in (listed, called):
        assert d.n_iter_ == whole.n_iter_
        torch.testing.assert_close(d.components_, whole.components_, atol=1e-5, rtol=1e-4)


def test_fewer_components_and_convergence_warning():
    x, mixing = laplace_mixture(n=6000, d=6, seed=3)
    d = fit_fastica(torch.from_numpy(x).float(), 4, fun="cube")
    assert d.W_enc.shape == (6, 4) and d.W_dec.shape == (4, 6) and d.d_sae == 4
    with pytest.warns(ConvergenceWarning, match="did not converge after 2 iterations"):
        fit_fastica(torch.from_numpy(x).float(), 6, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_fastica(torch.from_numpy(x).float(), 6, max_iter=200)


def test_bad_input():
    rng = np.random.default_rng(4)
    low_rank = torch.from_numpy(rng.laplace(size=(2000, 3)) @ rng.normal(size=(3, 6))).float()
    with pytest.raises(ValueError, match=r"span only 3 of 6 dimensions \(rank 3\).*"
                                         r"n_components=5.*overcomplete ICA"):
        fit_fastica(low_rank, 5)
    with pytest.raises(ValueError, match="ended after 4 samples; whitening for 6 components "
                                         "needs at least 7"):
        fit_fastica([torch.randn(3, 6), torch.randn(1, 6)], 6)
    x = torch.randn(100, 4)
    x[37, 2] = float("inf")
    with pytest.raises(ValueError, match="Batch 1 has a non-finite activation .* at row 7, "
                                         "dimension 2"):
        fit_fastica(list(x.split(30)), 2)
    with pytest.raises(TypeError, match="read only once"):
        fit_fastica((b for b in x.split(30)), 2)
    with pytest.raises(ValueError, match="fun must be"):
        fit_fastica(torch.randn(100, 4), 2, fun="tanh")
    with pytest.raises(ValueError, match="no batches"):
        fit_fastica([], 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fastica_on_cuda_matches_cpu():
    x, _ = laplace_mixture(n=20000, d=12, seed=5)
    xt = torch.from_numpy(x).float()
    cpu = fit_fastica(xt, 12)
    gpu = fit_fastica(xt, 12, device="cuda")
    assert amari_distance(gpu.components_, cpu.mixing_) < 1e-4


def test_sources_are_oriented_by_skew():
    rng = np.random.default_rng(6)
    sources = rng.exponential(size=(8000, 5)) - 1.0  # skewed: the long tail is positive
    x = torch.from_numpy(sources @ rng.normal(size=(5, 5)).T).float()
    codes = fit_fastica(x, 5).encode(x)
    assert (codes.pow(3).mean(0) > 0.5).all()


def test_overcomplete_ica_recovers_planted_features_better_than_complete_ica():
    """64 planted features in 16 dimensions (superposition): complete ICA has 16 directions,
    overcomplete ICA 64; recovery is the mean best cosine of each feature with a direction."""
    from interp_widgets.analysis.overcomplete_ica import fit_rica
    from interp_widgets.sae.toy import planted_activations, planted_features, recovery

    features = planted_features(64, 16, seed=1)
    x = planted_activations(features, 60000, active=3.0, seed=1)
    ica = fit_fastica(x, 16)
    rica = fit_rica(x, 64, total_samples=60000, batch_size=512, progress=False, seed=1)
    assert rica.W_dec.shape == (64, 16) and rica.kind == "overcomplete_ica"
    r_ica, r_rica = recovery(ica.W_dec, features), recovery(rica.W_dec, features)
    assert r_rica > r_ica + 0.1 and r_rica > 0.7
    # the tied reconstruction W^T W z = z holds nearly exactly at this sparsity weight
    assert rica.W_whitened.shape == (64, 16)
    torch.testing.assert_close(rica(x), x, atol=0.05, rtol=0)


def test_overcomplete_ica_bad_input():
    from interp_widgets.analysis.overcomplete_ica import fit_rica

    x = torch.randn(5000, 8)
    with pytest.raises(ValueError, match="at least as many components as whitened dimensions "
                                         r"\(8\); got 4.*kind='ica'"):
        fit_rica(x, 4, total_samples=4096, progress=False)
    with pytest.raises(ValueError, match="penalty must be"):
        fit_rica(x, 16, total_samples=4096, penalty="cauchy", progress=False)
    bad = x.clone()
    bad[4100, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite activation"):
        fit_rica(list(bad.split(1000)), 16, total_samples=4096, batch_size=512, progress=False)
