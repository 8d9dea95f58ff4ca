"""FastICA in torch, on activations streamed batch by batch (CPU or GPU), in constant memory.

Whitening comes from the float64 covariance that `streaming_pca.CovarianceAccumulator` sums over
one pass of the data: z = D^-1/2 E^T (x - mean) for the top `n_components` eigenpairs (D, E).
Then the parallel (symmetric) FastICA fixed point of Hyvarinen (1999), as scikit-learn's
`FastICA(algorithm="parallel")` runs it:

    W <- sym_decorrelate(E[g(W z) z^T] - diag(E[g'(W z)]) W),  sym_decorrelate(W) = (W W^T)^-1/2 W

with g = tanh(alpha u) ("logcosh"), u exp(-u^2 / 2) ("exp") or u^3 ("cube"). Each iteration
is one pass over the data: the expectations are sums over chunks (float32 matmuls, float64
sums), so rows never need to be in memory together. It stops when
max_i | |<w_i new, w_i old>| - 1 | < tol, and warns with scikit-learn's `ConvergenceWarning`
after `max_iter` iterations otherwise.

Written by hand because scikit-learn's FastICA needs all rows in memory (float64) and runs on
the CPU only; `tests/test_fastica.py` checks the two agree (Amari distance) on data both hold.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from .dictionaries import LinearDictionary
from .streaming_pca import CovarianceAccumulator, accumulate

__all__ = ["ConvergenceWarning", "Whitening", "amari_distance", "fit_fastica", "passes",
           "whitening"]

_RANK_RTOL = 1e-8  # an eigenvalue below this share of the largest counts as zero


def amari_distance(W: Any, A: Any) -> float:
    """Amari distance of P = W A, in [0, 1]: 0 exactly when P is a scaled permutation, i.e. when
    unmixing W [c, d] inverts mixing A [d, c] up to each source's sign, scale and order.
    Between two unmixing matrices W1, W2, pass A = pinv(W2)."""
    P = np.abs(np.asarray(W, dtype=np.float64) @ np.asarray(A, dtype=np.float64))
    n = P.shape[0]
    if P.shape != (n, n) or n < 2:
        raise ValueError(f"W @ A must be square and at least 2 x 2; got shape {list(P.shape)}.")
    rows = (P.sum(1) / P.max(1) - 1).sum()
    cols = (P.sum(0) / P.max(0) - 1).sum()
    return float((rows + cols) / (2 * n * (n - 1)))


def passes(source: Any, *, hook: str | None = None, chunk_size: int = 65536,
           skip_bos: bool = True) -> Callable[[], Iterator[torch.Tensor]]:
    """A function returning a fresh iterator of Tensor[n_i, d] chunks over `source` each call:
    for methods that read the data several times (FastICA: once per iteration).

    source: Tensor[n, d] (cut into `chunk_size` rows); a list or tuple of Tensor[n_i, d]; a
        callable returning an iterator of them; or SAELens cached activations (a folder written
        by `iw.cache_activations`, or the `CachedActivations` read from one), `hook` naming the
        column, BOS positions left out when `skip_bos`."""
    if isinstance(source, torch.Tensor) or isinstance(source, np.ndarray):
        data = torch.as_tensor(source)
        if data.ndim < 2:
            raise ValueError(f"Activations must be [n, d]; got shape {list(data.shape)}.")
        data = data.flatten(0, -2)
        return lambda: iter(data.split(chunk_size))
    if isinstance(source, (list, tuple)):
        return lambda: (torch.as_tensor(b).flatten(0, -2) for b in source)
    is_folder = isinstance(source, (str, os.PathLike)) and Path(source).expanduser().is_dir()
    if is_folder or type(source).__name__ == "CachedActivations":
        from ..interchange.saelens_cache import CachedActivations, load_cached_activations

        cache = source if isinstance(source, CachedActivations) else \
            load_cached_activations(source)
        column = cache.column(hook)
        contexts = max(1, chunk_size // cache.context_size)
        return lambda: cache.chunks(column, contexts=contexts, skip_bos=skip_bos)
    if callable(source):
        return lambda: iter(source())
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        raise TypeError("This source can be read only once, and FastICA reads the data once per "
                        "iteration: pass a list of batches, a function that returns a fresh "
                        "iterator, a tensor, or cached activations (iw.cache_activations).")
    raise TypeError("source must be a tensor [n, d], a list of such batches, a function "
                    "returning an iterator of them, or cached activations; got "
                    f"{type(source).__name__}.")


@dataclass
class Whitening:
    """z = (x - mean) @ K.T has identity covariance. K: Tensor[c, d] (float64), mean [d],
    dewhiten: Tensor[d, c] with dewhiten @ K the projection onto the top c principal
    directions; eigenvalues [d] (descending); rank; n: samples it was estimated from."""

    K: torch.Tensor
    dewhiten: torch.Tensor
    mean: torch.Tensor
    eigenvalues: torch.Tensor
    rank: int
    n: int


def whitening(acc: CovarianceAccumulator, n_components: int, *,
              overcomplete_hint: bool = True) -> Whitening:
    """The whitening of the top `n_components` principal directions of the data summed in
    `acc`; a clear error when the data has fewer samples or a lower rank than that."""
    if not 0 < n_components:
        raise ValueError(f"n_components must be at least 1; got {n_components}.")
    need = n_components + 1
    if acc.n < need:
        raise ValueError(f"The stream ended after {acc.n:,} samples; whitening for "
                         f"{n_components} components needs at least {need:,} (and, for a stable "
                         "estimate, many more).")
    evals, evecs = torch.linalg.eigh(acc.covariance())  # ascending
    evals, evecs = evals.flip(0), evecs.flip(-1)
    rank = int((evals > evals[0].clamp_min(1e-300) * _RANK_RTOL).sum())
    if n_components > rank:
        hint = (" Complete ICA finds at most as many components as the data has dimensions; "
                "for more, use overcomplete ICA (kind='overcomplete_ica', fit_rica)."
                if overcomplete_hint else "")
        raise ValueError(f"The activations span only {rank} of {acc.d} dimensions (rank "
                         f"{rank}), so ICA can find at most {rank} components; got "
                         f"n_components={n_components}. Pass n_components <= {rank}.{hint}")
    lam, E = evals[:n_components], evecs[:, :n_components]  # [c], [d, c]
    K = (E / lam.sqrt()).T  # [c, d]
    return Whitening(K=K, dewhiten=E * lam.sqrt(), mean=acc.mean(), eigenvalues=evals,
                     rank=rank, n=acc.n)


def _contrast(fun: str, alpha: float) -> Callable[[torch.Tensor], tuple[torch.Tensor,
                                                                         torch.Tensor]]:
    """(g(y), sum over rows of g'(y)) for y [n, c], as scikit-learn's _logcosh/_exp/_cube."""
    if fun == "logcosh":
        def g(y: torch.Tensor):
            gy = torch.tanh(y.mul_(alpha))
            return gy, alpha * (len(gy) - gy.pow(2).sum(0))
    elif fun == "exp":
        def g(y: torch.Tensor):
            e = torch.exp(-0.5 * y * y)
            return y * e, ((1 - y * y) * e).sum(0)
    elif fun == "cube":
        def g(y: torch.Tensor):
            return y.pow(3), 3 * y.pow(2).sum(0)
    else:
        raise ValueError(f"fun must be 'logcosh', 'exp' or 'cube'; got {fun!r}.")
    return g


def _sym_decorrelation(W: torch.Tensor) -> torch.Tensor:
    """(W W^T)^-1/2 W (float64)."""
    s, u = torch.linalg.eigh(W @ W.T)
    s = s.clamp_min(torch.finfo(W.dtype).tiny)
    return (u / s.sqrt()) @ u.T @ W


def fit_fastica(source: Any, n_components: int, *, fun: str = "logcosh", alpha: float = 1.0,
                max_iter: int = 200, tol: float = 1e-4, w_init: Any = None, seed: int = 0,
                device: str | torch.device | None = None, hook: str | None = None,
                hook_name: str | None = None, k: int | None = None, chunk_size: int = 65536,
                skip_bos: bool = True, progress: bool = False) -> LinearDictionary:
    """ICA dictionary of a stream of activations (see the module docstring).

    source: as `passes` takes it (a tensor, a list of batches, a function returning a fresh
        iterator, cached activations); read once for the whitening and once per iteration.
    fun, alpha: the contrast ("logcosh" with alpha, "exp", "cube"), as scikit-learn's.
    w_init: Tensor[c, c], the starting unmixing in whitened space (default: standard normal
        draws from `seed`, decorrelated, as scikit-learn does).
    device: where the iterations run ("cuda" works; default CPU); chunks move there one at a
        time. Matmuls are float32; the covariance, whitening and W are float64.
    Returns a `LinearDictionary` (kind "ica") with `components_` [c, d] (the unmixing in input
    space), `mixing_` [d, c], `n_iter_`, `converged_`, `whitening_` and unit-variance sources,
    each signed so that its skew is positive, i.e. its long tail is its
    active side, as an SAE latent's is: codes = (x - mean) @ W_enc, x_hat = codes @ W_dec +
    mean."""
    from tqdm.auto import tqdm

    dev = torch.device(device or "cpu")
    read = passes(source, hook=hook, chunk_size=chunk_size, skip_bos=skip_bos)
    g = _contrast(fun, alpha)
    if not 0 < tol:
        raise ValueError(f"tol must be positive; got {tol}.")
    acc = accumulate(read(), dev)
    wh = whitening(acc, n_components)
    n = acc.n
    K32 = wh.K.to(dev, torch.float32)
    mean32 = wh.mean.to(dev, torch.float32)
    whitened: list[torch.Tensor] | None = None
    if isinstance(source, (torch.Tensor, np.ndarray)):  # rows are in memory already: whiten once
        whitened = [(c.to(dev, torch.float32) - mean32) @ K32.T for c in read()]

    def chunks() -> Iterator[torch.Tensor]:
        if whitened is not None:
            yield from whitened
            return
        for c in read():
            yield (torch.as_tensor(c).flatten(0, -2).to(dev, torch.float32) - mean32) @ K32.T

    if w_init is None:
        rs = np.random.RandomState(seed)
        w_init = rs.normal(size=(n_components, n_components))
    W = torch.as_tensor(np.asarray(w_init), dtype=torch.float64).to(dev)
    if W.shape != (n_components, n_components):
        raise ValueError(f"w_init must be [{n_components}, {n_components}]; got "
                         f"{list(W.shape)}.")
    W = _sym_decorrelation(W)
    converged, lim = False, math.inf
    bar = tqdm(total=max_iter, disable=not progress, desc="FastICA", unit="it")
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        W32 = W.to(torch.float32)
        gz = torch.zeros(n_components, n_components, dtype=torch.float64, device=dev)
        gp = torch.zeros(n_components, dtype=torch.float64, device=dev)
        seen = 0
        for z in chunks():
            gy, gpy = g(z @ W32.T)  # [n_i, c], [c]
            gz += (gy.T @ z).double()
            gp += gpy.double()
            seen += len(z)
        if seen != n:
            raise ValueError(f"The source gave {seen:,} rows on a later pass but {n:,} on the "
                             "first: FastICA needs the same data on every pass.")
        W1 = _sym_decorrelation(gz / n - gp[:, None] / n * W)
        lim = float((torch.einsum("ij,ij->i", W1, W).abs() - 1).abs().max())
        W = W1
        bar.update(1)
        bar.set_postfix(lim=f"{lim:.2e}")
        if lim < tol:
            converged = True
            break
    bar.close()
    if not converged:
        warnings.warn(f"FastICA did not converge after {max_iter} iterations (max |<w_new, "
                      f"w_old>| - 1 = {lim:.2e}, tol {tol:g}). Consider increasing tol or "
                      "max_iter.", ConvergenceWarning, stacklevel=2)
    W32, m3 = W.to(torch.float32), torch.zeros(n_components, dtype=torch.float64, device=dev)
    for z in chunks():  # one more pass: each source's skew, to orient it
        m3 += (z @ W32.T).pow(3).sum(0).double()
    sign = torch.where(m3 < 0, -1.0, 1.0).to(W)
    components = (sign[:, None] * W @ wh.K.to(dev)).cpu()  # [c, d]: input-space unmixing
    mixing = torch.linalg.pinv(components)  # [d, c]
    d = LinearDictionary(components.T, mixing.T, wh.mean.cpu(), kind="ica", k=k,
                         hook_name=hook_name or hook)
    d.components_, d.mixing_ = components, mixing
    d.n_iter_, d.converged_, d.whitening_ = n_iter, converged, wh
    return d
