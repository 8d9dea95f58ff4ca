"""PCA and ICA dictionaries (scikit-learn): baselines with an SAE's interface.

A `LinearDictionary` has `encode`, `decode`, `forward`, `W_dec`, `d_in`, `d_sae` and `hook_name`,
so `evaluate_sae`, splicing and the feature views take it like an SAE, and "sparse coding beats
PCA/ICA" is one table (`interp_widgets.sae.evaluate.evaluation_table`). With `k`, only the k
codes of largest magnitude are kept per token, which compares the baselines at the SAE's L0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from ..model import Model


class LinearDictionary(nn.Module):
    """codes = (x - b_dec) @ W_enc (the top k by |code| |W_dec row| if `k`), and
    x_hat = codes @ W_dec + b_dec.

    W_enc: [d_in, d_sae]; W_dec: [d_sae, d_in]; b_dec: [d_in] (the data mean)."""

    def __init__(self, W_enc: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor, *,
                 kind: str, k: int | None = None, hook_name: str | None = None):
        super().__init__()
        self.W_enc = nn.Parameter(W_enc.float(), requires_grad=False)
        self.W_dec = nn.Parameter(W_dec.float(), requires_grad=False)
        self.b_dec = nn.Parameter(b_dec.float(), requires_grad=False)
        self.d_in, self.d_sae = W_dec.shape[1], W_dec.shape[0]
        self.kind, self.k, self.hook_name = kind, k, hook_name
        self.arch, self.reshape_activations = kind, "none"

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, d_in={self.d_in}, d_sae={self.d_sae}, k={self.k}"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Tensor[..., d_sae]: codes of x [..., d_in]."""
        x = x.flatten(-2) if x.shape[-1] != self.d_in and x.ndim >= 2 else x
        codes = (x.to(self.W_enc.device, self.W_enc.dtype) - self.b_dec) @ self.W_enc
        if self.k is not None and self.k < self.d_sae:
            size = codes.abs() * self.W_dec.norm(dim=-1)  # each code's share of the output
            idx = size.topk(self.k, dim=-1, sorted=False).indices
            codes = torch.zeros_like(codes).scatter_(-1, idx, codes.gather(-1, idx))
        return codes

    encode_pre = encode

    def decode(self, codes: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Tensor[..., d_in]: reconstruction from codes [..., d_sae]."""
        return codes @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).reshape(x.shape).to(x.device, x.dtype)

    def feature_directions(self) -> torch.Tensor:
        """Tensor[d_sae, d_in]: what one unit of each code adds to the reconstruction."""
        return self.W_dec


def _as_numpy(acts: torch.Tensor | np.ndarray) -> np.ndarray:
    a = acts.detach().float().cpu().numpy() if isinstance(acts, torch.Tensor) else acts
    if a.ndim != 2:
        raise ValueError(f"Activations must be [n, d_in]; got shape {list(a.shape)}.")
    return a


def fit_pca(acts: torch.Tensor | np.ndarray, n_components: int, *, k: int | None = None,
            hook_name: str | None = None, seed: int = 0) -> LinearDictionary:
    """PCA dictionary of activations [n, d_in]: the top `n_components` principal directions
    (sklearn `PCA`); codes are projections onto them."""
    from sklearn.decomposition import PCA

    a = _as_numpy(acts)
    if not 0 < n_components <= min(a.shape):
        raise ValueError(f"n_components must be between 1 and min(n, d_in) = {min(a.shape)}; "
                         f"got {n_components}.")
    pca = PCA(n_components=n_components, random_state=seed).fit(a)
    comps = torch.from_numpy(pca.components_)  # [n_components, d_in], orthonormal rows
    return LinearDictionary(comps.T, comps, torch.from_numpy(pca.mean_), kind="pca", k=k,
                            hook_name=hook_name)


def fit_ica(acts: torch.Tensor | np.ndarray, n_components: int, *, k: int | None = None,
            hook_name: str | None = None, seed: int = 0, max_iter: int = 400) -> LinearDictionary:
    """ICA dictionary of activations [n, d_in] (sklearn `FastICA`, unit-variance sources):
    `W_enc` unmixes, `W_dec` is the mixing matrix."""
    import warnings

    from sklearn.decomposition import FastICA

    a = _as_numpy(acts).astype(np.float64)  # whitening near-null directions needs float64
    if not 0 < n_components <= a.shape[1]:
        raise ValueError(f"ICA finds at most d_in = {a.shape[1]} components; got {n_components}.")
    sv = np.linalg.svd(a - a.mean(0), compute_uv=False)
    rank = int((sv > sv[0] * 1e-4).sum())
    if n_components > rank:  # e.g. a residual stream with LayerNorm folded loses one dimension
        warnings.warn(f"The activations span only {rank} of {a.shape[1]} dimensions: fitting "
                      f"{rank} ICA components instead of {n_components}.", stacklevel=2)
        n_components = rank
    ica = FastICA(n_components=n_components, whiten="unit-variance", random_state=seed,
                  max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        ica.fit(a)
    return LinearDictionary(torch.from_numpy(ica.components_.T.copy()),
                            torch.from_numpy(ica.mixing_.T.copy()), torch.from_numpy(ica.mean_),
                            kind="ica", k=k, hook_name=hook_name)


def fit_dictionary(model: Model, corpus, hook: str, kind: str, n_components: int, *,
                   k: int | None = None, max_tokens: int | None = None, seed: int = 0,
                   skip_bos: bool = True) -> LinearDictionary:
    """Fit a PCA or ICA dictionary (`kind`) on `hook`'s activations over a corpus, using at
    most `max_tokens` tokens (default 50,000 for PCA, 10,000 for ICA: FastICA's iterations
    cost tokens x components^2 each, about a minute for 10k x 192 on one CPU thread)."""
    from ..sae.activations import collect_activations

    fits = {"pca": fit_pca, "ica": fit_ica}
    if kind not in fits:
        raise ValueError(f"kind must be 'pca' or 'ica'; got {kind!r}.")
    if max_tokens is None:
        max_tokens = 50_000 if kind == "pca" else 10_000
    acts = collect_activations(model, corpus, hook, max_tokens=max_tokens, skip_bos=skip_bos)
    return fits[kind](acts, n_components, k=k, hook_name=hook, seed=seed)
