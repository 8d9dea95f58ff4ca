"""Streaming PCA against scikit-learn's PCA on data that fits in memory."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from interp_widgets.analysis.streaming_pca import fit_streaming_pca


def test_streaming_pca_equals_sklearn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 12)) @ rng.normal(size=(12, 12)) + 3.0
    ref = PCA(n_components=5).fit(x)
    d = fit_streaming_pca(torch.from_numpy(x).float().split(700), 5)
    ours = d.W_dec.double().numpy()
    cos = np.abs((ours * ref.components_).sum(1))
    assert cos.min() > 0.9999
    np.testing.assert_allclose(d.explained_variance.numpy(), ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(d.b_dec.numpy(), ref.mean_, rtol=1e-5)


def test_streaming_pca_bad_input():
    x = torch.randn(100, 4)
    x[37, 2] = float("nan")
    with pytest.raises(ValueError, match="Batch 1 .* at row 7, dimension 2"):
        fit_streaming_pca(x.split(30), 2)
    with pytest.raises(ValueError, match="ended after 3 samples"):
        fit_streaming_pca([torch.randn(3, 4)], 3)
    with pytest.raises(ValueError, match="no batches"):
        fit_streaming_pca([], 2)
